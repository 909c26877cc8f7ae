package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// signedPipelinePolicy requires the pipeline to be signed by the key with fingerprint fp, and reports what
// signers it saw, so a test can tell that the fingerprint reached the policy.
func signedPipelinePolicy(t *testing.T, fp string) string {
	return writePolicy(t, map[string]string{"build.rego": `package ssf.build

trusted_signers := {"` + fp + `"}

deny contains msg if {
	count({s | some s in input.pipeline.signers; s in trusted_signers}) == 0
	msg := sprintf("pipeline %s is not signed by a trusted key (signers: %v)", [input.pipeline.name, input.pipeline.signers])
}
`})
}

// pipelineKey makes a signing key in dir with ssf pipeline keygen and returns its path and fingerprint.
func pipelineKey(t *testing.T, p *project, name string) (string, string) {
	t.Helper()
	key := filepath.Join(p.dir, name)
	r := ssf(t, p.tmp, "pipeline", "keygen", key)
	fp := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(fp, "sha256:") || len(fp) != 71 {
		t.Fatalf("ssf pipeline keygen: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := ssf(t, p.tmp, "pipeline", "fingerprint", key); strings.TrimSpace(r.stdout) != fp {
		t.Fatalf("fingerprint of the private key %q, keygen said %q", r.stdout, fp)
	}
	return key, fp
}

// TestSignedPipelineGate: under a policy that demands a signature by a trusted key, an unsigned pipeline stops
// with the policy's message, one signed by that key builds (its fingerprint reached input.pipeline.signers), one
// signed by another key is denied naming that key, and a FILE.sig that does not verify fails the build.
func TestSignedPipelineGate(t *testing.T) {
	p := newProject(t, simpleTask)
	p.write()
	key, fp := pipelineKey(t, p, "signer.pem")
	pol := signedPipelinePolicy(t, fp)

	p.mustFailWith(1, []string{"--policy", pol}, "policy gate ssf.build denied pipeline \"test\"",
		"pipeline test is not signed by a trusted key (signers: [])", "build denied")

	sign := func(k string) {
		t.Helper()
		if r := ssf(t, p.tmp, "pipeline", "sign", p.pipeline, "--key", k); r.code != 0 || strings.TrimSpace(r.stdout) != p.pipeline+".sig" {
			t.Fatalf("ssf pipeline sign: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
	sign(key)
	r := p.build("--policy", pol)
	if r.code != 0 {
		t.Fatalf("a pipeline signed by the trusted key: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "(pipeline signed by "+fp) {
		t.Errorf("the build does not name the pipeline's signer:\n%s", r.stderr)
	}
	os.RemoveAll(p.out)

	other, otherFP := pipelineKey(t, p, "other.pem")
	sign(other)
	p.mustFailWith(1, []string{"--policy", pol}, "(signers: [\""+otherFP+"\"])")

	// A signature that does not verify over the file fails the build whatever the policy says.
	sign(key)
	data, _ := os.ReadFile(p.pipeline)
	if err := os.WriteFile(p.pipeline, append(data, []byte("# changed after signing\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	allowAll := writePolicy(t, map[string]string{"x.rego": "package ssf.deps\n\ndeny contains msg if { false; msg := \"\" }\n"})
	for _, args := range [][]string{{"--policy", pol}, {"--policy", allowAll}} {
		r := p.runBuild(args...)
		if r.code != 1 || !strings.Contains(r.stderr, "pipeline signature "+p.pipeline+".sig is not a valid signature over the pipeline file") {
			t.Errorf("a pipeline changed after signing, %v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	// A tampered signature file, over the unchanged file.
	if err := os.WriteFile(p.pipeline, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sig, _ := os.ReadFile(p.pipeline + ".sig")
	tampered := strings.Replace(string(sig), `"signature":"M`, `"signature":"N`, 1)
	if tampered == string(sig) {
		t.Fatalf("no signature to tamper with in %s", sig)
	}
	os.WriteFile(p.pipeline+".sig", []byte(tampered), 0o644)
	if r := p.runBuild("--policy", pol); r.code != 1 || !strings.Contains(r.stderr, "is not a valid signature over the pipeline file") {
		t.Errorf("a tampered FILE.sig: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(p.out); !os.IsNotExist(err) {
		t.Errorf("a build with a bad signature left %s", p.out)
	}
}

// runBuild runs the build of the pipeline file as it is on disk (build() would write it again).
func (p *project) runBuild(extra ...string) result {
	p.t.Helper()
	return ssf(p.t, p.tmp, append([]string{"build", "-f", p.pipeline, "--source", p.src, "--out", p.out}, extra...)...)
}

// TestPipelineSignatureCosignInterop: stock cosign verifies what ssf pipeline sign writes, as a blob signature
// with the public key, and refuses it for a changed file.
func TestPipelineSignatureCosignInterop(t *testing.T) {
	cosign := interopTool(t, "SSF_COSIGN", "cosign")
	dir := t.TempDir()
	file := filepath.Join(dir, "ssf.yaml")
	// A valid pipeline: ssf pipeline sign signs only what ssf build would accept.
	os.WriteFile(file, []byte("apiVersion: ssf.dev/v1alpha1\nkind: Pipeline\nmetadata: {name: app}\nspec:\n"+
		"  builder: {image: b@sha256:"+strings.Repeat("0", 64)+"}\n"+
		"  tasks:\n    - name: t\n      steps: [{name: s, run: \"true\"}]\n      outputs: [o]\n"), 0o644)
	key := filepath.Join(dir, "k.pem")
	for _, args := range [][]string{{"pipeline", "keygen", key}, {"pipeline", "sign", file, "--key", key}} {
		if r := ssf(t, dir, args...); r.code != 0 {
			t.Fatalf("ssf %v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	pub := filepath.Join(dir, "k.pub")
	// The public half, as cosign reads it: openssl is not needed, ssf keys public prints only the factory's key.
	pubPEM := exec.Command("openssl", "pkey", "-in", key, "-pubout", "-out", pub)
	if out, err := pubPEM.CombinedOutput(); err != nil {
		t.Skipf("openssl: %v %s", err, out)
	}
	tr := filepath.Join(dir, "trusted_root.json")
	os.WriteFile(tr, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644)
	verify := func() ([]byte, error) {
		cmd := exec.Command(cosign, "verify-blob", "--bundle", file+".sig", "--key", pub, "--trusted-root", tr, "--insecure-ignore-tlog", file)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		return cmd.CombinedOutput()
	}
	if out, err := verify(); err != nil || !strings.Contains(string(out), "Verified OK") {
		t.Fatalf("cosign verify-blob: %v\n%s", err, out)
	}
	if r := ssf(t, dir, "pipeline", "fingerprint", pub); r.code != 0 || !strings.HasPrefix(r.stdout, "sha256:") {
		t.Errorf("fingerprint of the public key: exit %d %s", r.code, r.stderr)
	}
	os.WriteFile(file, []byte("apiVersion: ssf.dev/v1alpha1\nkind: Pipeline\n# changed\n"), 0o644)
	if out, err := verify(); err == nil {
		t.Errorf("cosign verified a changed file:\n%s", out)
	}
}
