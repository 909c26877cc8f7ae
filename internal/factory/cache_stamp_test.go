package factory

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// givenCopy stores src as the cache k by invocation "first", then gives it to invocation "second" as prepare does:
// extracted into a new copy, stamped. It returns the copy and the digest the task got.
func givenCopy(t *testing.T, c *caches, k CacheKey, src string) (string, digest.Digest) {
	t.Helper()
	ctx := context.Background()
	c.invocID = "first"
	if _, err := c.store(ctx, k, src); err != nil {
		t.Fatal(err)
	}
	c.invocID = "second"
	copyDir := filepath.Join(t.TempDir(), "copy")
	state, sum, _, err := c.extract(ctx, k, copyDir)
	if err != nil || state != CacheWarm {
		t.Fatalf("extract = %s, %v; want a warm cache", state, err)
	}
	// A fifo the task is given as part of its copy (one it could not be given from a stream, but the stamp does
	// not care): the full store says it left it out, the shortcut says nothing, which tells the two apart.
	if err := syscall.Mkfifo(filepath.Join(copyDir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.stamp(k, copyDir)
	return copyDir, sum
}

func cacheTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "00", "11"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"00/a-d": "output one", "00/11/b-a": "action two", "trim.txt": "1700000000"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	return src
}

func readRecord(t *testing.T, c *caches, k CacheKey) (CacheRecord, os.FileInfo) {
	t.Helper()
	r, err := os.OpenRoot(filepath.Join(c.dir, k.hex()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rec, err := readCacheRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := r.Lstat(cacheTarName)
	if err != nil {
		t.Fatal(err)
	}
	return rec, fi
}

// A copy the task left as it got it is not read back: the stored stream stays (the same file), the record says
// who used it last and still who stored it.
func TestCacheUntouchedCopyIsNotReadBack(t *testing.T) {
	c, log := testCaches(t, 1<<20)
	k := key(c, "build")
	copyDir, sum := givenCopy(t, c, k, cacheTree(t))
	_, tarBefore := readRecord(t, c, k)
	log.Reset()
	c.keepOne(context.Background(), k, copyDir)
	if strings.Contains(log.String(), "left out") {
		t.Errorf("the untouched copy was read back (log %q)", log.String())
	}
	rec, tarAfter := readRecord(t, c, k)
	if !os.SameFile(tarBefore, tarAfter) {
		t.Error("cache.tar was replaced, want the stored stream kept")
	}
	if rec.Digest != sum || rec.Invocation != "second" || rec.StoredBy != "first" {
		t.Errorf("record = digest %s, invocation %q, storedBy %q; want %s, second, first", rec.Digest, rec.Invocation, rec.StoredBy, sum)
	}
	// And without a stamp (a cache that was not warm) the copy is read back, as before.
	delete(c.stamps, k.hex())
	log.Reset()
	c.keepOne(context.Background(), k, copyDir)
	if !strings.Contains(log.String(), "1 fifos, sockets or devices in it were left out") {
		t.Errorf("log = %q, want the copy read back", log.String())
	}
}

// Whatever a task changes in its copy (content, a mode, an added or removed entry, an mtime) makes it read back
// and stored in full.
func TestCacheChangedCopyIsStored(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(dir string) error
	}{
		{"added", func(dir string) error { return os.WriteFile(filepath.Join(dir, "00", "new"), []byte("x"), 0o644) }},
		{"removed", func(dir string) error { return os.Remove(filepath.Join(dir, "00", "11", "b-a")) }},
		{"grown", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "trim.txt"), []byte("1800000000!"), 0o644)
		}},
		{"mode", func(dir string) error { return os.Chmod(filepath.Join(dir, "00", "a-d"), 0o755) }},
		{"mtime", func(dir string) error {
			return os.Chtimes(filepath.Join(dir, "00", "a-d"), time.Time{}, time.Now().Add(-2*time.Hour))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, log := testCaches(t, 1<<20)
			k := key(c, "build")
			copyDir, _ := givenCopy(t, c, k, cacheTree(t))
			if err := tc.change(copyDir); err != nil {
				t.Fatal(err)
			}
			log.Reset()
			c.keepOne(context.Background(), k, copyDir)
			if !strings.Contains(log.String(), "left out") {
				t.Errorf("the changed copy was not read back (log %q)", log.String())
			}
		})
	}
}

