package registry

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestLoopbackAddr: only loopback IP literals are loopback. A name is not, not even "localhost": the CLI listens
// where the resolver says, and /etc/hosts or a DNS answer can put "localhost" on a network address, where
// --insecure-local and the default anonymous pull must never be served.
func TestLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:5000":          true,
		"127.9.8.7:5000":          true,
		"[::1]:5000":              true,
		"[0:0:0:0:0:0:0:1]:5000":  true,
		"[::ffff:127.0.0.1]:5000": true,
		"[::ffff:10.0.0.1]:5000":  false,
		"10.0.0.1:5000":           false,
		"0.0.0.0:5000":            false,
		"[::]:5000":               false,
		":5000":                   false,
		"[::1%lo]:5000":           false,
		"[fe80::1%eth0]:5000":     false,
		"localhost:5000":          false,
		"localhost.evil:5000":     false,
		"127.0.0.1":               false,
		"127.1:5000":              false,
		"0x7f000001:5000":         false,
		"":                        false,
	} {
		if got := LoopbackAddr(addr); got != want {
			t.Errorf("LoopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestForwardedForIsIgnored: a remote client cannot pass as loopback by saying so in a header.
func TestForwardedForIsIgnored(t *testing.T) {
	reg, err := New(t.TempDir(), WithInsecureLocalPushUnsafe())
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/v2/r/blobs/uploads/", nil)
	req.RemoteAddr = "192.0.2.1:1234"
	for _, h := range []string{"X-Forwarded-For", "X-Real-Ip", "Forwarded"} {
		req.Header.Set(h, "127.0.0.1")
	}
	rec := httptest.NewRecorder()
	reg.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("remote push claiming loopback in headers: %d, want 401", rec.Code)
	}
}
