package deps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/opencontainers/go-digest"
)

// Hostile sources, registries and file servers: each test plays one and asserts that the attack failed.

// A server a lock file or a pipeline names redirects the control plane to addresses only its host can reach: a
// cloud metadata service, the unspecified address (which Linux connects to the host's loopback), loopback itself
// by another name. Every one is refused when the connection is opened, and nothing is fetched.
func TestFetchRefusesRedirectsToHostOnlyAddresses(t *testing.T) {
	body := []byte("pinned\n")
	var target string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/secret" {
			w.Write(body)
			return
		}
		http.Redirect(w, r, target, http.StatusFound)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, tc := range []struct{ target, want string }{
		{"http://169.254.169.254/latest/meta-data/", "link-local"},
		{"http://[::ffff:169.254.169.254]/latest/meta-data/", "link-local"},
		{"http://[fe80::1]:" + port + "/secret", "link-local"},
		{"http://0.0.0.0:" + port + "/secret", "unspecified"},
		{"http://100.100.100.200/latest/meta-data/", "metadata"},
	} {
		target = tc.target
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := Ingest(ctx, nil, []Spec{{Kind: File, URL: srv.URL + "/x", SHA256: digest.FromBytes(body), Dest: "x"}}, t.TempDir(), Options{Cache: t.TempDir()})
		cancel()
		if err == nil || !strings.Contains(err.Error(), "refusing to connect") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("redirect to %s: err = %v, want a refusal naming %q", tc.target, err, tc.want)
		}
	}
}

// A redirect to another scheme (file:, ftp:, gopher:) is not followed: only http and https are ever fetched.
func TestFetchFollowsNoRedirectToOtherSchemes(t *testing.T) {
	var target string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target, http.StatusFound)
	}))
	defer srv.Close()
	for _, target = range []string{"file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/x"} {
		_, err := Ingest(context.Background(), nil, []Spec{{Kind: File, URL: srv.URL + "/x", SHA256: digest.FromString("x"), Dest: "x"}}, t.TempDir(), Options{Cache: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "unsupported protocol scheme") {
			t.Errorf("redirect to %s: err = %v, want it refused", target, err)
		}
	}
}

// Loopback is allowed only when the URL being fetched names it (a local mirror); a fetch of any other host whose
// connection lands on loopback (a redirect, a name resolving there) is refused.
func TestDialPolicyLoopback(t *testing.T) {
	for u, want := range map[string]bool{
		"http://127.0.0.1:3000/x":          true,
		"http://localhost:4873/x":          true,
		"http://LOCALHOST/x":               true,
		"http://[::1]/x":                   true,
		"https://registry.npmjs.org/x":     false,
		"https://127.0.0.1.example.org/x":  false,
		"http://[::ffff:127.0.0.1]:80/x":   true,
		"https://proxy.golang.org/x/@v/v1": false,
	} {
		if got, _ := withDialPolicy(context.Background(), u).Value(dialPolicyKey{}).(bool); got != want {
			t.Errorf("loopback allowed for %s = %v, want %v", u, got, want)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("reached")) }))
	defer srv.Close()
	// A fetch whose URL names another host (here: what a redirect from it dials) must not reach loopback.
	ctx := context.WithValue(context.Background(), dialPolicyKey{}, false)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := defaultClient().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("a connection to loopback was opened for a URL that does not name it")
	}
	if !strings.Contains(err.Error(), "loopback") {
		t.Errorf("err = %v, want it to name loopback", err)
	}
	for _, a := range []string{"10.0.0.1", "192.168.1.1", "fd12::1", "140.82.112.3"} {
		if why := refusedAddr(netip.MustParseAddr(a), false); why != "" {
			t.Errorf("%s refused (%s): private and public registries must stay reachable", a, why)
		}
	}
}

// A server's reason phrase is its own text: it must not reach the build log, where it could carry terminal
// control sequences.
func TestFetchErrorCarriesNoServerText(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				c.Write([]byte("HTTP/1.1 404 \x1b]0;owned\x07\x1b[2J\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			}()
		}
	}()
	_, err = Ingest(context.Background(), nil, []Spec{{Kind: File, URL: "http://" + l.Addr().String() + "/x", SHA256: digest.FromString("x"), Dest: "x"}}, t.TempDir(), Options{Cache: t.TempDir()})
	var fe *FetchError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want a *FetchError", err)
	}
	if strings.ContainsAny(err.Error(), "\x1b\x07") || fe.Status != "404 Not Found" {
		t.Errorf("err = %q (status %q): want the status code's own text only", err, fe.Status)
	}
}

