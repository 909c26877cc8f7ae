package deps

// Each test plays a hostile source or proxy against gomod ingestion.

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"hash/crc32"
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

// A go.sum of 200000 "/go.mod" lines (4.6 MB, well under the 64 MiB the dependency stage reads) would be 200000
// requests to the proxy: it is refused before anything is fetched (go.sum lines are bounded).
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
// 2 MiB: modzip.CheckZip, which reads only the directory, refuses its declared size (over 500 MiB) before anything
// is inflated.
func TestHostileGomodZipBombIsRefusedBeforeItIsInflated(t *testing.T) {
	m := module.Version{Path: "example.com/bomb", Version: "v1.0.0"}
	// The entry claims 2 GiB but holds a few bytes: inflating it (hashZip) fails with a size error, while the
	// module zip rules refuse the claimed size from the directory alone. Which message comes out says which ran
	// first.
	var raw bytes.Buffer
	fw, _ := flate.NewWriter(&raw, flate.BestCompression)
	fw.Write([]byte("small"))
	fw.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: m.String() + "/big.txt", Method: zip.Deflate,
		CompressedSize64: uint64(raw.Len()), UncompressedSize64: 2 << 30, CRC32: crc32.ChecksumIEEE([]byte("small"))})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw.Bytes())
	zw.Close()
	zipBytes := buf.Bytes()
	mod := []byte("module example.com/bomb\n")
	zipPath := t.TempDir() + "/bomb.zip"
	if err := writeFile(zipPath, zipBytes); err != nil {
		t.Fatal(err)
	}
	if _, err := modzip.CheckZip(m, zipPath); err == nil {
		t.Fatal("CheckZip accepts the bomb; the test is wrong")
	}
	err = ingestOneModule(t, "example.com/bomb", mod, zipBytes, "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	if err == nil || !strings.Contains(err.Error(), "breaks the module zip rules") {
		t.Errorf("Ingest() = %v, want the module zip rules to refuse the claimed size before anything is inflated", err)
	}
}

// ingestOneModule ingests a main module requiring path v1.0.0, pinned in go.sum to zipH1 and to mod's hash, from a
// proxy that serves mod and zip for every module.
func ingestOneModule(t *testing.T, path string, mod, zip []byte, zipH1 string) error {
	t.Helper()
	modH1, _ := goModHash(mod)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, ".mod"):
			w.Write(mod)
		case strings.HasSuffix(r.URL.Path, ".zip"):
			w.Write(zip)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	src := fstest.MapFS{
		"go.mod": {Data: []byte("module example.com/main\n\ngo 1.22\n\nrequire " + path + " v1.0.0\n")},
		"go.sum": {Data: []byte(path + " v1.0.0 " + zipH1 + "\n" + path + " v1.0.0/go.mod " + modH1 + "\n")},
	}
	_, err := Ingest(context.Background(), src, []Spec{{Kind: Gomod, Path: "."}}, t.TempDir(), Options{Cache: t.TempDir(), GoProxy: srv.URL})
	return err
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
