package deps

import (
	"archive/zip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeZip(t *testing.T, prefix string, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.zip")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for i := range n {
		if _, err := zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("%s/f%d", prefix, i), Method: zip.Store}); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func TestZipEntries(t *testing.T) {
	for _, n := range []int{0, 3, 70000} { // 70000 needs the zip64 end records
		got, err := zipEntries(writeZip(t, "example.com/m@v1.0.0", n))
		if err != nil || got != uint64(n) {
			t.Errorf("zipEntries of a zip of %d files = %d, %v", n, got, err)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.zip")
	os.WriteFile(bad, []byte("<html>not a zip</html>"), 0o644)
	if _, err := zipEntries(bad); err == nil {
		t.Error("zipEntries accepted a file that is not a zip")
	}
}

// A module zip of more files than ssf reads is refused from its end record, before CheckZip loads its directory.
func TestZipWithTooManyFilesIsRefused(t *testing.T) {
	defer func(n uint64) { maxZipEntries = n }(maxZipEntries)
	maxZipEntries = 100
	zipPath := writeZip(t, "example.com/many@v1.0.0", 101)
	zipBytes, _ := os.ReadFile(zipPath)
	h1, err := hashZip(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	err = ingestOneModule(t, "example.com/many", []byte("module example.com/many\n"), zipBytes, h1)
	if err == nil || !strings.Contains(err.Error(), "101 files, more than the 100") {
		t.Errorf("Ingest() = %v, want the zip refused for its number of files", err)
	}
}

// go.sum may have exactly maxGoSumLines lines, ending in a newline.
func TestGoSumAtTheLineBound(t *testing.T) {
	data := strings.Repeat("\n", maxGoSumLines)
	if _, err := parseGoSum("go.sum", []byte(data)); err != nil {
		t.Errorf("a go.sum of %d lines: %v", maxGoSumLines, err)
	}
	if _, err := parseGoSum("go.sum", []byte(data+"\n")); err == nil {
		t.Errorf("a go.sum of %d lines was read", maxGoSumLines+1)
	}
}
