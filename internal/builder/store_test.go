package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/archive"
)

// file is one member of a test root filesystem: a directory if data ends in "/", a symlink if it starts with "->".
type file struct {
	path string
	mode fs.FileMode
	data string
}

var toolchain = []file{
	{"usr/", 0o755, ""},
	{"usr/bin/", 0o755, ""},
	{"usr/bin/go", 0o755, "\x7fELF go"},
	{"usr/lib/go/src/fmt/print.go", 0o644, "package fmt"},
	{"bin", 0o777, "->usr/bin"},
	{"etc/passwd", 0o644, "root:x:0:0::/root:/bin/sh\n"},
	{"etc/ssl", 0o777, "->/usr/share/ssl"},
	{"tmp/", 0o777 | fs.ModeSticky, ""},
	{"var/empty/", 0o700, ""},
}

// makeRootfs creates files under a new directory, in the given order, owned by uid:gid, with mtime at.
func makeRootfs(t testing.TB, files []file, reverse bool, uid int, at time.Time) string {
	t.Helper()
	dir := t.TempDir()
	files = slices.Clone(files)
	if reverse {
		slices.Reverse(files)
	}
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(f.path, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(f.data, "->"):
			err = os.Symlink(f.data[2:], p)
		default:
			err = os.WriteFile(p, []byte(f.data), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, uid, uid); err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		return os.Chtimes(p, at, at)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !strings.HasPrefix(f.data, "->") {
			if err := os.Chmod(filepath.Join(dir, f.path), f.mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func importTree(t testing.TB, s *Store, rootfs, name string) Image {
	t.Helper()
	img, err := s.Import(context.Background(), rootfs, name)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestImportIsDeterministic(t *testing.T) {
	a := makeRootfs(t, toolchain, false, 0, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	b := makeRootfs(t, toolchain, true, 1000, time.Now())
	s := openStore(t)
	imgA := importTree(t, s, a, "golang")
	imgB := importTree(t, s, b, "toolchain/go-1.26")
	other := importTree(t, openStore(t), b, "elsewhere")
	if imgA.Digest != imgB.Digest || imgA.Digest != other.Digest {
		t.Errorf("same tree, different digests: %s, %s, %s", imgA.Digest, imgB.Digest, other.Digest)
	}
	want := Image{Name: "golang", Digest: imgA.Digest, Size: imgA.Size, Files: 3}
	if imgA != want || imgA.Size == 0 {
		t.Errorf("Import = %+v, want %+v", imgA, want)
	}
	if ref := imgB.Ref(); ref != "toolchain/go-1.26@"+string(imgA.Digest) {
		t.Errorf("Ref() = %q", ref)
	}
}

func TestImportChangesDigest(t *testing.T) {
	s := openStore(t)
	base := importTree(t, s, makeRootfs(t, toolchain, false, 0, time.Now()), "base")
	for name, change := range map[string]func([]file) []file{
		"contents": func(fs []file) []file { fs[2].data = "\x7fELF go2"; return fs },
		"mode":     func(fs []file) []file { fs[2].mode = 0o700; return fs },
		"dir mode": func(fs []file) []file { fs[8].mode = 0o750; return fs },
		"symlink":  func(fs []file) []file { fs[4].data = "->usr/sbin"; return fs },
		"rename":   func(fs []file) []file { fs[5].path = "etc/group"; return fs },
		"new file": func(fs []file) []file { return append(fs, file{"etc/hosts", 0o644, ""}) },
		"new dir":  func(fs []file) []file { return append(fs, file{"srv/", 0o755, ""}) },
	} {
		t.Run(name, func(t *testing.T) {
			img := importTree(t, s, makeRootfs(t, change(slices.Clone(toolchain)), false, 0, time.Now()), "changed")
			if img.Digest == base.Digest {
				t.Errorf("digest unchanged: %s", img.Digest)
			}
		})
	}
}

func TestImportNames(t *testing.T) {
	s := openStore(t)
	rootfs := makeRootfs(t, toolchain, false, 0, time.Now())
	for _, name := range []string{"", "Go", "go_", "-go", "go..1", "a//b", "a/", "/a", "../a", "a b", "a:b", "a@b"} {
		_, err := s.Import(context.Background(), rootfs, name)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
			t.Errorf("Import(%q): err = %v, want an error naming it", name, err)
		}
	}
	for _, name := range []string{"go", "golang/1.26", "a.b_c-d/e", "0"} {
		if _, err := s.Import(context.Background(), rootfs, name); err != nil {
			t.Errorf("Import(%q): %v", name, err)
		}
	}
	if _, err := s.Import(context.Background(), filepath.Join(rootfs, "missing"), "x"); err == nil {
		t.Error("Import of a missing directory: no error")
	}
}

func TestListAndLookup(t *testing.T) {
	s := openStore(t)
	tree1 := makeRootfs(t, toolchain, false, 0, time.Now())
	tree2 := makeRootfs(t, toolchain[:3], false, 0, time.Now())
	one := importTree(t, s, tree1, "zeta")
	alias := importTree(t, s, tree1, "alpha")
	two := importTree(t, s, tree2, "mid")
	old := importTree(t, s, tree2, "renamed")
	replaced := importTree(t, s, tree1, "renamed") // a name that exists now names another image

	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []Image{alias, two, replaced, one}
	if !slices.Equal(list, want) {
		t.Errorf("List() = %+v\nwant %+v", list, want)
	}
	if old.Digest != two.Digest || replaced.Digest != one.Digest {
		t.Fatal("imports of the same tree differ")
	}

	got, err := s.Lookup(one.Digest)
	if err != nil || got != alias { // several names: the first
		t.Errorf("Lookup(%s) = %+v, %v; want %+v", one.Digest, got, err, alias)
	}
	if got, err := s.Lookup(two.Digest); err != nil || got != two {
		t.Errorf("Lookup(%s) = %+v, %v; want %+v", two.Digest, got, err, two)
	}
	missing := digest.Digest("sha256:" + strings.Repeat("0", 64))
	if _, err := s.Lookup(missing); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), string(missing)) {
		t.Errorf("Lookup(%s): err = %v, want ErrNotFound naming it", missing, err)
	}
	for _, bad := range []digest.Digest{"", "golang", digest.Digest(one.Ref()), digest.Digest(one.Digest.Encoded()),
		digest.Digest(strings.ToUpper(string(one.Digest))), digest.Digest("sha512:" + strings.Repeat("0", 128)), digest.Digest("sha256:" + strings.Repeat("0", 63)),
		"sha256:../../../etc/passwd"} {
		_, err := s.Lookup(bad)
		if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "invalid digest") {
			t.Errorf("Lookup(%q): err = %v, want invalid digest", bad, err)
		}
	}

	reopened, err := Open(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	if list2, err := reopened.List(); err != nil || !slices.Equal(list2, list) {
		t.Errorf("after reopening, List() = %+v, %v", list2, err)
	}
}

// TestLayout checks the store against the OCI image layout and the image format the package documents.
func TestLayout(t *testing.T) {
	s := openStore(t)
	rootfs := makeRootfs(t, toolchain, false, 0, time.Now())
	img := importTree(t, s, rootfs, "golang")

	readJSON := func(p string, v any) []byte {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
		return b
	}
	var layout v1.ImageLayout
	readJSON(filepath.Join(s.dir, "oci-layout"), &layout)
	if layout.Version != "1.0.0" {
		t.Errorf("oci-layout version %q", layout.Version)
	}
	var index v1.Index
	readJSON(filepath.Join(s.dir, "index.json"), &index)
	if len(index.Manifests) != 1 || index.Manifests[0].Digest != img.Digest ||
		index.Manifests[0].MediaType != v1.MediaTypeImageManifest ||
		index.Manifests[0].Annotations[v1.AnnotationRefName] != "golang" {
		t.Errorf("index.json = %+v", index)
	}

	// Every blob is named by its digest, and there is nothing else in blobs.
	entries, err := os.ReadDir(filepath.Join(s.dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Errorf("%d blobs, want 3", len(entries))
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(s.dir, "blobs", "sha256", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != e.Name() {
			t.Errorf("blob %s has digest %x", e.Name(), sum)
		}
	}
	if others, _ := os.ReadDir(filepath.Join(s.dir, "blobs")); len(others) != 1 {
		t.Errorf("blobs holds %v, want only sha256", others)
	}

	blob := func(d digest.Digest) string {
		return filepath.Join(s.dir, "blobs", "sha256", d.Encoded())
	}
	var m v1.Manifest
	mb := readJSON(blob(img.Digest), &m)
	if bytes.Contains(mb, []byte("golang")) || m.Annotations != nil {
		t.Errorf("manifest holds the name or annotations: %s", mb)
	}
	if m.SchemaVersion != 2 || m.MediaType != v1.MediaTypeImageManifest || m.Config.MediaType != v1.MediaTypeImageConfig ||
		len(m.Layers) != 1 || m.Layers[0].MediaType != v1.MediaTypeImageLayer || m.Layers[0].Size != img.Size {
		t.Errorf("manifest = %s", mb)
	}
	var config map[string]any
	cb := readJSON(blob(m.Config.Digest), &config)
	wantConfig := fmt.Sprintf(`{"architecture":%q,"os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%q]}}`,
		runtime.GOARCH, m.Layers[0].Digest)
	if string(cb) != wantConfig {
		t.Errorf("config = %s\nwant %s", cb, wantConfig)
	}

	// The layer is the tree's deterministic tarball.
	var want bytes.Buffer
	if _, err := archive.WriteTree(context.Background(), &want, rootfs, nil); err != nil {
		t.Fatal(err)
	}
	layer, err := os.ReadFile(blob(m.Layers[0].Digest))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(layer, want.Bytes()) {
		t.Error("layer is not archive.WriteTree's tarball of the tree")
	}
}

func TestRootfs(t *testing.T) {
	s := openStore(t)
	rootfs := makeRootfs(t, toolchain, false, 1000, time.Now())
	img := importTree(t, s, rootfs, "golang")
	cache := filepath.Join(t.TempDir(), "cache")
	dir, err := s.Rootfs(context.Background(), img.Digest, cache)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, img.Digest.Encoded()); dir != want {
		t.Errorf("Rootfs() = %q, want %q", dir, want)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "usr/bin/go")); err != nil || string(b) != "\x7fELF go" {
		t.Errorf("usr/bin/go = %q, %v", b, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "etc/ssl")); err != nil || target != "/usr/share/ssl" {
		t.Errorf("etc/ssl -> %q, %v", target, err)
	}
	info, err := os.Lstat(dir)
	if err != nil || info.Mode() != fs.ModeDir|0o755 {
		t.Errorf("root filesystem mode %v, %v", info.Mode(), err)
	}
	for _, name := range mountPoints {
		entries, err := os.ReadDir(filepath.Join(dir, name))
		if err != nil || len(entries) != 0 && name != "run" { // run holds the mount point run/secrets
			t.Errorf("mount point %s: %v, %v", name, entries, err)
		}
		info, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || !info.IsDir() {
			t.Errorf("mount point %s: %v", name, err)
		}
	}
	if info, err := os.Lstat(filepath.Join(dir, "tmp")); err != nil || info.Mode() != fs.ModeDir|fs.ModeSticky|0o777 {
		t.Errorf("tmp, which the image has: mode %v, %v", info.Mode(), err)
	}

	// Apart from the mount points it added, the root filesystem is the imported tree, bit for bit.
	var want, got bytes.Buffer
	if _, err := archive.WriteTree(context.Background(), &want, rootfs, nil); err != nil {
		t.Fatal(err)
	}
	added := func(rel string, _ fs.FileInfo) bool { return rel == "tmp" || !slices.Contains(mountPoints, rel) }
	if _, err := archive.WriteTree(context.Background(), &got, dir, added); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Error("unpacked root filesystem differs from the imported tree")
	}

	// Once published it is reused, not unpacked again.
	marker := filepath.Join(dir, "workspace")
	before, _ := os.Lstat(marker)
	again, err := s.Rootfs(context.Background(), img.Digest, cache)
	if err != nil || again != dir {
		t.Errorf("second Rootfs() = %q, %v", again, err)
	}
	if after, _ := os.Lstat(marker); !os.SameFile(before, after) {
		t.Error("second Rootfs() unpacked the image again")
	}
	checkCache(t, cache, img.Digest.Encoded())
}

// checkCache fails the test unless cache holds exactly the named entries: no temporary directories.
func checkCache(t testing.TB, cache string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(cache)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, want) {
		t.Errorf("cache holds %q, want %q", names, want)
	}
}

func TestRootfsTamperedBlob(t *testing.T) {
	type tamper func(t *testing.T, p string)
	flip := func(at func(size int64) int64) tamper {
		return func(t *testing.T, p string) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[at(int64(len(b)))] ^= 0x01
			writeBlobFile(t, p, b)
		}
	}
	resize := func(delta int) tamper {
		return func(t *testing.T, p string) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if delta < 0 {
				b = b[:len(b)+delta]
			} else {
				b = append(b, make([]byte, delta)...)
			}
			writeBlobFile(t, p, b)
		}
	}
	for _, tc := range []struct {
		name   string
		blob   string // manifest, config or layer
		tamper tamper
	}{
		{"layer contents", "layer", flip(func(size int64) int64 { return 512 + 3 })},
		{"layer header", "layer", flip(func(int64) int64 { return 0 })},
		{"layer padding", "layer", flip(func(size int64) int64 { return size - 1 })},
		{"layer truncated", "layer", resize(-1024)},
		{"layer extended", "layer", resize(512)},
		{"config", "config", flip(func(size int64) int64 { return size / 2 })},
		{"manifest", "manifest", flip(func(size int64) int64 { return size / 2 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			img := importTree(t, s, makeRootfs(t, toolchain, false, 0, time.Now()), "golang")
			m, err := s.readManifest(img.Digest)
			if err != nil {
				t.Fatal(err)
			}
			d := map[string]digest.Digest{"manifest": img.Digest, "config": m.Config.Digest,
				"layer": m.Layers[0].Digest}[tc.blob]
			p, _ := s.blobPath(d)
			tc.tamper(t, p)

			cache := filepath.Join(t.TempDir(), "cache")
			_, err = s.Rootfs(context.Background(), img.Digest, cache)
			var mismatch *DigestMismatchError
			if !errors.As(err, &mismatch) || mismatch.Want != d {
				t.Fatalf("Rootfs: err = %v, want a digest mismatch for %s", err, d)
			}
			if !strings.Contains(err.Error(), "digest mismatch") {
				t.Errorf("error %q does not say digest mismatch", err)
			}
			checkCache(t, cache)
		})
	}
}

