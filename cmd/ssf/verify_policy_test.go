package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
	"github.com/ssf-dev/ssf/internal/vsa"
)

// TestVerifyPolicyKey: a key-signed build verified with --policy and --vsa-signer key, as a file and as a
// published manifest (its referrers are the evidence): the summary is signed by the factory key (stock cosign
// verifies the file's), names the manifest digest for a reference, and a build key-signed has no task
// attestations, so no SSF_TASKS level. Bad usage exits 2 naming what is wrong, before anything is written.
func TestVerifyPolicyKey(t *testing.T) {
	p := newProject(t, simpleTask)
	if r := p.build("--signer", "key"); r.code != 0 {
		t.Fatalf("build failed (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	}
	pub := filepath.Join(p.dir, "provenance.pub")
	r := ssf(t, p.tmp, "keys", "public")
	if r.code != 0 {
		t.Fatalf("ssf keys public: exit %d\n%s", r.code, r.stderr)
	}
	if err := os.WriteFile(pub, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(p.dir, "policy")
	if r := ssf(t, p.tmp, "policy", "init", pol); r.code != 0 {
		t.Fatalf("policy init: %d %s", r.code, r.stderr)
	}
	var file string
	for _, s := range p.statement()["subject"].([]any) {
		if name := s.(map[string]any)["name"].(string); !strings.HasPrefix(name, "oci://") {
			file = filepath.Join(p.out, name)
			break
		}
	}

	out := filepath.Join(p.dir, "file.vsa.json")
	r = ssf(t, p.tmp, "verify", file, "--key", pub, "--policy", pol, "--vsa", out, "--vsa-signer", "key", "--output", "json")
	if r.code != 0 {
		t.Fatalf("verify --vsa-signer key: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var j struct {
		Verified   bool     `json:"verified"`
		Levels     []string `json:"levels"`
		Statements []struct {
			PredicateType string            `json:"predicateType"`
			Signer        map[string]string `json:"signer"`
		} `json:"statements"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		t.Fatalf("--output json: %v\n%s", err, r.stdout)
	}
	if !j.Verified || !slices.Contains(j.Levels, vsa.BuildLevel3) || slices.Contains(j.Levels, vsa.TasksLevel) || len(j.Statements) == 0 ||
		!strings.HasPrefix(j.Statements[0].Signer["key"], "sha256:") {
		t.Errorf("--output json = %s", r.stdout)
	}
	trusted := verify.KeyMaterial(readPub(t, pub))
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	summary, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify.Attestation(context.Background(), digest.FromBytes(data), summary, trusted, vsa.PredicateType); err != nil {
		t.Errorf("the summary does not verify with the factory key: %v", err)
	}
	t.Run("a provenance signed by a key of the caller's choosing", func(t *testing.T) {
		// The factory's own provenance, word for word (every isolation field), signed by a key made here: it
		// verifies with --key of that key and the default policy allows it, but the summary this factory's verifier
		// signs claims SLSA_BUILD_LEVEL_1 only (a provenance exists); it said SLSA_BUILD_LEVEL_3.
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		st, err := json.Marshal(p.statement())
		if err != nil {
			t.Fatal(err)
		}
		forged, err := sign.NewSigner(key).Statement(context.Background(), st)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		mine, bundle, summary := filepath.Join(p.dir, "mine.pub"), filepath.Join(p.dir, "forged.sigstore.json"), filepath.Join(p.dir, "forged.vsa.json")
		if err := os.WriteFile(mine, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bundle, forged, 0o644); err != nil {
			t.Fatal(err)
		}
		r := ssf(t, p.tmp, "verify", file, "--key", mine, "--bundle", bundle, "--policy", pol, "--vsa", summary, "--vsa-signer", "key", "--output", "json")
		var j struct {
			Levels []string `json:"levels"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &j) != nil || !slices.Equal(j.Levels, []string{vsa.BuildLevel1}) ||
			!strings.Contains(r.stderr, "not by this factory") {
			t.Fatalf("exit %d, want 0 with levels [%s] only and a note saying why\n%s%s", r.code, vsa.BuildLevel1, r.stdout, r.stderr)
		}
		data, err := os.ReadFile(summary)
		if err != nil {
			t.Fatal(err)
		}
		fileData, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		s, err := verify.Attestation(context.Background(), digest.FromBytes(fileData), data, trusted, vsa.PredicateType)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(s.Predicate), `"verificationResult":"PASSED","verifiedLevels":["SLSA_BUILD_LEVEL_1"]`) {
			t.Errorf("summary = %s", s.Predicate)
		}
	})
	t.Run("a bundle's file name with control characters", func(t *testing.T) {
		// Who can write an attestations directory names its files: a genuine bundle copied under a name holding
		// a terminal escape is verified and listed by -v, escaped, never written raw to the terminal.
		dir := filepath.Join(p.dir, "escapes")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(p.out, "attestations", "provenance.sigstore.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "p\x1b]0;owned\x07.sigstore.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		r := ssf(t, p.tmp, "verify", file, "--key", pub, "--policy", pol, "--attestations", dir, "-v")
		if r.code != 0 || strings.ContainsAny(r.stderr, "\x1b\x07") || !strings.Contains(r.stderr, `p\u001b]0;owned\u0007.sigstore.json`) {
			t.Errorf("exit %d, want 0 with the file name escaped:\n%q", r.code, r.stderr)
		}
	})
	t.Run("another factory's key", func(t *testing.T) {
		// Nothing verifies: exit 1 saying why the provenance bundle did not, and a FAILED summary naming no input.
		failed := filepath.Join(p.dir, "other.vsa.json")
		r := ssf(t, p.tmp, "verify", file, "--key", otherFactoryKey(t, p), "--policy", pol, "--vsa", failed, "--vsa-signer", "key")
		if r.code != 1 || !strings.Contains(r.stderr, "provenance.sigstore.json: ") || !strings.Contains(r.stderr, "not signed by this key") ||
			!strings.Contains(r.stderr, "has no verified SLSA provenance from a trusted ssf builder") {
			t.Fatalf("verify with another factory's key: exit %d, want 1 with the reason and the default policy's denial\n%s%s", r.code, r.stdout, r.stderr)
		}
		summary, err := os.ReadFile(failed)
		if err != nil {
			t.Fatal(err)
		}
		st, err := verify.Attestation(context.Background(), digest.FromBytes(data), summary, trusted, vsa.PredicateType)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(st.Predicate), `"verificationResult":"FAILED","verifiedLevels":["FAILED"]`) ||
			!strings.Contains(string(st.Predicate), `"inputAttestations":[]`) {
			t.Errorf("summary = %s", st.Predicate)
		}
	})
	t.Run("cosign", func(t *testing.T) {
		cosign := interopTool(t, "SSF_COSIGN", "cosign")
		tr := filepath.Join(p.dir, "empty_root.json")
		if err := os.WriteFile(tr, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"verify-blob-attestation", "--bundle", out, "--trusted-root", tr, "--key", pub, "--insecure-ignore-tlog", "--type", vsa.PredicateType, file}
		if b, err := exec.Command(cosign, args...).CombinedOutput(); err != nil {
			t.Errorf("cosign %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	})

	t.Run("registry", func(t *testing.T) {
		host := distributionRegistry(t)
		r := ssf(t, p.tmp, "publish", p.out, "--to", host+"/team/app:v1", "--key", pub)
		if r.code != 0 {
			t.Fatalf("ssf publish: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		ref := lastLine(r.stdout)
		refVSA := filepath.Join(p.dir, "ref.vsa.json")
		r = ssf(t, p.tmp, "verify", host+"/team/app:v1", "--key", pub, "--policy", pol, "--vsa", refVSA, "--vsa-signer", "key")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "verified: "+ref+" ") {
			t.Fatalf("verify %s --vsa: exit %d, want the verdict naming %s\n%s%s", host+"/team/app:v1", r.code, ref, r.stdout, r.stderr)
		}
		manifest := digest.Digest(ref[strings.LastIndex(ref, "@")+1:])
		// The verdict names the reference once (its digest is in it) and the tag it was resolved from.
		if !strings.HasPrefix(r.stdout, "verified: "+ref+" (tag "+host+"/team/app:v1) built by ") || strings.Count(r.stdout, manifest.Encoded()) != 1 {
			t.Errorf("verify %s --policy: want the verdict to name %s once, with its tag\n%s", host+"/team/app:v1", ref, r.stdout)
		}
		summary, err := os.ReadFile(refVSA)
		if err != nil {
			t.Fatal(err)
		}
		st, err := verify.Attestation(context.Background(), manifest, summary, trusted, vsa.PredicateType)
		if err != nil {
			t.Fatalf("the summary does not verify for %s: %v", manifest, err)
		}
		var pred struct {
			ResourceURI       string `json:"resourceUri"`
			Result            string `json:"verificationResult"`
			InputAttestations []struct {
				URI string `json:"uri"`
			} `json:"inputAttestations"`
		}
		if err := json.Unmarshal(st.Predicate, &pred); err != nil {
			t.Fatal(err)
		}
		if pred.ResourceURI != ref || pred.Result != vsa.Passed || len(pred.InputAttestations) == 0 ||
			!strings.HasPrefix(pred.InputAttestations[0].URI, host+"/team/app@sha256:") {
			t.Errorf("summary of %s = %+v", ref, pred)
		}
	})

	t.Run("usage", func(t *testing.T) {
		broken := filepath.Join(p.dir, "broken")
		if err := os.MkdirAll(broken, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(broken, "verify.rego"), []byte("package ssf.verify\n\ndeny contains msg if {\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		lonely := filepath.Join(p.dir, "lonely")
		if err := os.WriteFile(lonely, []byte("no build made me\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"existing --vsa", []string{file, "--key", pub, "--vsa", out}, "already exists"},
			// Before anything is signed and logged, not when the signed summary is written (that exited 1).
			{"--vsa in no directory", []string{file, "--key", pub, "--vsa", filepath.Join(p.dir, "nodir", "x.json")}, "does not exist or is not a directory"},
			{"bad --vsa-signer", []string{file, "--key", pub, "--vsa", filepath.Join(p.dir, "x.json"), "--vsa-signer", "hsm"}, `--vsa-signer "hsm"`},
			{"policy syntax error", []string{file, "--key", pub, "--policy", broken}, "verify.rego:"},
			{"no evidence", []string{lonely, "--key", pub, "--policy", pol}, "no evidence for"},
			{"two bundles without policy", []string{file, "--key", pub, "--bundle", out, "--bundle", out}, "--bundle is given 2 times"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := ssf(t, p.tmp, append([]string{"verify"}, tc.args...)...)
				if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
					t.Errorf("exit %d, want 2 with %q\n%s", r.code, tc.want, r.stderr)
				}
			})
		}
		if _, err := os.Stat(filepath.Join(p.dir, "x.json")); err == nil {
			t.Error("a summary was written on bad usage")
		}
		// No factory here to sign the summary: said before anything is verified, exit 2, nothing written.
		noHome := filepath.Join(p.dir, "x2.json")
		r := ssfEnv(t, p.tmp, []string{"SSF_HOME=" + filepath.Join(p.dir, "nohome")}, "verify", file, "--key", pub, "--policy", pol, "--vsa", noHome)
		if r.code != 2 || !strings.Contains(r.stderr, "--vsa: ") || !strings.Contains(r.stderr, "ssf init") || strings.Contains(r.stdout, "verified") {
			t.Errorf("--vsa without a factory: exit %d, want 2 naming --vsa and ssf init\n%s%s", r.code, r.stdout, r.stderr)
		}
		if _, err := os.Stat(noHome); err == nil {
			t.Error("a summary was written without a factory to sign it")
		}
	})
}

func readPub(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := sign.ParsePublicKeyPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
