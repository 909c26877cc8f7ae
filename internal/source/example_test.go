package source_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ssf-dev/ssf/internal/source"
)

// Take snapshots a directory that is not a git work tree by its tree digest, and names what it left out.
func ExampleTake() {
	dir, _ := os.MkdirTemp("", "src-")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n"), 0o644)
	home, _ := os.MkdirTemp("", "home-")
	defer os.RemoveAll(home)
	work, _ := os.MkdirTemp("", "work-")
	defer os.RemoveAll(work)

	snap, err := source.Take(context.Background(), dir, source.Protected{Home: home, Key: filepath.Join(home, "keys", "provenance.key")},
		filepath.Join(work, "source.tar"), 1<<30) // at most 1 GiB, as a task disk of that size would hold
	if err != nil {
		fmt.Println(err)
		return
	}
	d := snap.Descriptor()
	fmt.Println(d.Name, len(d.Digest["sha256"]), snap.Commit == "", len(snap.LeftOut))
	// Output: source 64 true 0
}
