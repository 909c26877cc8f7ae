package deps

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// TestCacheHitIsHashedAgainstItsRecord: a hit whose sha256 equals the record written when its bytes passed the
// pin check is used without the full check; any other bytes under the same key (the record is stale) get the full
// check, and fail it.
func TestCacheHitIsHashedAgainstItsRecord(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("good")) }))
	defer srv.Close()
	f, err := newFetcher(Options{Cache: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	checks := 0
	check := func(p string) error {
		checks++
		return checkGood(p)
	}
	ctx := context.Background()
	c, err := f.get(ctx, "test/key", srv.URL, check)
	if err != nil || checks != 1 {
		t.Fatalf("first get: %v, %d checks", err, checks)
	}
	if _, err := f.get(ctx, "test/key", srv.URL, check); err != nil || checks != 1 {
		t.Fatalf("a hit with its record: %v, %d checks; want no second full check", err, checks)
	}
	// Other bytes under the key: their sha256 is not the record's, so the full check runs and refuses them, and
	// the entry is fetched again.
	if err := os.Chmod(c.Path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Path, []byte("evil"), 0o444); err != nil {
		t.Fatal(err)
	}
	got, err := f.get(ctx, "test/key", srv.URL, check)
	if err != nil || got.Digest != c.Digest {
		t.Fatalf("a changed entry: %v, digest %s; want it fetched again as %s", err, got.Digest, c.Digest)
	}
	if checks != 3 { // the changed bytes, then the fresh download
		t.Errorf("%d checks, want 3", checks)
	}
	if data, _ := os.ReadFile(filepath.Join(f.opts.Cache, "test", "key")); string(data) != "good" {
		t.Errorf("the cache holds %q after the damaged entry was replaced", data)
	}
}

// checkGood is a pin check that accepts the bytes "good".
func checkGood(p string) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if string(data) != "good" {
		return &MismatchError{What: "test", Want: "good", Got: string(data)}
	}
	return nil
}