// A lock's "resolved" URL may carry a user and password: they are used for the fetch, and appear in no record and
// no message.
func TestNpmResolvedCredentialsAreNotRecorded(t *testing.T) {
	tgz := []byte("a tarball")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "builder" || p != "s3cret" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/a/-/a-1.0.0.tgz" {
			http.NotFound(w, r)
			return
		}
		w.Write(tgz)
	}))
	defer srv.Close()
	creds := strings.Replace(srv.URL, "http://", "http://builder:s3cret@", 1)
	lock := func(resolved string) fstest.MapFS {
		return fstest.MapFS{"package-lock.json": {Data: lockJSON(t, 3, map[string]map[string]any{
			"node_modules/a": {"version": "1.0.0", "resolved": resolved, "integrity": sri(tgz)},
		})}}
	}
	got, err := Ingest(context.Background(), lock(creds+"/a/-/a-1.0.0.tgz"), []Spec{{Kind: Npm, Path: "."}}, t.TempDir(), Options{Cache: t.TempDir(), NpmRegistry: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || strings.Contains(got[0].URL, "s3cret") || strings.Contains(got[0].URL, "builder") || got[0].URL != srv.URL+"/a/-/a-1.0.0.tgz" {
		t.Errorf("recorded %+v: want the URL without its user information", got)
	}
	_, err = Ingest(context.Background(), lock(creds+"/missing.tgz"), []Spec{{Kind: Npm, Path: "."}}, t.TempDir(), Options{Cache: t.TempDir(), NpmRegistry: srv.URL})
	if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "builder") {
		t.Errorf("err = %v: want a failure that names no credential", err)
	}
}

// One source cannot fill the host's disk: what an ingestion offers, downloaded or from the cache, is bounded.
func TestIngestionIsBounded(t *testing.T) {
	a, b := []byte(strings.Repeat("a", 80)), []byte(strings.Repeat("b", 80))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(map[string][]byte{"/a": a, "/b": b}[r.URL.Path])
	}))
	defer srv.Close()
	specs := []Spec{
		{Kind: File, URL: srv.URL + "/a", SHA256: digest.FromBytes(a), Dest: "a"},
		{Kind: File, URL: srv.URL + "/b", SHA256: digest.FromBytes(b), Dest: "b"},
	}
	cache := t.TempDir()
	// Each file fits, both do not; and a warm cache holding both is no way around it.
	if _, err := Ingest(context.Background(), nil, specs[:1], t.TempDir(), Options{Cache: cache}); err != nil {
		t.Fatal(err)
	}
	if _, err := Ingest(context.Background(), nil, specs[1:], t.TempDir(), Options{Cache: cache}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{t.TempDir(), cache} {
		_, err := Ingest(context.Background(), nil, specs, t.TempDir(), Options{Cache: c, MaxTotalBytes: 100})
		var ie *InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "more than 100 bytes") {
			t.Errorf("err = %.300v, want an *InputError naming the bound", err)
		}
	}
	if _, err := Ingest(context.Background(), nil, specs, t.TempDir(), Options{Cache: cache, MaxTotalBytes: 160}); err != nil {
		t.Errorf("exactly at the bound: %v", err)
	}
}

