//go:build hostile_gomod

package deps

// Findings against gomod.go (owned by another helper while this was written): each test plays a hostile source or
// proxy and FAILS against the code as it is. Run them with
//
//	go test -tags hostile_gomod ./internal/deps -run TestHostileGomod -count=1 -v

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

// A go.sum of 200000 "/go.mod" lines (4.6 MB, well under the 64 MiB the dependency stage reads): every one is
// started at once as its own goroutine and its own request to the proxy, before the module graph says whether any
// is needed, and a failure does not stop the others. Want: refused before anything is fetched (a bound on go.sum
// lines), or at least no more goroutines than the download slots.
func TestHostileGomodGoSumFanOut(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.NotFound(w, r)
	}))
	defer srv.Close()
	var sum strings.Builder
	for i := range 200_000 {
		fmt.Fprintf(&sum, "example.com/m%d v1.0.0/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", i)
	}
	src := fstest.MapFS{
		"go.mod": {Data: []byte("module example.com/main\n\ngo 1.22\n")},
		"go.sum": {Data: []byte(sum.String())},
	}
	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := int64(runtime.NumGoroutine()); n > peak.Load() {
				peak.Store(n)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	start := time.Now()
	_, err := Ingest(context.Background(), src, []Spec{{Kind: Gomod, Path: "."}}, t.TempDir(), Options{Cache: t.TempDir(), GoProxy: srv.URL})
	close(stop)
	t.Logf("%v after %s, %d requests, peak %d goroutines", err, time.Since(start), hits.Load(), peak.Load())
	if hits.Load() > 100 || peak.Load() > 1000 {
		t.Errorf("a go.sum of 200000 lines made %d requests and %d goroutines at once", hits.Load(), peak.Load())
	}
}

// A proxy serves a zip go.sum pins (the source's author chose the pin) whose one file inflates to 2 GiB from
// 2 MiB: the zip is inflated and hashed whole (hashZip) before modzip.CheckZip, which reads only the directory and
// would refuse its declared size (over 500 MiB) at once. Want: CheckZip first.
func TestHostileGomodZipBombIsRefusedBeforeItIsInflated(t *testing.T) {
	m := module.Version{Path: "example.com/bomb", Version: "v1.0.0"}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(m.String() + "/big.txt")
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for range 2 << 10 { // 2 GiB of zeros
		w.Write(zero)
	}
	zw.Close()
	zipBytes := buf.Bytes()
	mod := []byte("module example.com/bomb\n")
	zipPath := t.TempDir() + "/bomb.zip"
	if err := writeFile(zipPath, zipBytes); err != nil {
		t.Fatal(err)
	}
	h1, err := hashZip(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	modH1, _ := goModHash(mod)
	if _, err := modzip.CheckZip(m, zipPath); err == nil {
		t.Fatal("CheckZip accepts the bomb; the test is wrong")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, ".mod"):
			w.Write(mod)
		case strings.HasSuffix(r.URL.Path, ".zip"):
			w.Write(zipBytes)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	src := fstest.MapFS{
		"go.mod": {Data: []byte("module example.com/main\n\ngo 1.22\n\nrequire example.com/bomb v1.0.0\n")},
		"go.sum": {Data: []byte("example.com/bomb v1.0.0 " + h1 + "\nexample.com/bomb v1.0.0/go.mod " + modH1 + "\n")},
	}
	start := time.Now()
	_, err = Ingest(context.Background(), src, []Spec{{Kind: Gomod, Path: "."}}, t.TempDir(), Options{Cache: t.TempDir(), GoProxy: srv.URL})
	took := time.Since(start)
	t.Logf("%d-byte zip: %v after %s", len(zipBytes), err, took)
	if err == nil || took > 500*time.Millisecond {
		t.Errorf("the bomb took %s to refuse (it was inflated and hashed first)", took)
	}
}

func writeFile(p string, b []byte) error { return os.WriteFile(p, b, 0o644) }

// A GOPROXY with credentials (https://user:token@proxy/) and a proxy that serves a zip that is not one: the
// message names the proxy URL with its token (gomod.go's "is not a readable module zip"). Want: redactURL(url).
func TestHostileGomodUnreadableZipMessageHasNoCredentials(t *testing.T) {
	mod := []byte("module example.com/dep\n")
	modH1, _ := goModHash(mod)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, ".mod"):
			w.Write(mod)
		case strings.HasSuffix(r.URL.Path, ".zip"):
			w.Write([]byte("<html>not a zip</html>"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	src := fstest.MapFS{
		"go.mod": {Data: []byte("module example.com/main\n\ngo 1.22\n\nrequire example.com/dep v1.0.0\n")},
		"go.sum": {Data: []byte("example.com/dep v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nexample.com/dep v1.0.0/go.mod " + modH1 + "\n")},
	}
	proxy := strings.Replace(srv.URL, "http://", "http://builder:s3cret@", 1)
	_, err := Ingest(context.Background(), src, []Spec{{Kind: Gomod, Path: "."}}, t.TempDir(), Options{Cache: t.TempDir(), GoProxy: proxy})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("err = %v: want a failure that names no credential", err)
	}
}
