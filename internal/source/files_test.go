package source

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSnapshotFiles(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "web"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n"), 0o644))
	must(os.Symlink("../go.mod", filepath.Join(dir, "web", "package-lock.json")))
	snap, err := Take(context.Background(), dir, Protected{Home: t.TempDir()}, filepath.Join(t.TempDir(), "s.tar"), 0)
	must(err)
	// The directory changes after the snapshot: Files reads what was recorded.
	must(os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module changed\n"), 0o644))

	want := func(name string) bool { return name == "go.mod" || name == "web/package-lock.json" }
	files, err := snap.Files(context.Background(), want, 1<<20)
	must(err)
	data, err := fs.ReadFile(files, "go.mod")
	if err != nil || string(data) != "module x\n" {
		t.Errorf("go.mod = %q, %v; want the recorded bytes", data, err)
	}
	if _, err := fs.ReadFile(files, "main.go"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("main.go was read though not wanted: %v", err)
	}
	if _, err := fs.ReadFile(files, "web/package-lock.json"); err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "it is a symlink") {
		t.Errorf("reading a lock file that is a symlink: %v, want an error saying it is one", err)
	}
	if _, err := files.Open("web/package-lock.json"); err == nil || !strings.Contains(err.Error(), "it is a symlink") {
		t.Errorf("opening a lock file that is a symlink: %v", err)
	}
	var ie *InputError
	if _, err := snap.Files(context.Background(), want, 4); !errors.As(err, &ie) {
		t.Errorf("Files over the limit = %v, want an *InputError", err)
	}
}
