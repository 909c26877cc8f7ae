package oci_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

// writeSBOM signs a minimal SBOM statement of predicateType about the output and the artifact with key, and
// writes it where a build puts it.
func (f *fixture) writeSBOM(t *testing.T, key *ecdsa.PrivateKey, output, suffix, predicateType string) {
	t.Helper()
	art := f.subject(oci.ArtifactSubject)
	st := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":%q,"digest":{"sha256":%q}},{"name":"oci://artifact","digest":{"sha256":%q}}],"predicateType":%q,"predicate":{"name":"sbom"}}`,
		output, digest.FromBytes(f.files[output]).Encoded(), art.Digest.Encoded(), predicateType)
	b, err := sign.NewSigner(key).Statement(context.Background(), []byte(st))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(f.dir, "attestations", output+suffix)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) attestationVerifier() func(context.Context, digest.Digest, string, []byte) error {
	return func(ctx context.Context, d digest.Digest, pt string, b []byte) error {
		_, err := verify.Attestation(ctx, d, b, verify.KeyMaterial(&f.key.PublicKey), pt)
		return err
	}
}

// TestPublishAttachesSBOMs: each output's signed SBOMs go up as referrers of the artifact, marked with their
// predicate type, and do not count as provenance candidates for a verifier.
func TestPublishAttachesSBOMs(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, map[string][]byte{"hello": []byte("hello\n"), "tool": []byte("tool\n")}, nil)
	for _, o := range []string{"hello", "tool"} {
		f.writeSBOM(t, f.key, o, content.SPDXBundleSuffix, content.SPDXPredicateType)
		f.writeSBOM(t, f.key, o, content.CycloneDXBundleSuffix, content.CycloneDXPredicateType)
	}
	host, _ := newRegistry(t, true)
	repo, _, err := oci.ParseTarget(host + "/team/app")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo,
		Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()})
	if err != nil {
		t.Fatal(err)
	}
	if len(pub.Referrers) != 5 {
		t.Fatalf("pushed %d referrers, want 5 (the provenance and four SBOMs): %v", len(pub.Referrers), pub.Referrers)
	}
	count := map[string]int{}
	for _, r := range pub.Referrers {
		d, err := remote.Get(mustRef(t, r))
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Annotations map[string]string `json:"annotations"`
			Subject     *struct {
				Digest string `json:"digest"`
			} `json:"subject"`
		}
		if err := json.Unmarshal(d.Manifest, &m); err != nil {
			t.Fatal(err)
		}
		count[m.Annotations["dev.sigstore.bundle.predicateType"]]++
		if m.Subject == nil || m.Subject.Digest != string(f.subject(oci.ArtifactSubject).Digest) {
			t.Errorf("referrer %s has subject %v, want the artifact", r, m.Subject)
		}
	}
	if count[content.SPDXPredicateType] != 2 || count[content.CycloneDXPredicateType] != 2 || count["https://slsa.dev/provenance/v1"] != 1 {
		t.Errorf("referrers by predicate type: %v", count)
	}
	att, err := oci.FetchBundles(ctx, pub.Artifact)
	if err != nil {
		t.Fatal(err)
	}
	if len(att.Bundles) != 1 || len(att.Skipped) != 0 {
		t.Errorf("FetchBundles returned %d bundles and skipped %v; want only the provenance", len(att.Bundles), att.Skipped)
	}
}

// TestPublishRefusesUnverifiedSBOM: an SBOM signed by another key (or about other bytes) stops the publish before
// anything is pushed.
func TestPublishRefusesUnverifiedSBOM(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, map[string][]byte{"hello": []byte("hello\n")}, nil)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.writeSBOM(t, other, "hello", content.SPDXBundleSuffix, content.SPDXPredicateType)
	host, log := newRegistry(t, true)
	repo, _, _ := oci.ParseTarget(host + "/team/app")
	_, err = oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo,
		Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()})
	if err == nil || !strings.Contains(err.Error(), "attestations/hello.spdx.sigstore.json") {
		t.Fatalf("Publish() = %v, want a refusal naming the SBOM bundle", err)
	}
	if n := log.count("PUT") + log.count("POST") + log.count("PATCH"); n != 0 {
		t.Errorf("%d writes reached the registry before the refusal", n)
	}
}

