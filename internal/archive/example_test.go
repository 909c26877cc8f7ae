package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ssf-dev/ssf/internal/archive"
)

func ExampleWriteTree() {
	dir, _ := os.MkdirTemp("", "ssf-example-")
	defer os.RemoveAll(dir)
	_ = os.MkdirAll(filepath.Join(dir, "src", ".git"), 0o755)
	_ = os.WriteFile(filepath.Join(dir, "src", "main.go"), []byte("package main\n"), 0o644)
	_ = os.Symlink("src/main.go", filepath.Join(dir, "main.go"))

	var layer bytes.Buffer
	skipGit := func(rel string, _ fs.FileInfo) bool { return filepath.Base(rel) != ".git" }
	stats, err := archive.WriteTree(context.Background(), &layer, dir, skipGit)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%+v\n", stats)
	tr := tar.NewReader(&layer)
	for hdr, err := tr.Next(); err == nil; hdr, err = tr.Next() {
		fmt.Printf("%s %o %s\n", hdr.Name, hdr.Mode, hdr.ModTime.UTC().Format("2006-01-02"))
	}
	// Output:
	// {Files:1 Dirs:1 Symlinks:1 Skipped:0 Bytes:13}
	// main.go 777 1970-01-01
	// src/ 755 1970-01-01
	// src/main.go 644 1970-01-01
}

func ExampleExtract() {
	dir, _ := os.MkdirTemp("", "ssf-example-")
	defer os.RemoveAll(dir)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644})
	_ = tw.Close()

	err := archive.Extract(context.Background(), &buf, filepath.Join(dir, "dest"), archive.ExtractOptions{})
	fmt.Println(strings.ReplaceAll(err.Error(), dir, "$TMP"))
	// Output: extracting "../escape" into "$TMP/dest": name contains ".."
}
