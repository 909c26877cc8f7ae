package trust

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/ca"
	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/sign"
)

// caHome is an initialised factory (the CA's home).
func caHome(t *testing.T, td string) home.Layout {
	t.Helper()
	l := home.Layout{Dir: t.TempDir()}
	if _, err := Init(l, Options{TrustDomain: td, Host: "ca-node"}); err != nil {
		t.Fatal(err)
	}
	return l
}

// admitTo sends join requests to the CA at l in-process.
func admitTo(l home.Layout, o Options) func([]byte) ([]byte, error) {
	return func(req []byte) ([]byte, error) {
		resp, err := Admit(l, o, req)
		if err != nil {
			return nil, err
		}
		return json.Marshal(resp)
	}
}

// TestNodeJoin: a second home joins with a one-time token, gets spiffe://TD/node/<host> for its own fresh key, and
// that certificate then gets workload certificates issued (ca.Node.Request → Authority.Issue); the token is spent.
func TestNodeJoin(t *testing.T) {
	cal := caHome(t, DefaultTrustDomain)
	tok, exp, err := NewJoinToken(cal, DefaultTrustDomain, DefaultTokenTTL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if exp.Before(time.Now().Add(14*time.Minute)) || !strings.HasPrefix(tok, "ssfjoin1.ssf.local.") {
		t.Fatalf("token %q expires %v", tok, exp)
	}
	// The token itself is stored nowhere, only its hash.
	entries, _ := os.ReadDir(cal.NodeTokens())
	for _, e := range entries {
		data, _ := os.ReadFile(cal.NodeTokens() + "/" + e.Name())
		if strings.Contains(string(data), tok[len("ssfjoin1.ssf.local."):]) || strings.Contains(e.Name(), tok[len("ssfjoin1.ssf.local."):]) {
			t.Fatal("the token's secret is stored in the CA's home")
		}
		if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
			t.Errorf("token record mode %v", fi.Mode().Perm())
		}
	}

	node := home.Layout{Dir: t.TempDir()}
	cert, err := Join(node, tok, "worker-2", time.Now(), admitTo(cal, Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.URIs[0].String(); got != "spiffe://ssf.local/node/worker-2" {
		t.Fatalf("joined as %q", got)
	}
	nodeKey, err := sign.LoadKey(node.NodeKey())
	if err != nil {
		t.Fatal(err)
	}
	caNodeKey, _ := sign.LoadKey(cal.NodeKey())
	if nodeKey.PublicKey.Equal(&caNodeKey.PublicKey) {
		t.Fatal("the joined node has the CA node's key")
	}
	if _, err := os.Stat(node.CARootKey()); err == nil {
		t.Fatal("the joined node holds a root key")
	}

	// The joined node's certificate works for workload requests at the CA.
	f, err := Load(cal, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := ca.NewNode(cert, nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	wk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(wk.Public())
	req, err := n.Request(ca.Request{SPIFFEID: testIdentity + "/task/build", PublicKey: der})
	if err != nil {
		t.Fatal(err)
	}
	w, err := f.CA.Issue(req)
	if err != nil {
		t.Fatalf("the CA refused the joined node's request: %v", err)
	}
	if w.URIs[0].String() != testIdentity+"/task/build" {
		t.Fatalf("issued %v", w.URIs)
	}

	// Joining the same home again is refused (a node certificate is never replaced).
	if _, err := Join(node, tok, "worker-2", time.Now(), admitTo(cal, Options{})); err == nil || !strings.Contains(err.Error(), "already has a node certificate") {
		t.Fatalf("second join of the same home: %v", err)
	}
}

// TestNodeJoinRefuses: a used token, an expired one, one of another trust domain, an unknown one, a malformed
// request and one not signed by the key it names are each refused, naming why; no certificate is written.
func TestNodeJoinRefuses(t *testing.T) {
	cal := caHome(t, DefaultTrustDomain)
	o := Options{}
	newTok := func(ttl time.Duration, now time.Time) string {
		tok, _, err := NewJoinToken(cal, DefaultTrustDomain, ttl, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	used := newTok(DefaultTokenTTL, time.Now())
	if _, err := Join(home.Layout{Dir: t.TempDir()}, used, "first", time.Now(), admitTo(cal, o)); err != nil {
		t.Fatal(err)
	}
	expired := newTok(time.Minute, time.Now().Add(-2*time.Minute))
	other := caHome(t, "other.example")
	foreign, _, err := NewJoinToken(other, "other.example", DefaultTokenTTL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	unknown := "ssfjoin1.ssf.local.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

	for _, c := range []struct{ name, token, says string }{
		{"used token", used, "was used already"},
		{"expired token", expired, "expired at"},
		{"another trust domain's token", foreign, `for trust domain "other.example"`},
		{"unknown token", unknown, "not one this factory made"},
		{"not a token", "hello", "not an ssf join token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			node := home.Layout{Dir: t.TempDir()}
			_, err := Join(node, c.token, "worker", time.Now(), admitTo(cal, o))
			if !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("got %v, want a refusal saying %q", err, c.says)
			}
			if _, err := os.Stat(node.NodeCert()); err == nil {
				t.Fatal("a node certificate was written")
			}
		})
	}

	good := newTok(DefaultTokenTTL, time.Now())
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	req, err := NewJoinRequest(good, "worker", key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var r JoinRequest
	json.Unmarshal(req, &r)
	r.PublicKey, _ = x509.MarshalPKIXPublicKey(other2.Public()) // signed by key, naming other2
	swapped, _ := json.Marshal(r)
	stale, _ := NewJoinRequest(good, "worker", key, time.Now().Add(-time.Hour))
	badHost, _ := NewJoinRequest(good, "Bad Host/..", key, time.Now())
	for _, c := range []struct {
		name string
		req  []byte
		says string
	}{
		{"not JSON", []byte("{"), "malformed join request"},
		{"unknown field", []byte(`{"token":"x","extra":1}`), "malformed join request"},
		{"not signed by the key it names", swapped, "not signed by the key it names"},
		{"stale request", stale, "more than 2 minutes"},
		{"bad host", badHost, "is not a node name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Admit(cal, o, c.req)
			if !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("got %v, want a refusal saying %q", err, c.says)
			}
		})
	}
	// None of those malformed requests spent the good token.
	if _, err := Join(home.Layout{Dir: t.TempDir()}, good, "worker", time.Now(), admitTo(cal, o)); err != nil {
		t.Fatalf("the good token after refused requests: %v", err)
	}
}

// TestJoinRefusesATakenNodeName: a token holder cannot take the CA's own node identity, nor that of a node that
// joined before, not even with two joins racing for one name; a refused name does not spend the token.
func TestJoinRefusesATakenNodeName(t *testing.T) {
	cal := caHome(t, DefaultTrustDomain)
	token := func() string {
		tok, _, err := NewJoinToken(cal, DefaultTrustDomain, DefaultTokenTTL, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tok := token()
	_, err := Join(home.Layout{Dir: t.TempDir()}, tok, "ca-node", time.Now(), admitTo(cal, Options{}))
	if !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), `host "ca-node" is the CA's own node`) {
		t.Fatalf("joining as the CA's node: %v", err)
	}
	// The token was not spent by the refusal.
	if _, err := Join(home.Layout{Dir: t.TempDir()}, tok, "worker-2", time.Now(), admitTo(cal, Options{})); err != nil {
		t.Fatalf("the token after a refused name: %v", err)
	}
	_, err = Join(home.Layout{Dir: t.TempDir()}, token(), "worker-2", time.Now(), admitTo(cal, Options{}))
	if !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), `a node named "worker-2" joined already`) {
		t.Fatalf("joining as worker-2 again: %v", err)
	}
	// Racing joins with different tokens for one new name: exactly one wins.
	const n = 8
	errs := make(chan error, n)
	toks := make([]string, n)
	for i := range toks {
		toks[i] = token()
	}
	for i := range n {
		go func() {
			_, err := Join(home.Layout{Dir: t.TempDir()}, toks[i], "worker-3", time.Now(), admitTo(cal, Options{}))
			errs <- err
		}()
	}
	won := 0
	for range n {
		if err := <-errs; err == nil {
			won++
		} else if !errors.Is(err, ErrJoinRefused) {
			t.Errorf("a racing join: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d joins got worker-3", won)
	}
}

// TestRefusedJoinLeavesNoKey: a refused join (here a token used already) leaves the new home as it found it: no
// node key made for it.
func TestRefusedJoinLeavesNoKey(t *testing.T) {
	cal := caHome(t, DefaultTrustDomain)
	tok, _, err := NewJoinToken(cal, DefaultTrustDomain, DefaultTokenTTL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Join(home.Layout{Dir: t.TempDir()}, tok, "worker-1", time.Now(), admitTo(cal, Options{})); err != nil {
		t.Fatal(err)
	}
	node := home.Layout{Dir: t.TempDir()}
	if _, err := Join(node, tok, "worker-2", time.Now(), admitTo(cal, Options{})); !errors.Is(err, ErrJoinRefused) {
		t.Fatalf("join with a used token: %v", err)
	}
	if ents, _ := os.ReadDir(node.Dir); len(ents) != 0 {
		t.Fatalf("a refused join left %v in the new home", ents)
	}
}
