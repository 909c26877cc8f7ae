package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// startNodeServe runs `ssf node serve` on the factory home until the test ends (then SIGINT, exit 0 checked) and
// returns its URL.
func startNodeServe(t *testing.T, dir, factoryHome string) string {
	t.Helper()
	serve := exec.Command(ssfBin, "node", "serve", "--addr", "127.0.0.1:0")
	serve.Env = append(os.Environ(), "SSF_HOME="+factoryHome, "TMPDIR="+dir)
	stderr, err := serve.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	var url string
	for url == "" && lines.Scan() {
		if m := regexp.MustCompile(`url=(https://\S+)`).FindStringSubmatch(lines.Text()); m != nil {
			url = m[1]
		}
	}
	if url == "" {
		serve.Process.Kill()
		serve.Wait()
		t.Fatal("node serve said no URL")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for lines.Scan() {
			t.Log(lines.Text())
		}
	}()
	t.Cleanup(func() {
		serve.Process.Signal(syscall.SIGINT)
		<-done // every read of the pipe before Wait, as os/exec requires
		if err := serve.Wait(); err != nil {
			t.Errorf("node serve after SIGINT: %v", err)
		}
	})
	return url
}

// joinNode makes a token on the factory home (with extra token flags) and joins a new home named host with it
// over url; it returns the new home.
func joinNode(t *testing.T, dir, factoryHome, url, host string, tokenFlags ...string) string {
	t.Helper()
	f := []string{"SSF_HOME=" + factoryHome}
	tok := ssfEnv(t, dir, f, append([]string{"node", "token", "--ttl", "5m"}, tokenFlags...)...)
	if tok.code != 0 {
		t.Fatalf("node token: exit %d\n%s", tok.code, tok.stderr)
	}
	pin := regexp.MustCompile(`--ca-cert-hash (sha256:[0-9a-f]{64})`).FindStringSubmatch(tok.stderr)
	if pin == nil {
		t.Fatalf("node token printed no pin:\n%s", tok.stderr)
	}
	tokenFile := filepath.Join(dir, host+".token")
	if err := os.WriteFile(tokenFile, []byte(tok.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	nodeHome := filepath.Join(dir, host)
	r := ssfEnv(t, dir, []string{"SSF_HOME=" + nodeHome}, "node", "join", "--ca", url, "--ca-cert-hash", pin[1],
		"--token-file", tokenFile, "--host", host)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "joined as spiffe://ssf.local/node/"+host {
		t.Fatalf("join: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	importBuilder(t, dir, nodeHome)
	return nodeHome
}

// importBuilder imports the builder image of the factory's tests into home (the import is deterministic).
func importBuilder(t *testing.T, dir, home string) {
	t.Helper()
	r := ssfEnv(t, dir, []string{"SSF_HOME=" + home}, "builder", "import", filepath.Join(filepath.Dir(ssfBin), "rootfs"), "--name", "busybox")
	if r.code != 0 || lastLine(r.stdout) != builder {
		t.Fatalf("builder import into %s: exit %d, %q want %q\n%s", home, r.code, lastLine(r.stdout), builder, r.stderr)
	}
}

// TestNodeRemoteKeylessBuild: two homes on one machine stand for two nodes. The factory serves joins and the node
// API (ssf node serve); a node joined over HTTPS builds with --signer identity through it — its certificates,
// log entries and timestamps come from the factory — and every bundle verifies as a local one does, with the
// factory's trust and with its exported trusted root, and the entries are in the factory's log; a build on the
// factory node at the same time takes turns with the node API for the log and verifies too. A node scoped
// to other pipelines is refused; a request without a client certificate is refused; once revoked, the node is
// refused.
func TestNodeRemoteKeylessBuild(t *testing.T) {
	needSandbox(t)
	dir := t.TempDir()
	factory := filepath.Join(dir, "factory")
	fenv := []string{"SSF_HOME=" + factory}
	if r := ssfEnv(t, dir, fenv, "init"); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	url := startNodeServe(t, dir, factory)
	worker := joinNode(t, dir, factory, url, "worker-1", "--pipelines", "te*")
	wenv := []string{"SSF_HOME=" + worker}
	if _, err := os.Stat(filepath.Join(worker, "keys", "ca-intermediate.key")); err == nil {
		t.Fatal("the joined node's home holds a CA of its own")
	}

	importBuilder(t, dir, factory)

	p := identityProject(t)
	p.write()
	build := func(env []string) result {
		return ssfEnv(t, p.tmp, env, "build", "-f", p.pipeline, "--source", p.src, "--out", p.out, "--signer", "identity")
	}
	// The same pipeline built at once on the factory node (in-process CA, log, TSA) and on the joined node.
	localOut := filepath.Join(p.dir, "out-local")
	local := make(chan result, 1)
	go func() {
		local <- ssfEnv(t, p.tmp, fenv, "build", "-f", p.pipeline, "--source", p.src, "--out", localOut, "--signer", "identity")
	}()
	r := build(wenv)
	if r.code != 0 {
		t.Fatalf("build on the joined node: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if l := <-local; l.code != 0 {
		t.Fatalf("build on the factory node beside it: exit %d\n%s%s", l.code, l.stdout, l.stderr)
	}
	run := identityTD + "/pipeline/test"
	att := filepath.Join(p.out, "attestations")
	tr := filepath.Join(dir, "trusted_root.json")
	if r := ssfEnv(t, dir, fenv, "trust", "export", "--out", tr); r.code != 0 {
		t.Fatalf("trust export: %d %s", r.code, r.stderr)
	}
	localAtt := filepath.Join(localOut, "attestations")
	for _, c := range []struct{ file, bundle, identity string }{
		{filepath.Join(p.out, "app"), filepath.Join(att, "provenance.sigstore.json"), run},
		{filepath.Join(p.out, "app"), filepath.Join(att, "compile.task.sigstore.json"), run + "/task/compile"},
		{filepath.Join(p.out, "report"), filepath.Join(att, "check.task.sigstore.json"), run + "/task/check"},
		{filepath.Join(localOut, "app"), filepath.Join(localAtt, "provenance.sigstore.json"), run},
		{filepath.Join(localOut, "report"), filepath.Join(localAtt, "check.task.sigstore.json"), run + "/task/check"},
	} {
		for _, trArgs := range [][]string{nil, {"--trusted-root", tr}} {
			args := append([]string{"verify", c.file, "--bundle", c.bundle, "--certificate-identity", c.identity, "--certificate-oidc-issuer", identityIssuer}, trArgs...)
			// On the factory (its own trust), and on the joined node (the copy of it the node keeps).
			for _, env := range [][]string{fenv, wenv} {
				if r := ssfEnv(t, dir, env, args...); r.code != 0 || !strings.Contains(r.stdout, "verified: ") {
					t.Errorf("%s ssf %s: exit %d\n%s%s", env[0], strings.Join(args, " "), r.code, r.stdout, r.stderr)
				}
			}
		}
	}
	// Stock cosign, every check on, with the factory's exported root.
	t.Run("cosign", func(t *testing.T) {
		cosign := interopTool(t, "SSF_COSIGN", "cosign")
		for _, c := range [][]string{
			{filepath.Join(p.out, "app"), filepath.Join(att, "provenance.sigstore.json"), run, "slsaprovenance1"},
			{filepath.Join(p.out, "report"), filepath.Join(att, "check.task.sigstore.json"), run + "/task/check", "https://ssf.dev/attestations/task/v1"},
		} {
			args := []string{"verify-blob-attestation", "--bundle", c[1], "--trusted-root", tr, "--certificate-identity", c[2],
				"--certificate-oidc-issuer", identityIssuer, "--type", c[3], c[0]}
			if out, err := exec.Command(cosign, args...).CombinedOutput(); err != nil {
				t.Errorf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	})
	// The joined node exports the factory's trusted root as the factory does.
	nodeTR := filepath.Join(dir, "node_trusted_root.json")
	if r := ssfEnv(t, dir, wenv, "trust", "export", "--out", nodeTR); r.code != 0 {
		t.Fatalf("trust export on the joined node: %d %s", r.code, r.stderr)
	}
	if a, b := readFile(t, tr), readFile(t, nodeTR); a != b {
		t.Errorf("the joined node's trusted root differs from the factory's:\n%s\n%s", b, a)
	}
	// Every signature went into the factory's log: a static copy of it audits clean, with one entry per bundle.
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(factory, "log"))))
	defer srv.Close()
	if r := ssfEnv(t, dir, fenv, "log", "verify", "--log", srv.URL, "--state", filepath.Join(dir, "monitor.json")); r.code != 0 {
		t.Fatalf("ssf log verify of the factory's log: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(worker, "log", "checkpoint")); err == nil {
		t.Error("the joined node wrote a transparency log of its own")
	}

	// A node whose token allows other pipelines only gets no certificate for this one.
	other := joinNode(t, dir, factory, url, "worker-2", "--pipelines", "web-*,api")
	p.out = filepath.Join(p.dir, "out-2")
	r = build([]string{"SSF_HOME=" + other})
	if r.code != 2 || !strings.Contains(r.stderr, `this node (worker-2) may sign only for pipelines matching web-*,api (its join token's --pipelines), not for pipeline "test"`) {
		t.Errorf("out-of-scope build: exit %d, want 2 and a refusal naming the scope\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(p.out); err == nil {
		t.Error("the out-of-scope build wrote its output directory")
	}

	// Without a client certificate the node API answers 401, saying what it wants.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get(url + "/v1/node/trust")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "no client certificate") {
		t.Errorf("node API without a client certificate: %d %s", resp.StatusCode, body)
	}

	// The factory lists its nodes; once worker-1 is revoked, its next build is refused.
	if r := ssfEnv(t, dir, fenv, "node", "revoke", "worker-1"); r.code != 0 || strings.TrimSpace(r.stdout) != "revoked node worker-1" {
		t.Fatalf("node revoke: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	list := ssfEnv(t, dir, fenv, "node", "list", "--output", "json")
	var nodes []struct {
		Name      string
		SPIFFEID  string `json:"spiffeId"`
		Revoked   *string
		Pipelines []string
		Own       bool
	}
	if err := json.Unmarshal([]byte(list.stdout), &nodes); err != nil || len(nodes) != 3 {
		t.Fatalf("node list: exit %d, %v\n%s%s", list.code, err, list.stdout, list.stderr)
	}
	if !nodes[0].Own || nodes[1].SPIFFEID != "spiffe://ssf.local/node/worker-1" || nodes[1].Revoked == nil || nodes[2].Revoked != nil ||
		strings.Join(nodes[2].Pipelines, ",") != "web-*,api" {
		t.Errorf("node list: %s", list.stdout)
	}
	p.out = filepath.Join(p.dir, "out-3")
	r = build(wenv)
	if r.code != 2 || !strings.Contains(r.stderr, `node request refused: node "worker-1" was revoked at`) {
		t.Errorf("build on a revoked node: exit %d, want 2 and a refusal naming the revocation\n%s", r.code, r.stderr)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
