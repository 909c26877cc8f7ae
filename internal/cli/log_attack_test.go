package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/sign"
)

// TestLogServeStopsWhenTheLogIsReplaced: `ssf trust rotate` moves $SSF_HOME/log to log-<keyid>/ and a new log
// (another key) starts in its place. A read-only ssf log serve running then used to answer from both: its files
// from the archived directory it held open (200), its API from the new log's checkpoint, which its key cannot
// verify (500). Now every path answers 503 saying to restart it, and it exits 1 naming the replaced directory.
func TestLogServeStopsWhenTheLogIsReplaced(t *testing.T) {
	lay := initHome(t)
	signer, err := sign.LoadKey(lay.TLogKey())
	if err != nil {
		t.Fatal(err)
	}
	appendEntries(t, lay.Log(), signer, "ssf.local", 0, 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- Main(ctx, []string{"log", "serve", "--addr", addr}, io.Discard, &errb) }()
	base := "http://" + addr
	if info := waitServing(t, base, done, &errb); info["treeSize"] != float64(2) {
		t.Fatalf("/api/v1/log: %v", info)
	}

	// What the rotation does to the directory: the old log moves aside, a new one under another key appears.
	if err := os.Rename(lay.Log(), lay.Log()+"-0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	appendEntries(t, lay.Log(), other, "ssf.local", 0, 1)

	for _, p := range []string{"/checkpoint", "/api/v1/log", "/api/v1/log/entries?logIndex=0"} {
		resp, err := http.Get(base + p)
		if err != nil {
			continue // the server may have stopped already: that is fine too
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "restart ssf log serve") {
			t.Errorf("GET %s after the log was replaced: %d %s, want 503 saying to restart the server", p, resp.StatusCode, b)
		}
	}
	select {
	case code := <-done:
		if code != 1 || !strings.Contains(errb.String(), "the transparency log was replaced: "+lay.Log()+" is no longer") {
			t.Fatalf("ssf log serve exited %d, want 1 naming the replaced log: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second): // a bound on a failure, not a synchronisation: it stops at once
		t.Fatalf("ssf log serve still runs 10 s after its log was replaced: %s", errb.String())
	}
}

// TestVerifierFilesAreBounded: the files a verifier reads whole (--trusted-root, --key, the monitor state) are
// refused past their bound as bad usage naming the flag, instead of read to the end: --trusted-root /dev/zero
// used to take all memory and die ("fatal error: out of memory").
func TestVerifierFilesAreBounded(t *testing.T) {
	initHome(t)
	dir := t.TempDir()
	big := func(name string, n int64) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	keyless := []string{"verify", "/nonexistent", "--bundle", "/nonexistent", "--certificate-identity", "spiffe://ssf.local/pipeline/x",
		"--certificate-oidc-issuer", "https://ssf.local/issuer", "--trusted-root"}
	// Files just over each bound first (without the bounds they failed as unparseable, not as too large), then
	// endless /dev/zero (without the bounds, the end of the test binary).
	for _, file := range []func(n int64) string{func(n int64) string { return big(fmt.Sprint(n), n+1) }, func(int64) string { return "/dev/zero" }} {
		for _, c := range []struct {
			args []string
			want string
		}{
			{append(keyless, file(maxTrustedRoot)), "--trusted-root: "},
			{[]string{"verify", "/nonexistent", "--bundle", "/nonexistent", "--key", file(maxPublicKey)}, "reading public key: "},
			{[]string{"log", "verify", "--log", srv.URL, "--key", file(maxPublicKey)}, "reading --key: "},
		} {
			code, _, errs := ssfRun(t, context.Background(), c.args...)
			if code != 2 || !strings.Contains(errs, c.want) || !strings.Contains(errs, "bytes: not ") {
				t.Fatalf("ssf %s: exit %d %q, want 2 naming the flag and the bound", strings.Join(c.args, " "), code, errs)
			}
		}
	}
	for _, state := range []string{big("state", maxStateFile+1), "/dev/zero"} {
		if _, err := readMonitorState(state); err == nil || !strings.Contains(err.Error(), "bytes: not a monitor state") {
			t.Fatalf("readMonitorState(%s): %v, want the bound named", state, err)
		}
	}
}
