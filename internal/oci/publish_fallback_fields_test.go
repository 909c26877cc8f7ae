package oci_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/oci"
)

// TestPublishKeepsWhatFallbackEntriesSay: an entry another client put in a subject's fallback index (with fields
// ssf's own descriptors do not have: platform, urls, data) and the index's own annotations are written back as
// they were when ssf adds its referrers: rewriting the index must not drop anything it read.
func TestPublishKeepsWhatFallbackEntriesSay(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, map[string][]byte{"a": []byte("a\n")}, nil)
	host, _, _ := hookedRegistry(t, nil)
	repo, _, _ := oci.ParseTarget(host + "/team/app")
	req := oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()}
	art := f.subject(oci.ArtifactSubject).Digest
	u := "http://" + host + "/v2/team/app/manifests/sha256-" + art.Encoded()
	get := func() map[string]any {
		r, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var idx map[string]any
		if err := json.NewDecoder(r.Body).Decode(&idx); err != nil {
			t.Fatal(err)
		}
		return idx
	}
	// The entry names a manifest the registry has (it checks an index's children).
	child := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x-other","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	childDigest := digest.FromBytes(child)
	cput, _ := http.NewRequest(http.MethodPut, "http://"+host+"/v2/team/app/manifests/"+childDigest.String(), bytes.NewReader(child))
	cput.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if resp, err := http.DefaultClient.Do(cput); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("pushing the other client's manifest: %v %v", resp, err)
	}
	idx := map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []any{}}
	other := map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": "application/x-other",
		"digest": childDigest.String(), "size": len(child), "platform": map[string]any{"os": "linux", "architecture": "arm64"},
		"urls": []any{"https://example.test/x"}, "data": "YWJj"}
	idx["manifests"] = append(idx["manifests"].([]any), other)
	idx["annotations"] = map[string]any{"org.example.kept": "yes"}
	raw, _ := json.Marshal(idx)
	put, _ := http.NewRequest(http.MethodPut, u, bytes.NewReader(raw))
	put.Header.Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(put)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("seeding the index: %s", resp.Status)
	}
	t.Logf("seeded: %v", get())
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	if _, err := oci.Publish(ctx, req); err != nil {
		t.Fatal(err)
	}
	after := get()
	if n := len(after["manifests"].([]any)); n != 2 {
		t.Fatalf("%d entries in the fallback index, want 2 (the provenance and the other client's)", n)
	}
	var kept map[string]any
	for _, m := range after["manifests"].([]any) {
		if m.(map[string]any)["digest"] == other["digest"] {
			kept = m.(map[string]any)
		}
	}
	want, _ := json.Marshal(other)
	got, _ := json.Marshal(kept)
	var w, g map[string]any
	json.Unmarshal(want, &w)
	json.Unmarshal(got, &g)
	wj, _ := json.Marshal(w)
	gj, _ := json.Marshal(g)
	if string(wj) != string(gj) {
		t.Errorf("another client's entry was rewritten:\n got %s\nwant %s", gj, wj)
	}
	if a, _ := after["annotations"].(map[string]any); a["org.example.kept"] != "yes" {
		t.Errorf("the index's annotations were dropped: %v", after["annotations"])
	}
}

