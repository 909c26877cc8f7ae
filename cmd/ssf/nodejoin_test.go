package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestNodeJoinOverHTTPS: `ssf node serve` on the CA's home, `ssf node join --ca URL --ca-cert-hash` on a new home
// with the token `ssf node token` printed: the node joins; the token replayed is refused (exit 2, the CA's
// words); a wrong pin never reaches the CA (exit 1); the server stops on SIGINT with exit 0.
func TestNodeJoinOverHTTPS(t *testing.T) {
	dir := t.TempDir()
	caHome := filepath.Join(dir, "ca")
	ca := []string{"SSF_HOME=" + caHome}
	if r := ssfEnv(t, dir, ca, "init"); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	tok := ssfEnv(t, dir, ca, "node", "token", "--ttl", "5m")
	if tok.code != 0 {
		t.Fatalf("node token: exit %d\n%s", tok.code, tok.stderr)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	pin := regexp.MustCompile(`--ca-cert-hash (sha256:[0-9a-f]{64})`).FindStringSubmatch(tok.stderr)
	if pin == nil {
		t.Fatalf("node token printed no pin:\n%s", tok.stderr)
	}

	serve := exec.Command(ssfBin, "node", "serve", "--addr", "127.0.0.1:0")
	serve.Env = append(os.Environ(), ca[0], "TMPDIR="+dir)
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
		if m := regexp.MustCompile(`url=(https://\S+) ca_cert_hash=(\S+)`).FindStringSubmatch(lines.Text()); m != nil {
			url = m[1]
			if m[2] != pin[1] {
				t.Errorf("node serve pins %s, node token %s", m[2], pin[1])
			}
		}
	}
	if url == "" {
		serve.Process.Kill()
		t.Fatal("node serve said no URL")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for lines.Scan() {
			t.Log(lines.Text())
		}
	}()
	defer func() {
		serve.Process.Signal(syscall.SIGINT)
		<-done // every read of the pipe before Wait, as os/exec requires
		if err := serve.Wait(); err != nil {
			t.Errorf("node serve after SIGINT: %v", err)
		}
	}()

	join := func(home, hash string) result {
		return ssfEnv(t, dir, []string{"SSF_HOME=" + filepath.Join(dir, home)}, "node", "join", "--ca", url,
			"--ca-cert-hash", hash, "--token-file", tokenFile, "--host", home)
	}
	if r := join("worker-1", pin[1]); r.code != 0 || strings.TrimSpace(r.stdout) != "joined as spiffe://ssf.local/node/worker-1" {
		t.Fatalf("join: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := join("worker-2", pin[1]); r.code != 2 || !strings.Contains(r.stderr, "node join refused: the token was used already") {
		t.Fatalf("replayed token: exit %d, want 2\n%s", r.code, r.stderr)
	}
	if r := join("worker-3", "sha256:"+strings.Repeat("0", 64)); r.code != 1 || !strings.Contains(r.stderr, "not the pinned sha256:0000") {
		t.Fatalf("wrong pin: exit %d, want 1\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "worker-3", "keys", "node.crt")); err == nil {
		t.Fatal("a wrong pin wrote a certificate")
	}
}

// TestNodeTokenEmptyScope: `ssf node token --pipelines ""` (an empty variable in a script) is bad usage, not a
// token for every pipeline; no token is stored.
func TestNodeTokenEmptyScope(t *testing.T) {
	dir := t.TempDir()
	env := []string{"SSF_HOME=" + filepath.Join(dir, "ca")}
	if r := ssfEnv(t, dir, env, "init"); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	r := ssfEnv(t, dir, env, "node", "token", "--pipelines", "")
	if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "--pipelines is empty: name at least one glob") {
		t.Fatalf("node token --pipelines '': exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "ca", "node-tokens")); len(ents) != 0 {
		t.Fatalf("a refused token was stored: %v", ents)
	}
}
