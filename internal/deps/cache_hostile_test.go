package deps

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

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
