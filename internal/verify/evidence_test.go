package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/verify"
)

// TestCollect: every statement about the artifact that verifies is returned with its signer (the key's
// fingerprint) and bundle digest; a statement about another artifact, one signed by another key and a bundle that
// is not JSON are skipped with their reasons; the provenance verdict applies the caller's expectations.
func TestCollect(t *testing.T) {
	key, other := newKey(t), newKey(t)
	art, art2 := []byte("artifact"), []byte("another")
	artD := digest.FromBytes(art)
	st, err := provenance.Statement(testBuild(art2, art))
	if err != nil {
		t.Fatal(err)
	}
	prov := signStatement(t, key, st)
	sbom := signStatement(t, key, sbomStatement(sbomType, artD))
	elsewhere := signStatement(t, key, sbomStatement(sbomType, digest.FromBytes(art2)))
	forged := signStatement(t, other, sbomStatement(sbomType, artD))
	bundles := []verify.EvidenceBundle{{"prov", prov}, {"sbom", sbom}, {"elsewhere", elsewhere}, {"forged", forged}, {"junk", []byte("{")}}
	fp, err := verify.KeyFingerprint(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	ev, err := verify.Collect(ctx, "out/1", artD, bundles, verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Statements) != 2 || ev.Statements[0].PredicateType != provenance.PredicateType || ev.Statements[1].PredicateType != sbomType {
		t.Fatalf("statements = %+v", ev.Statements)
	}
	for i, s := range ev.Statements {
		if s.Signer.Key != fp || s.Signer.Identity != "" || s.Bundle != digest.FromBytes(bundles[i].Data) || s.Source != bundles[i].Source {
			t.Errorf("statement %d: signer %+v bundle %s source %q, want key %s", i, s.Signer, s.Bundle, s.Source, fp)
		}
	}
	if ev.Provenance == nil || ev.ProvenanceErr != nil || ev.Provenance.Subject.Digest != artD {
		t.Errorf("provenance verdict = %+v, %v", ev.Provenance, ev.ProvenanceErr)
	}
	var reasons []string
	for _, s := range ev.Skipped {
		reasons = append(reasons, s.Error())
	}
	got := strings.Join(reasons, "\n")
	for _, want := range []string{"elsewhere: not a subject", "forged: ", "junk: "} {
		if !strings.Contains(got, want) {
			t.Errorf("skipped:\n%s\nwant a line starting %q", got, want)
		}
	}
	if len(ev.Skipped) != 3 {
		t.Errorf("%d skipped, want 3:\n%s", len(ev.Skipped), got)
	}
	in := ev.VerifyInput()
	if in.Artifact.URI != "out/1" || in.Artifact.Digest != string(artD) || len(in.Statements) != 2 || in.Statements[1].Signer.Key != fp {
		t.Errorf("VerifyInput() = %+v", in)
	}

	// An expectation the provenance does not meet: the statements stay, the verdict fails.
	ev, err = verify.Collect(ctx, "out/1", artD, bundles, verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), BuilderID: "https://elsewhere"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Provenance != nil || !errors.Is(ev.ProvenanceErr, verify.ErrVerification) || !strings.Contains(ev.ProvenanceErr.Error(), "builder id") || len(ev.Statements) != 2 {
		t.Errorf("with a wrong builder id: provenance %v, err %v, %d statements", ev.Provenance, ev.ProvenanceErr, len(ev.Statements))
	}

	// With another key nothing verifies.
	ev, err = verify.Collect(ctx, "out/1", artD, bundles, verify.Options{Trusted: verify.KeyMaterial(&other.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Statements) != 1 || ev.Statements[0].Source != "forged" || ev.Provenance != nil {
		t.Errorf("with the other key: %+v", ev.Statements)
	}
	// Why the provenance is missing says why its bundle did not verify.
	if err := ev.ProvenanceErr; !errors.Is(err, verify.ErrNotSignedByKey) || !strings.Contains(err.Error(), "prov: ") {
		t.Errorf("with the other key, the provenance error is %v", err)
	}

	// The same bundle twice is one statement.
	ev, err = verify.Collect(ctx, "out/1", artD, []verify.EvidenceBundle{{"a", sbom}, {"b", sbom}}, verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Statements) != 1 || len(ev.Skipped) != 1 || !strings.Contains(ev.Skipped[0].Error(), "b: the same bundle as a") {
		t.Errorf("a bundle given twice: %d statements, skipped %v", len(ev.Statements), ev.Skipped)
	}
	// The same bundle re-indented is other bytes that verify as well (a bundle's JSON is not what is signed): still
	// one statement, so a policy counting statements counts what was signed, not copies of it.
	var indented bytes.Buffer
	if err := json.Indent(&indented, sbom, "", "  "); err != nil {
		t.Fatal(err)
	}
	ev, err = verify.Collect(ctx, "out/1", artD, []verify.EvidenceBundle{{"a", sbom}, {"b", indented.Bytes()}, {"p", prov}}, verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Statements) != 2 || len(ev.Skipped) != 1 || !strings.Contains(ev.Skipped[0].Error(), "b: the same statement, signed by the same signer, as a") {
		t.Errorf("a bundle re-indented: %d statements, skipped %v", len(ev.Statements), ev.Skipped)
	}
}

// FuzzCollect: any bytes given as a bundle are skipped or yield a statement that names the artifact and the trusted
// key as its signer; Collect never fails or panics on a bundle.
func FuzzCollect(f *testing.F) {
	key := newKey(f)
	art := []byte("artifact")
	artD := digest.FromBytes(art)
	st, err := provenance.Statement(testBuild(art))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signStatement(f, key, st))
	f.Add(signStatement(f, key, sbomStatement(sbomType, artD)))
	f.Add([]byte(`{"dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[]}}`))
	f.Add([]byte("{"))
	fp, err := verify.KeyFingerprint(&key.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	opts := verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := verify.Collect(context.Background(), "artifact", artD, []verify.EvidenceBundle{{Source: "fuzz", Data: b}}, opts)
		if err != nil {
			t.Fatalf("Collect failed on a bundle: %v", err)
		}
		if len(ev.Statements)+len(ev.Skipped) != 1 {
			t.Fatalf("%d statements and %d skipped for one bundle", len(ev.Statements), len(ev.Skipped))
		}
		for _, s := range ev.Statements {
			named := false
			for _, sub := range s.Subject {
				named = named || sub.Digest["sha256"] == artD.Encoded()
			}
			if !named || s.Signer.Key != fp || s.Signer.Identity != "" {
				t.Fatalf("statement %+v", s)
			}
		}
	})
}

// TestFileEvidenceBoundsBytes: the bundles of a file are read within MaxEvidenceBytes together. Sparse files of
// MaxBundleSize each (no disk at all) once made ssf verify hold them all in memory before verifying any (300 of
// them: 6 GiB; the 4096 allowed: 64 GiB); now more than the bound is bad input, naming it, and a bundle about
// another artifact is let go when read and listed as skipped.
func TestFileEvidenceBoundsBytes(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	art := filepath.Join(dir, "app")
	if err := os.WriteFile(art, []byte("artifact"), 0o644); err != nil {
		t.Fatal(err)
	}
	artD := digest.FromBytes([]byte("artifact"))
	st, err := provenance.Statement(testBuild([]byte("artifact")))
	if err != nil {
		t.Fatal(err)
	}
	prov := filepath.Join(dir, "provenance.sigstore.json")
	elsewhere := filepath.Join(dir, "other.sigstore.json")
	if err := os.WriteFile(prov, signStatement(t, key, st), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(elsewhere, signStatement(t, key, sbomStatement(sbomType, digest.FromBytes([]byte("other")))), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}
	ev, err := verify.FileEvidence(context.Background(), art, []string{elsewhere, prov}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Digest != artD || ev.Provenance == nil || len(ev.Statements) != 1 || len(ev.Skipped) != 1 ||
		!errors.Is(ev.Skipped[0].Reason, verify.ErrNotASubject) || ev.Skipped[0].Source != elsewhere {
		t.Fatalf("evidence: %d statements, skipped %v, provenance %v", len(ev.Statements), ev.Skipped, ev.ProvenanceErr)
	}

	paths := []string{prov}
	for i := 0; int64(i)*verify.MaxBundleSize <= verify.MaxEvidenceBytes; i++ {
		p := filepath.Join(dir, fmt.Sprintf("sparse%d.sigstore.json", i))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(verify.MaxBundleSize); err != nil {
			t.Fatal(err)
		}
		f.Close()
		paths = append(paths, p)
	}
	_, err = verify.FileEvidence(context.Background(), art, paths, opts)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("more than %d bytes together", verify.MaxEvidenceBytes)) {
		t.Fatalf("FileEvidence over %d sparse bundles of %d bytes: %v", len(paths)-1, verify.MaxBundleSize, err)
	}
}
