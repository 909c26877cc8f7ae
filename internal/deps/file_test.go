package deps

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestFile(t *testing.T) {
	body := []byte("a pinned file\n")
	var (
		serve atomic.Value
		hits  atomic.Int64
	)
	serve.Store(body)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/x.tgz" {
			http.NotFound(w, r)
			return
		}
		w.Write(serve.Load().([]byte))
	}))
	defer srv.Close()
	pin := digest.FromBytes(body)
	spec := Spec{Kind: File, URL: srv.URL + "/x.tgz", SHA256: pin, Dest: "tools/x.tgz"}
	cache := t.TempDir()
	opts := Options{Cache: cache}

	t.Run("ingests", func(t *testing.T) {
		tree := t.TempDir()
		got, err := Ingest(context.Background(), nil, []Spec{spec}, tree, opts)
		if err != nil {
			t.Fatal(err)
		}
		want := Dependency{Kind: File, Name: "tools/x.tgz", URI: spec.URL, URL: spec.URL, Digest: pin, Pin: pin.String()}
		if len(got) != 1 || got[0] != want {
			t.Fatalf("dependencies = %+v, want %+v", got, want)
		}
		b, err := os.ReadFile(filepath.Join(tree, "tools", "x.tgz"))
		if err != nil || string(b) != string(body) {
			t.Fatalf("tree/tools/x.tgz = %q, %v", b, err)
		}
		if fi, err := os.Stat(filepath.Join(tree, "tools", "x.tgz")); err != nil || fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("tree/tools/x.tgz: %v, %v: want read-only", fi.Mode(), err)
		}
		if _, err := os.Stat(filepath.Join(cache, "sha256", pin.Encoded()+"."+sourceKey(spec.URL))); err != nil {
			t.Errorf("not in the cache: %v", err)
		}
	})

	t.Run("cache hit", func(t *testing.T) {
		before := hits.Load()
		if _, err := Ingest(context.Background(), nil, []Spec{spec}, t.TempDir(), opts); err != nil {
			t.Fatal(err)
		}
		if n := hits.Load() - before; n != 0 {
			t.Errorf("a warm cache made %d requests", n)
		}
	})

	t.Run("wrong sha256", func(t *testing.T) {
		bad := []byte("something else\n")
		serve.Store(bad)
		defer serve.Store(body)
		s := spec
		s.Dest = "y.tgz"
		tree := t.TempDir()
		_, err := Ingest(context.Background(), nil, []Spec{s}, tree, Options{Cache: t.TempDir()})
		var me *MismatchError
		if !errors.As(err, &me) {
			t.Fatalf("err = %v, want a *MismatchError", err)
		}
		if me.What != `file "y.tgz"` || me.Want != pin.String() || me.Got != digest.FromBytes(bad).String() {
			t.Errorf("mismatch = %+v", me)
		}
		if _, err := os.Stat(filepath.Join(tree, "y.tgz")); err == nil {
			t.Error("the wrong file is in the tree")
		}
	})

	t.Run("damaged cache entry", func(t *testing.T) {
		entry := filepath.Join(cache, "sha256", pin.Encoded()+"."+sourceKey(spec.URL))
		if err := os.Chmod(entry, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(entry, []byte("damaged"), 0o644); err != nil {
			t.Fatal(err)
		}
		tree := t.TempDir()
		if _, err := Ingest(context.Background(), nil, []Spec{spec}, tree, opts); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(tree, "tools", "x.tgz")); err != nil || string(b) != string(body) {
			t.Fatalf("tree/tools/x.tgz = %q, %v; want the checked download", b, err)
		}
	})

	t.Run("not http", func(t *testing.T) {
		s := spec
		s.URL = "file:///etc/passwd"
		_, err := Ingest(context.Background(), nil, []Spec{s}, t.TempDir(), opts)
		var ie *InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "not an http or https URL") {
			t.Fatalf("err = %v, want an *InputError", err)
		}
	})

	t.Run("not found", func(t *testing.T) {
		s := spec
		s.URL = srv.URL + "/missing"
		s.SHA256 = digest.FromString("missing")
		_, err := Ingest(context.Background(), nil, []Spec{s}, t.TempDir(), opts)
		var fe *FetchError
		if !errors.As(err, &fe) || fe.URL != s.URL {
			t.Fatalf("err = %v, want a *FetchError", err)
		}
	})
}
