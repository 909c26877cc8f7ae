package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// nextLink returns the target of a Link header with rel="next", or "".
func nextLink(h http.Header) string {
	l := h.Get("Link")
	start, end := strings.Index(l, "<"), strings.Index(l, ">")
	if start < 0 || end < start || !strings.Contains(l[end:], `rel="next"`) {
		return ""
	}
	return l[start+1 : end]
}

// TestReferrersBounded is issue 6 A9: thirty referrers carrying 4 MiB annotations each made one anonymous GET
// return 126 MB. Each response must stay bounded, every referrer must still be listed (with its small
// annotations), a client following Link must see them all, and concurrent listings must not allocate the
// annotations' size.
func TestReferrersBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 120 MiB of manifests")
	}
	tr := newTestRegistry(t)
	tr.reg.referrersPage = 4 << 10 // a few descriptors per page, so that pagination is exercised
	cfg := []byte("{}")
	cd := tr.pushBlob("r", cfg)
	subject, resp := tr.pushManifest("r", "v1", image(cd, len(cfg), nil, nil))
	expect(t, resp, http.StatusCreated, "")
	subjDesc := map[string]any{"mediaType": mediaTypeOCIManifest, "digest": subject, "size": 10}
	const n = 30
	huge := strings.Repeat("A", MaxManifestSize-4096)
	var want []string
	for i := range n {
		at := "application/vnd.example.sig"
		if i%2 == 1 {
			at = "application/vnd.example.sbom"
		}
		d, resp := tr.pushManifest("r", fmt.Sprintf("ref%d", i), image(cd, len(cfg), nil, map[string]any{
			"artifactType": at, "subject": subjDesc,
			"annotations": map[string]string{"small": fmt.Sprint(i), "huge": huge}}))
		expect(t, resp, http.StatusCreated, "")
		want = append(want, d)
	}
	slices.Sort(want)

	// follow lists every page from path and checks each page's bound.
	follow := func(path string) (got []string, pages int) {
		for path != "" {
			resp := tr.do("GET", path, nil)
			body := expect(t, resp, http.StatusOK, "")
			if len(body) > 8<<10 {
				t.Fatalf("GET %s: %d bytes, want a page of about 4 KiB", path, len(body))
			}
			var idx index
			if err := json.Unmarshal(body, &idx); err != nil {
				t.Fatal(err)
			}
			for _, m := range idx.Manifests {
				if _, ok := m.Annotations["huge"]; ok {
					t.Fatalf("referrer %s lists its 4 MiB annotation", m.Digest)
				}
				if m.Annotations["small"] == "" {
					t.Fatalf("referrer %s lost its small annotation: %v", m.Digest, m.Annotations)
				}
				got = append(got, m.Digest)
			}
			pages++
			path = nextLink(resp.Header)
			if pages > n+1 {
				t.Fatal("pagination does not end")
			}
		}
		slices.Sort(got)
		return got, pages
	}
	got, pages := follow("/v2/r/referrers/" + subject)
	if !slices.Equal(got, want) || pages < 2 {
		t.Fatalf("following Link over %d pages listed %d referrers, want all %d", pages, len(got), n)
	}
	// The filter carries over to the next pages.
	got, _ = follow("/v2/r/referrers/" + subject + "?artifactType=application/vnd.example.sbom")
	if len(got) != n/2 {
		t.Fatalf("filtered listing over pages: %d referrers, want %d", len(got), n/2)
	}

	// Four listings at once with the default page size allocate nowhere near the annotations' 120 MiB.
	tr.reg.referrersPage = 0
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			resp := tr.do("GET", "/v2/r/referrers/"+subject, nil)
			defer resp.Body.Close()
			var idx index
			if err := json.NewDecoder(resp.Body).Decode(&idx); err != nil || len(idx.Manifests) != n {
				t.Errorf("default page: %d referrers, %v", len(idx.Manifests), err)
			}
		})
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Fatalf("four referrers listings allocated %d MiB", alloc>>20)
	}
}

// TestReferrerMediaTypesBounded: a referrer's artifactType (or its config's media type, which stands in for
// one) is copied into every listing of the subject. One pushed with a 4 MB artifactType made each listing page
// megabytes, and 500 slow anonymous readers took the registry to 3 GB. Such media types are refused at push
// (RFC 6838 bounds them), and a record stored before that bound is skipped, not listed.
func TestReferrerMediaTypesBounded(t *testing.T) {
	tr := newTestRegistry(t)
	cfg := []byte("{}")
	cd := tr.pushBlob("r", cfg)
	subject, resp := tr.pushManifest("r", "v1", image(cd, len(cfg), nil, nil))
	expect(t, resp, http.StatusCreated, "")
	subjDesc := map[string]any{"mediaType": mediaTypeOCIManifest, "digest": subject, "size": 10}
	long := "application/x-" + strings.Repeat("a", 1<<20)

	_, resp = tr.pushManifest("r", "big-type", image(cd, len(cfg), nil, map[string]any{"artifactType": long, "subject": subjDesc}))
	if body := expect(t, resp, http.StatusBadRequest, codeManifestInvalid); !strings.Contains(string(body), "artifactType has 1048590 bytes") {
		t.Fatalf("message does not say what is wrong: %s", body)
	}
	m := image(cd, len(cfg), nil, map[string]any{"subject": subjDesc})
	m["config"] = map[string]any{"mediaType": long, "digest": cd, "size": len(cfg)}
	_, resp = tr.pushManifest("r", "big-config-type", m)
	if body := expect(t, resp, http.StatusBadRequest, codeManifestInvalid); !strings.Contains(string(body), "config: mediaType has") {
		t.Fatalf("message does not say what is wrong: %s", body)
	}

	// A genuine referrer, and one stored (manifest, link and record) as a version without the bound did.
	good, resp := tr.pushManifest("r", "sig", image(cd, len(cfg), nil, map[string]any{"artifactType": "application/vnd.example.sig", "subject": subjDesc}))
	expect(t, resp, http.StatusCreated, "")
	old, err := json.Marshal(image(cd, len(cfg), nil, map[string]any{"artifactType": long, "subject": subjDesc}))
	if err != nil {
		t.Fatal(err)
	}
	od := digestOf("sha256", old)
	sd, _ := parseDigest(subject)
	rec, _ := json.Marshal(descriptor{MediaType: mediaTypeOCIManifest, Digest: od.String(), Size: int64(len(old)), ArtifactType: long})
	for path, b := range map[string][]byte{tr.reg.store.blobPath(od): old, tr.reg.store.manifestLink("r", od): []byte(mediaTypeOCIManifest),
		tr.reg.store.referrerPath("r", sd, od): rec} {
		if err := writeLink(t.Context(), path, b); err != nil {
			t.Fatal(err)
		}
	}
	var listed []string
	for path, pages := "/v2/r/referrers/"+subject, 0; path != ""; path = nextLink(resp.Header) {
		if pages++; pages > 3 {
			t.Fatal("pagination does not end")
		}
		resp = tr.do("GET", path, nil)
		body := expect(t, resp, http.StatusOK, "")
		if len(body) > 4<<10 {
			t.Fatalf("a page listing these referrers took %d bytes", len(body))
		}
		var idx index
		if err := json.Unmarshal(body, &idx); err != nil {
			t.Fatal(err)
		}
		for _, m := range idx.Manifests {
			listed = append(listed, m.Digest)
		}
	}
	if !slices.Equal(listed, []string{good}) {
		t.Fatalf("listed %v, want only the genuine referrer %s", listed, good)
	}
}
