package oci_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
)

// hookedRegistry is go-containerregistry's registry without the referrers API (clients keep the fallback tag),
// logging each request as "METHOD PATH?QUERY"; fail, when it returns a status, answers the request with it.
func hookedRegistry(t *testing.T, fail func(r *http.Request) int) (string, *requestLog, *inFlight) {
	t.Helper()
	log, busy := &requestLog{}, &inFlight{}
	h := registry.New(registry.Logger(discardLogger()), registry.WithReferrersSupport(false))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r.Method + " " + r.URL.Path + "?" + r.URL.RawQuery)
		if strings.Contains(r.URL.Path, "/blobs/uploads/") {
			defer busy.enter()()
		}
		if fail != nil {
			if code := fail(r); code != 0 {
				http.Error(w, `{"errors":[{"code":"DENIED","message":"refused by the test"}]}`, code)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://"), log, busy
}

// inFlight counts requests being served at once, and the most seen.
type inFlight struct {
	mu       sync.Mutex
	now, max int
}

func (b *inFlight) enter() func() {
	b.mu.Lock()
	b.now++
	b.max = max(b.max, b.now)
	b.mu.Unlock()
	return func() { b.mu.Lock(); b.now--; b.mu.Unlock() }
}

// sbomFixture is a build of n files, each with its two SBOM bundles: 2n+1 referrers of the artifact.
func sbomFixture(t *testing.T, n int) *fixture {
	t.Helper()
	files := map[string][]byte{}
	for i := range n {
		files[fmt.Sprintf("f%d", i)] = []byte(fmt.Sprintf("file %d\n", i))
	}
	f := newFixture(t, files, nil)
	for p := range files {
		f.writeSBOM(t, f.key, p, content.SPDXBundleSuffix, content.SPDXPredicateType)
		f.writeSBOM(t, f.key, p, content.CycloneDXBundleSuffix, content.CycloneDXPredicateType)
	}
	return f
}

// TestPublishWritesTheFallbackIndexOnce: on a registry without the referrers API, the subject's fallback index
// is written once with every referrer (go-containerregistry's pusher rewrote it once per referrer: quadratic in
// bytes), loses none, and is not written again by a second publish.
func TestPublishWritesTheFallbackIndexOnce(t *testing.T) {
	ctx := context.Background()
	f := sbomFixture(t, 20)
	host, log, busy := hookedRegistry(t, nil)
	repo, tag, _ := oci.ParseTarget(host + "/team/app:v1")
	req := oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: tag, Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()}
	pub, err := oci.Publish(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	art := f.subject(oci.ArtifactSubject).Digest
	fallback := "PUT /v2/team/app/manifests/sha256-" + art.Encoded()
	if n := log.count(fallback); n != 1 {
		t.Errorf("the fallback index was written %d times, want once", n)
	}
	idx, err := remote.Referrers(mustRef(t, pub.Artifact).(name.Digest))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 41 || len(pub.Referrers) != 41 {
		t.Fatalf("%d referrers listed, %d pushed; want 41 (the provenance and 40 SBOMs)", len(im.Manifests), len(pub.Referrers))
	}
	for _, d := range im.Manifests {
		if d.ArtifactType != content.BundleMediaType || d.Annotations["dev.sigstore.bundle.predicateType"] == "" {
			t.Errorf("fallback entry %s: artifactType %q, annotations %v", d.Digest, d.ArtifactType, d.Annotations)
		}
	}
	if busy.max > 8 {
		t.Errorf("%d blob requests in flight at once, want at most 8", busy.max)
	}
	att, err := oci.FetchBundles(ctx, pub.Artifact)
	if err != nil || len(att.Bundles) != 1 {
		t.Fatalf("FetchBundles: %v, %+v", err, att)
	}

	before := log.count("PUT")
	if _, err := oci.Publish(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := log.count("PUT") - before; n > 1 { // only the tag may be re-put
		t.Errorf("second publish made %d PUTs, want at most the tag's", n)
	}
}

// TestPublishFailureLeavesNoTag: a blob or a referrers index the registry refuses stops the publish with an error
// naming what was being pushed, and no tag is pushed.
func TestPublishFailureLeavesNoTag(t *testing.T) {
	f := sbomFixture(t, 10)
	bad := f.files["f7"]
	tests := []struct {
		name string
		fail func(r *http.Request) int
		want string
	}{
		{"a file's blob", func(r *http.Request) int {
			if r.Method == http.MethodPut && r.URL.Query().Get("digest") == "sha256:"+sha(bad) {
				return http.StatusForbidden
			}
			return 0
		}, `pushing output "f7"`},
		{"the fallback index", func(r *http.Request) int {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/sha256-") {
				return http.StatusForbidden
			}
			return 0
		}, "writing the referrers tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, log, _ := hookedRegistry(t, tt.fail)
			repo, tag, _ := oci.ParseTarget(host + "/team/app:v1")
			_, err := oci.Publish(context.Background(), oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: tag,
				Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "refused by the test") {
				t.Fatalf("Publish err = %v, want one containing %q and the registry's message", err, tt.want)
			}
			if n := log.count("PUT /v2/team/app/manifests/v1"); n != 0 {
				t.Errorf("the tag was pushed despite the failure")
			}
		})
	}
}

