package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExtractRoundTrip(t *testing.T) {
	src := t.TempDir()
	buildTree(t, src, sampleTree, false, 1000, 1000, time.Now())
	want, _ := writeTree(t, src, nil)
	for _, opts := range []ExtractOptions{{}, {Chown: true, UID: 4321, GID: 8765, Sync: true}} {
		dest := filepath.Join(t.TempDir(), "dest") // not there yet: Extract creates it
		if err := Extract(context.Background(), bytes.NewReader(want), dest, opts); err != nil {
			t.Fatal(err)
		}
		got, _ := writeTree(t, dest, nil)
		if !bytes.Equal(got, want) {
			t.Errorf("%+v: round trip differs:\n%v\nwant:\n%v", opts, readTar(t, got), readTar(t, want))
		}
		if target, err := os.Readlink(filepath.Join(dest, "etc")); err != nil || target != "/etc" {
			t.Errorf("%+v: etc -> %q, %v; want a symlink to /etc", opts, target, err)
		}
		uid, gid := os.Getuid(), os.Getgid()
		if opts.Chown {
			uid, gid = opts.UID, opts.GID
		}
		err := filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == dest {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			st := info.Sys().(*syscall.Stat_t)
			if int(st.Uid) != uid || int(st.Gid) != gid {
				t.Errorf("%+v: %s is owned by %d:%d, want %d:%d", opts, p, st.Uid, st.Gid, uid, gid)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestExtractModes(t *testing.T) {
	tarball := makeTar(t, []*tar.Header{
		{Name: "ro/", Typeflag: tar.TypeDir, Mode: 0o555},
		{Name: "ro/sub/file", Typeflag: tar.TypeReg, Mode: 0o6755}, // parent created implicitly, setuid and setgid
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: "./dot/./slash//f", Typeflag: tar.TypeReg, Mode: 0o600},
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o700}, // dest itself: ignored
		{Name: "pax_global_header", Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "x"}},
	})
	dest := t.TempDir()
	if err := os.Chmod(dest, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := Extract(context.Background(), bytes.NewReader(tarball), dest, ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]fs.FileMode{
		".":                 0o750 | fs.ModeDir,
		"ro":                0o555 | fs.ModeDir,
		"ro/sub":            0o755 | fs.ModeDir,
		"ro/sub/file":       0o755,
		"tmp":               0o777 | fs.ModeDir | fs.ModeSticky,
		"dot/slash/f":       0o600,
		"dot":               0o755 | fs.ModeDir,
		"pax_global_header": 0,
	} {
		info, err := os.Lstat(filepath.Join(dest, name))
		if want == 0 {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: exists, want nothing: %v", name, err)
			}
			continue
		}
		if err != nil {
			t.Error(err)
		} else if info.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, info.Mode(), want)
		}
	}
}

