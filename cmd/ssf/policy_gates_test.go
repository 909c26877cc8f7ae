package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
)

// writePolicy writes a policy set of the given files (name -> Rego) into a new directory and returns it.
func writePolicy(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "policy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// build runs the project's build with extra arguments and checks it failed with exit code want, naming every
// string in msgs, leaving no OUT behind.
func (p *project) mustFailWith(code int, extra []string, msgs ...string) result {
	p.t.Helper()
	r := p.build(extra...)
	if r.code != code {
		p.t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, m := range msgs {
		if !strings.Contains(r.stderr, m) {
			p.t.Errorf("stderr does not say %q:\n%s", m, r.stderr)
		}
	}
	if _, err := os.Stat(p.out); !os.IsNotExist(err) {
		p.t.Errorf("a refused build left %s behind (stat: %v)", p.out, err)
	}
	p.assertClean()
	return r
}

// TestPolicyDeniesDependencyBeforeFetch: an ssf.deps rule stops the build before the dependency is fetched: the
// server is never asked, every message is shown, no task runs and nothing is signed.
func TestPolicyDeniesDependencyBeforeFetch(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("banned bytes\n"))
	}))
	defer srv.Close()
	url := srv.URL + "/banned.tgz"
	sum := "0d6f7e0f1d5e1c3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4"
	pol := writePolicy(t, map[string]string{"deps.rego": `package ssf.deps

deny contains msg if {
	endswith(input.dependency.url, "/banned.tgz")
	msg := sprintf("%s from %s is banned by the security team", [input.dependency.name, input.dependency.url])
}

deny contains msg if {
	input.dependency.type == "file"
	msg := sprintf("pin %s is not on the allow list", [input.dependency.digest])
}
`})
	p := newProject(t, `    - name: use
      steps:
        - name: read
          run: echo RAN > "$SSF_OUTPUTS/x"
      outputs: [x]
`)
	p.deps = "    - {type: file, url: '" + url + "', sha256: " + sum + ", dest: tools/banned.tgz}\n"
	r := p.mustFailWith(1, []string{"--policy", pol},
		"policy gate ssf.deps denied file dependency \"tools/banned.tgz\"",
		"tools/banned.tgz from "+url+" is banned by the security team",
		"pin sha256:"+sum+" is not on the allow list",
		"nothing was signed",
	)
	if n := hits.Load(); n != 0 {
		t.Errorf("the dependency's server was asked %d times; the policy must decide before any fetch", n)
	}
	if strings.Contains(r.stderr, "RAN") || strings.Contains(r.stderr, "task use started") {
		t.Errorf("a task ran after the denial:\n%s", r.stderr)
	}
	// Without the rule the same build fetches it (and fails on the made-up pin): the gate was what stopped it.
	allow := writePolicy(t, map[string]string{"deps.rego": "package ssf.deps\n\ndeny contains msg if { false; msg := \"\" }\n"})
	p.mustFailWith(1, []string{"--policy", allow}, "does not match its pin")
	if hits.Load() == 0 {
		t.Error("with an allowing policy the dependency was not fetched")
	}
}

// TestPolicySyntaxErrorExits2: a policy set that does not compile stops the command before any work, exit 2,
// naming the file and line; so does a --policy that is not a directory.
func TestPolicySyntaxErrorExits2(t *testing.T) {
	pol := writePolicy(t, map[string]string{"build.rego": "package ssf.build\n\ndeny contains msg if {\n\tinput.pipeline.name ==\n}\n"})
	p := newProject(t, simpleTask)
	r := p.mustFailWith(2, []string{"--policy", pol}, "policy "+pol+": build.rego:5: ", "ssf policy test DIR")
	if strings.Contains(r.stderr, "source:") {
		t.Errorf("the build started before the policy was compiled:\n%s", r.stderr)
	}
	p.mustFailWith(2, []string{"--policy", filepath.Join(p.dir, "no-such-dir")}, "is not a directory")
	// ssf publish compiles it first too.
	if r := ssf(t, p.tmp, "publish", p.dir, "--to", "127.0.0.1:1/x", "--policy", pol); r.code != 2 || !strings.Contains(r.stderr, "build.rego:5") {
		t.Errorf("publish with a broken policy: exit %d, want 2 naming build.rego:5\n%s", r.code, r.stderr)
	}
}