func writeBlobFile(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRootfsConcurrent(t *testing.T) {
	s := openStore(t)
	img := importTree(t, s, makeRootfs(t, toolchain, false, 0, time.Now()), "golang")
	cache := filepath.Join(t.TempDir(), "cache")
	const n = 8
	var wg sync.WaitGroup
	dirs := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			// Separate Store values, as separate processes would have.
			s, err := Open(s.dir)
			if err == nil {
				dirs[i], err = s.Rootfs(context.Background(), img.Digest, cache)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Errorf("call %d: %q, %v", i, dirs[i], errs[i])
		}
	}
	checkCache(t, cache, img.Digest.Encoded())
}

func TestConcurrentImports(t *testing.T) {
	s := openStore(t)
	rootfs := makeRootfs(t, toolchain, false, 0, time.Now())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := s.Import(context.Background(), rootfs, fmt.Sprintf("name%d", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	list, err := s.List()
	if err != nil || len(list) != 8 {
		t.Errorf("List() = %d images, %v; want 8", len(list), err)
	}
}

func TestRootfsErrors(t *testing.T) {
	s := openStore(t)
	cache := filepath.Join(t.TempDir(), "cache")
	missing := digest.Digest("sha256:" + strings.Repeat("a", 64))
	if _, err := s.Rootfs(context.Background(), missing, cache); !errors.Is(err, ErrNotFound) {
		t.Errorf("Rootfs of a missing image: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Rootfs(context.Background(), "golang", cache); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Rootfs by name: err = %v, want invalid digest", err)
	}

	// A mount point that is a symlink would let the image choose where the sandbox mounts.
	bad := importTree(t, s, makeRootfs(t, []file{{"tmp", 0o777, "->/"}}, false, 0, time.Now()), "bad")
	if _, err := s.Rootfs(context.Background(), bad.Digest, cache); err == nil || !strings.Contains(err.Error(), "/tmp") {
		t.Errorf("Rootfs with tmp -> /: err = %v", err)
	}

	good := importTree(t, s, makeRootfs(t, toolchain, false, 0, time.Now()), "golang")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Rootfs(ctx, good.Digest, cache); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Rootfs: err = %v, want context.Canceled", err)
	}
	checkCache(t, cache)
}

func ExampleStore_Rootfs() {
	dir, _ := os.MkdirTemp("", "ssf-example-")
	defer os.RemoveAll(dir)
	tree := filepath.Join(dir, "tree")
	_ = os.MkdirAll(filepath.Join(tree, "bin"), 0o755)
	_ = os.WriteFile(filepath.Join(tree, "bin", "sh"), []byte("#!"), 0o755)

	store, err := Open(filepath.Join(dir, "store"))
	if err != nil {
		fmt.Println(err)
		return
	}
	img, err := store.Import(context.Background(), tree, "busybox")
	if err != nil {
		fmt.Println(err)
		return
	}
	// Builds refer to the image by digest, never by name.
	rootfs, err := store.Rootfs(context.Background(), img.Digest, filepath.Join(dir, "cache"))
	if err != nil {
		fmt.Println(err)
		return
	}
	entries, _ := os.ReadDir(rootfs)
	for _, e := range entries {
		fmt.Print(e.Name(), " ")
	}
	fmt.Println()
	// Output: bin deps dev inputs outputs proc run sys tmp workspace
}

// A name that moves to a newer import leaves the older image in the store without a name, so pipelines pinned to
// its digest still build; naming it again removes the unnamed entry.
func TestRenamedImageStaysByDigest(t *testing.T) {
	s := openStore(t)
	first := importTree(t, s, makeRootfs(t, toolchain, false, 0, time.Now()), "go")
	second := importTree(t, s, makeRootfs(t, toolchain[:3], false, 0, time.Now()), "go")
	if first.Digest == second.Digest {
		t.Fatal("different trees gave the same digest")
	}
	unnamed := Image{Digest: first.Digest, Size: first.Size, Files: first.Files}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if want := []Image{unnamed, second}; !slices.Equal(list, want) {
		t.Errorf("List() = %+v\nwant %+v", list, want)
	}
	if got, err := s.Lookup(first.Digest); err != nil || got != unnamed || got.Ref() != string(first.Digest) {
		t.Errorf("Lookup(%s) = %+v (ref %q), %v; want the unnamed image", first.Digest, got, got.Ref(), err)
	}
	// The name it had is still recorded for its digest, so a pipeline that says go@<first> keeps building.
	if names, err := s.NamesOf(first.Digest); err != nil || !slices.Equal(names, []string{"go"}) {
		t.Errorf("NamesOf(first) = %q, %v; want [go]", names, err)
	}
	again := importTree(t, s, makeRootfs(t, toolchain, false, 0, time.Now()), "go-old")
	if list, _ := s.List(); !slices.Equal(list, []Image{second, again}) {
		t.Errorf("after naming it again, List() = %+v", list)
	}
	if names, err := s.NamesOf(first.Digest); err != nil || !slices.Equal(names, []string{"go", "go-old"}) {
		t.Errorf("NamesOf(first) after naming it again = %q, %v; want [go go-old]", names, err)
	}
	if names, err := s.NamesOf(second.Digest); err != nil || !slices.Equal(names, []string{"go"}) {
		t.Errorf("NamesOf(second) = %q, %v; want [go]", names, err)
	}
	if names, err := s.NamesOf(digest.Digest("sha256:" + strings.Repeat("0", 64))); err != nil || names != nil {
		t.Errorf("NamesOf(missing) = %q, %v; want none", names, err)
	}
}
