package vsa_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/policy"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
	"github.com/ssf-dev/ssf/internal/vsa"
)

// signedProvenance is a key-signed provenance bundle of a sandboxed build whose one output is art, made by builder.
func signedProvenance(t *testing.T, key *ecdsa.PrivateKey, art []byte, builder string, iso provenance.TaskIsolation) []byte {
	t.Helper()
	st, err := provenance.Statement(provenance.Build{
		BuilderID: builder, InvocationID: "run-1", PipelineName: "app", PipelineDigest: digest.FromString("pipeline"),
		StartedOn: time.Unix(1, 0), FinishedOn: time.Unix(2, 0), SourceURI: "git+https://example.com/app",
		Internal: map[string]string{"runtime": "runc version 1.1.5", "uid": "1879048192", "network": "none", "seccomp": "true"},
		Tasks:    map[string]provenance.TaskIsolation{"build": iso},
		Dependencies: []provenance.ResourceDescriptor{
			{Name: provenance.SourceDependencyName, URI: "git+https://example.com/app", Digest: provenance.Digest{"gitCommit": strings.Repeat("1", 40)}},
			{Name: "builder", URI: "oci:busybox", Digest: provenance.Digest{"sha256": strings.Repeat("2", 64)}},
		},
		Subjects: []provenance.Subject{{Name: "app", Digest: digest.FromBytes(art)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := sign.NewSigner(key).Statement(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEvidenceLevelsAndDefaultPolicy: from signed bundles through verify.Collect to the levels and to the default
// policy's ssf.verify decision, as ssf verify --vsa computes them: a sandboxed build from an ssf factory is L3 and
// allowed; the same build with a capability left to a task is L2; another builder id is denied with the default
// rule's message; provenance signed by a key that is not trusted is no evidence at all.
func TestEvidenceLevelsAndDefaultPolicy(t *testing.T) {
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Compile(ctx, "embedded:default", policy.DefaultFiles())
	if err != nil {
		t.Fatal(err)
	}
	art := []byte("app")
	sandboxed := provenance.TaskIsolation{Network: "none", ReadOnlyRoot: true, HostUID: 1879048192, HostGID: 1879048192,
		Capabilities: []string{}, NoNewPrivileges: true, SeccompProfile: provenance.Digest{"sha256": strings.Repeat("a", 64)},
		MemoryBytes: 1 << 30, Pids: 1024, TimeoutSeconds: 60, Runtime: "runc", RuntimeVersion: "runc version 1.1.5"}
	withCap := sandboxed
	withCap.Capabilities = []string{"CAP_NET_RAW"}
	const factory = "https://ssf.dev/factory/build-1"
	for _, tc := range []struct {
		name    string
		signer  *ecdsa.PrivateKey
		builder string
		iso     provenance.TaskIsolation
		levels  []string
		denial  string // "" = allowed
	}{
		{"sandboxed", key, factory, sandboxed, []string{vsa.BuildLevel3, vsa.DependenciesLevel}, ""},
		{"a task kept a capability", key, factory, withCap, []string{vsa.BuildLevel2, vsa.DependenciesLevel}, ""},
		{"another builder", key, "https://github.com/actions/runner", sandboxed, []string{vsa.BuildLevel3, vsa.DependenciesLevel}, "has no verified SLSA provenance from a trusted ssf builder"},
		{"untrusted key", other, factory, sandboxed, nil, "has no verified SLSA provenance from a trusted ssf builder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := signedProvenance(t, tc.signer, art, tc.builder, tc.iso)
			ev, err := verify.Collect(ctx, "out/app", digest.FromBytes(art), []verify.EvidenceBundle{{Source: "provenance.sigstore.json", Data: b}},
				verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)})
			if err != nil {
				t.Fatal(err)
			}
			if got := vsa.Levels(ev.PolicyStatements(), ev.Digest); !slices.Equal(got, tc.levels) {
				t.Errorf("levels = %v, want %v", got, tc.levels)
			}
			d, err := set.Evaluate(ctx, policy.Verify, ev.VerifyInput())
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.denial == "" && !d.Allowed():
				t.Errorf("denied: %v", d.Denials)
			case tc.denial != "" && (len(d.Denials) != 1 || !strings.Contains(d.Denials[0], tc.denial) || !strings.Contains(d.Denials[0], "out/app")):
				t.Errorf("denials = %v, want one naming out/app and %q", d.Denials, tc.denial)
			}
		})
	}
}

// TestLevelsOfTheVerdictsProvenance: the levels of ssf verify --vsa come from the provenance the verdict rests on.
// Two key-signed provenances of the same bytes: one from the builder the caller pins (--builder-id), whose task
// kept a capability (L2), and one from another builder, sandboxed (L3). The verdict rests on the first; the
// summary said SLSA_BUILD_LEVEL_3, lent by the provenance that failed the caller's expectation.
func TestLevelsOfTheVerdictsProvenance(t *testing.T) {
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	art := []byte("app")
	sandboxed := provenance.TaskIsolation{Network: "none", ReadOnlyRoot: true, HostUID: 1879048192, HostGID: 1879048192,
		Capabilities: []string{}, NoNewPrivileges: true, SeccompProfile: provenance.Digest{"sha256": strings.Repeat("a", 64)}}
	withCap := sandboxed
	withCap.Capabilities = []string{"CAP_NET_RAW"}
	const pinned = "https://ssf.dev/factory/build-1"
	bundles := []verify.EvidenceBundle{
		{Source: "elsewhere.sigstore.json", Data: signedProvenance(t, key, art, "https://ssf.dev/factory/elsewhere", sandboxed)},
		{Source: "provenance.sigstore.json", Data: signedProvenance(t, key, art, pinned, withCap)},
	}
	ev, err := verify.Collect(ctx, "out/app", digest.FromBytes(art), bundles, verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), BuilderID: pinned})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Provenance == nil || ev.Provenance.Provenance.BuilderID != pinned || len(ev.Statements) != 2 {
		t.Fatalf("verdict %+v (%v), %d statements", ev.Provenance, ev.ProvenanceErr, len(ev.Statements))
	}
	if got, want := vsa.Levels(ev.LevelStatements(), ev.Digest), []string{vsa.BuildLevel2, vsa.DependenciesLevel}; !slices.Equal(got, want) {
		t.Errorf("levels = %v, want %v (the pinned builder's provenance)", got, want)
	}
	// Without a verdict no provenance lends a level.
	ev, err = verify.Collect(ctx, "out/app", digest.FromBytes(art), bundles, verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), BuilderID: "https://other"})
	if err != nil {
		t.Fatal(err)
	}
	if got := vsa.Levels(ev.LevelStatements(), ev.Digest); ev.Provenance != nil || len(got) != 0 {
		t.Errorf("without a verdict: levels %v", got)
	}
}
