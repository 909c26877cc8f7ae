package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExtractRefusesOverlongName: one entry whose PAX name is thousands of nested directories costs extraction
// time in proportion to its depth squared, inside a single entry where ctx is not checked (3,000 levels took over
// ten seconds here; a megabyte of "a/" would take days). A name longer than PATH_MAX is refused before anything
// is made.
func TestExtractRefusesOverlongName(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  tar.Header
	}{
		{"deep file", tar.Header{Name: strings.Repeat("a/", 3000) + "f", Typeflag: tar.TypeReg, Mode: 0o644}},
		{"hard link to a deep target", tar.Header{Name: "l", Typeflag: tar.TypeLink, Linkname: strings.Repeat("a/", 3000) + "f"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tc.hdr.Format = tar.FormatPAX
			if err := tw.WriteHeader(&tc.hdr); err != nil {
				t.Fatal(err)
			}
			tw.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			dest := filepath.Join(t.TempDir(), "dest")
			err := Extract(ctx, &buf, dest, ExtractOptions{})
			if err == nil || !strings.Contains(err.Error(), "at most 4096 (PATH_MAX)") {
				t.Fatalf("err = %v, want the name refused for its length", err)
			}
			if names, _ := os.ReadDir(dest); len(names) != 0 {
				t.Errorf("dest holds %d entries, want none", len(names))
			}
		})
	}
}
