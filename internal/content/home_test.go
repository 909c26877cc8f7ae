package content

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Media and payload types are spelled in one place: a vnd media type written as a string anywhere else in ssf's
// code (tests aside, which spell wire formats on purpose) is a second home that can drift from this one.
func TestMediaTypesHaveOneHome(t *testing.T) {
	// Only the registry names these, to accept layers it need not hold; image-spec deprecates its constants for
	// the OCI ones.
	allowed := map[string]string{
		"application/vnd.oci.image.layer.nondistributable.v1.tar":      "internal/registry/manifest.go",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "internal/registry/manifest.go",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "internal/registry/manifest.go",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":    "internal/registry/manifest.go",
	}
	var checked int
	for _, dir := range []string{"../../internal", "../../cmd"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			rel, _ := filepath.Rel("../..", path)
			rel = filepath.ToSlash(rel)
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
			if err != nil {
				return err
			}
			checked++
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil || !strings.HasPrefix(s, "application/vnd.") {
					return true
				}
				if rel != "internal/content/types.go" && allowed[s] != rel {
					t.Errorf("%s spells media type %q: use image-spec's specs-go/v1 constant or internal/content's", rel, s)
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 50 {
		t.Fatalf("checked only %d files: is the walk rooted at the repository?", checked)
	}
}
