package archive

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssf-dev/ssf/internal/archive/archivetest"
)

// TestExtractRefusesSparse: a sparse entry's holes are expanded by the tar reader and written as zeros, so two
// kilobytes of layer would fill 256 MiB (or a terabyte) of the host's disk. ssf's own tarballs never have one.
func TestExtractRefusesSparse(t *testing.T) {
	tarball := append(archivetest.SparseEntry("bomb", 256<<20), archivetest.End()...)
	dest := filepath.Join(t.TempDir(), "dest")
	err := Extract(context.Background(), bytes.NewReader(tarball), dest, ExtractOptions{})
	if err == nil || !strings.Contains(err.Error(), "sparse") {
		t.Errorf("err = %v, want a refused sparse entry", err)
	}
	if fi, err := os.Stat(filepath.Join(dest, "bomb")); err == nil {
		t.Errorf("the sparse entry was written: %d bytes", fi.Size())
	}
}
