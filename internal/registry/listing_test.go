package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestTagListBounded: a pusher can make any number of tags, and a listing without n held them all (100,000 tags:
// ~25 MB per anonymous listing, for as long as the client took to read it). A listing holds at most maxTagsPage
// tags, also when n asks for more, and Link leads through all of them in order.
func TestTagListBounded(t *testing.T) {
	tr := newTestRegistry(t)
	cfg := []byte("{}")
	cd := tr.pushBlob("r", cfg)
	d, resp := tr.pushManifest("r", "t00000", image(cd, len(cfg), nil, nil))
	expect(t, resp, http.StatusCreated, "")
	// The rest are written as a tag push writes them, without 2,500 round trips.
	const n = 2*maxTagsPage + 500
	want := []string{"t00000"}
	for i := 1; i < n; i++ {
		tag := fmt.Sprintf("t%05d", i)
		if err := os.WriteFile(tr.reg.store.tagPath("r", tag), []byte(d), 0o600); err != nil {
			t.Fatal(err)
		}
		want = append(want, tag)
	}
	for _, first := range []string{"/v2/r/tags/list", "/v2/r/tags/list?n=100000"} {
		var got []string
		pages := 0
		for path := first; path != ""; path = nextLink(resp.Header) {
			if pages++; pages > n {
				t.Fatal("pagination does not end")
			}
			resp = tr.do("GET", path, nil)
			var tl tagList
			if err := json.Unmarshal(expect(t, resp, http.StatusOK, ""), &tl); err != nil {
				t.Fatal(err)
			}
			if len(tl.Tags) > maxTagsPage {
				t.Fatalf("GET %s listed %d tags, want at most %d per page", path, len(tl.Tags), maxTagsPage)
			}
			got = append(got, tl.Tags...)
		}
		if !slices.Equal(got, want) || pages != 3 {
			t.Fatalf("from %s: %d tags over %d pages, want all %d in order over 3", first, len(got), pages, n)
		}
	}
}

// TestReferrersAcrossBatches: a listing reads record names in batches of referrersBatch; every referrer is
// listed once across pages and batches, with and without a filter.
func TestReferrersAcrossBatches(t *testing.T) {
	tr := newTestRegistry(t)
	tr.reg.referrersPage = 64 << 10
	subject := digestOf("sha256", []byte("subject"))
	const n = 2*referrersBatch + 100
	var all, sigs []string
	for i := range n {
		d := digestOf("sha256", []byte(fmt.Sprint("referrer ", i)))
		at := "application/vnd.example.sbom"
		if i%3 == 0 {
			at = "application/vnd.example.sig"
			sigs = append(sigs, d.String())
		}
		all = append(all, d.String())
		rec, _ := json.Marshal(descriptor{MediaType: mediaTypeOCIManifest, Digest: d.String(), Size: 100, ArtifactType: at})
		writeFile(t, tr.reg.store.referrerPath("r", subject, d), rec)
		writeFile(t, tr.reg.store.manifestLink("r", d), []byte(mediaTypeOCIManifest))
	}
	slices.Sort(all)
	slices.Sort(sigs)
	for q, want := range map[string][]string{"": all, "?artifactType=application/vnd.example.sig": sigs} {
		var got []string
		pages := 0
		for path := "/v2/r/referrers/" + subject.String() + q; path != ""; {
			if pages++; pages > n {
				t.Fatal("pagination does not end")
			}
			resp := tr.do("GET", path, nil)
			var idx index
			if err := json.Unmarshal(expect(t, resp, http.StatusOK, ""), &idx); err != nil {
				t.Fatal(err)
			}
			for _, m := range idx.Manifests {
				got = append(got, m.Digest)
			}
			path = nextLink(resp.Header)
		}
		if !slices.Equal(got, want) || pages < 2 {
			t.Fatalf("query %q: %d referrers over %d pages, want all %d in order", q, len(got), pages, len(want))
		}
	}
}

// writeFile writes a file as the registry stores it, without fsync: tests make thousands.
func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestFilteredReferrersCheap: a pusher can attach thousands of referrers of other types, each with 16 KiB of
// annotations, to a subject; a listing filtered by artifactType (what ssf verify asks for) decoded every one
// whole, 4.9 s of CPU per anonymous request for 20,000. It reads only each record's start.
func TestFilteredReferrersCheap(t *testing.T) {
	tr := newTestRegistry(t)
	subject := digestOf("sha256", []byte("subject"))
	big := map[string]string{"junk": strings.Repeat("x", maxReferrerAnnotations-10)}
	const n = 2000
	var want string
	for i := range n + 1 {
		d := digestOf("sha256", []byte(fmt.Sprint("referrer ", i)))
		desc := descriptor{MediaType: mediaTypeOCIManifest, Digest: d.String(), Size: 100, ArtifactType: "application/x-junk", Annotations: big}
		if i == n/2 {
			desc = descriptor{MediaType: mediaTypeOCIManifest, Digest: d.String(), Size: 100, ArtifactType: "application/vnd.example.sig"}
			want = d.String()
		}
		rec, _ := json.Marshal(desc)
		writeFile(t, tr.reg.store.referrerPath("r", subject, d), rec)
		writeFile(t, tr.reg.store.manifestLink("r", d), []byte(mediaTypeOCIManifest))
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resp := tr.do("GET", "/v2/r/referrers/"+subject.String()+"?artifactType=application/vnd.example.sig", nil)
	body := expect(t, resp, http.StatusOK, "")
	runtime.ReadMemStats(&after)
	var idx index
	if err := json.Unmarshal(body, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != want || nextLink(resp.Header) != "" {
		t.Fatalf("filtered listing: %s, want only %s", body, want)
	}
	// Decoding every record whole allocates over 60 MiB here; reading their starts, a few.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Fatalf("a filtered listing over %d records of another type allocated %d MiB", n, alloc>>20)
	}
}