func TestExtractHardLink(t *testing.T) {
	tarball := makeTar(t, []*tar.Header{
		{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o640},
		{Name: "e/h", Typeflag: tar.TypeLink, Linkname: "./d/f"},
	})
	dest := t.TempDir()
	if err := Extract(context.Background(), bytes.NewReader(tarball), dest, ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Lstat(filepath.Join(dest, "d/f"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := os.Lstat(filepath.Join(dest, "e/h"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(f, h) {
		t.Error("e/h is not a hard link to d/f")
	}
}

func TestExtractDestination(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := Extract(context.Background(), bytes.NewReader(makeTar(t, nil)), full, ExtractOptions{})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("extracting into a non-empty directory: err = %v", err)
	}
	missing := filepath.Join(t.TempDir(), "a", "b")
	if err := Extract(context.Background(), bytes.NewReader(makeTar(t, nil)), missing, ExtractOptions{}); err == nil {
		t.Error("extracting into a directory whose parent is missing: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tarball := makeTar(t, []*tar.Header{{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644}})
	if err := Extract(ctx, bytes.NewReader(tarball), t.TempDir(), ExtractOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v, want context.Canceled", err)
	}
}

// makeTar writes headers, each regular file holding its own name.
func makeTar(t testing.TB, hdrs []*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, hdr := range hdrs {
		var data []byte
		if hdr.Typeflag == tar.TypeReg {
			data = []byte(hdr.Name)
			hdr.Size = int64(len(data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// escapeCanary is the name of every file that hostile test tarballs try to create outside their destination,
// the host's /tmp included; it must never appear.
const escapeCanary = "ssf-oci-escape-canary"

// sandboxDirs makes parent/dest (not created) and parent/outside holding one file, the things an escaping
// tarball would change.
func sandboxDirs(t testing.TB) (parent, dest, outside string) {
	t.Helper()
	parent = t.TempDir()
	outside = filepath.Join(parent, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	return parent, filepath.Join(parent, "dest"), outside
}

// checkContained fails the test if anything beside dest changed: parent must hold only dest and outside, outside
// only its untouched secret, and the host's /tmp no canary.
func checkContained(t testing.TB, parent string) {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"dest", "outside"}) && !slices.Equal(names, []string{"outside"}) {
		t.Errorf("parent of dest holds %q", names)
	}
	entries, err = os.ReadDir(filepath.Join(parent, "outside"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "secret" {
		t.Errorf("outside holds %v", entries)
	}
	info, err := os.Lstat(filepath.Join(parent, "outside", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(parent, "outside", "secret")); err != nil || string(b) != "secret" ||
		info.Mode() != 0o644 || info.Sys().(*syscall.Stat_t).Nlink != 1 {
		t.Errorf("outside/secret changed: %q, %v, mode %v", b, err, info.Mode())
	}
	if _, err := os.Lstat(filepath.Join(os.TempDir(), escapeCanary)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists in the host's temporary directory", escapeCanary)
	}
}

// hostileTars are tarballs that try to write outside their destination; outside is parent/outside.
func hostileTars(outside string) map[string][]*tar.Header {
	return map[string][]*tar.Header{
		"dotdot":          {{Name: "../outside/" + escapeCanary, Typeflag: tar.TypeReg}},
		"dotdot inside":   {{Name: "a/../../outside/" + escapeCanary, Typeflag: tar.TypeReg}},
		"absolute":        {{Name: filepath.Join(outside, ""+escapeCanary), Typeflag: tar.TypeReg}},
		"absolute tmp":    {{Name: "/tmp/" + escapeCanary, Typeflag: tar.TypeReg}},
		"dotdot dir":      {{Name: "../outside/d/", Typeflag: tar.TypeDir, Mode: 0o755}},
		"dotdot symlink":  {{Name: "../outside/l", Typeflag: tar.TypeSymlink, Linkname: "x"}},
		"empty name":      {{Name: "", Typeflag: tar.TypeReg}},
		"dot file":        {{Name: ".", Typeflag: tar.TypeReg}},
		"empty symlink":   {{Name: "l", Typeflag: tar.TypeSymlink}},
		"unknown type":    {{Name: "x", Typeflag: 'Z'}},
		"char device":     {{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666}},
		"block device":    {{Name: "sda", Typeflag: tar.TypeBlock, Devmajor: 8, Devminor: 0, Mode: 0o666}},
		"fifo":            {{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o666}},
		"contiguous file": {{Name: "c", Typeflag: tar.TypeCont}},
		"absolute symlink then file through it": {
			{Name: "a", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "a/" + escapeCanary, Typeflag: tar.TypeReg},
		},
		"symlink to tmp then file through it": {
			{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "/tmp"},
			{Name: "a/" + escapeCanary, Typeflag: tar.TypeReg},
		},
		"absolute symlink then dir through it": {
			{Name: "a", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "a/d/", Typeflag: tar.TypeDir, Mode: 0o777},
		},
		"absolute symlink then symlink through it": {
			{Name: "a", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "a/l", Typeflag: tar.TypeSymlink, Linkname: "x"},
		},
		"relative symlink to parent then file through it": {
			{Name: "up", Typeflag: tar.TypeSymlink, Linkname: ".."},
			{Name: "up/outside/" + escapeCanary, Typeflag: tar.TypeReg},
		},
		"nested symlinks to parent": {
			{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "d/up", Typeflag: tar.TypeSymlink, Linkname: "../.."},
			{Name: "d/up/outside/" + escapeCanary, Typeflag: tar.TypeReg},
		},
		"symlink to file then file over it": {
			{Name: "f", Typeflag: tar.TypeSymlink, Linkname: filepath.Join(outside, "secret")},
			{Name: "f", Typeflag: tar.TypeReg},
		},
		"symlink to dir then dir over it": {
			{Name: "d", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o777},
		},
		"symlink to inside dir then file through it": {
			{Name: "real/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "alias", Typeflag: tar.TypeSymlink, Linkname: "real"},
			{Name: "alias/f", Typeflag: tar.TypeReg},
		},
		"hard link outside": {{Name: "h", Typeflag: tar.TypeLink, Linkname: "../outside/secret"}},
		"hard link absolute": {
			{Name: "h", Typeflag: tar.TypeLink, Linkname: filepath.Join(outside, "secret")},
		},
		"hard link through symlink": {
			{Name: "up", Typeflag: tar.TypeSymlink, Linkname: ".."},
			{Name: "h", Typeflag: tar.TypeLink, Linkname: "up/outside/secret"},
		},
		"hard link to symlink": {
			{Name: "l", Typeflag: tar.TypeSymlink, Linkname: filepath.Join(outside, "secret")},
			{Name: "h", Typeflag: tar.TypeLink, Linkname: "l"},
		},
		"hard link to missing": {{Name: "h", Typeflag: tar.TypeLink, Linkname: "nothing"}},
		"file twice": {
			{Name: "f", Typeflag: tar.TypeReg},
			{Name: "f", Typeflag: tar.TypeReg},
		},
		"file then dir": {
			{Name: "f", Typeflag: tar.TypeReg},
			{Name: "f/", Typeflag: tar.TypeDir},
		},
		"file as parent": {
			{Name: "f", Typeflag: tar.TypeReg},
			{Name: "f/g", Typeflag: tar.TypeReg},
		},
	}
}

func TestExtractHostile(t *testing.T) {
	_, _, outside := sandboxDirs(t)
	for name, hdrs := range hostileTars(outside) {
		t.Run(name, func(t *testing.T) {
			parent, dest, outside := sandboxDirs(t)
			tarball := makeTar(t, hostileTars(outside)[name])
			err := Extract(context.Background(), bytes.NewReader(tarball), dest, ExtractOptions{})
			t.Log(err)
			if err == nil {
				t.Errorf("no error for %d entries", len(hdrs))
			} else if !strings.Contains(err.Error(), dest) {
				t.Errorf("error %q does not name the destination", err)
			}
			checkContained(t, parent)
		})
	}
}

func FuzzExtract(f *testing.F) {
	// The seeds' absolute names point at the host's temporary directory, where checkContained looks for the canary.
	for _, hdrs := range hostileTars(os.TempDir()) {
		f.Add(makeTar(f, hdrs))
	}
	// A well-formed tarball too, built in memory: a fuzz worker that is stopped leaves its temporary directories.
	f.Add(makeTar(f, []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/sh", Typeflag: tar.TypeReg, Mode: 0o755},
		{Name: "sh", Typeflag: tar.TypeSymlink, Linkname: "bin/sh"},
		{Name: "etc", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
		{Name: "hard", Typeflag: tar.TypeLink, Linkname: "bin/sh"},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: longName, Typeflag: tar.TypeReg, Mode: 0o644},
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent, dest, _ := sandboxDirs(t)
		_ = Extract(context.Background(), bytes.NewReader(data), dest, ExtractOptions{})
		checkContained(t, parent)
	})
}

// A deep tree costs extraction work in proportion to its depth squared, not cubed: every task of a build extracts
// the source before its timeout starts, so a source of a few hundred nested directories must not stall builds.
// (Before directories created by the extraction were remembered, 400 levels took half a minute and 1,200 did
// not finish in 100 s; the generous deadline only catches a return to that.)
func TestExtractDeepTree(t *testing.T) {
	const depth = 1200
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	name := ""
	for range depth {
		name += "d/"
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: name + "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("x"))
	tw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dest := t.TempDir()
	if err := Extract(ctx, &buf, dest, ExtractOptions{}); err != nil {
		t.Fatalf("extracting a tree %d directories deep: %v", depth, err)
	}
	if data, err := os.ReadFile(filepath.Join(dest, strings.Repeat("d/", depth), "f")); err != nil || string(data) != "x" {
		t.Fatalf("the deepest file: %q, %v", data, err)
	}
}
