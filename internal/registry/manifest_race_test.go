package registry

import (
	"net/http"
	"sync"
	"testing"
)

// TestDeleteManifestKeepsConcurrentPush: a DELETE of a manifest removes the tags pointing at it, one by one. A
// PUT acknowledged while it runs must survive it: a tag the PUT moved to another manifest, and the manifest
// itself when the PUT pushed the same one again. The hook makes the PUT arrive between the DELETE's read of a
// tag and its removal, the window in which both were lost.
func TestDeleteManifestKeepsConcurrentPush(t *testing.T) {
	for _, again := range []bool{false, true} {
		name := "tag moved to another manifest"
		if again {
			name = "same manifest pushed again"
		}
		t.Run(name, func(t *testing.T) {
			tr := newTestRegistry(t)
			cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
			c := tr.pushBlob("r", cfg)
			m1 := image(c, len(cfg), nil, nil)
			m2 := image(c, len(cfg), nil, map[string]any{"annotations": map[string]string{"v": "2"}})
			d1, resp := tr.pushManifest("r", "latest", m1)
			expect(t, resp, http.StatusCreated, "")
			pushed, ref := m2, "latest"
			if again {
				pushed, ref = m1, "again"
			}

			held := make(chan struct{}, 1)
			done := make(chan *http.Response, 1)
			var once sync.Once
			testHookRepoLockWait = func() {
				select {
				case held <- struct{}{}:
				default:
				}
			}
			testHookTagRead = func() {
				once.Do(func() {
					go func() {
						_, resp := tr.pushManifest("r", ref, pushed)
						done <- resp
					}()
					// Either the PUT finishes inside the DELETE's window, or the store holds it back.
					select {
					case resp := <-done:
						done <- resp
					case <-held:
					}
				})
			}
			t.Cleanup(func() { testHookRepoLockWait, testHookTagRead = func() {}, func() {} })

			expect(t, tr.do("DELETE", "/v2/r/manifests/"+d1, nil), http.StatusAccepted, "")
			expect(t, <-done, http.StatusCreated, "")

			want := sha(mustJSON(pushed))
			resp = tr.do("GET", "/v2/r/manifests/"+ref, nil, "Accept", mediaTypeOCIManifest)
			expect(t, resp, http.StatusOK, "")
			if got := resp.Header.Get("Docker-Content-Digest"); got != want {
				t.Fatalf("tag %q after the acknowledged PUT: %s, want %s", ref, got, want)
			}
			if again {
				expect(t, tr.do("GET", "/v2/r/manifests/"+d1, nil, "Accept", mediaTypeOCIManifest), http.StatusOK, "")
			}
		})
	}
}