// A lock may pin any bytes under any name: left-pad@1.3.0 fetched from another server is checked against the lock's
// sha512, but the registry's left-pad@1.3.0 it is not: the recorded purl says where it came from instead of passing
// it off as the registry's package. The registry's tarball of another package under this name is refused: the
// ssf.deps gate decides on the name, and a rule banning evil must not be passed by calling it left-pad.
func TestNpmPURLClaimsTheRegistryOnlyForItsOwnTarball(t *testing.T) {
	evil := []byte("not left-pad")
	srv := newNpmServer(t, map[string][]byte{
		"/left-pad/-/left-pad-1.3.0.tgz":    evil,
		"/evil/-/evil-6.6.6.tgz":            evil,
		"/elsewhere/left-pad-1.3.0.tgz":     evil,
		"/@s/left-pad/-/left-pad-1.3.0.tgz": evil,
	})
	for resolved, want := range map[string]string{
		srv.URL + "/left-pad/-/left-pad-1.3.0.tgz": "pkg:npm/left-pad@1.3.0",
		"":                                 "pkg:npm/left-pad@1.3.0",
		srv.URL + "/evil/-/evil-6.6.6.tgz": "refused: the registry's tarball of evil@6.6.6",
		srv.URL + "/elsewhere/left-pad-1.3.0.tgz":     "pkg:npm/left-pad@1.3.0?download_url=http://" + srv.Listener.Addr().String() + "/elsewhere/left-pad-1.3.0.tgz",
		srv.URL + "/@s/left-pad/-/left-pad-1.3.0.tgz": "refused: the registry's tarball of @s/left-pad@1.3.0",
		// Other spellings of the same tarball: percent-encoded, the host in capitals, a query.
		srv.URL + "/%65vil/-/evil-6.6.6.tgz":                "refused: the registry's tarball of evil@6.6.6",
		strings.ToUpper(srv.URL) + "/evil/-/evil-6.6.6.tgz": "refused: the registry's tarball of evil@6.6.6",
		srv.URL + "/evil/-/evil-6.6.6.tgz?x=1":              "refused: the registry's tarball of evil@6.6.6",
		"http://localhost:" + srv.Listener.Addr().(*net.TCPAddr).AddrPort().String()[len("127.0.0.1:"):] + "/evil/-/evil-6.6.6.tgz": "refused: the registry's tarball of evil@6.6.6",
	} {
		entry := map[string]any{"version": "1.3.0", "integrity": sri(evil)}
		if resolved != "" {
			entry["resolved"] = resolved
		}
		src := fstest.MapFS{"package-lock.json": {Data: lockJSON(t, 3, map[string]map[string]any{"node_modules/left-pad": entry})}}
		got, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "."}}, t.TempDir(), Options{Cache: t.TempDir(), NpmRegistry: srv.URL + "/"})
		if refusal, refused := strings.CutPrefix(want, "refused: "); refused {
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), refusal) || !strings.Contains(err.Error(), `"node_modules/left-pad" is left-pad@1.3.0`) {
				t.Errorf("resolved %q: %v, want an *InputError naming the entry and %q", resolved, err, refusal)
			}
			continue
		}
		if err != nil {
			t.Fatalf("resolved %q: %v", resolved, err)
		}
		if len(got) != 1 || got[0].URI != want {
			t.Errorf("resolved %q: recorded %+v, want uri %s", resolved, got, want)
		}
	}
	if got := npmPURLFrom("left-pad", "1.3.0", "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz", "https://mirror.example/npm/"); got != "pkg:npm/left-pad@1.3.0" {
		t.Errorf("npm's own registry, with a mirror configured: %s", got)
	}
}

// A hostile module proxy answers a go.mod request with an endless body: ingestion reads and parses a go.mod whole,
// so it stops at the go command's own bound instead of taking up to 512 MiB of memory per go.mod.
func TestGoModDownloadIsBounded(t *testing.T) {
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, ".mod") {
			http.NotFound(w, r)
			return
		}
		line := []byte(strings.Repeat("// padding ", 100) + "\n")
		for sent.Load() < 64<<20 {
			n, err := w.Write(line)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	src := fstest.MapFS{
		"go.mod": {Data: []byte("module example.com/m\n\ngo 1.22\n\nrequire example.com/dep v1.0.0\n")},
		"go.sum": {Data: []byte("example.com/dep v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nexample.com/dep v1.0.0/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")},
	}
	_, err := Ingest(context.Background(), src, []Spec{{Kind: Gomod, Path: "."}}, t.TempDir(), Options{Cache: t.TempDir(), GoProxy: srv.URL})
	if err == nil || !strings.Contains(err.Error(), "larger than 16777216 bytes") {
		t.Errorf("err = %v, want the go.mod refused past 16 MiB", err)
	}
	var me *MismatchError
	if errors.As(err, &me) {
		t.Errorf("a 64 MiB go.mod was read whole and hashed: %v", err)
	}
}

