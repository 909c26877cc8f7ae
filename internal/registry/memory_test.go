package registry

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// patternReader yields n deterministic, poorly compressible bytes without holding them in memory.
type patternReader struct {
	n, off int64
	x      uint64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n-p.off {
		b = b[:p.n-p.off]
	}
	for i := range b {
		p.x = p.x*6364136223846793005 + 1442695040888963407
		b[i] = byte(p.x >> 56)
	}
	p.off += int64(len(b))
	return len(b), nil
}

// TestLargeBlobMemoryFlat streams 256 MiB through a chunked upload and back, and checks that the heap in use
// (client and server share this process) stays far below the blob's size.
func TestLargeBlobMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 256 MiB")
	}
	const (
		total   = 256 << 20
		chunk   = 64 << 20
		maxHeap = 64 << 20
	)
	tr := newTestRegistry(t)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()

	src := &patternReader{n: total, x: 1}
	h := sha256.New()
	tee := io.TeeReader(src, h)
	resp := tr.do("POST", "/v2/big/blobs/uploads/", nil)
	expect(t, resp, http.StatusAccepted, "")
	loc := resp.Header.Get("Location")
	for off := int64(0); off < total; off += chunk {
		req, err := http.NewRequest("PATCH", tr.srv.URL+loc, io.LimitReader(tee, chunk))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = chunk
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, off+chunk-1))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		expect(t, resp, http.StatusAccepted, "")
		loc = resp.Header.Get("Location")
	}
	d := fmt.Sprintf("sha256:%x", h.Sum(nil))
	expect(t, tr.do("PUT", loc+"?digest="+d, nil), http.StatusCreated, "")

	resp = tr.do("GET", "/v2/big/blobs/"+d, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	h2 := sha256.New()
	n, err := io.Copy(h2, resp.Body)
	resp.Body.Close()
	if err != nil || n != total || fmt.Sprintf("sha256:%x", h2.Sum(nil)) != d {
		t.Fatalf("read back %d bytes (err %v), digest mismatch", n, err)
	}
	if p := peak.Load(); p > maxHeap {
		t.Fatalf("heap in use peaked at %d MiB moving a %d MiB blob; want under %d MiB", p>>20, total>>20, maxHeap>>20)
	} else {
		t.Logf("heap in use peaked at %.1f MiB while moving %d MiB", float64(p)/(1<<20), total>>20)
	}
}
