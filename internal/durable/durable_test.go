package durable

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// recordSyncs replaces the sync function for one test and returns the paths synced, in order. A sync that
// observes `watch` already present records "!" + its path: something was synced after the name was published.
func recordSyncs(t *testing.T, watch string) *[]string {
	t.Helper()
	var (
		mu  sync.Mutex
		got []string
	)
	old := syncFile
	syncFile = func(f *os.File) error {
		mu.Lock()
		defer mu.Unlock()
		name := f.Name()
		if watch != "" {
			if _, err := os.Lstat(watch); err == nil && name != filepath.Dir(watch) {
				name = "!" + name
			}
		}
		got = append(got, name)
		return old(f)
	}
	t.Cleanup(func() { syncFile = old })
	return &got
}

func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	syncs := recordSyncs(t, p)
	if err := WriteNew(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat: %v, %v", fi, err)
	}
	// The data is synced (under its temporary name) before the name exists, the directory after.
	if n := len(*syncs); n != 2 || !strings.Contains((*syncs)[0], ".tmp-key-") || (*syncs)[1] != dir {
		t.Errorf("syncs = %q, want the temporary file, then %s", *syncs, dir)
	}
	if err := WriteNew(p, []byte("two"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second WriteNew: %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Errorf("the file was replaced: %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestReplace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "index.json")
	for _, body := range []string{"one", "two"} {
		if err := Replace(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != body {
			t.Errorf("content = %q, want %q", b, body)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if err := Replace(filepath.Join(dir, "missing", "x"), nil, 0o644); err == nil {
		t.Error("Replace in a missing directory: no error")
	}
}

// PublishDir syncs every file and directory of the staged tree, files before their directories, all before the
// rename; then the parent. A crash at any point leaves no OUT or a whole one.
func TestPublishDirOrder(t *testing.T) {
	parent := t.TempDir()
	staging, out := filepath.Join(parent, ".out.partial-1"), filepath.Join(parent, "out")
	for _, f := range []string{"a", "bin/tool", "attestations/logs/t.log", "attestations/provenance.sigstore.json"} {
		p := filepath.Join(staging, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a", filepath.Join(staging, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(out, 0o755); err != nil { // an empty --out is replaced
		t.Fatal(err)
	}
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	syncs := recordSyncs(t, out)
	if err := PublishDir(staging, out); err != nil {
		t.Fatal(err)
	}
	rel := func(p string) string {
		bang := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if r, err := filepath.Rel(staging, p); err == nil && !strings.HasPrefix(r, "..") {
			p = r
		} else if p == parent {
			p = "PARENT"
		}
		if bang {
			p = "!" + p
		}
		return p
	}
	var got []string
	for _, s := range *syncs {
		got = append(got, rel(s))
	}
	want := []string{"a", "attestations/logs/t.log", "attestations/provenance.sigstore.json", "bin/tool",
		"bin", "attestations/logs", "attestations", ".", "PARENT"}
	if !slices.Equal(got, want) {
		t.Errorf("syncs = %q\nwant %q (a ! marks a sync after %s appeared)", got, want, out)
	}
	if b, err := os.ReadFile(filepath.Join(out, "bin/tool")); err != nil || string(b) != "bin/tool" {
		t.Errorf("published tree: %q, %v", b, err)
	}
}

func TestPublishDirRefusesNonEmpty(t *testing.T) {
	parent := t.TempDir()
	staging, out := filepath.Join(parent, "s"), filepath.Join(parent, "out")
	for _, d := range []string{staging, filepath.Join(out, "old")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := PublishDir(staging, out); err == nil {
		t.Error("PublishDir over a non-empty directory: no error")
	}
	if _, err := os.Stat(filepath.Join(out, "old")); err != nil {
		t.Errorf("the existing directory was changed: %v", err)
	}
}

// LinkNew syncs the finished file before its new name exists and the directory after, and never replaces.
func TestLinkNew(t *testing.T) {
	dir := t.TempDir()
	from, p := filepath.Join(dir, "upload"), filepath.Join(dir, "blob")
	if err := os.WriteFile(from, []byte("bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	syncs := recordSyncs(t, p)
	if err := LinkNew(from, p); err != nil {
		t.Fatal(err)
	}
	if want := []string{from, dir}; !slices.Equal(*syncs, want) {
		t.Errorf("syncs = %q, want %q (a ! marks a sync after %s appeared)", *syncs, want, p)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "bytes" {
		t.Errorf("linked file: %q, %v", b, err)
	}
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := LinkNew(other, p); !errors.Is(err, fs.ErrExist) {
		t.Errorf("LinkNew over an existing file: %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "bytes" {
		t.Errorf("the file was replaced: %q", b)
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tag")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	syncs := recordSyncs(t, "")
	if err := Remove(p); err != nil {
		t.Fatal(err)
	}
	if want := []string{dir}; !slices.Equal(*syncs, want) {
		t.Errorf("syncs = %q, want %q", *syncs, want)
	}
	if err := Remove(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second Remove: %v, want fs.ErrNotExist", err)
	}
}

// MkdirAll syncs the parent of every directory it creates (whose new entry would otherwise be lost in a crash
// with everything beneath it), and nothing when all exist.
func TestMkdirAllSyncsParents(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "repos"), 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "repos", "a", "b", "_blobs")
	syncs := recordSyncs(t, "")
	if err := MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(root, "repos"), filepath.Join(root, "repos", "a"), filepath.Join(root, "repos", "a", "b")}
	if !slices.Equal(*syncs, want) {
		t.Errorf("syncs = %q, want %q", *syncs, want)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("stat %s: %v, %v", dir, fi, err)
	}
	*syncs = nil
	if err := MkdirAll(dir, 0o700); err != nil || len(*syncs) != 0 {
		t.Errorf("MkdirAll of an existing directory: %v, syncs %q", err, *syncs)
	}
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(filepath.Join(file, "x"), 0o700); err == nil {
		t.Error("MkdirAll under a file: no error")
	}
}

// TestLinkNewAcrossFileSystems: link(2) fails with EXDEV when the finished file is on another file system than
// its name (an upload area and a blob store mounted apart); LinkNew then copies the bytes beside the name and
// links the copy, rather than failing every publication.
func TestLinkNewAcrossFileSystems(t *testing.T) {
	other, err := os.MkdirTemp("/dev/shm", "durable-test-")
	if err != nil {
		t.Skipf("needs /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	dir := t.TempDir()
	var a, b syscall.Stat_t
	if syscall.Stat(other, &a) != nil || syscall.Stat(dir, &b) != nil || a.Dev == b.Dev {
		t.Skip("needs /dev/shm on another file system than the test's temporary directory")
	}
	from, p := filepath.Join(other, "upload"), filepath.Join(dir, "blob")
	if err := os.WriteFile(from, []byte("bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := LinkNew(from, p); err != nil {
		t.Fatalf("LinkNew across file systems: %v", err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "bytes" {
		t.Errorf("published file: %q, %v", got, err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("published file's mode: %v, %v; want 0600", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left in %s: %v, want only the blob", dir, entries)
	}
	if err := LinkNew(from, p); !errors.Is(err, fs.ErrExist) {
		t.Errorf("LinkNew across file systems over an existing file: %v, want fs.ErrExist", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left in %s after the refused LinkNew: %v, want only the blob", dir, entries)
	}
}
