package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
)

const (
	identityTD     = "spiffe://ssf.local"
	identityIssuer = "https://ssf.local/issuer"
	// runIdentity signs the provenance and SBOMs of a test project's build (its pipeline is named test).
	runIdentity = identityTD + "/pipeline/test"
)

// asRun are ssf verify's flags that require a test project's run identity: what verifies a default build.
var asRun = []string{"--certificate-identity", runIdentity, "--certificate-oidc-issuer", identityIssuer}

// builtDefault is a finished build of simpleTask signed as ssf build signs with no --signer: by identity.
func builtDefault(t *testing.T) *project {
	t.Helper()
	p := newProject(t, simpleTask)
	p.mustBuild()
	return p
}

// exportTrust writes the factory's trusted root (ssf trust export) into p's directory, for cosign.
func exportTrust(t *testing.T, p *project) string {
	t.Helper()
	tr := filepath.Join(p.dir, "trusted_root.json")
	if r := ssf(t, p.tmp, "trust", "export", "--out", tr); r.code != 0 {
		t.Fatalf("trust export: exit %d\n%s", r.code, r.stderr)
	}
	return tr
}

// identityProject is a two-task build (an internal output passed between them) for --signer identity.
func identityProject(t *testing.T) *project {
	return newProject(t, `
    - name: compile
      timeout: 1m
      steps:
        - name: make
          run: |
            echo built > "$SSF_OUTPUTS/app"
            echo intermediate > "$SSF_OUTPUTS/obj"
      outputs: [app, {path: obj, internal: true}]
    - name: check
      needs: [compile]
      timeout: 1m
      steps:
        - name: run
          run: cat /inputs/compile/app /inputs/compile/obj > "$SSF_OUTPUTS/report"
      outputs: [report]
`)
}

