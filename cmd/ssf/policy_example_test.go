package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// exampleDir is the policy set a newcomer starts from (examples/policy/README.md).
const exampleDir = "../../examples/policy"

// The example's values a test (and a newcomer) replaces with its own: the trusted pipeline key and the publish
// prefix's registry. (TestAdmissionInKubernetes replaces the pipeline allowed in prod.)
const (
	exampleSigner   = "sha256:875a69472f169115ef1a463dfd8ef816c49c3cf9caeafc80ffb2d392138f72fd"
	exampleRegistry = "registry.example.com"
)

// examplePolicy copies the example policy set's .rego files into a new directory, replacing each key of subst by
// its value everywhere (each must occur somewhere, so a change to the example cannot silently leave a test on
// the example's own values), and returns the directory.
func examplePolicy(t *testing.T, subst map[string]string) string {
	t.Helper()
	entries, err := os.ReadDir(exampleDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "policy")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".rego") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(exampleDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		for old, repl := range subst {
			if strings.Contains(s, old) {
				used[old] = true
				s = strings.ReplaceAll(s, old, repl)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for old := range subst {
		if !used[old] {
			t.Fatalf("examples/policy no longer holds %q, which the test replaces", old)
		}
	}
	// The copy, with the test's values, still passes its own unit tests.
	if r := ssf(t, t.TempDir(), "policy", "test", dir); r.code != 0 {
		t.Fatalf("ssf policy test of the example with %v: exit %d\n%s%s", subst, r.code, r.stdout, r.stderr)
	}
	return dir
}

// TestPolicyExampleUnitTests: the example policy set's Rego unit tests pass (`ssf policy test examples/policy`),
// every team rule has tests, and its default files are the ones `ssf policy init` writes, byte for byte, as its
// README says.
func TestPolicyExampleUnitTests(t *testing.T) {
	tmp := t.TempDir()
	r := ssf(t, tmp, "policy", "test", exampleDir)
	if r.code != 0 || strings.Contains(r.stdout, "FAIL") {
		t.Fatalf("ssf policy test %s: exit %d\n%s%s", exampleDir, r.code, r.stdout, r.stderr)
	}
	for _, f := range []string{"team_build_test.rego", "team_deps_test.rego", "team_publish_test.rego", "team_deploy_test.rego"} {
		if !strings.Contains(r.stdout, "("+f+":") {
			t.Errorf("no test of %s ran:\n%s", f, r.stdout)
		}
	}
	def := filepath.Join(tmp, "default")
	if r := ssf(t, tmp, "policy", "init", def); r.code != 0 {
		t.Fatalf("ssf policy init: exit %d\n%s", r.code, r.stderr)
	}
	for _, gate := range []string{"build", "deps", "publish", "verify", "deploy"} {
		want, err := os.ReadFile(filepath.Join(def, gate+".rego"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(exampleDir, gate+".rego"))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("examples/policy/%s.rego differs from the default set's (ssf policy init); copy it again, or say why in the README", gate)
		}
	}
}

// TestPolicyExampleAtEveryGate: the example policy set, with this test's pipeline key and registry put in, at
// every gate a build passes through, in real builds: a banned npm package stops the build before it is fetched;
// an unsigned pipeline, or one signed by another key, is denied; signed by the listed key it builds; a publish
// outside the allowed prefix is refused and pushes nothing, one inside goes through; and `ssf verify --policy
// --vsa` writes a PASSED summary that stock cosign verifies. (ssf.deploy: TestAdmissionInKubernetes.)
func TestPolicyExampleAtEveryGate(t *testing.T) {
	p := newProject(t, simpleTask)
	p.write()
	key, other := filepath.Join(p.dir, "signer.pem"), filepath.Join(p.dir, "other.pem")
	for _, k := range []string{key, other} {
		if r := ssf(t, p.tmp, "pipeline", "keygen", k); r.code != 0 {
			t.Fatalf("ssf pipeline keygen: exit %d\n%s", r.code, r.stderr)
		}
	}
	fingerprint := func(k string) string {
		r := ssf(t, p.tmp, "pipeline", "fingerprint", k)
		if r.code != 0 {
			t.Fatalf("ssf pipeline fingerprint: exit %d\n%s", r.code, r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}
	fp, otherFP := fingerprint(key), fingerprint(other)
	reg := startRegistry(t)
	pol := examplePolicy(t, map[string]string{exampleSigner: fp, exampleRegistry: reg.host})
	sign := func(t *testing.T, p *project, k string) {
		t.Helper()
		p.write()
		if r := ssf(t, p.tmp, "pipeline", "sign", p.pipeline, "--key", k); r.code != 0 {
			t.Fatalf("ssf pipeline sign: exit %d\n%s", r.code, r.stderr)
		}
	}

	// run runs a subtest in which p reports to the subtest's t.
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			parent := p.t
			p.t = t
			defer func() { p.t = parent }()
			f(t)
		})
	}

	run("unsigned pipeline denied", func(t *testing.T) {
		p.mustFailWith(1, []string{"--policy", pol}, "policy gate ssf.build denied pipeline \"test\"",
			"pipeline \""+p.pipeline+"\" is not signed by a trusted key (signed by []; trusted: [\""+fp+"\"])")
	})
	run("pipeline signed by another key denied", func(t *testing.T) {
		sign(t, p, other)
		p.mustFailWith(1, []string{"--policy", pol}, "is not signed by a trusted key (signed by [\""+otherFP+"\"]")
	})

	run("banned npm package stops the build before it is fetched", func(t *testing.T) {
		// npm's registry for this build: a loopback server that counts what it is asked and has nothing.
		var hits atomic.Int32
		npmReg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			http.NotFound(w, r)
		}))
		defer npmReg.Close()
		d := newProject(t, `    - name: web
      steps: [{name: s, run: 'echo task ran; touch "$SSF_OUTPUTS/o"'}]
      outputs: [o]
`)
		d.files["package.json"] = `{"name": "x", "version": "1.0.0", "dependencies": {"event-stream": "3.3.6"}}`
		d.files["package-lock.json"] = `{"name": "x", "version": "1.0.0", "lockfileVersion": 3, "requires": true, "packages": {
  "": {"name": "x", "version": "1.0.0", "dependencies": {"event-stream": "3.3.6"}},
  "node_modules/event-stream": {"version": "3.3.6", "integrity": "sha512-` + strings.Repeat("A", 86) + `=="}}}`
		d.deps = "    - {type: npm, path: .}\n"
		sign(t, d, key) // the build gate admits it: the deps gate is what stops it
		build := func(policyDir string) result {
			return ssfEnv(t, d.tmp, []string{"npm_config_registry=" + npmReg.URL + "/"},
				"build", "-f", d.pipeline, "--source", d.src, "--out", d.out, "--policy", policyDir)
		}
		r := build(pol)
		for _, want := range []string{"policy gate ssf.deps denied",
			`npm dependency "event-stream" 3.3.6 is banned: its 3.3.6 pulled in flatmap-stream`, "nothing was signed"} {
			if r.code != 1 || !strings.Contains(r.stderr, want) {
				t.Errorf("exit %d, want 1 saying %q\n%s", r.code, want, r.stderr)
			}
		}
		if strings.Contains(r.stderr, "task ran") {
			t.Errorf("a task ran after the denial:\n%s", r.stderr)
		}
		if n := hits.Load(); n != 0 {
			t.Errorf("npm's registry was asked %d times; the policy must decide before any fetch", n)
		}
		d.assertClean()
		// Under the default set, the same build asks the registry for the package: the team's ban was what stopped it.
		def := filepath.Join(d.dir, "default-policy")
		if r := ssf(t, d.tmp, "policy", "init", def); r.code != 0 {
			t.Fatalf("ssf policy init: exit %d\n%s", r.code, r.stderr)
		}
		if r := build(def); r.code == 0 || hits.Load() == 0 {
			t.Errorf("under the default set: exit %d after %d registry requests, want a fetch that fails\n%s", r.code, hits.Load(), r.stderr)
		}
	})

	// Signed by the listed key, the same pipeline builds (the default signer: the run's identity).
	sign(t, p, key)
	r := p.mustBuild("--policy", pol)
	if !strings.Contains(r.stderr, "admitted the build (pipeline signed by "+fp+")") {
		t.Errorf("the build does not say the policy admitted a pipeline signed by %s:\n%s", fp, r.stderr)
	}

	run("publish outside the prefix denied, inside pushed", func(t *testing.T) {
		r := ssfEnv(t, p.tmp, reg.env(true), "publish", p.out, "--to", reg.host+"/other/app:v1", "--policy", pol)
		if r.code != 1 || !strings.Contains(r.stderr, "refusing to publish: policy gate ssf.publish denied the publish to "+reg.host+"/other/app:v1") ||
			!strings.Contains(r.stderr, "publishing to "+reg.host+"/other/app:v1 is not allowed: this factory publishes under [\""+reg.host+"/team/\"] only") {
			t.Fatalf("publish outside the prefix: exit %d, want 1 with the team rule's message\n%s%s", r.code, r.stdout, r.stderr)
		}
		if resp, body := reg.get(t, "other/app/tags/list", true); resp.StatusCode != http.StatusNotFound {
			t.Errorf("a denied publish pushed something: %s %s", resp.Status, body)
		}
		if r := ssfEnv(t, p.tmp, reg.env(true), "publish", p.out, "--to", reg.host+"/team/app:v1", "--policy", pol); r.code != 0 {
			t.Fatalf("publish under the prefix: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if resp, body := reg.get(t, "team/app/tags/list", true); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"v1"`) {
			t.Errorf("the admitted publish is not in the registry: %s %s", resp.Status, body)
		}
	})

	run("ssf verify writes a PASSED summary cosign verifies", func(t *testing.T) {
		app := filepath.Join(p.out, "artifact")
		out := filepath.Join(p.dir, "artifact.vsa.json")
		r := ssf(t, p.tmp, "verify", app, "--policy", pol, "--vsa", out,
			"--certificate-identity", runIdentity, "--certificate-oidc-issuer", identityIssuer)
		if r.code != 0 || !strings.Contains(r.stderr, "PASSED") {
			t.Fatalf("ssf verify --policy --vsa: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		st, pred := readVSA(t, out)
		if st["predicateType"] != vsaType || pred.VerificationResult != "PASSED" || pred.Policy.URI != "file://"+pol || len(pred.Policy.Digest["sha256"]) != 64 {
			t.Errorf("summary: %v %+v", st["predicateType"], pred)
		}
		cosign := os.Getenv("SSF_COSIGN")
		if cosign == "" {
			if os.Getenv("SSF_REQUIRE_INTEROP") == "1" {
				t.Fatal("SSF_COSIGN is not set")
			}
			t.Skip("SSF_COSIGN is not set (make test sets it)")
		}
		tr := filepath.Join(p.dir, "trusted_root.json")
		if r := ssf(t, p.tmp, "trust", "export", "--out", tr); r.code != 0 {
			t.Fatalf("ssf trust export: exit %d\n%s", r.code, r.stderr)
		}
		if b, err := exec.Command(cosign, "verify-blob-attestation", "--bundle", out, "--trusted-root", tr,
			"--certificate-identity", identityTD+"/verifier", "--certificate-oidc-issuer", identityIssuer,
			"--type", vsaType, app).CombinedOutput(); err != nil {
			t.Errorf("cosign verify-blob-attestation of the summary: %v\n%s", err, b)
		}
	})
}
