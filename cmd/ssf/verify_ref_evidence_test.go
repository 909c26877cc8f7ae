package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
	ssfregistry "github.com/ssf-dev/ssf/internal/registry"
)

// rawRefManifest is a manifest pushed as its bytes.
type rawRefManifest struct{ raw []byte }

func (m rawRefManifest) RawManifest() ([]byte, error) { return m.raw, nil }
func (m rawRefManifest) MediaType() (types.MediaType, error) {
	return types.OCIManifestSchema1, nil
}

// attachReferrer pushes bundle as a referrer of ref annotated with predicateType, in ssf publish's layout.
func attachReferrer(t *testing.T, ref name.Digest, bundle []byte, predicateType string) {
	t.Helper()
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, err := oci.ReferrerManifest(oci.Descriptor{MediaType: string(desc.MediaType), Digest: digest.Digest(desc.Digest.String()), Size: desc.Size},
		bundle, predicateType, time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	for _, blob := range [][]byte{[]byte("{}"), bundle} {
		if err := remote.WriteLayer(ref.Context(), static.NewLayer(blob, types.MediaType("application/octet-stream"))); err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.Put(ref.Context().Digest(digest.FromBytes(m).String()), rawRefManifest{m}); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyReferenceSeesEveryStatement: `ssf verify REF --policy` of a keyless build published with `ssf build
// --publish` gives ssf.verify the same evidence as the build's files: the provenance, the SBOMs (which name the
// files artifact) and the task attestation (about the build's files and log, linked by the verified provenance,
// linkedBy "provenance"), each with its signer. Another build's task attestation and SBOM, signed by the same
// factory and attached to this manifest, are not in it: the verified provenance does not name their files.
// Before, only the provenance reached the policy for a reference.
func TestVerifyReferenceSeesEveryStatement(t *testing.T) {
	p := newProject(t, simpleTask)
	reg, err := ssfregistry.New(t.TempDir(), ssfregistry.WithInsecureLocalPushUnsafe(), ssfregistry.WithAnonymousPull(true))
	if err != nil {
		t.Fatal(err)
	}
	rs := httptest.NewServer(reg)
	defer rs.Close()
	host := strings.TrimPrefix(rs.URL, "http://")
	if r := p.build("--publish", host+"/team/app:v1"); r.code != 0 {
		t.Fatalf("build --publish: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var manifest string
	for _, s := range p.statement()["subject"].([]any) {
		if s := s.(map[string]any); s["name"] == oci.ArtifactSubject {
			manifest = "sha256:" + s["digest"].(map[string]any)["sha256"].(string)
		}
	}
	ref, err := name.NewDigest(host+"/team/app@"+manifest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}

	// Another build of the same pipeline, by the same factory, of another source: its statements verify, but are
	// about other files.
	p.files["README"] = "another source\n"
	p.write()
	other := filepath.Join(p.dir, "other-out")
	if r := ssf(t, p.tmp, "build", "-f", p.pipeline, "--source", p.src, "--out", other); r.code != 0 {
		t.Fatalf("second build: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for file, pt := range map[string]string{"make" + content.TaskBundleSuffix: content.TaskPredicateType, "bin/readme" + content.SPDXBundleSuffix: content.SPDXPredicateType} {
		b, err := os.ReadFile(filepath.Join(other, "attestations", file))
		if err != nil {
			t.Fatal(err)
		}
		attachReferrer(t, ref, b, pt)
	}

	pol := writePolicy(t, map[string]string{"verify.rego": `package ssf.verify

deny contains msg if {
	some s in input.statements
	msg := sprintf("saw %s linked=%s by %s about %s", [s.predicateType, object.get(s, "linkedBy", "-"), s.signer.identity, concat(",", sort([x.name | some x in s.subject]))])
}
`})
	r := ssf(t, p.tmp, "verify", ref.String(), "--policy", pol, "--certificate-identity-regexp", "^"+runIdentity+"(/task/[^/]+)?$", "--certificate-oidc-issuer", identityIssuer)
	if r.code != 1 {
		t.Fatalf("verify %s --policy: exit %d, want 1 (the policy denies with what it saw)\n%s%s", ref, r.code, r.stdout, r.stderr)
	}
	out := r.stdout + r.stderr
	for _, want := range []string{
		"saw https://slsa.dev/provenance/v1 linked=- by " + runIdentity + " about",
		"saw https://ssf.dev/attestations/task/v1 linked=provenance by " + runIdentity + "/task/make about artifact,attestations/logs/make.log,bin/readme",
		"saw https://spdx.dev/Document linked=- by " + runIdentity + " about artifact,oci://artifact",
		"saw https://spdx.dev/Document linked=- by " + runIdentity + " about bin/readme,oci://artifact",
		"saw https://cyclonedx.org/bom linked=- by " + runIdentity + " about artifact,oci://artifact",
		"saw https://cyclonedx.org/bom linked=- by " + runIdentity + " about bin/readme,oci://artifact",
	} {
		if strings.Count(out, want) != 1 {
			t.Errorf("the policy did not see, once: %s\n%s", want, out)
		}
	}
	if n := strings.Count(out, "saw "); n != 6 {
		t.Errorf("the policy saw %d statements, want 6 (the other build's are not about this artifact)\n%s", n, out)
	}
}
