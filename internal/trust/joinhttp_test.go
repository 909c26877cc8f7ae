package trust

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/home"
)

// joinServer serves the CA at cal's join endpoint over HTTPS with its own certificate, as `ssf node serve` does.
func joinServer(t *testing.T, cal home.Layout) *httptest.Server {
	t.Helper()
	cert, err := ServerCertificate(cal, Options{}, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(JoinHandler(admitTo(cal, Options{}), t.Logf))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// TestNodeJoinOverHTTPS: a node joins over HTTPS, pinning the CA root; a replayed token is refused with the CA's
// words; a server whose root is not the pinned one never sees the token; the endpoint refuses what is not a join.
func TestNodeJoinOverHTTPS(t *testing.T) {
	cal := caHome(t, DefaultTrustDomain)
	srv := joinServer(t, cal)
	pin, err := RootPin(cal)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	send, err := HTTPJoin(ctx, srv.URL, pin)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := NewJoinToken(cal, DefaultTrustDomain, DefaultTokenTTL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	node := home.Layout{Dir: t.TempDir()}
	cert, err := Join(node, tok, "worker-https", time.Now(), send)
	if err != nil {
		t.Fatal(err)
	}
	if cert.URIs[0].String() != "spiffe://ssf.local/node/worker-https" {
		t.Fatalf("joined as %v", cert.URIs)
	}

	// Replay from another home: the CA's refusal comes back as a refusal.
	_, err = Join(home.Layout{Dir: t.TempDir()}, tok, "worker-x", time.Now(), send)
	if !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), "was used already") {
		t.Fatalf("replay over HTTPS: %v", err)
	}

	// Another factory's server (a man in the middle with a CA of its own): the TLS handshake fails on the pin, and
	// the token it would have stolen is still good.
	impostor := joinServer(t, caHome(t, DefaultTrustDomain))
	tok2, _, _ := NewJoinToken(cal, DefaultTrustDomain, DefaultTokenTTL, time.Now())
	badSend, _ := HTTPJoin(ctx, impostor.URL, pin)
	other := home.Layout{Dir: t.TempDir()}
	if _, err := Join(other, tok2, "worker-y", time.Now(), badSend); err == nil || !strings.Contains(err.Error(), "not the pinned") {
		t.Fatalf("join through an impostor: %v", err)
	}
	if _, err := os.Stat(other.NodeCert()); err == nil {
		t.Fatal("a certificate was written")
	}
	if _, err := Join(other, tok2, "worker-y", time.Now(), send); err != nil {
		t.Fatalf("the token after the impostor: %v", err)
	}

	// Bad pins and URLs are refused before anything is sent.
	for _, c := range [][2]string{{srv.URL, "sha256:beef"}, {strings.Replace(srv.URL, "https", "http", 1), pin}, {srv.URL + "/x", pin}} {
		if _, err := HTTPJoin(ctx, c[0], c[1]); !errors.Is(err, ErrJoinRefused) {
			t.Errorf("HTTPJoin(%q, %q): %v", c[0], c[1], err)
		}
	}

	// What is not a join.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, c := range []struct {
		method, path, ctype, body string
		code                      int
	}{
		{"GET", JoinPath, "", "", 405},
		{"POST", "/other", "application/json", "{}", 404},
		{"POST", JoinPath, "text/plain", "{}", 415},
		{"POST", JoinPath, "application/json", strings.Repeat("x", 17<<10), 413},
		{"POST", JoinPath, "application/json", "{", 403},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		resp, err := insecure.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s %s (%s): %d, want %d", c.method, c.path, c.ctype, resp.StatusCode, c.code)
		}
	}
}
