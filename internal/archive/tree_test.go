package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// node is one member of a test tree.
type node struct {
	path string
	kind byte // 'd' directory, 'f' file, 'l' symlink, 'h' hard link, 'p' fifo
	mode fs.FileMode
	data string // file contents, symlink target, or hard link target (a path in the tree)
}

var longName = strings.Repeat("deep/", 25) + strings.Repeat("n", 120) // needs PAX records

// sampleTree has every kind of entry WriteTree handles, names that sort differently as paths and as walk order
// ("a/b" against "a-b"), modes to strip, and symlinks that point out of the tree.
var sampleTree = []node{
	{"bin", 'd', 0o755, ""},
	{"bin/tool", 'f', 0o755, "#!/bin/sh\necho hi\n"},
	{"bin/suid", 'f', 0o755 | fs.ModeSetuid | fs.ModeSetgid, "setuid"},
	{"a", 'd', 0o750, ""},
	{"a/b", 'f', 0o644, "contents of b"},
	{"a/link", 'l', 0, "b"},
	{"a/hard", 'h', 0, "a/b"},
	{"a-b", 'f', 0o600, "contents of a-b"},
	{"a.c", 'f', 0o444, ""},
	{"tmp", 'd', 0o777 | fs.ModeSticky, ""},
	{"empty", 'd', 0o700, ""},
	{"etc", 'l', 0, "/etc"},
	{"up", 'l', 0, ".."},
	{"dangling", 'l', 0, "does/not/exist"},
	{"fifo", 'p', 0o644, ""},
	{"spaced name ü", 'f', 0o644, "unicode"},
	{longName, 'f', 0o644, "long"},
}

