package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/ssf-dev/ssf/internal/verify"
)

const vsaType = "https://slsa.dev/verification_summary/v1"

// vsaPredicate is what the tests read of a summary.
type vsaPredicate struct {
	Verifier struct {
		ID string `json:"id"`
	} `json:"verifier"`
	TimeVerified string `json:"timeVerified"`
	ResourceURI  string `json:"resourceUri"`
	Policy       struct {
		URI    string            `json:"uri"`
		Digest map[string]string `json:"digest"`
	} `json:"policy"`
	InputAttestations []struct {
		URI    string            `json:"uri"`
		Digest map[string]string `json:"digest"`
	} `json:"inputAttestations"`
	VerificationResult string   `json:"verificationResult"`
	VerifiedLevels     []string `json:"verifiedLevels"`
	SlsaVersion        string   `json:"slsaVersion"`
}

func readVSA(t *testing.T, path string) (map[string]any, vsaPredicate) {
	t.Helper()
	st := bundlePayload(t, path)
	raw, err := json.Marshal(st["predicate"])
	if err != nil {
		t.Fatal(err)
	}
	var p vsaPredicate
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	return st, p
}

// TestVerifyVSA: after an identity build, ssf verify --policy --vsa collects every statement about the file
// (provenance, the task attestation, both SBOMs), evaluates ssf.verify and writes a summary signed as
// spiffe://TD/verifier that both stock cosigns verify with --type https://slsa.dev/verification_summary/v1; it says
// PASSED with SLSA_BUILD_LEVEL_3 and names each input bundle by digest. A policy that denies exits 1 with its
// message and still writes a FAILED summary, which cosign verifies too; a tampered summary, or one checked under
// another identity, is refused by cosign.
func TestVerifyVSA(t *testing.T) {
	p := identityProject(t)
	if r := p.build("--signer", "identity"); r.code != 0 {
		t.Fatalf("build failed (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	}
	app := filepath.Join(p.out, "app")
	att := filepath.Join(p.out, "attestations")
	tr := filepath.Join(p.dir, "trusted_root.json")
	if r := ssf(t, p.tmp, "trust", "export", "--out", tr); r.code != 0 {
		t.Fatalf("trust export: %d %s", r.code, r.stderr)
	}
	pol := filepath.Join(p.dir, "policy")
	if r := ssf(t, p.tmp, "policy", "init", pol); r.code != 0 {
		t.Fatalf("policy init: %d %s", r.code, r.stderr)
	}
	id := []string{"--certificate-identity-regexp", "^" + identityTD + "/pipeline/test(/task/[^/]+)?$", "--certificate-oidc-issuer", identityIssuer}
	verifier := identityTD + "/verifier"
	cosignVerify := func(t *testing.T, cosign, bundle, identity string) ([]byte, error) {
		return exec.Command(cosign, "verify-blob-attestation", "--bundle", bundle, "--trusted-root", tr,
			"--certificate-identity", identity, "--certificate-oidc-issuer", identityIssuer, "--type", vsaType, app).CombinedOutput()
	}
	cosigns := []struct{ env, name string }{{"SSF_COSIGN", "cosign"}, {"SSF_COSIGN_V3", "cosign-v3.1.2"}}

	passed := filepath.Join(p.dir, "passed.vsa.json")
	r := ssf(t, p.tmp, append([]string{"verify", app, "--policy", pol, "--vsa", passed}, id...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "verified: ") || !strings.Contains(r.stdout, "SLSA_BUILD_LEVEL_3") {
		t.Fatalf("verify --vsa: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "evidence from "+att) || !strings.Contains(r.stderr, "PASSED") {
		t.Errorf("verify --vsa did not say where the evidence came from, or the result:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "another identity") {
		t.Errorf("verify --vsa with the run's and tasks' identities noted a skipped bundle:\n%s", r.stderr)
	}
	// With the run's identity exactly (what the build's summary line prints), the task attestation is skipped as
	// signed by another identity: ssf says so without -v, with the regexp that takes it in.
	exact := []string{"--certificate-identity", identityTD + "/pipeline/test", "--certificate-oidc-issuer", identityIssuer}
	r2 := ssf(t, p.tmp, append([]string{"verify", app, "--policy", pol}, exact...)...)
	wantNote := "1 bundle was skipped as signed by another identity than --certificate-identity " + identityTD + "/pipeline/test (-v lists them)"
	if r2.code != 0 || strings.Contains(r2.stdout, "SSF_TASKS_LEVEL_1") || !strings.Contains(r2.stderr, wantNote) ||
		!strings.Contains(r2.stderr, "--certificate-identity-regexp '^"+regexp.QuoteMeta(identityTD+"/pipeline/test")+"(/task/[^/]+)?$' takes them in too") {
		t.Errorf("verify --policy --certificate-identity (the run's): exit %d, want the note %q and its regexp\n%s%s", r2.code, wantNote, r2.stdout, r2.stderr)
	}
	// The factory's own trusted root, exported, is its own trust: the same levels. Any other root (here the same
	// one, re-indented: it is compared as ssf trust export wrote it) shows SLSA_BUILD_LEVEL_1 only.
	r2 = ssf(t, p.tmp, append([]string{"verify", app, "--policy", pol, "--trusted-root", tr}, id...)...)
	if r2.code != 0 || !strings.Contains(r2.stdout, "SLSA_BUILD_LEVEL_3") {
		t.Errorf("verify --trusted-root (the factory's own): exit %d\n%s%s", r2.code, r2.stdout, r2.stderr)
	}
	var trJSON any
	if data, err := os.ReadFile(tr); err != nil || json.Unmarshal(data, &trJSON) != nil {
		t.Fatalf("reading %s: %v", tr, err)
	}
	otherRoot := filepath.Join(p.dir, "other_root.json")
	if data, err := json.MarshalIndent(trJSON, "", "   "); err != nil || os.WriteFile(otherRoot, data, 0o644) != nil {
		t.Fatal("writing another trusted root")
	}
	r2 = ssf(t, p.tmp, append([]string{"verify", app, "--policy", pol, "--trusted-root", otherRoot}, id...)...)
	if r2.code != 0 || !strings.HasSuffix(strings.TrimSpace(r2.stdout), "levels SLSA_BUILD_LEVEL_1") || !strings.Contains(r2.stderr, "not this factory's trusted root") {
		t.Errorf("verify --trusted-root (another root): exit %d, want levels SLSA_BUILD_LEVEL_1 only\n%s%s", r2.code, r2.stdout, r2.stderr)
	}
	st, pred := readVSA(t, passed)
	if testing.Verbose() {
		j, _ := json.MarshalIndent(st, "", "  ")
		t.Logf("ssf %s\n%s\nsummary:\n%s", strings.Join(append([]string{"verify", app, "--policy", pol, "--vsa", passed}, id...), " "), r.stderr, j)
	}
	if st["predicateType"] != vsaType || pred.VerificationResult != "PASSED" || pred.SlsaVersion != "1.0" ||
		!strings.HasSuffix(pred.Verifier.ID, "/verifier") || pred.ResourceURI != app || pred.TimeVerified == "" {
		t.Errorf("summary = %v %+v", st["predicateType"], pred)
	}
	subjects, _ := json.Marshal(st["subject"])
	appData, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(subjects), digest.FromBytes(appData).Encoded()) {
		t.Errorf("summary subjects %s lack the file's digest", subjects)
	}
	for _, want := range []string{"SLSA_BUILD_LEVEL_3", "SSF_DEPENDENCIES_LEVEL_1", "SSF_SBOM_LEVEL_1", "SSF_TASKS_LEVEL_1"} {
		if !slices.Contains(pred.VerifiedLevels, want) {
			t.Errorf("verifiedLevels %v lack %s", pred.VerifiedLevels, want)
		}
	}
	if !strings.HasPrefix(pred.Policy.URI, "file://") || len(pred.Policy.Digest["sha256"]) != 64 {
		t.Errorf("policy = %+v", pred.Policy)
	}
	// Every input is a bundle of the build, by the digest of its bytes: provenance, compile's attestation, SBOMs.
	var inputs []string
	for _, in := range pred.InputAttestations {
		data, err := os.ReadFile(in.URI)
		if err != nil {
			t.Fatalf("input %s: %v", in.URI, err)
		}
		if in.Digest["sha256"] != digest.FromBytes(data).Encoded() {
			t.Errorf("input %s: digest %v, file is %s", in.URI, in.Digest, digest.FromBytes(data))
		}
		inputs = append(inputs, filepath.Base(in.URI))
	}
	slices.Sort(inputs)
	if want := []string{"app.cdx.sigstore.json", "app.spdx.sigstore.json", "compile.task.sigstore.json", "provenance.sigstore.json"}; !slices.Equal(inputs, want) {
		t.Errorf("inputAttestations = %v, want %v", inputs, want)
	}

	if testing.Verbose() {
		// How long collecting the evidence takes in-process (what the admission controller pays per uncached image,
		// without the registry): four certificate bundles, each chain, SCT, log entry and timestamp checked.
		data, err := os.ReadFile(tr)
		if err != nil {
			t.Fatal(err)
		}
		troot, err := root.NewTrustedRootFromJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		opts := verify.Options{Trusted: verify.CertificateMaterial(troot, verify.Identity{SANRegexp: id[1], Issuer: identityIssuer})}
		paths, err := verify.AttestationBundles(att)
		if err != nil {
			t.Fatal(err)
		}
		const n = 20
		start := time.Now()
		for range n {
			ev, err := verify.FileEvidence(context.Background(), app, paths, opts)
			if err != nil || len(ev.Statements) != 4 {
				t.Fatalf("FileEvidence: %v", err)
			}
		}
		t.Logf("FileEvidence over %d bundles (%d about app): %v each", len(paths), 4, time.Since(start)/n)
	}

	// A policy that denies: exit 1, its message, and a FAILED summary.
	deny := filepath.Join(p.dir, "deny")
	if err := os.MkdirAll(deny, 0o755); err != nil {
		t.Fatal(err)
	}
	rego := `package ssf.verify

deny contains msg if {
	some s in input.statements
	s.predicateType == "https://ssf.dev/attestations/task/v1"
	s.predicate.task == "compile"
	msg := sprintf("%s was made by task %s, signed by %s: compile outputs are not released", [input.artifact.uri, s.predicate.task, s.signer.identity])
}
`
	if err := os.WriteFile(filepath.Join(deny, "verify.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	failed := filepath.Join(p.dir, "failed.vsa.json")
	r = ssf(t, p.tmp, append([]string{"verify", app, "--policy", deny, "--vsa", failed}, id...)...)
	wantMsg := app + " was made by task compile, signed by " + identityTD + "/pipeline/test/task/compile: compile outputs are not released"
	if r.code != 1 || !strings.Contains(r.stderr, "policy ssf.verify denied: "+wantMsg) || strings.Contains(r.stdout, "verified") {
		t.Fatalf("verify under a denying policy: exit %d, want 1 with %q\n%s%s", r.code, wantMsg, r.stdout, r.stderr)
	}
	_, fpred := readVSA(t, failed)
	if fpred.VerificationResult != "FAILED" || !slices.Equal(fpred.VerifiedLevels, []string{"FAILED"}) || fpred.Policy.Digest["sha256"] == pred.Policy.Digest["sha256"] {
		t.Errorf("failed summary = %+v", fpred)
	}
	// Without --vsa the denial is the same, and nothing is written.
	if r := ssf(t, p.tmp, append([]string{"verify", app, "--policy", deny}, id...)...); r.code != 1 || !strings.Contains(r.stderr, wantMsg) {
		t.Errorf("verify --policy (no --vsa): exit %d\n%s", r.code, r.stderr)
	}

	good, err := os.ReadFile(passed)
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(p.dir, "tampered.vsa.json")
	if err := os.WriteFile(tampered, tamper(t, good, "dsseEnvelope.payload"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range cosigns {
		t.Run(v.name, func(t *testing.T) {
			cosign := interopTool(t, v.env, v.name)
			for _, b := range []string{passed, failed} {
				if out, err := cosignVerify(t, cosign, b, verifier); err != nil {
					t.Errorf("cosign refused %s: %v\n%s", filepath.Base(b), err, out)
				}
			}
			if out, err := cosignVerify(t, cosign, tampered, verifier); err == nil {
				t.Errorf("cosign accepted a tampered summary:\n%s", out)
			}
			if out, err := cosignVerify(t, cosign, passed, identityTD+"/pipeline/test"); err == nil {
				t.Errorf("cosign accepted the summary as signed by the pipeline:\n%s", out)
			}
		})
	}
}
