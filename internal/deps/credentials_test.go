package deps

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

// A file server that wants the control plane's token gets it; a server it redirects to, on another host, does not.
func TestCredentials(t *testing.T) {
	body := []byte("a private file\n")
	pin := digest.FromBytes(body)

	var (
		mu   sync.Mutex
		seen = map[string]string{} // server -> Authorization it received last
	)
	record := func(who string, r *http.Request) {
		mu.Lock()
		seen[who] = r.Header.Get("Authorization")
		mu.Unlock()
	}
	// The other host: 127.0.0.2, a different address (and port) on the loopback interface.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 on this host: %v", err)
	}
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("other", r)
		w.Write(body)
	}))
	other.Listener = ln
	other.Start()
	defer other.Close()

	private := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("private", r)
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
			return
		}
		user, pass, basic := r.BasicAuth()
		if r.Header.Get("Authorization") != "Bearer tok-7f3a9c" && !(basic && user == "ci" && pass == "tok-7f3a9c") {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Write(body)
	}))
	defer private.Close()
	host := strings.TrimPrefix(private.URL, "http://")

	fetch := func(t *testing.T, url string, creds []Credential) error {
		t.Helper()
		spec := Spec{Kind: File, URL: url, SHA256: pin, Dest: "x"}
		_, err := Ingest(context.Background(), nil, []Spec{spec}, t.TempDir(), Options{Cache: t.TempDir(), Credentials: creds})
		return err
	}
	bearer := []Credential{{Host: host, Token: []byte("tok-7f3a9c")}}

	t.Run("without", func(t *testing.T) {
		if err := fetch(t, private.URL+"/x", nil); err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("fetch without the credential = %v, want a 401", err)
		}
	})
	t.Run("bearer", func(t *testing.T) {
		if err := fetch(t, private.URL+"/x", bearer); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("basic", func(t *testing.T) {
		if err := fetch(t, private.URL+"/x", []Credential{{Host: host, Username: "ci", Token: []byte("tok-7f3a9c")}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("redirect to another host", func(t *testing.T) {
		if err := fetch(t, private.URL+"/moved", bearer); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if seen["private"] != "Bearer tok-7f3a9c" {
			t.Errorf("the private server got %q", seen["private"])
		}
		if seen["other"] != "" {
			t.Errorf("the host redirected to got the credential: %q", seen["other"])
		}
	})
	t.Run("same address, other port", func(t *testing.T) {
		creds := []Credential{{Host: "127.0.0.1:1", Token: []byte("tok-7f3a9c")}}
		if err := fetch(t, private.URL+"/x", creds); err == nil {
			t.Fatal("a credential for another port was sent")
		}
	})
}

// Plain http carries a credential only to a loopback address.
func TestCredentialMatch(t *testing.T) {
	tr := credentialTransport{creds: []Credential{
		{Host: "proxy.corp.example", Token: []byte("a")},
		{Host: "10.0.0.5:8443", Token: []byte("b")},
		{Host: "127.0.0.1:3000", Token: []byte("c")},
	}}
	for _, tc := range []struct {
		url, want string
	}{
		{"https://proxy.corp.example/x", "a"},
		{"https://proxy.corp.example:443/x", "a"},
		{"https://PROXY.corp.example/x", "a"},
		{"http://proxy.corp.example/x", ""}, // in the clear over a network
		{"https://proxy.corp.example:8443/x", ""},
		{"https://evil.proxy.corp.example/x", ""},
		{"https://proxy.corp.example.evil/x", ""},
		{"https://10.0.0.5:8443/x", "b"},
		{"https://10.0.0.5/x", ""},
		{"http://127.0.0.1:3000/x", "c"},
		{"ftp://proxy.corp.example/x", ""},
	} {
		req, _ := http.NewRequest("GET", tc.url, nil)
		got := ""
		if c := tr.match(req); c != nil {
			got = string(c.Token)
		}
		if got != tc.want {
			t.Errorf("%s: credential %q, want %q", tc.url, got, tc.want)
		}
	}
	for host, ok := range map[string]bool{
		"proxy.corp.example": true, "proxy.corp.example:8443": true, "[::1]:3000": true, "10.0.0.5": true,
		"https://proxy.corp.example": false, "user@host": false, "Host.example": false, "host/path": false,
		"host:0": false, "host:x": false, "": false,
	} {
		if err := CheckCredentialHost(host); (err == nil) != ok {
			t.Errorf("CheckCredentialHost(%q) = %v", host, err)
		}
	}
}

// A private GOPROXY that wants a token (here: a loopback proxy in front of the real one) gets it on every request,
// and the modules ingest as from any proxy.
func TestCredentialsPrivateGoProxy(t *testing.T) {
	upstream := testGoProxy(t)
	var mu sync.Mutex
	var refused, served int
	priv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer goproxy-tok-1" {
			refused++
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		served++
		resp, err := http.Get(upstream + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer priv.Close()
	ingest := func(creds []Credential) error {
		_, err := Ingest(context.Background(), os.DirFS("testdata/gomod-uuid"), []Spec{{Kind: Gomod, Path: "."}}, t.TempDir(),
			Options{Cache: t.TempDir(), GoProxy: priv.URL, Credentials: creds})
		return err
	}
	if err := ingest(nil); err == nil {
		t.Fatal("the private proxy served modules without its token")
	}
	if err := ingest([]Credential{{Host: strings.TrimPrefix(priv.URL, "http://"), Token: []byte("goproxy-tok-1")}}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if served == 0 || refused == 0 {
		t.Errorf("served %d, refused %d", served, refused)
	}
}

// A URL whose user information does not parse (a bad escape, a control byte or an unescaped '/' in the password)
// is named without it in the messages that refuse it; so is a GOPROXY list with no usable entry.
func TestUnparsableUserinfoIsNotShown(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:p%zzTOKEN@proxy.example/m/@v/list": "https://***@v/list",
		"https://u:TOKEN\x7f@proxy.example/x":         "https://***@proxy.example/x",
		"https://u:TO/KEN@proxy.example/x":            "https://***@proxy.example/x",
		"https://u:TOKEN@proxy.example/x":             "https://proxy.example/x",
		"https://proxy.example/x":                     "https://proxy.example/x",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	for _, url := range []string{"https://u:p%zzTOKEN@127.0.0.1:1/x", "https://u:TO/KEN@127.0.0.1:1/x"} {
		spec := Spec{Kind: File, URL: url, SHA256: digest.FromString("x"), Dest: "x"}
		_, err := Ingest(context.Background(), nil, []Spec{spec}, t.TempDir(), Options{Cache: t.TempDir()})
		if err == nil || strings.Contains(err.Error(), "TOKEN") || strings.Contains(err.Error(), "KEN") {
			t.Errorf("fetching %q: %v", url, err)
		}
	}
	_, err := goProxyURL("off,https://ci:TOKEN@proxy.example")
	if err == nil || strings.Contains(err.Error(), "TOKEN") || !strings.Contains(err.Error(), `"off,https://proxy.example"`) {
		t.Errorf("goProxyURL: %v", err)
	}
}