// TestProvenanceCarriesPolicyDigest: the provenance names the policy set the gates applied, by digest and source;
// the digest is the one `ssf policy init` prints for the same files.
func TestProvenanceCarriesPolicyDigest(t *testing.T) {
	p := newProject(t, simpleTask)
	p.write()
	dir := filepath.Join(p.dir, "mypolicy")
	init := ssf(t, p.tmp, "policy", "init", dir)
	m := regexp.MustCompile(`digest (sha256:[0-9a-f]{64})`).FindStringSubmatch(init.stderr)
	if init.code != 0 || m == nil {
		t.Fatalf("ssf policy init: exit %d\n%s", init.code, init.stderr)
	}
	r := p.build("--policy", dir)
	if r.code != 0 {
		t.Fatalf("build under the default rules: exit %d\n%s", r.code, r.stderr)
	}
	internal := p.statement()["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["internalParameters"].(map[string]any)
	got, _ := json.Marshal(internal["policy"])
	want, _ := json.Marshal(map[string]string{"digest": m[1], "source": dir})
	if string(got) != string(want) {
		t.Errorf("internalParameters.policy = %s, want %s", got, want)
	}
	if !strings.Contains(r.stderr, "policy "+dir+" ("+m[1]+") admitted the build (pipeline unsigned)") {
		t.Errorf("the build does not say which policy admitted it:\n%s", r.stderr)
	}
}

// TestPublishPolicyDenies: a failing ssf.publish rule stops `ssf publish` and `ssf build --publish` with its
// messages before anything is pushed; the statements it sees are the verified ones, with their signer.
func TestPublishPolicyDenies(t *testing.T) {
	p, pub := built(t)
	reg := startRegistry(t)
	fp := ssf(t, p.tmp, "pipeline", "fingerprint", pub)
	if fp.code != 0 {
		t.Fatalf("fingerprint: %s", fp.stderr)
	}
	key := strings.TrimSpace(fp.stdout)
	pol := writePolicy(t, map[string]string{"publish.rego": `package ssf.publish

deny contains msg if {
	startswith(input.target, concat("", [split(input.target, "/")[0], "/prod/"]))
	msg := sprintf("nothing goes to prod from here (%d outputs)", [count(input.outputs)])
}

deny contains msg if {
	startswith(input.target, concat("", [split(input.target, "/")[0], "/prod/"]))
	some s in input.statements
	s.predicateType == "https://slsa.dev/provenance/v1"
	msg := sprintf("provenance signed by key %s identity %s", [object.get(s.signer, "key", "-"), object.get(s.signer, "identity", "-")])
}

# Lets a publish through only when it saw the verified provenance and both SBOMs of each output.
deny contains "statements missing" if count(input.statements) != 1 + 2 * count(input.outputs)
`})
	r := ssfEnv(t, p.tmp, reg.env(true), "publish", p.out, "--to", reg.host+"/prod/app:v1", "--policy", pol)
	if r.code != 1 {
		t.Fatalf("publish: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"refusing to publish: policy gate ssf.publish denied the publish to " + reg.host + "/prod/app:v1",
		"nothing goes to prod from here (2 outputs)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
		}
	}
	// The local factory signs with its key, or with a certificate for its pipeline identity (--signer identity).
	if !strings.Contains(r.stderr, "provenance signed by key "+key+" identity -") &&
		!strings.Contains(r.stderr, "provenance signed by key - identity spiffe://ssf.local/pipeline/test") {
		t.Errorf("the gate did not see the provenance's signer:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "statements missing") {
		t.Errorf("the gate did not see the provenance and the SBOMs:\n%s", r.stderr)
	}
	if resp, body := reg.get(t, "prod/app/tags/list", true); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a denied publish pushed something: %s %s", resp.Status, body)
	}
	// The same policy lets another repository through.
	r = ssfEnv(t, p.tmp, reg.env(true), "publish", p.out, "--to", reg.host+"/dev/app:v1", "--policy", pol)
	if r.code != 0 {
		t.Errorf("publish to dev: exit %d\n%s", r.code, r.stderr)
	}
	// ssf build --publish applies the same gate, after the build.
	b := newProject(t, simpleTask)
	r = b.build("--policy", pol, "--publish", reg.host+"/prod/built:v1")
	if r.code != 1 || !strings.Contains(r.stderr, "nothing goes to prod from here") {
		t.Errorf("build --publish: exit %d, want 1 with the denial\n%s", r.code, r.stderr)
	}
	if resp, body := reg.get(t, "prod/built/tags/list", true); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a denied build --publish pushed something: %s %s", resp.Status, body)
	}
}

// TestPolicySeesPipelineFromSource: input.pipeline.fromSource is true only when the pipeline file is committed,
// byte for byte, at the source's git commit; a policy can require it.
func TestPolicySeesPipelineFromSource(t *testing.T) {
	pol := writePolicy(t, map[string]string{"build.rego": `package ssf.build

deny contains msg if {
	not input.pipeline.fromSource
	msg := sprintf("pipeline %s is not the one committed in %s", [input.pipeline.path, input.source.digest])
}
`})
	p := newProject(t, simpleTask)
	p.pipeline = filepath.Join(p.src, "ssf.yaml") // in the source, and committed with it
	p.write()
	gitIn(t, p.src, "init", "-q")
	gitIn(t, p.src, "add", ".")
	gitIn(t, p.src, "commit", "-q", "-m", "source and pipeline")
	if r := p.runBuild("--policy", pol); r.code != 0 {
		t.Fatalf("a committed pipeline: exit %d\n%s", r.code, r.stderr)
	}
	os.RemoveAll(p.out)
	// Outside the source, the same bytes are not the committed file.
	outside := filepath.Join(p.dir, "ssf.yaml")
	data, _ := os.ReadFile(p.pipeline)
	os.WriteFile(outside, data, 0o644)
	r := ssf(t, p.tmp, "build", "-f", outside, "--source", p.src, "--out", p.out, "--policy", pol)
	if r.code != 1 || !strings.Contains(r.stderr, "pipeline "+outside+" is not the one committed in gitCommit:") {
		t.Errorf("a pipeline outside the source: exit %d\n%s", r.code, r.stderr)
	}
	// Changed after the commit: the source is recorded by tree digest, and the file is not the commit's.
	os.WriteFile(p.pipeline, append(data, []byte("# not committed\n")...), 0o644)
	r = p.runBuild("--policy", pol)
	if r.code != 1 || !strings.Contains(r.stderr, "is not the one committed in sha256:") {
		t.Errorf("an uncommitted change: exit %d\n%s", r.code, r.stderr)
	}
}