// buildTree creates nodes under dir in the given order, then gives every entry the owner uid:gid and every
// non-symlink the time mtime, so that two trees differ in everything WriteTree must ignore.
func buildTree(t testing.TB, dir string, nodes []node, reverse bool, uid, gid int, mtime time.Time) {
	t.Helper()
	nodes = slices.Clone(nodes)
	if reverse {
		slices.Reverse(nodes)
	}
	for pass := range 2 { // hard links in the second pass, once their targets exist
		for _, n := range nodes {
			if (n.kind == 'h') != (pass == 1) {
				continue
			}
			p := filepath.Join(dir, n.path)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			var err error
			switch n.kind {
			case 'd':
				err = os.MkdirAll(p, 0o755)
			case 'f':
				err = os.WriteFile(p, []byte(n.data), 0o644)
			case 'l':
				err = os.Symlink(n.data, p)
			case 'h':
				err = os.Link(filepath.Join(dir, n.data), p)
			case 'p':
				err = syscall.Mkfifo(p, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil // os.Chtimes would change the target, /etc included
		}
		return os.Chtimes(p, mtime, mtime)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes { // after chown, which clears setuid
		if n.kind == 'd' || n.kind == 'f' || n.kind == 'p' {
			if err := os.Chmod(filepath.Join(dir, n.path), n.mode); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func writeTree(t testing.TB, root string, include func(string, fs.FileInfo) bool) ([]byte, TreeStats) {
	t.Helper()
	var buf bytes.Buffer
	stats, err := WriteTree(context.Background(), &buf, root, include)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), stats
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// tarEntry is what a test checks of a tar header.
type tarEntry struct {
	Name     string
	Type     byte
	Mode     int64
	Linkname string
	Data     string
}

func readTar(t testing.TB, b []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !hdr.ModTime.Equal(time.Unix(0, 0)) || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" ||
			!hdr.AccessTime.IsZero() || !hdr.ChangeTime.IsZero() || hdr.Devmajor != 0 || hdr.Devminor != 0 {
			t.Errorf("entry %q leaks host metadata: %+v", hdr.Name, hdr)
		}
		for k := range hdr.PAXRecords {
			if k != "path" && k != "linkpath" { // long names only: no xattrs, times or owners
				t.Errorf("entry %q has PAX record %q", hdr.Name, k)
			}
		}
		out = append(out, tarEntry{hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Linkname, string(data)})
	}
}

func TestWriteTreeDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	buildTree(t, a, sampleTree, false, 0, 0, time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC))
	buildTree(t, b, sampleTree, true, 1234, 5678, time.Now())
	ta, sa := writeTree(t, a, nil)
	tb, sb := writeTree(t, b, nil)
	if sha(ta) != sha(tb) {
		t.Errorf("same tree, different tarballs: %s and %s", sha(ta), sha(tb))
	}
	if sa != sb {
		t.Errorf("stats differ: %+v and %+v", sa, sb)
	}
	want := TreeStats{Files: 8, Dirs: 4 + strings.Count(longName, "/"), Symlinks: 4, Skipped: 1, Bytes: 76}
	if sa != want {
		t.Errorf("stats = %+v, want %+v", sa, want)
	}
}

// TestWriteTreeGolden pins the bytes of a small tree: a change here changes the digest of every builder image
// and source tarball, so it must be deliberate.
func TestWriteTreeGolden(t *testing.T) {
	dir := t.TempDir()
	buildTree(t, dir, []node{
		{"d", 'd', 0o755, ""},
		{"d/f", 'f', 0o644, "hello\n"},
		{"d/x", 'f', 0o755, ""},
		{"l", 'l', 0, "d/f"},
	}, false, 0, 0, time.Now())
	got, _ := writeTree(t, dir, nil)
	const want = "a0fb087661c25dff3efcc70ef3a46ea2e8f5904f104780dd2327ad652dfb6929"
	if sha(got) != want {
		t.Errorf("sha256 = %s, want %s", sha(got), want)
	}
}

func TestWriteTreeEntries(t *testing.T) {
	dir := t.TempDir()
	buildTree(t, dir, sampleTree, false, 1000, 1000, time.Now())
	b, _ := writeTree(t, dir, nil)
	got := readTar(t, b)
	want := []tarEntry{
		{"a/", tar.TypeDir, 0o750, "", ""},
		{"a-b", tar.TypeReg, 0o600, "", "contents of a-b"},
		{"a.c", tar.TypeReg, 0o444, "", ""},
		{"a/b", tar.TypeReg, 0o644, "", "contents of b"},
		{"a/hard", tar.TypeReg, 0o644, "", "contents of b"},
		{"a/link", tar.TypeSymlink, 0o777, "b", ""},
		{"bin/", tar.TypeDir, 0o755, "", ""},
		{"bin/suid", tar.TypeReg, 0o755, "", "setuid"},
		{"bin/tool", tar.TypeReg, 0o755, "", "#!/bin/sh\necho hi\n"},
		{"dangling", tar.TypeSymlink, 0o777, "does/not/exist", ""},
	}
	for i := range strings.Count(longName, "/") {
		want = append(want, tarEntry{strings.Repeat("deep/", i+1), tar.TypeDir, 0o755, "", ""})
	}
	want = append(want, []tarEntry{
		{longName, tar.TypeReg, 0o644, "", "long"},
		{"empty/", tar.TypeDir, 0o700, "", ""},
		{"etc", tar.TypeSymlink, 0o777, "/etc", ""},
		{"spaced name ü", tar.TypeReg, 0o644, "", "unicode"},
		{"tmp/", tar.TypeDir, 0o1777, "", ""},
		{"up", tar.TypeSymlink, 0o777, "..", ""},
	}...)
	if !slices.Equal(got, want) {
		t.Errorf("entries:\n%v\nwant:\n%v", got, want)
	}
}

// TestWriteTreeNeverFollowsSymlinks points symlinks at a directory and a file outside the tree, and at the
// tree's own parent, and checks that only the links are stored.
func TestWriteTreeNeverFollowsSymlinks(t *testing.T) {
	outside := t.TempDir()
	secret := "secret that must not be read"
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	buildTree(t, dir, []node{
		{"etc", 'l', 0, "/etc"},
		{"dir", 'l', 0, outside},
		{"file", 'l', 0, filepath.Join(outside, "secret")},
		{"up", 'l', 0, ".."},
		{"self", 'l', 0, "."},
	}, false, 0, 0, time.Now())
	b, stats := writeTree(t, dir, nil)
	if bytes.Contains(b, []byte(secret)) {
		t.Error("tarball holds the contents of a symlink's target")
	}
	for _, e := range readTar(t, b) {
		if e.Type != tar.TypeSymlink {
			t.Errorf("entry %q has type %q, want a symlink", e.Name, e.Type)
		}
	}
	if stats != (TreeStats{Symlinks: 5}) {
		t.Errorf("stats = %+v", stats)
	}
}

func TestWriteTreeInclude(t *testing.T) {
	dir := t.TempDir()
	buildTree(t, dir, []node{
		{".git/HEAD", 'f', 0o644, "ref"},
		{".git/objects/x", 'f', 0o644, "obj"},
		{"src/main.go", 'f', 0o644, "package main"},
		{"src/main.go.tmp", 'f', 0o644, "scratch"},
		{"src/sub/keep", 'f', 0o644, "keep"},
	}, false, 0, 0, time.Now())
	asked := map[string]bool{}
	b, stats := writeTree(t, dir, func(rel string, info fs.FileInfo) bool {
		asked[rel] = info.IsDir()
		return rel != ".git" && !strings.HasSuffix(rel, ".tmp")
	})
	var names []string
	for _, e := range readTar(t, b) {
		names = append(names, e.Name)
	}
	if want := []string{"src/", "src/main.go", "src/sub/", "src/sub/keep"}; !slices.Equal(names, want) {
		t.Errorf("entries = %q, want %q", names, want)
	}
	wantAsked := map[string]bool{".git": true, "src": true, "src/main.go": false, "src/main.go.tmp": false,
		"src/sub": true, "src/sub/keep": false}
	if len(asked) != len(wantAsked) {
		t.Errorf("include asked about %v, want %v", asked, wantAsked)
	}
	for rel, isDir := range wantAsked {
		if got, ok := asked[rel]; !ok || got != isDir {
			t.Errorf("include(%q): asked %v, isDir %v; want isDir %v", rel, ok, got, isDir)
		}
	}
	if stats != (TreeStats{Files: 2, Dirs: 2, Bytes: 16}) {
		t.Errorf("stats = %+v", stats)
	}
}

func TestWriteFilesEqualsWriteTree(t *testing.T) {
	files := []node{
		{"go.mod", 'f', 0o644, "module x"},
		{"cmd/x/main.go", 'f', 0o644, "package main"},
		{"cmd/x/run.sh", 'f', 0o755, "#!/bin/sh"},
		{"internal/a/a.go", 'f', 0o600, "package a"},
		{"internal/a-b.go", 'f', 0o644, "package internal"},
		{"docs/link", 'l', 0, "../go.mod"},
	}
	full := t.TempDir()
	buildTree(t, full, append(slices.Clone(files),
		node{"internal/a/untracked", 'f', 0o644, "junk"},
		node{"build", 'd', 0o700, ""},
		node{"build/out", 'f', 0o644, "junk"},
		node{"cmd", 'd', 0o700, ""}, // WriteFiles gives implicit directories 0755 whatever the tree says
	), false, 1000, 1000, time.Now())
	just := t.TempDir()
	buildTree(t, just, files, true, 0, 0, time.Now())

	var list []string
	for _, n := range files {
		list = append(list, n.path)
	}
	slices.Reverse(list)
	list = append(list, "go.mod") // listed twice
	var buf bytes.Buffer
	stats, err := WriteFiles(context.Background(), &buf, full, list)
	if err != nil {
		t.Fatal(err)
	}
	tree, treeStats := writeTree(t, just, nil)
	if !bytes.Equal(buf.Bytes(), tree) {
		t.Errorf("WriteFiles and WriteTree differ:\n%v\n%v", readTar(t, buf.Bytes()), readTar(t, tree))
	}
	if stats != treeStats {
		t.Errorf("stats = %+v, WriteTree's = %+v", stats, treeStats)
	}
}

func TestWriteFilesErrors(t *testing.T) {
	dir := t.TempDir()
	buildTree(t, dir, []node{
		{"d/f", 'f', 0o644, "f"},
		{"link", 'l', 0, "d"},
		{"etc", 'l', 0, "/etc"},
	}, false, 0, 0, time.Now())
	for _, file := range []string{"d", "missing", "../x", "/etc/passwd", "d//f", "./d/f", "d/", ".", "", "link/f",
		"etc/passwd"} {
		t.Run(file, func(t *testing.T) {
			_, err := WriteFiles(context.Background(), io.Discard, dir, []string{file})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), strconv.Quote(file)) {
				t.Errorf("error %q does not name %q", err, file)
			}
		})
	}
}

func TestWriteTreeCancelled(t *testing.T) {
	dir := t.TempDir()
	buildTree(t, dir, sampleTree, false, 0, 0, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WriteTree(ctx, io.Discard, dir, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// The filter judges the walk's own Lstat, and the file read is checked to be that one: a file swapped after the
// filter judged it (a hard link to a secret, say) is never written.
func TestWriteTreeFilterJudgesWhatIsRead(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	for p, data := range map[string]string{filepath.Join(dir, "a"): "harmless", secret: "signing key"} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var judged fs.FileInfo
	_, err := WriteTree(context.Background(), io.Discard, dir, func(rel string, info fs.FileInfo) bool {
		judged = info
		// Swap in a hard link to the secret after the judgement, as a racing writer would.
		if err := os.Remove(filepath.Join(dir, rel)); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(secret, filepath.Join(dir, rel)); err != nil {
			t.Fatal(err)
		}
		return true
	})
	if judged == nil || judged.Size() != int64(len("harmless")) {
		t.Fatalf("the filter was not given the walk's Lstat of the file: %v", judged)
	}
	if err == nil || !strings.Contains(err.Error(), "changed while being read") {
		t.Fatalf("WriteTree of a file swapped after the filter judged it: err = %v, want \"changed while being read\"", err)
	}
}