// TestPublishRefusesAnotherOutputsSBOM: every SBOM of a build names the artifact among its subjects, so one
// output's SBOM copied over another's (hiding the one that flags a module) still verifies for the artifact. It
// must also verify for the output whose name it bears, or nothing is pushed.
func TestPublishRefusesAnotherOutputsSBOM(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, map[string][]byte{"hello": []byte("hello\n"), "tool": []byte("tool\n")}, nil)
	for _, o := range []string{"hello", "tool"} {
		f.writeSBOM(t, f.key, o, content.SPDXBundleSuffix, content.SPDXPredicateType)
	}
	hello, err := os.ReadFile(filepath.Join(f.dir, "attestations", "hello"+content.SPDXBundleSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "attestations", "tool"+content.SPDXBundleSuffix), hello, 0o644); err != nil {
		t.Fatal(err)
	}
	host, log := newRegistry(t, true)
	repo, _, _ := oci.ParseTarget(host + "/team/app")
	_, err = oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo,
		Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()})
	if err == nil || !strings.Contains(err.Error(), "attestations/tool.spdx.sigstore.json") || !strings.Contains(err.Error(), `is not an SBOM of output "tool"`) {
		t.Fatalf("Publish() = %v, want a refusal naming tool's SBOM bundle as not about tool", err)
	}
	if n := log.count("PUT") + log.count("POST") + log.count("PATCH"); n != 0 {
		t.Errorf("%d writes reached the registry before the refusal", n)
	}
}

// TestPublishRequiresTheSBOMsTheProvenanceLists: a build lists its SBOM bundles, with their digests, among the
// provenance's byproducts. Whoever holds OUT must not publish without one (deleting the SBOM that flags a module
// not ingested) or with another one the factory signed for the same output (an earlier build's).
func TestPublishRequiresTheSBOMsTheProvenanceLists(t *testing.T) {
	ctx := context.Background()
	sbomKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// signSBOM signs an SBOM statement about output and the artifact; ECDSA signatures differ every time, so
	// each call gives a bundle of another digest, as another build of the same output would.
	signSBOM := func(subjects []provenance.Subject, output, predicateType string) []byte {
		var art, out digest.Digest
		for _, s := range subjects {
			switch s.Name {
			case oci.ArtifactSubject:
				art = s.Digest
			case output:
				out = s.Digest
			}
		}
		st := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":%q,"digest":{"sha256":%q}},{"name":"oci://artifact","digest":{"sha256":%q}}],"predicateType":%q,"predicate":{"name":"sbom"}}`,
			output, out.Encoded(), art.Encoded(), predicateType)
		bundle, err := sign.NewSigner(sbomKey).Statement(ctx, []byte(st))
		if err != nil {
			t.Fatal(err)
		}
		return bundle
	}
	kinds := []struct{ suffix, pt string }{
		{content.SPDXBundleSuffix, content.SPDXPredicateType}, {content.CycloneDXBundleSuffix, content.CycloneDXPredicateType},
	}
	listed := map[string][]byte{}
	var subjects []provenance.Subject
	f := newFixture(t, map[string][]byte{"hello": []byte("hello\n"), "tool": []byte("tool\n")}, func(b *provenance.Build) {
		subjects = b.Subjects
		for _, o := range []string{"hello", "tool"} {
			for _, k := range kinds {
				rel := "attestations/" + o + k.suffix
				listed[rel] = signSBOM(b.Subjects, o, k.pt)
				b.Byproducts = append(b.Byproducts, provenance.ResourceDescriptor{Name: rel,
					MediaType: content.BundleMediaType, Digest: provenance.DigestSet(digest.FromBytes(listed[rel]))})
			}
		}
	})
	write := func(rel string, b []byte) {
		p := filepath.Join(f.dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	verifyAtt := func(ctx context.Context, d digest.Digest, pt string, b []byte) error {
		_, err := verify.Attestation(ctx, d, b, verify.KeyMaterial(&sbomKey.PublicKey), pt)
		return err
	}
	for _, tc := range []struct {
		name   string
		change func()
		want   string // "" for success
	}{
		{"as listed", func() {}, ""},
		{"another signed SBOM", func() {
			write("attestations/hello"+content.SPDXBundleSuffix, signSBOM(subjects, "hello", content.SPDXPredicateType))
		}, "attestations/hello.spdx.sigstore.json"},
		{"deleted", func() {
			os.Remove(filepath.Join(f.dir, "attestations", "tool"+content.CycloneDXBundleSuffix))
		}, "attestations/tool.cdx.sigstore.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for rel, b := range listed {
				write(rel, b)
			}
			tc.change()
			host, log := newRegistry(t, true)
			repo, _, _ := oci.ParseTarget(host + "/team/app")
			pub, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo,
				Verify: f.verifier(), VerifyAttestation: verifyAtt})
			if tc.want == "" {
				if err != nil || len(pub.Referrers) != 5 {
					t.Fatalf("Publish() = %v, %v; want the provenance and four SBOMs pushed", pub, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "provenance") {
				t.Fatalf("Publish() = %v, want a refusal naming %s and the provenance", err, tc.want)
			}
			if n := log.count("PUT") + log.count("POST") + log.count("PATCH"); n != 0 {
				t.Errorf("%d writes reached the registry before the refusal", n)
			}
		})
	}
}