// A hostile task rewrites a cache file keeping its size and mtime (a poisoned build output that looks untouched):
// its ctime, which no task can set, gives it away, and the copy is stored in full, so what the next task gets is
// what the task left, under the digest the next provenance records.
func TestCacheRewriteKeepingSizeAndMtimeIsStored(t *testing.T) {
	ctx := context.Background()
	c, _ := testCaches(t, 1<<20)
	k := key(c, "build")
	copyDir, given := givenCopy(t, c, k, cacheTree(t))
	victim := filepath.Join(copyDir, "00", "a-d")
	fi, err := os.Lstat(victim)
	if err != nil {
		t.Fatal(err)
	}
	// The rewrite must come after the file system's clock moved on from the extraction, as it always does for a
	// task (its container takes far longer to start than a clock tick): written here at once, it could share
	// the extraction's coarse timestamp.
	waitForCtimeAfter(t, filepath.Dir(copyDir), fi.Sys().(*syscall.Stat_t).Ctim) // beside the copy: not in it
	if err := os.WriteFile(victim, []byte("poisoned!!"), 0o644); err != nil {    // the same 10 bytes
		t.Fatal(err)
	}
	if err := os.Chtimes(victim, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if now, _ := os.Lstat(victim); now.Size() != fi.Size() || !now.ModTime().Equal(fi.ModTime()) {
		t.Fatal("the rewrite changed the size or the mtime")
	}
	c.keepOne(ctx, k, copyDir)
	rec, _ := readRecord(t, c, k)
	if rec.Digest == given || rec.StoredBy != "second" {
		t.Fatalf("record = %s stored by %q, want the rewritten copy stored by second (given %s)", rec.Digest, rec.StoredBy, given)
	}
	// The next task gets the rewritten file, and the digest its provenance records is of what it got.
	next := filepath.Join(t.TempDir(), "next")
	state, sum, _, err := c.extract(ctx, k, next)
	if err != nil || state != CacheWarm || sum != rec.Digest {
		t.Fatalf("next extract = %s %s %v, want warm %s", state, sum, err, rec.Digest)
	}
	if data, _ := os.ReadFile(filepath.Join(next, "00", "a-d")); string(data) != "poisoned!!" {
		t.Errorf("next task got %q, want the stored rewrite", data)
	}
}

// waitForCtimeAfter writes a probe file in dir (on the file system of the copy, outside it) until its ctime is later than ts: until the file system's clock
// (a coarse one, updated every tick) has moved on.
func waitForCtimeAfter(t *testing.T, dir string, ts syscall.Timespec) {
	t.Helper()
	probe := filepath.Join(dir, ".probe")
	defer os.Remove(probe)
	for i := 0; ; i++ {
		if err := os.WriteFile(probe, []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(probe)
		if err != nil {
			t.Fatal(err)
		}
		if c := fi.Sys().(*syscall.Stat_t).Ctim; c.Sec > ts.Sec || (c.Sec == ts.Sec && c.Nsec > ts.Nsec) {
			return
		}
		if i > 1_000_000 {
			t.Fatal("the file system's clock did not move")
		}
	}
}

// When another build stored its own stream meanwhile, an untouched copy is stored in full (it is not the stream
// the store holds), and the record names this build as the one that stored it.
func TestCacheUntouchedCopyStoredWhenStoreMoved(t *testing.T) {
	ctx := context.Background()
	c, _ := testCaches(t, 1<<20)
	k := key(c, "build")
	copyDir, given := givenCopy(t, c, k, cacheTree(t))
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "f"), []byte("another build"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.invocID = "other"
	if _, err := c.store(ctx, k, other); err != nil {
		t.Fatal(err)
	}
	c.invocID = "second"
	c.keepOne(ctx, k, copyDir)
	rec, _ := readRecord(t, c, k)
	if rec.Digest != given || rec.StoredBy != "second" {
		t.Errorf("record = %s stored by %q, want %s stored by second", rec.Digest, rec.StoredBy, given)
	}
}

// The stamp's walk is bounded: a tree past its limit is never "unchanged".
func TestStampTreeBounds(t *testing.T) {
	dir := cacheTree(t)
	st, ok := stampTree(dir, 100)
	if !ok || st.entries != 7 {
		t.Fatalf("stampTree = %d entries, %v; want 7 entries", st.entries, ok)
	}
	if _, ok := stampTree(dir, st.entries-1); ok {
		t.Error("a tree past the limit was stamped")
	}
}
