package registry

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestGC(t *testing.T) {
	tr := newTestRegistry(t, WithInsecureLocalPushUnsafe(), WithAnonymousPull(true), WithGCGracePeriod(0))
	cfg := []byte(`{"os":"linux"}`)
	layer := []byte("referenced layer")
	orphan := []byte("pushed but never referenced")
	deleted := []byte("layer of a deleted manifest")
	cd, ld, od, dd := tr.pushBlob("keep", cfg), tr.pushBlob("keep", layer), tr.pushBlob("keep", orphan), tr.pushBlob("gone", deleted)
	child, resp := tr.pushManifest("keep", "v1", image(cd, len(cfg), map[string]int{ld: len(layer)}, nil))
	expect(t, resp, http.StatusCreated, "")
	tr.pushBlob("gone", cfg)
	gm, resp := tr.pushManifest("gone", "v1", image(cd, len(cfg), map[string]int{dd: len(deleted)}, nil))
	expect(t, resp, http.StatusCreated, "")
	expect(t, tr.do("DELETE", "/v2/gone/manifests/"+gm, nil), http.StatusAccepted, "")
	// An index keeps its children even where a child is not linked in the repository GC looks at first.
	childBody := expect(t, tr.do("GET", "/v2/keep/manifests/"+child, nil), http.StatusOK, "")
	idx := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": mediaTypeOCIIndex,
		"manifests": []any{map[string]any{"mediaType": mediaTypeOCIManifest, "digest": child, "size": len(childBody)}}})
	expect(t, tr.do("PUT", "/v2/keep/manifests/idx", bytes.NewReader(idx), "Content-Type", mediaTypeOCIIndex), http.StatusCreated, "")

	// Make every blob older than the (zero) grace period.
	past := time.Now().Add(-time.Minute)
	for _, f := range storedFiles(t, filepath.Join(tr.dir, "blobs")) {
		os.Chtimes(filepath.Join(tr.dir, "blobs", f), past, past)
	}
	st, err := tr.reg.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Removed: the orphan, the deleted manifest's layer and the deleted manifest itself.
	if st.BlobsRemoved != 3 || st.Manifests != 2 {
		t.Fatalf("GC stats %+v", st)
	}
	for _, d := range []string{cd, ld, child, sha(idx)} {
		if !exists(filepath.Join(tr.dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))) {
			t.Errorf("GC removed referenced %s", d)
		}
	}
	for _, d := range []string{od, dd, gm} {
		if exists(filepath.Join(tr.dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))) {
			t.Errorf("GC kept unreferenced %s", d)
		}
	}
	expect(t, tr.do("HEAD", "/v2/keep/blobs/"+od, nil), http.StatusNotFound, "")
	expect(t, tr.do("GET", "/v2/keep/manifests/idx", nil), http.StatusOK, "")
	expect(t, tr.do("GET", "/v2/keep/blobs/"+ld, nil), http.StatusOK, "")
}

func TestGCGracePeriodAndUploads(t *testing.T) {
	tr := newTestRegistry(t, WithInsecureLocalPushUnsafe(), WithAnonymousPull(true), WithGCGracePeriod(time.Hour))
	young := tr.pushBlob("r", []byte("young orphan"))
	st, err := tr.reg.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.BlobsRemoved != 0 {
		t.Fatalf("GC removed a blob inside the grace period: %+v", st)
	}
	expect(t, tr.do("HEAD", "/v2/r/blobs/"+young, nil), http.StatusOK, "")

	// With no grace period, an upload in progress still protects blobs younger than itself.
	tr2 := newTestRegistry(t, WithInsecureLocalPushUnsafe(), WithGCGracePeriod(0))
	old := tr2.pushBlob("r", []byte("old orphan"))
	past := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(tr2.dir, "blobs", "sha256", strings.TrimPrefix(old, "sha256:")), past, past)
	resp := tr2.do("POST", "/v2/r/blobs/uploads/", nil)
	expect(t, resp, http.StatusAccepted, "")
	recent := tr2.pushBlob("r", []byte("pushed during the upload"))
	st, err = tr2.reg.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.BlobsRemoved != 1 || exists(filepath.Join(tr2.dir, "blobs", "sha256", strings.TrimPrefix(old, "sha256:"))) ||
		!exists(filepath.Join(tr2.dir, "blobs", "sha256", strings.TrimPrefix(recent, "sha256:"))) {
		t.Fatalf("GC with an upload in progress: %+v", st)
	}
}

