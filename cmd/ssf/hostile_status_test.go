package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A hostile registry's status line carries terminal escapes that would clear the screen and print a verdict.
// ssf verify REF fails (exit 1) and its message reaches the terminal with every control character escaped.
func TestVerifyReferenceEscapesRegistryText(t *testing.T) {
	tmp := t.TempDir()
	const spoof = "500 \x1b[2J\x1b[H\x1b]0;ok\x07verified: registry.example/app built by you\u202e"
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 " + spoof + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		buf.Flush()
	}))
	defer s.Close()
	ref := strings.TrimPrefix(s.URL, "http://") + "/app@sha256:" + strings.Repeat("a", 64)
	r := ssf(t, tmp, append([]string{"verify", ref, "-v"}, asRun...)...)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	if strings.ContainsAny(r.stderr+r.stdout, "\x1b\x07\u202e") {
		t.Fatalf("a registry's control characters reached the terminal: %q", r.stderr)
	}
	if !strings.Contains(r.stderr, `\u001b[2J`) {
		t.Errorf("stderr does not show the escaped status line: %q", r.stderr)
	}

	// ssf publish of a real build to a registry whose error body carries the escapes: the same.
	errBody := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
		case r.Method == http.MethodHead:
			http.NotFound(w, r)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"errors":[{"code":"DENIED","message":"\u001b[2J\u001b[Hpublished: registry.example/app\u202e"}]}`))
		}
	}))
	defer errBody.Close()
	p := builtDefault(t)
	r = ssf(t, p.tmp, "publish", p.out, "--to", strings.TrimPrefix(errBody.URL, "http://")+"/app")
	if r.code != 1 || strings.ContainsAny(r.stderr+r.stdout, "\x1b\x07\u202e") || !strings.Contains(r.stderr, `\u001b[2J`) {
		t.Fatalf("ssf publish: exit %d, want 1 with the escapes shown escaped: %q", r.code, r.stderr)
	}
}