// TestPublishKeepsTheFallbackEntries: referrers added to a subject that already has a fallback index (an earlier
// publish, before the SBOMs were there) join the entries it has; none is lost.
func TestPublishKeepsTheFallbackEntries(t *testing.T) {
	ctx := context.Background()
	files := map[string][]byte{"a": []byte("a\n"), "b": []byte("b\n")}
	f := newFixture(t, files, nil)
	host, log, _ := hookedRegistry(t, nil)
	repo, _, _ := oci.ParseTarget(host + "/team/app")
	req := oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()}
	first, err := oci.Publish(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for p := range files {
		f.writeSBOM(t, f.key, p, content.SPDXBundleSuffix, content.SPDXPredicateType)
		f.writeSBOM(t, f.key, p, content.CycloneDXBundleSuffix, content.CycloneDXPredicateType)
	}
	second, err := oci.Publish(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Referrers(mustRef(t, second.Artifact).(name.Digest))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	got := map[string]bool{}
	for _, d := range im.Manifests {
		got[first.Artifact[:strings.Index(first.Artifact, "@")+1]+d.Digest.String()] = true
	}
	for _, r := range append(first.Referrers, second.Referrers...) {
		if !got[r] {
			t.Errorf("referrer %s is not in the fallback index %v", r, got)
		}
	}
	if len(im.Manifests) != 5 {
		t.Errorf("%d referrers listed, want 5", len(im.Manifests))
	}
	if n := log.count("PUT /v2/team/app/manifests/sha256-"); n != 2 {
		t.Errorf("the fallback index was written %d times over two publishes, want twice", n)
	}
}

// TestPublishRetriesABusyRegistry: a referrer manifest or fallback index refused once with 503 (a busy registry)
// is sent again, as go-containerregistry retries the rest of a publish.
func TestPublishRetriesABusyRegistry(t *testing.T) {
	f := sbomFixture(t, 2)
	art := string(f.subject(oci.ArtifactSubject).Digest)
	var mu sync.Mutex
	refused := map[string]bool{}
	host, _, _ := hookedRegistry(t, func(r *http.Request) int {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/manifests/sha256") || strings.HasSuffix(r.URL.Path, art) {
			return 0 // (the artifact manifest goes through go-containerregistry's pusher)
		}
		mu.Lock()
		defer mu.Unlock()
		if refused[r.URL.Path] {
			return 0
		}
		refused[r.URL.Path] = true
		return http.StatusServiceUnavailable
	})
	repo, tag, _ := oci.ParseTarget(host + "/team/app:v1")
	pub, err := oci.Publish(context.Background(), oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: tag,
		Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Referrers(mustRef(t, pub.Artifact).(name.Digest))
	if err != nil {
		t.Fatal(err)
	}
	if im, _ := idx.IndexManifest(); len(im.Manifests) != 5 {
		t.Errorf("%d referrers listed, want 5", len(im.Manifests))
	}
}