// A dest is joined to the tree: one that leaves it, or lands in an ecosystem's layout, is refused before anything
// is fetched or written, even when a caller skipped package pipeline's checks.
func TestFileDestStaysInTheTree(t *testing.T) {
	body := []byte("x")
	srv := newNpmServer(t, map[string][]byte{"/x": body})
	root := t.TempDir()
	tree := filepath.Join(root, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{"../escaped", "a/../../escaped", "/abs", ".goproxy/x", "a/.npm", ".", ""} {
		_, err := Ingest(context.Background(), nil, []Spec{{Kind: File, URL: srv.URL + "/x", SHA256: digest.FromBytes(body), Dest: dest}}, tree, Options{Cache: t.TempDir()})
		var ie *InputError
		if !errors.As(err, &ie) {
			t.Errorf("dest %q: err = %v, want an *InputError", dest, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "escaped")); err == nil {
		t.Error("a file was written outside the tree")
	}
	if n := srv.hits.Load(); n != 0 {
		t.Errorf("%d requests for refused specs", n)
	}
}

// Another local account must not read the cache (it may hold private modules), whatever mode the directory had.
func TestCacheIsPrivate(t *testing.T) {
	body := []byte("x")
	srv := newNpmServer(t, map[string][]byte{"/x": body})
	cache := filepath.Join(t.TempDir(), "cache")
	if err := os.Mkdir(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Ingest(context.Background(), nil, []Spec{{Kind: File, URL: srv.URL + "/x", SHA256: digest.FromBytes(body), Dest: "x"}}, t.TempDir(), Options{Cache: cache}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("cache mode %v, %v: want 0700", fi.Mode(), err)
	}
}

// A build killed mid-download leaves its temporary file in the cache: a later ingestion removes it (never trusting
// it), and leaves alone a download that a running build may still be writing.
func TestLeftoverDownloadsAreSwept(t *testing.T) {
	body := []byte("x")
	srv := newNpmServer(t, map[string][]byte{"/x": body})
	cache := t.TempDir()
	spec := Spec{Kind: File, URL: srv.URL + "/x", SHA256: digest.FromBytes(body), Dest: "x"}
	if _, err := Ingest(context.Background(), nil, []Spec{spec}, t.TempDir(), Options{Cache: cache}); err != nil {
		t.Fatal(err)
	}
	old, fresh := filepath.Join(cache, "tmp", ".tmp-download-old"), filepath.Join(cache, "tmp", ".tmp-download-fresh")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	then := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old, then, then); err != nil {
		t.Fatal(err)
	}
	if _, err := Ingest(context.Background(), nil, []Spec{spec}, t.TempDir(), Options{Cache: cache}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(old); err == nil {
		t.Error("a download left two hours ago is still in the cache")
	}
	if _, err := os.Lstat(fresh); err != nil {
		t.Errorf("a download in progress was removed: %v", err)
	}
}

// A lock file of more packages than any real project has is refused before anything is fetched: each package is a
// download and several files in the tree.
func TestNpmLockPackageCountIsBounded(t *testing.T) {
	srv := newNpmServer(t, map[string][]byte{})
	var b strings.Builder
	b.WriteString(`{"lockfileVersion":3,"packages":{"":{}`)
	for i := range MaxNpmPackages + 1 {
		fmt.Fprintf(&b, `,"node_modules/p%d":{"version":"1.0.0","integrity":"%s"}`, i, sri([]byte(fmt.Sprint(i))))
	}
	b.WriteString("}}")
	src := fstest.MapFS{"package-lock.json": {Data: []byte(b.String())}}
	_, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "."}}, t.TempDir(), Options{Cache: t.TempDir(), NpmRegistry: srv.URL})
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "at most 100000") {
		t.Errorf("err = %.300v, want an *InputError naming the bound", err)
	}
	if n := srv.hits.Load(); n != 0 {
		t.Errorf("%d requests for a refused lock file", n)
	}
}

