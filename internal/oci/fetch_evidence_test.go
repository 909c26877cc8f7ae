package oci_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
)

// publishToHostile publishes a one-file build to a registry without the referrers API and returns the reference
// of its files artifact, the artifact's descriptor and the fallback index as published.
func publishToHostile(t *testing.T) (*hostileRegistry, *fixture, string, oci.Descriptor, string, []oci.Descriptor) {
	t.Helper()
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
		Manifests []oci.Descriptor `json:"manifests"`
	}
	json.NewDecoder(resp.Body).Decode(&idx)
	resp.Body.Close()
	// The artifact's descriptor, as a referrer's subject.
	mresp, err := http.Get("http://" + reg.host + "/v2/app/manifests/" + string(art.Digest))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(mresp.Body)
	mresp.Body.Close()
	subj := oci.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: art.Digest, Size: int64(buf.Len())}
	return reg, f, pub.Artifact, subj, fallback, idx.Manifests
}

func serveIndex(t *testing.T, reg *hostileRegistry, fallback string, manifests []oci.Descriptor) {
	reg.serve["/v2/app/manifests/"+fallback] = mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageIndex, "manifests": manifests,
	})
}

// A flood of SBOM referrers, listed before the provenance, does not hide it: FetchEvidence reads every provenance
// candidate first and the others under their own bound; FetchBundles does not read the others at all.
func TestFetchEvidenceFloodOfSBOMsDoesNotHideProvenance(t *testing.T) {
	reg, f, ref, subj, fallback, published := publishToHostile(t)
	var flood []oci.Descriptor
	for i := range oci.MaxOtherReferrers + 44 {
		d := reg.referrer(t, "app", subj, content.BundleMediaType, fmt.Appendf(nil, `{"sbom":%d}`, i), -1)
		d.Annotations = map[string]string{"dev.sigstore.bundle.predicateType": content.SPDXPredicateType}
		flood = append(flood, d)
	}
	serveIndex(t, reg, fallback, append(flood, published...))

	att, err := oci.FetchEvidence(context.Background(), ref)
	if err != nil {
		t.Fatalf("FetchEvidence: %v", err)
	}
	if len(att.Bundles) != 1 || !bytes.Equal(att.Bundles[0], f.bundle) {
		t.Fatalf("FetchEvidence returned %d provenance candidates, want the provenance: skipped %v", len(att.Bundles), att.Skipped)
	}
	if len(att.Others) != oci.MaxOtherReferrers || !strings.Contains(fmt.Sprint(att.Skipped), fmt.Sprintf("more than %d other bundle referrers", oci.MaxOtherReferrers)) {
		t.Errorf("others %d, skipped %v", len(att.Others), att.Skipped)
	}
	if string(att.Others[0]) != `{"sbom":0}` {
		t.Errorf("first other = %.40q", att.Others[0])
	}

	cheap, err := oci.FetchBundles(context.Background(), ref)
	if err != nil || len(cheap.Bundles) != 1 || len(cheap.Others) != 0 || len(cheap.Skipped) != 0 {
		t.Errorf("FetchBundles = %d bundles, %d others, skipped %v, %v; want the provenance alone", len(cheap.Bundles), len(cheap.Others), cheap.Skipped, err)
	}
}

// The bytes read for one manifest are bounded in all, not only per bundle: 64 referrers of 16 MiB would make a
// caller hold 1 GiB (and the admission controller fetches several images at once). Past MaxFetchedBytes the
// rest are skipped with the reason.
func TestFetchBundlesBoundsTheTotalBytes(t *testing.T) {
	reg, f, ref, subj, fallback, published := publishToHostile(t)
	const size = 12 << 20
	var big []oci.Descriptor
	for i := range 6 { // 72 MiB in all
		blob := bytes.Repeat([]byte{'a' + byte(i)}, size)
		big = append(big, reg.referrer(t, "app", subj, content.BundleMediaType, blob, -1))
	}
	serveIndex(t, reg, fallback, append(published, big...))

	att, err := oci.FetchBundles(context.Background(), ref)
	if err != nil {
		t.Fatalf("FetchBundles: %v", err)
	}
	var total int
	for _, b := range att.Bundles {
		total += len(b)
	}
	if total > oci.MaxFetchedBytes || !bytes.Equal(att.Bundles[0], f.bundle) {
		t.Errorf("FetchBundles held %d bytes in %d bundles, more than %d (or lost the provenance)", total, len(att.Bundles), oci.MaxFetchedBytes)
	}
	if want := fmt.Sprintf("may hold at most %d bytes together", oci.MaxFetchedBytes); !strings.Contains(fmt.Sprint(att.Skipped), want) {
		t.Errorf("skipped %v, want a reason saying %q", att.Skipped, want)
	}
	if len(att.Bundles) != 6 {
		t.Errorf("read %d bundles, want the provenance and 5 of 12 MiB", len(att.Bundles))
	}
}
