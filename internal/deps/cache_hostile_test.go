package deps

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/mod/module"
)

// TestHostileGoSumCannotBorrowAnotherModulesCheckedZip: a go.sum that pins module b to the h1 of module a's zip
// (which an earlier build fetched and checked as a's) must not get a's zip accepted as b's from the cache. Fetched
// cold, the zip fails the module zip rules for b (its files are a's); a cache hit must not skip that part of the
// check because the bytes passed it for another module.
func TestHostileGoSumCannotBorrowAnotherModulesCheckedZip(t *testing.T) {
	a := module.Version{Path: "example.com/a", Version: "v1.0.0"}
	aGoMod := "module example.com/a\n\ngo 1.22\n"
	proxy, sum := fakeProxy(t, map[module.Version]string{a: aGoMod})
	cache := t.TempDir()
	first := fstest.MapFS{
		"go.mod": {Data: []byte("module example.com/x\n\ngo 1.22\n\nrequire example.com/a v1.0.0\n")},
		"go.sum": {Data: []byte(sum)},
	}
	if _, err := Ingest(context.Background(), first, []Spec{{Kind: Gomod, Path: "."}}, t.TempDir(), Options{Cache: cache, GoProxy: proxy}); err != nil {
		t.Fatal(err)
	}
	// The same hashes, claimed for example.com/b.
	lied := strings.ReplaceAll(sum, "example.com/a ", "example.com/b ")
	second := fstest.MapFS{
		"go.mod": {Data: []byte("module example.com/y\n\ngo 1.22\n\nrequire example.com/b v1.0.0\n")},
		"go.sum": {Data: []byte(lied)},
	}
	deps, err := Ingest(context.Background(), second, []Spec{{Kind: Gomod, Path: "."}}, t.TempDir(), Options{Cache: cache, GoProxy: proxy})
	if err == nil {
		t.Fatalf("a go.sum pinning example.com/b to example.com/a's zip hash was ingested: %+v", summarize(deps))
	}
	if !strings.Contains(err.Error(), "example.com/b@v1.0.0") {
		t.Errorf("error %v, want one naming example.com/b@v1.0.0", err)
	}
}

// TestCacheHitHashAndCheckSeeTheSameFile: on a cache hit without a matching record, the sha256 is computed and the
// full check runs; if another build repairs the entry in between (removes it, links fresh bytes), the check passes
// on the fresh bytes, and neither the digest returned nor the record written may be that of the damaged bytes
// hashed before.
func TestCacheHitHashAndCheckSeeTheSameFile(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("good")) }))
	defer srv.Close()
	f, err := newFetcher(Options{Cache: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	check := checkGood
	ctx := context.Background()
	c, err := f.get(ctx, "test/key", srv.URL, check)
	if err != nil {
		t.Fatal(err)
	}
	// The entry is damaged...
	os.Chmod(c.Path, 0o644)
	if err := os.WriteFile(c.Path, []byte("evil"), 0o444); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(c.Path, old, old); err != nil {
		t.Fatal(err)
	}
	// ...and, while this build checks it, another build (which found it damaged too) replaces it with checked bytes.
	repairing := func(p string) error {
		if err := os.Remove(p); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte("good"), 0o444); err != nil {
			return err
		}
		return check(p)
	}
	got, err := f.get(ctx, "test/key", srv.URL, repairing)
	if err != nil {
		t.Fatal(err)
	}
	want := digest.FromString("good")
	if got.Digest != want {
		t.Errorf("digest %s, want %s (the bytes at %s)", got.Digest, want, got.Path)
	}
	if rec, _ := os.ReadFile(c.Path + checkedSuffix); string(rec) != want.String() {
		t.Errorf("record %q, want %q: bytes that never passed the check are recorded as checked", rec, want)
	}
}

// TestPlaceRefusesAnEntryReplacedAfterItWasHashed: the tree must get the very file whose digest get returned; if
// the cache entry was replaced since (another build found it damaged and fetched it again), place fails instead of
// offering bytes under another file's digest.
func TestPlaceRefusesAnEntryReplacedAfterItWasHashed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("good")) }))
	defer srv.Close()
	f, err := newFetcher(Options{Cache: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := f.get(ctx, "test/key", srv.URL, func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// An entry stored some time ago, taken from the cache by this build.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(f.opts.Cache, "test", "key"), old, old); err != nil {
		t.Fatal(err)
	}
	c, err := f.get(ctx, "test/key", srv.URL, func(string) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	// Another build replaces it (its inode may be reused for the new file at once).
	if err := os.Remove(c.Path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Path, []byte("other bytes"), 0o444); err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir()
	err = place(tree, "x", c)
	data, _ := os.ReadFile(filepath.Join(tree, "x"))
	if err == nil && digest.FromBytes(data) != c.Digest {
		t.Fatalf("placed %q under digest %s", data, c.Digest)
	}
}

// TestCancelledIngestionStops: an ingestion whose context is cancelled (Ctrl-C) stops and says so, even when every
// file is in the cache; it does not go on hashing and laying out the whole cache and report success.
func TestCancelledIngestionStops(t *testing.T) {
	a := module.Version{Path: "example.com/a", Version: "v1.0.0"}
	proxy, sum := fakeProxy(t, map[module.Version]string{a: "module example.com/a\n\ngo 1.22\n"})
	cache := t.TempDir()
	src := fstest.MapFS{
		"go.mod": {Data: []byte("module example.com/x\n\ngo 1.22\n\nrequire example.com/a v1.0.0\n")},
		"go.sum": {Data: []byte(sum)},
	}
	specs := []Spec{{Kind: Gomod, Path: "."}}
	if _, err := Ingest(context.Background(), src, specs, t.TempDir(), Options{Cache: cache, GoProxy: proxy}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tree := t.TempDir()
	deps, err := Ingest(ctx, src, specs, tree, Options{Cache: cache, GoProxy: proxy})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled ingestion returned %v, %+v; want context.Canceled", err, summarize(deps))
	}
	if entries, _ := os.ReadDir(tree); len(entries) != 0 {
		t.Errorf("a cancelled ingestion left %d entries in the tree", len(entries))
	}
}

// TestNpmTaskCacheThatDoesNotFitSaysWhy: each npm task gets a copy of the whole npm cache in its /tmp, on the
// task's disk of maxDiskBytes; a project whose packages do not fit must fail saying so and what to change, not
// with a bare "no space left on device" from somewhere in content-v2.
func TestNpmTaskCacheThatDoesNotFitSaysWhy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs as the task's disk")
	}
	tree, tmp := t.TempDir(), t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", tmp).Run(); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { exec.Command("umount", tmp).Run() })
	cacache := filepath.Join(tree, NpmCacheDir, "_cacache")
	for _, d := range []string{"index-v5", "content-v2/sha512/ab/cd"} {
		if err := os.MkdirAll(filepath.Join(cacache, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(cacache, "content-v2/sha512/ab/cd/ef"), make([]byte, 2<<20), 0o444); err != nil {
		t.Fatal(err)
	}
	err := PrepareNpmCache(tree, tmp, 12345, 12345)
	if err == nil || !strings.Contains(err.Error(), "maxDiskBytes") || !strings.Contains(err.Error(), "2097152") {
		t.Fatalf("error %v, want one naming the npm cache's size and maxDiskBytes", err)
	}
}