// Behind an HTTP proxy the control plane connects only to the proxy, which then reaches whatever the URL names: a
// URL naming a refused address (a redirect to the metadata service, to localhost) is refused before it is sent.
func TestProxiedFetchRefusesHostOnlyAddresses(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.String())
		mu.Unlock()
		w.Write([]byte("answered by the proxy"))
	}))
	defer proxy.Close()
	pu, _ := url.Parse(proxy.URL)
	client := newClient(http.ProxyURL(pu), map[string]bool{pu.Host: true})
	get := func(policyURL, u string) error {
		req, _ := http.NewRequestWithContext(withDialPolicy(context.Background(), policyURL), http.MethodGet, u, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	// A redirect from a registry keeps the registry's policy: no loopback.
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://localhost:8080/admin", "http://[fe80::1]/", "http://0.0.0.0/"} {
		if err := get("https://registry.example/pkg.tgz", u); err == nil || !strings.Contains(err.Error(), "refusing to connect") {
			t.Errorf("%s through the proxy: err = %v, want a refusal", u, err)
		}
	}
	if err := get("https://registry.example/pkg.tgz", "http://registry.example/pkg.tgz"); err != nil {
		t.Errorf("a public name through the proxy: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != "http://registry.example/pkg.tgz" {
		t.Errorf("the proxy was asked for %q, want only the public name", seen)
	}
}

// The same pin under two URLs: bytes fetched from one (the attacker's server, in this build or an earlier one) must
// not be recorded as fetched from the other (a trusted URL that never served them). Each URL is fetched itself.
func TestPinnedBytesAreNotRecordedUnderAnotherURL(t *testing.T) {
	evil := []byte("the attacker's bytes")
	attacker := newNpmServer(t, map[string][]byte{"/x.tgz": evil, "/evil/-/evil-1.0.0.tgz": evil})
	trusted := newNpmServer(t, map[string][]byte{}) // serves nothing: it never had these bytes

	t.Run("file", func(t *testing.T) {
		pin := digest.FromBytes(evil)
		cache := t.TempDir()
		// One build fetches the attacker's URL; a later one (and a second spec of the same build) names the trusted one.
		if _, err := Ingest(context.Background(), nil, []Spec{{Kind: File, URL: attacker.URL + "/x.tgz", SHA256: pin, Dest: "a"}}, t.TempDir(), Options{Cache: cache}); err != nil {
			t.Fatal(err)
		}
		for _, specs := range [][]Spec{
			{{Kind: File, URL: trusted.URL + "/tool-1.0.tgz", SHA256: pin, Dest: "tool"}},
			{{Kind: File, URL: attacker.URL + "/x.tgz", SHA256: pin, Dest: "a"}, {Kind: File, URL: trusted.URL + "/tool-1.0.tgz", SHA256: pin, Dest: "tool"}},
		} {
			got, err := Ingest(context.Background(), nil, specs, t.TempDir(), Options{Cache: cache})
			var fe *FetchError
			if !errors.As(err, &fe) || !strings.Contains(fe.URL, trusted.URL) {
				t.Errorf("err = %v, recorded %+v: want the trusted URL fetched (and failing)", err, got)
			}
		}
	})

	t.Run("npm", func(t *testing.T) {
		src := fstest.MapFS{"package-lock.json": {Data: lockJSON(t, 3, map[string]map[string]any{
			"node_modules/evil":     {"version": "1.0.0", "resolved": attacker.URL + "/evil/-/evil-1.0.0.tgz", "integrity": sri(evil)},
			"node_modules/left-pad": {"version": "1.3.0", "resolved": trusted.URL + "/left-pad/-/left-pad-1.3.0.tgz", "integrity": sri(evil)},
		})}}
		got, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "."}}, t.TempDir(), Options{Cache: t.TempDir(), NpmRegistry: trusted.URL})
		var fe *FetchError
		if !errors.As(err, &fe) || !strings.Contains(fe.URL, trusted.URL+"/left-pad/") {
			t.Errorf("err = %v, recorded %+v: want left-pad fetched from the registry (and failing)", err, got)
		}
	})
}

// A server that trickles its answer (or sends headers and then nothing) is cut off once the download falls below
// the minimum rate, instead of holding the build for the client's whole timeout per download.
func TestTricklingServerIsCutOff(t *testing.T) {
	defer func(r int64, g, e time.Duration) { minRate, minRateGrace, rateEvery = r, g, e }(minRate, minRateGrace, rateEvery)
	minRate, minRateGrace, rateEvery = 1<<20, 300*time.Millisecond, 20*time.Millisecond
	body := []byte(strings.Repeat("x", 100))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/silent" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		for i := range body {
			if _, err := w.Write(body[i : i+1]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(30 * time.Millisecond):
			}
		}
	}))
	defer srv.Close()
	for _, path := range []string{"/trickle", "/silent"} {
		start := time.Now()
		_, err := Ingest(context.Background(), nil, []Spec{{Kind: File, URL: srv.URL + path, SHA256: digest.FromBytes(body), Dest: "x"}}, t.TempDir(), Options{Cache: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "too slowly") {
			t.Errorf("%s: err = %v after %s, want it cut off for sending too slowly", path, err, time.Since(start))
		}
	}
}
