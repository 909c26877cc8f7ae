package oci_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
)

// hostileRegistry is go-containerregistry's registry (no referrers API: clients use the fallback tag) behind a
// handler that serves other bytes for the blobs named in swap.
type hostileRegistry struct {
	host  string
	swap  map[string][]byte // "sha256:<hex>" -> the bytes served instead of that blob
	serve map[string][]byte // URL path -> a manifest served there (go-containerregistry checks what is pushed)
}

func newHostileRegistry(t *testing.T) *hostileRegistry {
	h := registry.New(registry.Logger(discardLogger()), registry.WithReferrersSupport(false))
	r := &hostileRegistry{swap: map[string][]byte{}, serve: map[string][]byte{}}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if b, ok := r.serve[req.URL.Path]; ok && (req.Method == http.MethodGet || req.Method == http.MethodHead) {
			var m struct{ MediaType string }
			json.Unmarshal(b, &m)
			w.Header().Set("Content-Type", m.MediaType)
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b)
			return
		}
		for d, b := range r.swap {
			if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/blobs/"+d) {
				w.Header().Set("Content-Length", fmt.Sprint(len(b)))
				w.Write(b)
				return
			}
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(s.Close)
	r.host = strings.TrimPrefix(s.URL, "http://")
	return r
}

func (r *hostileRegistry) put(t *testing.T, repo, kind, ref, mediaType string, body []byte) {
	t.Helper()
	var req *http.Request
	if kind == "blobs" {
		req, _ = http.NewRequest(http.MethodPost, "http://"+r.host+"/v2/"+repo+"/blobs/uploads/?digest="+ref, bytes.NewReader(body))
	} else {
		req, _ = http.NewRequest(http.MethodPut, "http://"+r.host+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(body))
	}
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT %s %s: %s %s", kind, ref, resp.Status, b)
	}
}

// referrer pushes a referrer manifest of subj carrying blob (its layer descriptor gives size, or the real one if
// size < 0) and returns its descriptor for the fallback index.
func (r *hostileRegistry) referrer(t *testing.T, repo string, subj oci.Descriptor, artifactType string, blob []byte, size int64) oci.Descriptor {
	t.Helper()
	r.put(t, repo, "blobs", "sha256:"+sha(blob), "application/octet-stream", blob)
	if size < 0 {
		size = int64(len(blob))
	}
	m := mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest, "artifactType": artifactType,
		"config":  map[string]any{"mediaType": ocispec.MediaTypeEmptyJSON, "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
		"layers":  []oci.Descriptor{{MediaType: artifactType, Digest: digest.FromBytes(blob), Size: size}},
		"subject": subj,
	})
	r.put(t, repo, "manifests", "sha256:"+sha(m), ocispec.MediaTypeImageManifest, m)
	return oci.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifactType, Digest: digest.FromBytes(m), Size: int64(len(m))}
}