// bundlePayload returns the in-toto statement inside a bundle file.
func bundlePayload(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		DSSE struct {
			Payload string `json:"payload"`
		} `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	payload, err := base64.StdEncoding.DecodeString(b.DSSE.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(payload, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestIdentityBuild: ssf build, by default (--signer identity), signs each task's attestation with the task's own
// certificate and the provenance with the run's; the provenance lists every task bundle by digest; ssf verify and both stock
// cosigns (every check on: log, SCT, no insecure flag) accept each bundle under its own identity only; the log
// audits clean afterwards.
func TestIdentityBuild(t *testing.T) {
	p := identityProject(t)
	r := p.build() // the default signer
	if r.code != 0 {
		t.Fatalf("build failed (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	}
	p.assertClean()
	run := identityTD + "/pipeline/test"
	att := filepath.Join(p.out, "attestations")
	prov := filepath.Join(att, "provenance.sigstore.json")
	app, report := filepath.Join(p.out, "app"), filepath.Join(p.out, "report")
	for _, task := range []string{"compile", "check"} {
		if !strings.Contains(r.stderr, "task "+task+" attested as "+run+"/task/"+task) {
			t.Errorf("the build did not say task %s was attested:\n%s", task, r.stderr)
		}
		if want := "task        " + filepath.Join(att, task+".task.sigstore.json") + "  signed by " + run + "/task/" + task; !strings.Contains(r.stdout, want) {
			t.Errorf("the build's summary lacks %q:\n%s", want, r.stdout)
		}
	}

	// The task attestations: subjects are the task's outputs (the internal one too), the predicate what ran.
	st := bundlePayload(t, filepath.Join(att, "compile.task.sigstore.json"))
	if st["predicateType"] != "https://ssf.dev/attestations/task/v1" {
		t.Fatalf("predicateType = %v", st["predicateType"])
	}
	subjects, _ := json.Marshal(st["subject"])
	for _, want := range []string{`"name":"app"`, `"name":"obj"`, digest.FromString("intermediate\n").Encoded()} {
		if !bytes.Contains(subjects, []byte(want)) {
			t.Errorf("compile's subjects %s lack %s", subjects, want)
		}
	}
	pred, _ := json.Marshal(st["predicate"])
	for _, want := range []string{`"task":"compile"`, `"exitCode":0`, `echo built`, `"network":"none"`, `"builder"`, `"source"`} {
		if !bytes.Contains(pred, []byte(want)) {
			t.Errorf("compile's predicate lacks %s: %s", want, pred)
		}
	}
	checkPred, _ := json.Marshal(bundlePayload(t, filepath.Join(att, "check.task.sigstore.json"))["predicate"])
	if !bytes.Contains(checkPred, []byte(`"path":"obj"`)) || !bytes.Contains(checkPred, []byte(digest.FromString("intermediate\n").Encoded())) {
		t.Errorf("check's inputs lack the internal output obj with its digest: %s", checkPred)
	}

	// The provenance links both task bundles by digest.
	listed := map[string]string{}
	for _, b := range bundlePayload(t, prov)["predicate"].(map[string]any)["runDetails"].(map[string]any)["byproducts"].([]any) {
		b := b.(map[string]any)
		listed[b["name"].(string)] = b["digest"].(map[string]any)["sha256"].(string)
	}
	for _, task := range []string{"compile", "check"} {
		data, err := os.ReadFile(filepath.Join(att, task+".task.sigstore.json"))
		if err != nil {
			t.Fatal(err)
		}
		name := "attestations/" + task + ".task.sigstore.json"
		if got, want := listed[name], digest.FromBytes(data).Encoded(); got != want {
			t.Errorf("the provenance lists %s with sha256 %q, want %s", name, got, want)
		}
	}

	tr := filepath.Join(p.dir, "trusted_root.json")
	if r := ssf(t, p.tmp, "trust", "export", "--out", tr); r.code != 0 {
		t.Fatalf("trust export: %d %s", r.code, r.stderr)
	}
	type check struct {
		what, file, bundle, identity, cosignType string
		ok                                       bool
	}
	checks := []check{
		{"provenance as the run", app, prov, run, "slsaprovenance1", true},
		{"provenance as a task", app, prov, run + "/task/compile", "slsaprovenance1", false},
		{"compile's bundle as compile", app, filepath.Join(att, "compile.task.sigstore.json"), run + "/task/compile", "https://ssf.dev/attestations/task/v1", true},
		{"compile's bundle as check", app, filepath.Join(att, "compile.task.sigstore.json"), run + "/task/check", "https://ssf.dev/attestations/task/v1", false},
		{"check's bundle as check", report, filepath.Join(att, "check.task.sigstore.json"), run + "/task/check", "https://ssf.dev/attestations/task/v1", true},
		{"check's bundle as the run", report, filepath.Join(att, "check.task.sigstore.json"), run, "https://ssf.dev/attestations/task/v1", false},
		{"SBOM as the run", app, filepath.Join(att, "app.spdx.sigstore.json"), run, "spdxjson", true},
		{"check's bundle for its log", filepath.Join(att, "logs", "check.log"), filepath.Join(att, "check.task.sigstore.json"), run + "/task/check", "https://ssf.dev/attestations/task/v1", true},
	}
	for _, c := range checks {
		if c.cosignType == "spdxjson" {
			continue // ssf verify reads provenance and task attestations; ssf sbom reads SBOMs
		}
		t.Run("ssf/"+c.what, func(t *testing.T) {
			for _, trArgs := range [][]string{nil, {"--trusted-root", tr}} {
				args := append([]string{"verify", c.file, "--bundle", c.bundle, "--certificate-identity", c.identity, "--certificate-oidc-issuer", identityIssuer}, trArgs...)
				r := ssf(t, p.tmp, args...)
				if c.ok && (r.code != 0 || !strings.Contains(r.stdout, "verified: ")) {
					t.Fatalf("ssf %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
				}
				if !c.ok && (r.code != 1 || !strings.Contains(r.stderr, "expected SAN value")) {
					t.Fatalf("ssf %s: exit %d, want 1 naming the SAN\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
				}
			}
		})
	}
	for _, v := range []struct{ env, name string }{{"SSF_COSIGN", "cosign"}, {"SSF_COSIGN_V3", "cosign-v3.1.2"}} {
		t.Run(v.name, func(t *testing.T) {
			cosign := interopTool(t, v.env, v.name)
			for _, c := range checks {
				args := []string{"verify-blob-attestation", "--bundle", c.bundle, "--trusted-root", tr,
					"--certificate-identity", c.identity, "--certificate-oidc-issuer", identityIssuer, "--type", c.cosignType, c.file}
				out, err := exec.Command(cosign, args...).CombinedOutput()
				if c.ok && err != nil {
					t.Errorf("%s: cosign %s: %v\n%s", c.what, strings.Join(args, " "), err, out)
				}
				if !c.ok && err == nil {
					t.Errorf("%s: cosign accepted a bundle under another identity: %s", c.what, strings.Join(args, " "))
				}
			}
			// Dated by the factory TSA's timestamp instead of the log's integrated time.
			args := []string{"verify-blob-attestation", "--bundle", prov, "--trusted-root", tr, "--use-signed-timestamps",
				"--certificate-identity", run, "--certificate-oidc-issuer", identityIssuer, "--type", "slsaprovenance1", app}
			if out, err := exec.Command(cosign, args...).CombinedOutput(); err != nil {
				t.Errorf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}

	// A certificate bundle without an identity is bad usage, naming the flag; a wrong issuer is refused.
	// The hint gives the exact flags: the identity the certificate claims (the run's for the provenance, the
	// task's for its bundle) and the local factory's issuer.
	for bundle, id := range map[string]string{prov: run, filepath.Join(att, "check.task.sigstore.json"): run + "/task/check"} {
		want := "ssf: hint: its certificate names " + id + " (not verified yet: "
		flags := " --certificate-identity " + id + " --certificate-oidc-issuer " + identityIssuer + "\n"
		if r := ssf(t, p.tmp, "verify", app, "--bundle", bundle); r.code != 2 || !strings.Contains(r.stderr, "--certificate-identity ID") ||
			!strings.Contains(r.stderr, want) || !strings.HasSuffix(r.stderr, flags) {
			t.Errorf("verify without an identity: exit %d, want 2 with a hint %q ... %q\n%s", r.code, want, flags, r.stderr)
		}
	}
	if r := ssf(t, p.tmp, "verify", app, "--bundle", prov, "--certificate-identity", run); r.code != 2 || !strings.Contains(r.stderr, "--certificate-oidc-issuer") {
		t.Errorf("verify without an issuer: exit %d, want 2 naming --certificate-oidc-issuer\n%s", r.code, r.stderr)
	}
	if r := ssf(t, p.tmp, "verify", app, "--bundle", prov, "--certificate-identity", run, "--certificate-oidc-issuer", "https://other.example/issuer"); r.code != 1 {
		t.Errorf("verify with another issuer: exit %d, want 1\n%s", r.code, r.stderr)
	}
	if r := ssf(t, p.tmp, "verify", app, "--bundle", prov, "--certificate-identity-regexp", "^"+run+"$", "--certificate-oidc-issuer", identityIssuer); r.code != 0 {
		t.Errorf("verify with --certificate-identity-regexp: exit %d\n%s", r.code, r.stderr)
	}

	// A bundle changed after signing is refused: its log entry's proof, time or SET, its timestamp, its certificate.
	good, err := os.ReadFile(prov)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ what, path string }{
		{"no log entry", "verificationMaterial.tlogEntries"},
		{"inclusion proof", "verificationMaterial.tlogEntries.0.inclusionProof.hashes.0"},
		{"checkpoint", "verificationMaterial.tlogEntries.0.inclusionProof.checkpoint.envelope"},
		{"integrated time", "verificationMaterial.tlogEntries.0.integratedTime"},
		{"signed entry timestamp", "verificationMaterial.tlogEntries.0.inclusionPromise.signedEntryTimestamp"},
		{"no timestamp", "verificationMaterial.timestampVerificationData"},
		{"certificate", "verificationMaterial.certificate.rawBytes"},
	} {
		t.Run("tampered "+tc.what, func(t *testing.T) {
			bad := filepath.Join(p.dir, "tampered.json")
			if err := os.WriteFile(bad, tamper(t, good, tc.path), 0o644); err != nil {
				t.Fatal(err)
			}
			r := ssf(t, p.tmp, "verify", app, "--bundle", bad, "--certificate-identity", run, "--certificate-oidc-issuer", identityIssuer)
			if testing.Verbose() {
				t.Logf("%s: exit %d: %s", tc.what, r.code, r.stderr)
			}
			if r.code != 1 || !strings.Contains(r.stderr, "verification failed") {
				t.Errorf("ssf verify accepted a bundle with a tampered %s: exit %d\n%s%s", tc.what, r.code, r.stdout, r.stderr)
			}
		})
	}

	// Every signature went into the log: a static copy of it audits clean.
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(homeDir, "log"))))
	defer srv.Close()
	if r := ssf(t, p.tmp, "log", "verify", "--log", srv.URL, "--state", filepath.Join(p.dir, "monitor.json")); r.code != 0 {
		t.Fatalf("ssf log verify after the build: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestIdentityStepCannotReadFactoryKeys: with --signer identity a step still reaches none of the factory's keys
// (CA, CT and log keys, TSA, node, provenance key), under $SSF_HOME or anywhere in its container.
func TestIdentityStepCannotReadFactoryKeys(t *testing.T) {
	p := newProject(t, `
    - name: steal
      timeout: 1m
      steps:
        - name: look
          run: |
            ls -la "$SSF_PARAM_HOME/keys" > "$SSF_OUTPUTS/found" 2>&1 || true
            cat "$SSF_PARAM_HOME"/keys/*.key >> "$SSF_OUTPUTS/found" 2>&1 || true
            find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o -type f -print |
              xargs grep -l 'PRIVATE KEY' >> "$SSF_OUTPUTS/found" 2>/dev/null || true
      outputs: [found]
`)
	p.paramDef = "    - {name: home, pattern: '^[A-Za-z0-9/._-]+$'}\n"
	p.params = []string{"home=" + homeDir}
	if r := p.build("--signer", "identity"); r.code != 0 {
		t.Fatalf("build failed (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	}
	found := p.output("found")
	if strings.Contains(found, "PRIVATE KEY") || !strings.Contains(found, "No such file or directory") {
		t.Errorf("the step reached the factory keys:\n%s", found)
	}
	keys, _ := filepath.Glob(filepath.Join(homeDir, "keys", "*.key"))
	if len(keys) < 6 {
		t.Fatalf("the factory has %d keys, want the provenance, CA, CT, log, TSA and node keys", len(keys))
	}
	for _, k := range keys {
		data, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(found, strings.TrimSpace(string(data))) {
			t.Errorf("the step read %s", k)
		}
	}
}

// TestIdentityBuildNeedsTheLog: while another process holds the transparency log as its appender (ssf log serve
// --accept-entries), an identity build stops at admission with exit 2, running nothing; a key build is unaffected.
func TestIdentityBuildNeedsTheLog(t *testing.T) {
	p := identityProject(t)
	cmd := exec.Command(ssfBin, "log", "serve", "--addr", "127.0.0.1:0", "--accept-entries")
	cmd.Env = append(os.Environ(), "SSF_HOME="+homeDir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	// The server prints where it listens once it holds the log.
	buf := make([]byte, 4096)
	var said []byte
	for !bytes.Contains(said, []byte("127.0.0.1:")) {
		n, err := stderr.Read(buf)
		if err != nil {
			t.Fatalf("ssf log serve ended: %v\n%s", err, said)
		}
		said = append(said, buf[:n]...)
	}
	r := p.build() // the default signer
	if r.code != 2 || !strings.Contains(r.stderr, "--accept-entries") || strings.Contains(r.stderr, "task compile started") {
		t.Fatalf("identity build while the log is held: exit %d, want 2 before any task, naming --accept-entries\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(p.out); !os.IsNotExist(err) {
		t.Errorf("the refused build left %s", p.out)
	}
	p.assertClean()
	// --signer key appends nothing to the log: it builds while the server holds it.
	if r := p.build("--signer", "key"); r.code != 0 || strings.Contains(r.stderr, "attested as") {
		t.Fatalf("key build while the log is held: exit %d, want 0 with no task attested\n%s", r.code, r.stderr)
	}
	p.assertClean()
}

// TestPublishIdentityBuild: ssf publish verifies a keyless build (the default) against the local factory's trust
// before pushing, attaches every task bundle as a referrer, and the image-side verification passes with ssf verify and
// both cosigns' verify-attestation, every check on; a task bundle changed after the build stops the publish.
func TestPublishIdentityBuild(t *testing.T) {
	p := identityProject(t)
	if r := p.build(); r.code != 0 {
		t.Fatalf("build failed (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	}
	host := distributionRegistry(t)
	r := ssf(t, p.tmp, "publish", p.out, "--to", host+"/keyless/app:v1")
	if r.code != 0 {
		t.Fatalf("ssf publish: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	ref := lastLine(r.stdout)
	if n := strings.Count(r.stdout, "referrer    "); n != 1+4+2 {
		t.Errorf("publish pushed %d referrers, want 7 (provenance, 2 SBOMs of each of 2 outputs, 2 task bundles):\n%s", n, r.stdout)
	}
	run := identityTD + "/pipeline/test"
	if r := ssf(t, p.tmp, "verify", ref, "--certificate-identity", run, "--certificate-oidc-issuer", identityIssuer); r.code != 0 || !strings.HasPrefix(r.stdout, "verified: "+ref) {
		t.Fatalf("ssf verify %s: exit %d\n%s%s", ref, r.code, r.stdout, r.stderr)
	}
	if r := ssf(t, p.tmp, "verify", ref, "--certificate-identity", run+"/task/compile", "--certificate-oidc-issuer", identityIssuer); r.code != 1 {
		t.Errorf("ssf verify %s as a task: exit %d, want 1\n%s%s", ref, r.code, r.stdout, r.stderr)
	}
	tr := filepath.Join(p.dir, "trusted_root.json")
	if r := ssf(t, p.tmp, "trust", "export", "--out", tr); r.code != 0 {
		t.Fatalf("trust export: %d %s", r.code, r.stderr)
	}
	for _, v := range []struct{ env, name string }{{"SSF_COSIGN", "cosign"}, {"SSF_COSIGN_V3", "cosign-v3.1.2"}} {
		t.Run(v.name, func(t *testing.T) {
			cosign := interopTool(t, v.env, v.name)
			// (A task bundle is about the task's output files, not the artifact manifest, which is made after every
			// task: it is attached for discovery and verifies with verify-blob-attestation against the files.)
			for _, c := range []struct{ identity, typ string }{{run, "slsaprovenance1"}, {run, "spdxjson"}, {run, "cyclonedx"}} {
				cmd := exec.Command(cosign, "verify-attestation", "--trusted-root", tr, "--certificate-identity", c.identity,
					"--certificate-oidc-issuer", identityIssuer, "--type", c.typ, ref)
				cmd.Env = append(os.Environ(), "HOME="+p.dir)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("cosign verify-attestation --type %s as %s: %v\n%s", c.typ, c.identity, err, out)
				}
			}
		})
	}

	// A task bundle replaced after the build (here by the other task's) is not what the provenance lists.
	att := filepath.Join(p.out, "attestations")
	other, _ := os.ReadFile(filepath.Join(att, "check.task.sigstore.json"))
	if err := os.WriteFile(filepath.Join(att, "compile.task.sigstore.json"), other, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := ssf(t, p.tmp, "publish", p.out, "--to", host+"/keyless/swapped"); r.code != 1 || !strings.Contains(r.stderr, "compile.task.sigstore.json hashes to") {
		t.Errorf("publish of a swapped task bundle: exit %d, want 1 naming it\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// tamper changes the JSON value at path (dot-separated keys and indexes) in a bundle: an object or array there is
// removed, a number is increased by one, a string (base64 or text) gets its first byte changed.
func tamper(t *testing.T, bundle []byte, path string) []byte {
	t.Helper()
	var doc any
	if err := json.Unmarshal(bundle, &doc); err != nil {
		t.Fatal(err)
	}
	keys := strings.Split(path, ".")
	parent := doc
	for _, k := range keys[:len(keys)-1] {
		switch v := parent.(type) {
		case map[string]any:
			parent = v[k]
		case []any:
			parent = v[int(k[0]-'0')]
		}
	}
	last := keys[len(keys)-1]
	change := func(v any) any {
		switch v := v.(type) {
		case string:
			if v == "" {
				t.Fatalf("nothing to tamper with at %s", path)
			}
			if n, err := strconv.ParseInt(v, 10, 64); err == nil { // protojson writes int64 as a string
				return strconv.FormatInt(n+1, 10)
			}
			// A character in the middle: inside a certificate's signed part, a hash, a signature, a note's text.
			i := len(v) / 2
			c := byte('A')
			if v[i] == 'A' {
				c = 'B'
			}
			return v[:i] + string(c) + v[i+1:]
		case float64:
			return v + 1
		}
		t.Fatalf("cannot tamper with %T at %s", v, path)
		return nil
	}
	switch pv := parent.(type) {
	case map[string]any:
		switch pv[last].(type) {
		case map[string]any, []any:
			delete(pv, last)
		case nil:
			t.Fatalf("nothing at %s", path)
		default:
			pv[last] = change(pv[last])
		}
	case []any:
		i := int(last[0] - '0')
		pv[i] = change(pv[i])
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFailedIdentityBuild: when a later task fails, an identity build exits 1 and leaves OUT untouched, though the
// task that ended before was attested (its entry stays in the log).
func TestFailedIdentityBuild(t *testing.T) {
	p := newProject(t, `
    - name: first
      timeout: 1m
      steps:
        - {name: ok, run: 'echo fine > "$SSF_OUTPUTS/a"'}
      outputs: [a]
    - name: second
      needs: [first]
      timeout: 1m
      steps:
        - {name: fails, run: 'exit 3'}
      outputs: [b]
`)
	r := p.build("--signer", "identity")
	if r.code != 1 || !strings.Contains(r.stderr, "exit code 3") || !strings.Contains(r.stderr, "task first attested as") {
		t.Fatalf("exit %d, want 1 naming exit code 3 after first was attested\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(p.out); !os.IsNotExist(err) {
		t.Errorf("a failed identity build left %s (stat: %v)", p.out, err)
	}
	p.assertClean()
}

// TestIdentityBuildsTakeTurns: an identity build started while another holds the transparency log waits for its
// turn (saying so) instead of failing, and gets it while the first build is still running — the first gives the
// log up between its signatures — so it finishes before the first one ends.
func TestIdentityBuildsTakeTurns(t *testing.T) {
	needSandbox(t)
	first := newProject(t, `
    - name: wait
      timeout: 5m
      steps:
        - name: block
          run: echo started; sleep 300
      outputs: [never]
`)
	first.write()
	a := exec.Command(ssfBin, "build", "-f", first.pipeline, "--source", first.src, "--out", first.out, "--signer", "identity")
	a.Env = append(os.Environ(), "SSF_HOME="+homeDir, "TMPDIR="+first.tmp)
	waitFor := func(cmd *exec.Cmd, want string) io.Reader {
		t.Helper()
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		var seen strings.Builder
		for !strings.Contains(seen.String(), want) {
			n, err := stderr.Read(buf)
			if err != nil {
				t.Fatalf("%s ended before saying %q: %v\n%s", cmd, want, err, seen.String())
			}
			seen.Write(buf[:n])
		}
		return stderr
	}
	aErr := waitFor(a, "[wait/block] started")
	defer a.Process.Kill()

	second := identityProject(t)
	second.write()
	b := exec.Command(ssfBin, "build", "-f", second.pipeline, "--source", second.src, "--out", second.out) // the default signer
	b.Env = append(os.Environ(), "SSF_HOME="+homeDir, "TMPDIR="+second.tmp)
	bErr := waitFor(b, "waiting for the transparency log, which another build or the node API is signing with")

	// The second build finishes while the first still runs its step (it sleeps 300 s).
	rest, _ := io.ReadAll(bErr)
	if err := b.Wait(); err != nil {
		t.Fatalf("the waiting build: %v\n%s", err, rest)
	}
	if !strings.Contains(string(rest), "task check attested as") {
		t.Errorf("the waiting build did not attest its tasks:\n%s", rest)
	}
	if a.ProcessState != nil {
		t.Fatal("the first build ended before the second finished")
	}
	// The first build is interrupted: it signs nothing.
	if err := a.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, aErr)
	if err := a.Wait(); err == nil {
		t.Error("the interrupted build succeeded")
	}
	second.assertClean()
}