// TestPublishRefusesAFallbackIndexVerifyCannotRead: a fallback index that would grow past what ssf verify reads
// of a referrers list (its entries sorted by digest, the provenance could land past the cut) fails the publish
// with an error that says so, before the index or any tag is written.
func TestPublishRefusesAFallbackIndexVerifyCannotRead(t *testing.T) {
	f := newFixture(t, map[string][]byte{"a": []byte("a\n")}, nil)
	art := f.subject(oci.ArtifactSubject).Digest
	var big bytes.Buffer
	big.WriteString(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`)
	for i := 0; big.Len() < 9<<20; i++ {
		if i > 0 {
			big.WriteByte(',')
		}
		fmt.Fprintf(&big, `{"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x-other","digest":"%s","size":100}`, digest.FromString(fmt.Sprint(i)))
	}
	big.WriteString(`]}`)
	var indexPut, tagPut atomic.Bool
	h := registry.New(registry.Logger(discardLogger()), registry.WithReferrersSupport(false))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/team/app/manifests/sha256-"+art.Encoded() && r.Method == http.MethodGet:
			w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			w.Write(big.Bytes())
			return
		case r.URL.Path == "/v2/team/app/manifests/sha256-"+art.Encoded():
			indexPut.Store(true)
		case r.URL.Path == "/v2/team/app/manifests/v1":
			tagPut.Store(true)
		}
		h.ServeHTTP(w, r)
	}))
	defer s.Close()
	repo, tag, _ := oci.ParseTarget(strings.TrimPrefix(s.URL, "http://") + "/team/app:v1")
	_, err := oci.Publish(context.Background(), oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: tag,
		Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()})
	if err == nil || !strings.Contains(err.Error(), "ssf verify reads") || !strings.Contains(err.Error(), "referrers API") {
		t.Fatalf("err = %v, want the index refused as too large for verify", err)
	}
	if indexPut.Load() || tagPut.Load() {
		t.Errorf("index written %v, tag pushed %v: want neither", indexPut.Load(), tagPut.Load())
	}
}

// TestPublishDoesNotTrustOCISubjectAlone: a registry (or a proxy in front of one) that answers each referrer's
// put with OCI-Subject but has no referrers API would leave the provenance where no client finds it; ssf asks
// for the API and, not finding it, writes the fallback index, so the published artifact still verifies.
func TestPublishDoesNotTrustOCISubjectAlone(t *testing.T) {
	f := newFixture(t, map[string][]byte{"a": []byte("a\n")}, nil)
	art := f.subject(oci.ArtifactSubject).Digest
	h := registry.New(registry.Logger(discardLogger()), registry.WithReferrersSupport(false))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/sha256:") {
			w.Header().Set("OCI-Subject", art.String()) // a lie: nothing keeps the list
		}
		h.ServeHTTP(w, r)
	}))
	defer s.Close()
	repo, tag, _ := oci.ParseTarget(strings.TrimPrefix(s.URL, "http://") + "/team/app:v1")
	pub, err := oci.Publish(context.Background(), oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: tag,
		Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()})
	if err != nil {
		t.Fatal(err)
	}
	att, err := oci.FetchBundles(context.Background(), pub.Artifact)
	if err != nil || len(att.Bundles) != 1 {
		t.Fatalf("FetchBundles = %+v, %v; want the provenance", att, err)
	}
}

// TestPublishRefusesAReferrersAnswerThatIsNotAnIndex: a registry (or a catch-all front end) that answers the
// referrers API with 200 and something other than an OCI image index does not have the API: taking it at its
// status would leave the referrers where ssf verify does not find them. The publish fails saying so, untagged.
func TestPublishRefusesAReferrersAnswerThatIsNotAnIndex(t *testing.T) {
	f := newFixture(t, map[string][]byte{"a": []byte("a\n")}, nil)
	var tagPut atomic.Bool
	h := registry.New(registry.Logger(discardLogger()), registry.WithReferrersSupport(false))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/referrers/") {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>welcome</html>"))
			return
		}
		if strings.HasSuffix(r.URL.Path, "/manifests/v1") {
			tagPut.Store(true)
		}
		h.ServeHTTP(w, r)
	}))
	defer s.Close()
	repo, tag, _ := oci.ParseTarget(strings.TrimPrefix(s.URL, "http://") + "/team/app:v1")
	_, err := oci.Publish(context.Background(), oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: tag,
		Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()})
	if err == nil || !strings.Contains(err.Error(), "not an OCI image index") {
		t.Fatalf("err = %v, want the referrers answer refused", err)
	}
	if tagPut.Load() {
		t.Error("the tag was pushed")
	}
}
