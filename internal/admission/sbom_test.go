package admission_test

import (
	"context"
	"encoding/json"
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
	"github.com/ssf-dev/ssf/internal/policy"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sign"
)

// attachAs pushes bundle as a referrer of ref annotated with predicateType, as ssf publish attaches an SBOM.
func attachAs(t testing.TB, ref name.Digest, bundle []byte, predicateType string) {
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
	repo := ref.Context()
	for _, blob := range [][]byte{[]byte("{}"), bundle} {
		if err := remote.WriteLayer(repo, static.NewLayer(blob, types.MediaType("application/octet-stream"))); err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.Put(repo.Digest(digest.FromBytes(m).String()), rawManifest{raw: m, mt: types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
}

// sbom signs an SPDX statement about image with key's factory and attaches it as ssf publish does.
func (f *factory) sbom(t testing.TB, image string) {
	t.Helper()
	ref, err := name.NewDigest(image, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	st, err := json.Marshal(map[string]any{
		"_type":         provenance.StatementType,
		"subject":       []map[string]any{{"name": ref.Context().Name(), "digest": map[string]string{"sha256": strings.TrimPrefix(ref.DigestStr(), "sha256:")}}},
		"predicateType": content.SPDXPredicateType,
		"predicate":     map[string]any{"spdxVersion": "SPDX-2.3", "name": "app"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := sign.NewSigner(f.key).Statement(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	attachAs(t, ref, b, content.SPDXPredicateType)
}

// TestDeployPolicySeesSBOMs: ssf.deploy reads the image's SBOM referrers, which ssf publish attaches with another
// predicate type annotation than provenance: a policy that requires an SPDX SBOM denies an image without one and
// admits one with one. Before, the admission controller fetched the provenance referrers only, and denied both.
func TestDeployPolicySeesSBOMs(t *testing.T) {
	w := newWorld(t)
	with := pushImage(t, w.reg.host, "team/with-sbom", "v1")
	w.fac.sign(t, with, nil)
	w.fac.sbom(t, with)
	// An SBOM signed by another key does not count.
	forged := pushImage(t, w.reg.host, "team/forged-sbom", "v1")
	w.fac.sign(t, forged, nil)
	newFactory(t).sbom(t, forged)

	set, err := policy.Compile(context.Background(), "test", append(policy.DefaultFiles(), policy.File{Name: "sbom.rego", Data: []byte(`package ssf.deploy

deny contains msg if {
	not has_spdx
	msg := sprintf("no SPDX SBOM for %s", [input.artifact.digest])
}

has_spdx if {
	some s in input.statements
	s.predicateType == "https://spdx.dev/Document"
}
`)}))
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, w.fac.trust(t), set)
	for _, tc := range []struct {
		image   string
		allowed bool
	}{{w.good, false}, {forged, false}, {with, true}} {
		rv, _, body := post(t, h, "/validate", reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + tc.image}, nil, nil))))
		if rv == nil {
			t.Fatalf("%s: no review: %s", tc.image, body)
		}
		if rv.Response.Allowed != tc.allowed {
			t.Errorf("%s: allowed = %v, want %v: %s", tc.image, rv.Response.Allowed, tc.allowed, body)
			continue
		}
		_, dg, _ := strings.Cut(tc.image, "@")
		if !tc.allowed && !strings.Contains(rv.Response.Result.Message, "policy ssf.deploy: no SPDX SBOM for "+dg) {
			t.Errorf("%s: denial %q does not name the missing SBOM", tc.image, rv.Response.Result.Message)
		}
	}
}