// TestGCConcurrentPushes runs GC with no grace period in a loop while clients push images. Pushes may then
// fail (a blob swept before its manifest arrived: that is what the grace period is for), but every manifest
// the registry accepted must have all its blobs.
func TestGCConcurrentPushes(t *testing.T) {
	tr := newTestRegistry(t, WithInsecureLocalPushUnsafe(), WithAnonymousPull(true), WithGCGracePeriod(0))
	stop := make(chan struct{})
	gcDone := make(chan error)
	go func() {
		for {
			select {
			case <-stop:
				gcDone <- nil
				return
			default:
			}
			if _, err := tr.reg.GC(t.Context()); err != nil {
				gcDone <- err
				return
			}
		}
	}()
	results := make(chan string, 64)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 10 {
				cfg := []byte(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				layer := bytes.Repeat([]byte{byte(w), byte(i)}, 1000)
				cd, ld := sha(cfg), sha(layer)
				for _, b := range [][]byte{cfg, layer} {
					resp := tr.do("POST", "/v2/c/blobs/uploads/?digest="+sha(b), bytes.NewReader(b))
					resp.Body.Close()
				}
				body := mustJSON(image(cd, len(cfg), map[string]int{ld: len(layer)}, nil))
				resp := tr.do("PUT", "/v2/c/manifests/"+sha(body), bytes.NewReader(body), "Content-Type", mediaTypeOCIManifest)
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated {
					results <- sha(body)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	if err := <-gcDone; err != nil {
		t.Fatal(err)
	}
	close(results)
	n := 0
	for md := range results {
		n++
		body := expect(t, tr.do("GET", "/v2/c/manifests/"+md, nil), http.StatusOK, "")
		for _, d := range referencedDigests(body) {
			if !exists(tr.reg.store.blobPath(d)) {
				t.Fatalf("accepted manifest %s lost blob %s to GC", md, d)
			}
		}
	}
	t.Logf("%d of 40 manifests accepted while GC ran continuously", n)
}

// TestGCOldActiveUpload: a live upload session holds back the sweep of blobs younger than itself, and GC kept any
// session touched within a day, so a pusher touching one session daily stopped GC from ever removing anything
// newer than it. A session older than maxUploadAge is removed however active, and the sweep goes on.
func TestGCOldActiveUpload(t *testing.T) {
	tr := newTestRegistry(t, WithInsecureLocalPushUnsafe(), WithAnonymousPull(true), WithGCGracePeriod(time.Hour))
	orphan := tr.pushBlob("r", []byte("orphan"))
	past := time.Now().Add(-48 * time.Hour)
	os.Chtimes(filepath.Join(tr.dir, "blobs", "sha256", strings.TrimPrefix(orphan, "sha256:")), past, past)
	resp := tr.do("POST", "/v2/r/blobs/uploads/", nil)
	expect(t, resp, http.StatusAccepted, "")
	id := resp.Header.Get("Docker-Upload-UUID")
	// The session was started eight days ago and has just been written to.
	u, err := tr.reg.store.loadUpload("r", id)
	if err != nil || u == nil {
		t.Fatalf("loading the session: %v", err)
	}
	u.Started = time.Now().Add(-8 * 24 * time.Hour).UnixNano()
	if err := tr.reg.store.saveUpload(t.Context(), id, u); err != nil {
		t.Fatal(err)
	}
	st, err := tr.reg.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Uploads != 1 || st.BlobsRemoved != 1 {
		t.Fatalf("GC with an eight-day-old active session: %+v, want it and the two-day-old orphan removed", st)
	}
	expect(t, tr.do("GET", "/v2/r/blobs/uploads/"+id, nil), http.StatusNotFound, codeBlobUploadUnknown)
}