// Referrers that anyone who may push can attach cannot stop a good bundle from being found, and none of them is
// returned as a bundle: other types are ignored, and oversized, malformed or substituted ones are skipped with
// the reason.
func TestFetchBundlesSkipsHostileReferrers(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, map[string][]byte{"a": []byte("a\n")}, nil)
	reg := newHostileRegistry(t)
	repo, _, _ := oci.ParseTarget(reg.host + "/app")
	pub, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Verify: f.verifier()})
	if err != nil {
		t.Fatal(err)
	}
	art := f.subject(oci.ArtifactSubject)
	subj := oci.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: art.Digest, Size: art.Size}
	fallback := "sha256-" + art.Digest.Encoded()

	// The fallback index as publish left it: the good bundle's referrer.
	resp, err := http.Get("http://" + reg.host + "/v2/app/manifests/" + fallback)
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		SchemaVersion int              `json:"schemaVersion"`
		MediaType     string           `json:"mediaType"`
		Manifests     []oci.Descriptor `json:"manifests"`
	}
	json.NewDecoder(resp.Body).Decode(&idx)
	resp.Body.Close()
	if len(idx.Manifests) != 1 {
		t.Fatalf("fallback index %+v", idx)
	}

	huge := bytes.Repeat([]byte("x"), 16<<20+1)
	substituted := []byte(`{"a bundle":"that the registry will not serve"}`)
	reg.swap["sha256:"+sha(substituted)] = append(bytes.Clone(f.bundle), ' ')
	malformed := []byte("not json")
	reg.serve["/v2/app/manifests/sha256:"+sha(malformed)] = malformed

	hostile := []struct {
		desc oci.Descriptor
		want string // "" for a referrer that is ignored, not skipped
	}{
		{reg.referrer(t, "app", subj, "application/spdx+json", []byte(`{"spdx":true}`), -1), ""},
		{reg.referrer(t, "app", subj, content.BundleMediaType, huge, -1), fmt.Sprintf("bundle of %d bytes is larger than %d", len(huge), 16<<20)},
		{reg.referrer(t, "app", subj, content.BundleMediaType, huge, 100), "bundle is larger than 16777216 bytes (its manifest says 100)"},
		{reg.referrer(t, "app", subj, content.BundleMediaType, substituted, -1), "sha256:" + sha(substituted) + " does not match its digest"},
		{oci.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: content.BundleMediaType, Digest: digest.FromBytes(malformed), Size: int64(len(malformed))}, "decoding manifest"},
		{oci.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: content.BundleMediaType, Digest: digest.FromBytes([]byte("big")), Size: 1 << 30}, "is not a bundle manifest"},
	}
	for _, h := range hostile {
		idx.Manifests = append([]oci.Descriptor{h.desc}, idx.Manifests...) // before the good one
	}
	reg.serve["/v2/app/manifests/"+fallback] = mustJSON(t, idx)

	att, err := oci.FetchBundles(ctx, pub.Artifact)
	if err != nil {
		t.Fatalf("FetchBundles: %v", err)
	}
	if len(att.Bundles) != 1 || !bytes.Equal(att.Bundles[0], f.bundle) {
		t.Errorf("fetched %d bundles, want only the good one", len(att.Bundles))
	}
	var skipped []string
	for _, s := range att.Skipped {
		skipped = append(skipped, s.Error())
	}
	all := strings.Join(skipped, "\n")
	want := 0
	for _, h := range hostile {
		if h.want == "" {
			if strings.Contains(all, string(h.desc.Digest)) {
				t.Errorf("a referrer of another artifactType was read: %s", all)
			}
			continue
		}
		want++
		if !strings.Contains(all, h.want) {
			t.Errorf("skipped referrers do not say %q:\n%s", h.want, all)
		}
	}
	if len(skipped) != want {
		t.Errorf("%d referrers skipped, want %d:\n%s", len(skipped), want, all)
	}

	// Without the good one, nothing usable remains: ErrNoBundles, with every reason.
	idx.Manifests = idx.Manifests[:len(idx.Manifests)-1]
	reg.serve["/v2/app/manifests/"+fallback] = mustJSON(t, idx)
	if _, err := oci.FetchBundles(ctx, pub.Artifact); !errors.Is(err, oci.ErrNoBundles) || !strings.Contains(err.Error(), "does not match its digest") {
		t.Errorf("err = %v, want ErrNoBundles with the reasons", err)
	}
}

// A referrers list larger than the client reads is cut short, not fatal: what was read before still counts.
func TestFetchBundlesBoundsTheList(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, map[string][]byte{"a": []byte("a\n")}, nil)
	reg := newHostileRegistry(t)
	repo, _, _ := oci.ParseTarget(reg.host + "/app")
	pub, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Verify: f.verifier()})
	if err != nil {
		t.Fatal(err)
	}
	art := f.subject(oci.ArtifactSubject)
	fallback := "sha256-" + art.Digest.Encoded()
	resp, err := http.Get("http://" + reg.host + "/v2/app/manifests/" + fallback)
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		SchemaVersion int              `json:"schemaVersion"`
		MediaType     string           `json:"mediaType"`
		Manifests     []oci.Descriptor `json:"manifests"`
	}
	json.NewDecoder(resp.Body).Decode(&idx)
	resp.Body.Close()
	// Thirty referrers with 1 MiB annotations each, after the good one.
	for i := range 30 {
		idx.Manifests = append(idx.Manifests, oci.Descriptor{
			MediaType: ocispec.MediaTypeImageManifest, ArtifactType: content.BundleMediaType, Digest: digest.FromBytes([]byte{byte(i)}), Size: 10,
			Annotations: map[string]string{"x": strings.Repeat("a", 1<<20)},
		})
	}
	reg.serve["/v2/app/manifests/"+fallback] = mustJSON(t, idx)
	att, err := oci.FetchBundles(ctx, pub.Artifact)
	if err != nil {
		t.Fatalf("FetchBundles: %v", err)
	}
	if len(att.Bundles) != 1 || !strings.Contains(fmt.Sprint(att.Skipped), "larger than 8388608 bytes; the rest was not read") {
		t.Errorf("bundles %d, skipped %v", len(att.Bundles), att.Skipped)
	}
}
