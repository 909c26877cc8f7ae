package factory

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/archive"
	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/provenance"
)

func testCaches(t *testing.T, max int64) (*caches, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	return &caches{dir: filepath.Join(t.TempDir(), "tasks"), max: max, uid: os.Getuid(), log: &lineLog{w: &lockedWriter{w: &buf}},
		invocID: "test", used: map[string][]provenance.ResourceDescriptor{}, given: map[string]digest.Digest{}, storedBy: map[string]string{}, base: CacheKey{Pipeline: "p", PipelineFile: "/src/ssf.yaml", Source: "/src", Builder: digest.FromString("b")}}, &buf
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func key(c *caches, task string) CacheKey {
	k := c.base
	k.Task, k.Cache = task, "c"
	return k
}

// EmptyCacheDigest is what archive.WriteTree gives for an empty directory.
func TestEmptyCacheDigest(t *testing.T) {
	var buf bytes.Buffer
	if _, err := archive.WriteTree(context.Background(), &buf, t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(buf.Bytes()); got != EmptyCacheDigest {
		t.Errorf("empty tree digest = %s, EmptyCacheDigest = %s", got, EmptyCacheDigest)
	}
}

// A cache larger than maxCacheBytes is dropped, and what was stored before goes with it; a sparse giant is refused
// by its size, without being read.
func TestCacheOverSizeDropped(t *testing.T) {
	ctx := context.Background()
	c, log := testCaches(t, 64<<10)
	k := key(c, "build")
	small := t.TempDir()
	if err := os.WriteFile(filepath.Join(small, "a"), []byte("small"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.store(ctx, k, small); err != nil {
		t.Fatal(err)
	}
	if recs, _ := (Home{Dir: filepath.Dir(filepath.Dir(c.dir))}).cachesIn(c.dir); len(recs) != 1 {
		t.Fatalf("stored caches = %v, want one", recs)
	}
	for _, tc := range []struct {
		name string
		make func(dir string) error
	}{
		{"big file", func(dir string) error { return os.WriteFile(filepath.Join(dir, "big"), make([]byte, 128<<10), 0o644) }},
		{"sparse giant", func(dir string) error {
			f, err := os.Create(filepath.Join(dir, "sparse"))
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(1 << 40) // a terabyte: read, it would take hours
		}},
		{"many entries", func(dir string) error {
			for i := range 200 {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), nil, 0o644); err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.store(ctx, k, small); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := tc.make(dir); err != nil {
				t.Fatal(err)
			}
			log.Reset()
			c.keepOne(ctx, k, dir)
			if !strings.Contains(log.String(), "grew past maxCacheBytes (65536 bytes) and was dropped") {
				t.Errorf("log = %q, want the drop said", log.String())
			}
			if _, err := os.Stat(filepath.Join(c.dir, k.hex())); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the over-size cache's directory is still there (stat: %v)", err)
			}
		})
	}
}

// Builds storing one cache at once leave a cache.tar and a record that agree: the store is replaced whole.
func TestCacheConcurrentStores(t *testing.T) {
	ctx := context.Background()
	c, _ := testCaches(t, 1<<20)
	k := key(c, "build")
	var wg sync.WaitGroup
	for i := range 8 {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "f"), bytes.Repeat([]byte{byte(i)}, 1000*(i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if _, err := c.store(ctx, k, dir); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	rec, f, err := openCache(filepath.Join(c.dir, k.hex()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != rec.Digest {
		t.Errorf("cache.tar is %s, its record says %s", got, rec.Digest)
	}
	entries, _ := os.ReadDir(filepath.Join(c.dir, k.hex()))
	if len(entries) != 3 {
		t.Errorf("cache directory holds %v, want cache.tar, lock and record.json only", entries)
	}
}

// A stored cache whose bytes are not those recorded (a disk fault, or someone editing the store) is not given to
// a task: it gets an empty directory, recorded as empty.
func TestCacheTamperedIsNotUsed(t *testing.T) {
	ctx := context.Background()
	c, log := testCaches(t, 1<<20)
	k := key(c, "build")
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("genuine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.store(ctx, k, src); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "copy")
	state, sum, _, err := c.extract(ctx, k, dest)
	if err != nil || state != CacheWarm {
		t.Fatalf("extract = %s, %v; want warm", state, err)
	}
	if data, _ := os.ReadFile(filepath.Join(dest, "f")); string(data) != "genuine" {
		t.Fatalf("extracted %q", data)
	}
	tarPath := filepath.Join(c.dir, k.hex(), cacheTarName)
	data, err := os.ReadFile(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(data) != sum {
		t.Fatalf("the digest recorded for the task (%s) is not that of the stored stream", sum)
	}
	if err := os.WriteFile(tarPath, bytes.Replace(data, []byte("genuine"), []byte("poison!"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	dest2 := filepath.Join(t.TempDir(), "copy")
	state, sum, _, err = c.extract(ctx, k, dest2)
	if err != nil || state != CacheEmpty || sum != EmptyCacheDigest {
		t.Fatalf("extract of a tampered cache = %s, %s, %v; want empty", state, sum, err)
	}
	if entries, _ := os.ReadDir(dest2); len(entries) != 0 {
		t.Errorf("a tampered cache left %v in the task's copy", entries)
	}
	if !strings.Contains(log.String(), "is not what was stored") {
		t.Errorf("log = %q", log.String())
	}
}

// The key separates pipelines by their file and source, not only their name.
func TestCacheKeySeparatesPipelines(t *testing.T) {
	a := CacheKey{Pipeline: "hello", PipelineFile: "/a/ssf.yaml", Source: "/a", Task: "build", Cache: "go", Builder: digest.FromString("b")}
	for _, b := range []CacheKey{
		{Pipeline: "hello", PipelineFile: "/b/ssf.yaml", Source: "/a", Task: "build", Cache: "go", Builder: a.Builder},
		{Pipeline: "hello", PipelineFile: "/a/ssf.yaml", Source: "/b", Task: "build", Cache: "go", Builder: a.Builder},
		{Pipeline: "hello", PipelineFile: "/a/ssf.yaml", Source: "/a", Task: "test", Cache: "go", Builder: a.Builder},
		{Pipeline: "hello", PipelineFile: "/a/ssf.yaml", Source: "/a", Task: "build", Cache: "npm", Builder: a.Builder},
		{Pipeline: "hello", PipelineFile: "/a/ssf.yaml", Source: "/a", Task: "build", Cache: "go", Builder: digest.FromString("c")},
		{Pipeline: "other", PipelineFile: "/a/ssf.yaml", Source: "/a", Task: "build", Cache: "go", Builder: a.Builder},
	} {
		if a.hex() == b.hex() {
			t.Errorf("%+v and %+v share a key", a, b)
		}
	}
}

// A task that changed nothing leaves the stored stream in place (not rewritten and synced again); the record's time
// of use moves on. A stream left by a build killed while storing is removed once it is a day old.
func TestCacheUnchangedNotRewritten(t *testing.T) {
	ctx := context.Background()
	c, _ := testCaches(t, 1<<20)
	k := key(c, "build")
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.store(ctx, k, src); err != nil {
		t.Fatal(err)
	}
	kdir := filepath.Join(c.dir, k.hex())
	stale := filepath.Join(kdir, ".cache.tar-killed")
	if err := os.WriteFile(stale, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-25 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(filepath.Join(kdir, cacheTarName))
	if err != nil {
		t.Fatal(err)
	}
	rec1, f, err := openCache(kdir)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	dest := filepath.Join(t.TempDir(), "copy")
	if state, _, _, err := c.extract(ctx, k, dest); err != nil || state != CacheWarm {
		t.Fatalf("extract = %s, %v", state, err)
	}
	c.invocID = "second"
	if _, err := c.store(ctx, k, dest); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(filepath.Join(kdir, cacheTarName))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Errorf("an unchanged cache was written again")
	}
	rec2, f, err := openCache(kdir)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if rec2.Digest != rec1.Digest || !rec2.LastUsed.After(rec1.LastUsed) || rec2.StoredBy != rec1.StoredBy {
		t.Errorf("records %+v then %+v: want the same digest and writer, a later use", rec1, rec2)
	}
	if rec2.Invocation != "second" {
		t.Errorf("record says it was last used by %q, want the second build", rec2.Invocation)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a day-old temporary stream was left (stat: %v)", err)
	}
}

// storedBy names the build that wrote the stream a record describes. Two builds get the same cache; B changes it
// and stores first; A changed nothing and stores after, putting back the stream both got: the record must not
// say B stored it (B stored something else).
func TestCacheStoredByAfterConcurrentStore(t *testing.T) {
	ctx := context.Background()
	a, _ := testCaches(t, 1<<20)
	k := key(a, "build")
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("first"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.invocID = "first"
	if _, err := a.store(ctx, k, src); err != nil {
		t.Fatal(err)
	}
	b, _ := testCaches(t, 1<<20)
	b.dir = a.dir
	copyA, copyB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	a.invocID, b.invocID = "build-a", "build-b"
	for _, c := range []struct {
		c    *caches
		copy string
	}{{a, copyA}, {b, copyB}} {
		if state, _, _, err := c.c.extract(ctx, k, c.copy); err != nil || state != CacheWarm {
			t.Fatalf("extract = %s, %v", state, err)
		}
	}
	if err := os.WriteFile(filepath.Join(copyB, "f"), []byte("changed by b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store(ctx, k, copyB); err != nil {
		t.Fatal(err)
	}
	if _, err := a.store(ctx, k, copyA); err != nil {
		t.Fatal(err)
	}
	next, _ := testCaches(t, 1<<20)
	next.dir = a.dir
	if state, _, _, err := next.extract(ctx, k, filepath.Join(t.TempDir(), "n")); err != nil || state != CacheWarm {
		t.Fatalf("extract = %s, %v", state, err)
	}
	if data, _ := os.ReadFile(filepath.Join(next.dir, k.hex(), cacheTarName)); !bytes.Contains(data, []byte("first")) {
		t.Fatalf("the store does not hold the stream A put back")
	}
	if got := next.storedBy[k.hex()]; got != "build-a" && got != "first" {
		t.Errorf("the stream A put back is said to be stored by %q, want build-a (or first, who wrote those bytes)", got)
	}
}

// `ssf cache rm` removes a cache whose lock is not a regular file (a symlink, a directory): no build can take such
// a lock, so none uses the cache, and removing it without the lock races nobody. The symlink is not followed.
func TestRemoveCacheWithBadLock(t *testing.T) {
	ctx := context.Background()
	h := Home{Dir: t.TempDir()}
	c, _ := testCaches(t, 1<<20)
	c.dir = h.layout().TaskCaches()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	victim := t.TempDir()
	if err := os.WriteFile(filepath.Join(victim, "keep"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i, plant := range []func(lock string) error{
		func(lock string) error { return os.Symlink(victim, lock) },
		func(lock string) error { return os.Mkdir(lock, 0o700) },
	} {
		k := key(c, fmt.Sprint("task", i))
		if _, err := c.store(ctx, k, src); err != nil {
			t.Fatal(err)
		}
		lock := filepath.Join(c.dir, k.hex(), cacheLockName)
		if err := os.Remove(lock); err != nil {
			t.Fatal(err)
		}
		if err := plant(lock); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.hex())
	}
	removed, err := h.RemoveCaches(CacheSelector{All: true})
	if err != nil || len(removed) != 2 {
		t.Fatalf("RemoveCaches = %v, %v; want both caches removed", removed, err)
	}
	for _, k := range keys {
		if _, err := os.Lstat(filepath.Join(c.dir, k)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cache %s is still there (lstat: %v)", k, err)
		}
	}
	if data, err := os.ReadFile(filepath.Join(victim, "keep")); err != nil || string(data) != "keep" {
		t.Errorf("the lock symlink's target was touched: %q, %v", data, err)
	}
}

// A cache of more entries than the bound (many empty files: tiny in bytes, but each held in the control plane's
// memory while it is stored, and made again on every build) is dropped like an over-size one.
func TestCacheTooManyEntriesDropped(t *testing.T) {
	ctx := context.Background()
	c, log := testCaches(t, 1<<30)
	c.entries = 10
	k := key(c, "build")
	few := t.TempDir()
	for i := range 9 {
		if err := os.WriteFile(filepath.Join(few, fmt.Sprint(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.store(ctx, k, few); err != nil {
		t.Fatalf("storing 9 entries: %v", err)
	}
	many := t.TempDir()
	if err := os.Mkdir(filepath.Join(many, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(many, "d", fmt.Sprint(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.store(ctx, k, many); !errors.Is(err, errCacheTooMany) {
		t.Fatalf("storing 21 entries: %v, want errCacheTooMany", err)
	}
	if _, err := os.Stat(filepath.Join(c.dir, k.hex())); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the cache with too many entries is still stored (stat: %v)", err)
	}
	c.keepOne(ctx, k, many)
	if !strings.Contains(log.String(), "grew past 10 files, directories and links (or a 4096-byte path, or 64 MiB of paths) and was dropped") {
		t.Errorf("log = %q", log.String())
	}
}

// --unused-for: alone it chooses every cache last used before the time (an unreadable one counts as never used);
// with another selector it narrows it.
func TestCacheSelectorUnusedSince(t *testing.T) {
	now := time.Now()
	old := CacheRecord{Key: strings.Repeat("a", 64), CacheKey: CacheKey{Pipeline: "hello", Task: "build", Cache: "go"}, LastUsed: now.Add(-40 * 24 * time.Hour)}
	recent := CacheRecord{Key: strings.Repeat("b", 64), CacheKey: CacheKey{Pipeline: "hello", Task: "build", Cache: "go"}, LastUsed: now.Add(-time.Hour)}
	otherOld := CacheRecord{Key: strings.Repeat("c", 64), CacheKey: CacheKey{Pipeline: "web", Task: "build", Cache: "go"}, LastUsed: now.Add(-40 * 24 * time.Hour)}
	unreadable := CacheRecord{Key: strings.Repeat("d", 64)}
	since := now.Add(-30 * 24 * time.Hour)
	for _, tc := range []struct {
		sel  CacheSelector
		want []bool // old, recent, otherOld, unreadable
	}{
		{CacheSelector{UnusedSince: since}, []bool{true, false, true, true}},
		{CacheSelector{Pipeline: "hello", UnusedSince: since}, []bool{true, false, false, false}},
		{CacheSelector{All: true, UnusedSince: since}, []bool{true, false, true, true}},
		{CacheSelector{KeyPrefix: "bbbbbbbb", UnusedSince: since}, []bool{false, false, false, false}},
		{CacheSelector{}, []bool{false, false, false, false}},
	} {
		for i, r := range []CacheRecord{old, recent, otherOld, unreadable} {
			if got := tc.sel.matches(r); got != tc.want[i] {
				t.Errorf("%+v matches %s… = %v, want %v", tc.sel, r.Key[:8], got, tc.want[i])
			}
		}
	}
}

// The key holds the pipeline file's and the source's paths as given, never resolved: a symlink swapped between the
// snapshot and the key cannot put another directory's key on this build's caches.
func TestCacheKeyPathNotResolved(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "trusted")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "checkout")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if got := keyPath(link); got != link {
		t.Errorf("keyPath(%s) = %s, want the path as given", link, got)
	}
	t.Chdir(dir)
	if got := keyPath("checkout"); got != link {
		t.Errorf("keyPath(checkout) = %s, want %s", got, link)
	}
}

// A cache path outside /tmp must be a directory of the image; a symlink, or a path through an absolute symlink
// (such as /var/run -> /run), is refused with the reason, never followed out of the image.
func TestCacheImagePathRefusals(t *testing.T) {
	rootfs := t.TempDir()
	for _, d := range []string{"run/foo", "var", "srv/cache"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/run", filepath.Join(rootfs, "var/run")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("srv/cache", filepath.Join(rootfs, "link")); err != nil {
		t.Fatal(err)
	}
	c, _ := testCaches(t, 1<<20)
	c.rootfs = rootfs
	task := &pipeline.Task{Name: "build"}
	for _, tc := range []struct{ path, want string }{
		{"/srv/cache", ""},
		{"/no/such", "/no/such is not a directory in the builder image: choose a path under /tmp"},
		{"/link", "/link is a symlink in the builder image, not a directory"},
		{"/var/run/foo", "/var/run/foo leads through an absolute symlink of the builder image"},
		{"/var", "/var holds files of the builder image (/var/run): a cache there would hide them"},
		{"/run", "/run holds files of the builder image (/run/foo)"},
	} {
		err := c.mountPoint(task, pipeline.Cache{Name: "c", Path: tc.path}, "")
		var ie *InputError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.path, err)
		case tc.want != "" && (!errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an InputError saying %q", tc.path, err, tc.want)
		}
	}
}

// A chain of nested directories whose deepest path is longer than maxCachePath is dropped, without the walk going
// deeper (each level is a descriptor held and a path kept, growing with the square of the depth).
func TestCacheTooDeepDropped(t *testing.T) {
	ctx := context.Background()
	c, log := testCaches(t, 1<<30)
	k := key(c, "build")
	src := t.TempDir()
	// Made with renames, as a step would: each new level goes on top, so no path is ever long to make.
	name := strings.Repeat("d", 200)
	for range maxCachePath/(len(name)+1) + 1 {
		top := filepath.Join(src, "top")
		if err := os.Mkdir(top, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(src, name)); err == nil {
			if err := os.Rename(filepath.Join(src, name), filepath.Join(top, name)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Rename(top, filepath.Join(src, name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.store(ctx, k, src); !errors.Is(err, errCacheTooMany) {
		t.Fatalf("storing a tree deeper than maxCachePath: %v, want errCacheTooMany", err)
	}
	c.keepOne(ctx, k, src)
	if !strings.Contains(log.String(), "-byte path") {
		t.Errorf("log = %q", log.String())
	}
	if _, err := os.Stat(filepath.Join(c.dir, k.hex())); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the too-deep cache is stored (stat: %v)", err)
	}
}
