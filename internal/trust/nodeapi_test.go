package trust

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/ca"
	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/tlog"
)

// nodeAPI is a factory serving joins and the node API over HTTPS on 127.0.0.1, as `ssf node serve` does, with a
// real transparency log; appended counts the entries the API appended.
type nodeAPI struct {
	cal      home.Layout
	srv      *httptest.Server
	appended atomic.Int64
	f        *Factory
}

func startNodeAPI(t *testing.T) *nodeAPI {
	t.Helper()
	n := &nodeAPI{cal: caHome(t, DefaultTrustDomain)}
	var err error
	if n.f, err = Load(n.cal, Options{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lg, err := tlog.Open(ctx, n.cal.Log(), n.f.TLogKey, tlog.WithHost(DefaultTrustDomain))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close(context.Background()) })
	tr, err := Export(n.cal, DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	api := &NodeAPI{Layout: n.cal, Factory: n.f, TrustDomain: DefaultTrustDomain, Issuer: DefaultIssuer(DefaultTrustDomain),
		TrustedRoot: tr, Logf: t.Logf,
		Append: func(ctx context.Context, e tlog.Entry) (*tlog.LogEntry, error) {
			n.appended.Add(1)
			return lg.Append(ctx, e)
		}}
	cert, err := ServerCertificate(n.cal, Options{}, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	n.srv = httptest.NewUnstartedServer(NodeHandler(JoinHandler(admitTo(n.cal, Options{}), t.Logf), api))
	n.srv.TLS = NodeServerTLS(cert)
	n.srv.StartTLS()
	t.Cleanup(n.srv.Close)
	return n
}

// join joins a new home as node host over HTTPS with a token scoped to pipelines, and returns its client.
func (n *nodeAPI) join(t *testing.T, host string, pipelines ...string) (home.Layout, *NodeClient) {
	t.Helper()
	pin, err := RootPin(n.cal)
	if err != nil {
		t.Fatal(err)
	}
	send, err := HTTPJoin(context.Background(), n.srv.URL, pin)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := NewScopedJoinToken(n.cal, DefaultTrustDomain, DefaultTokenTTL, time.Now(), pipelines)
	if err != nil {
		t.Fatal(err)
	}
	node := home.Layout{Dir: t.TempDir()}
	if _, err := JoinAt(node, tok, host, time.Now(), send, n.srv.URL, pin); err != nil {
		t.Fatal(err)
	}
	c, err := NewNodeClient(node)
	if err != nil {
		t.Fatal(err)
	}
	return node, c
}

// signedEnvelope is a DSSE envelope over payload signed by key, as a bundle holds it.
func signedEnvelope(t *testing.T, key *ecdsa.PrivateKey, payload string) []byte {
	t.Helper()
	const pt = "application/vnd.in-toto+json"
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(pt), pt, len(payload), payload)
	h := sha256.Sum256([]byte(pae))
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	env, _ := json.Marshal(map[string]any{"payload": base64.StdEncoding.EncodeToString([]byte(payload)), "payloadType": pt,
		"signatures": []map[string]string{{"sig": base64.StdEncoding.EncodeToString(sig)}}})
	return env
}

// newWorkload makes a workload key and gets its certificate through c.
func newWorkload(t *testing.T, c *NodeClient, id string) (*ecdsa.PrivateKey, []byte, error) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	cert, err := c.Certificate(context.Background(), id, der, ca.Claims{})
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert}), nil
}

// TestNodeAPISigns: a node joined over HTTPS learns the factory's trust, gets a workload certificate (at most 10
// minutes, for its key and the SPIFFE ID asked) on its signed request, has a dsse entry appended to the factory's
// log (the entry it computes itself, with its proof), and a timestamp.
func TestNodeAPISigns(t *testing.T) {
	n := startNodeAPI(t)
	_, c := n.join(t, "worker", "web-*")
	ctx := context.Background()
	tr, err := c.Trust(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tr.TrustDomain != DefaultTrustDomain || tr.Issuer != DefaultIssuer(DefaultTrustDomain) || !bytes.Contains(tr.TrustedRoot, []byte(TrustedRootMediaType)) {
		t.Fatalf("trust: %s %s %.80s", tr.TrustDomain, tr.Issuer, tr.TrustedRoot)
	}
	id := "spiffe://ssf.local/pipeline/web-1/task/compile"
	key, certPEM, err := newWorkload(t, c, id)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	cert, _ := x509.ParseCertificate(block.Bytes)
	if cert.NotAfter.Sub(cert.NotBefore) > ca.MaxWorkloadValidity || !key.PublicKey.Equal(cert.PublicKey) || cert.URIs[0].String() != id {
		t.Fatalf("workload certificate %v..%v for %v", cert.NotBefore, cert.NotAfter, cert.URIs)
	}
	env := signedEnvelope(t, key, `{"_type":"https://in-toto.io/Statement/v1"}`)
	e, err := c.AppendDSSE(ctx, env, certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if n.appended.Load() != 1 || e.GetInclusionProof().GetCheckpoint().GetEnvelope() == "" || len(e.GetInclusionPromise().GetSignedEntryTimestamp()) == 0 {
		t.Fatalf("appended %d, entry %v", n.appended.Load(), e)
	}
	if ts, err := c.Timestamp(ctx, []byte("signature")); err != nil || len(ts) == 0 {
		t.Fatalf("timestamp: %v", err)
	}
}

// TestNodeAPIRefuses: what a node may not do is refused with a reason, and nothing is appended to the log: a
// workload outside its scope (another pipeline, a node, another trust domain), a log entry signed by a
// certificate outside its scope, no client certificate, malformed, oversized or badly signed requests, a revoked
// node.
func TestNodeAPIRefuses(t *testing.T) {
	n := startNodeAPI(t)
	node, c := n.join(t, "worker", "web-*")
	ctx := context.Background()
	for _, tc := range []struct{ id, want string }{
		{"spiffe://ssf.local/pipeline/api", `node "worker" may sign only for pipelines matching web-* (its token's --pipelines), not for pipeline "api"`},
		{"spiffe://ssf.local/pipeline/api/task/web-1", `not for pipeline "api"`},
		{"spiffe://ssf.local/node/worker", "is not a workload's"},
		{"spiffe://other.td/pipeline/web-1", `is in trust domain "other.td"`},
	} {
		_, _, err := newWorkload(t, c, tc.id)
		if !errors.Is(err, ErrNodeRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("certificate for %s: %v, want a refusal saying %q", tc.id, err, tc.want)
		}
	}

	// A node without a scope may sign for every pipeline, and still only as pipelines and tasks.
	_, unscoped := n.join(t, "worker-all")
	if _, _, err := newWorkload(t, unscoped, "spiffe://ssf.local/pipeline/api/task/a"); err != nil {
		t.Errorf("unscoped node, a task of any pipeline: %v", err)
	}
	for _, id := range []string{"spiffe://ssf.local/verifier", "spiffe://ssf.local/node/worker-all", "spiffe://other.td/pipeline/api"} {
		if _, _, err := newWorkload(t, unscoped, id); !errors.Is(err, ErrNodeRefused) {
			t.Errorf("unscoped node, certificate for %s: %v, want a refusal", id, err)
		}
	}

	// A log entry signed as a workload outside the node's scope (a certificate the factory's own node got).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	req, err := n.f.Node.Request(ca.Request{SPIFFEID: "spiffe://ssf.local/pipeline/api", PublicKey: der})
	if err != nil {
		t.Fatal(err)
	}
	other, err := n.f.CA.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Raw})
	// A request another node signed (here the factory's own, unscoped), relayed by this node, is refused: the
	// scope that applies is the signer's, so the signer must be the connection's node.
	relayed, err := n.f.Node.Request(ca.Request{SPIFFEID: "spiffe://ssf.local/pipeline/api", PublicKey: der})
	if err != nil {
		t.Fatal(err)
	}
	var answer NodeCertificateResponse
	if err := c.do(ctx, NodeCertificatePath, NodeCertificateRequest{Request: *relayed, Signature: relayed.Signature}, &answer); !errors.Is(err, ErrNodeRefused) || !strings.Contains(err.Error(), "signed for another node certificate") {
		t.Errorf("relayed request: %v", err)
	}
	if _, err := c.AppendDSSE(ctx, signedEnvelope(t, key, "{}"), otherPEM); !errors.Is(err, ErrNodeRefused) || !strings.Contains(err.Error(), `not for pipeline "api"`) {
		t.Errorf("log entry of another pipeline's workload: %v", err)
	}

	// Raw requests with the node's client certificate.
	wkey, wcert, err := newWorkload(t, c, "spiffe://ssf.local/pipeline/web-1")
	if err != nil {
		t.Fatal(err)
	}
	good, _ := json.Marshal(NodeLogRequest{Envelope: signedEnvelope(t, wkey, "{}"), Certificate: string(wcert)})
	badSig, _ := json.Marshal(NodeLogRequest{Envelope: signedEnvelope(t, key, "{}"), Certificate: string(wcert)})
	post := func(client *http.Client, method, path, ctype string, body []byte) (int, string) {
		r, err := http.NewRequest(method, n.srv.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		resp, err := client.Do(r)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, tc := range []struct {
		what, method, path, ctype string
		body                      []byte
		client                    *http.Client
		code                      int
		want                      string
	}{
		{"no client certificate", "POST", NodeLogPath, "application/json", good, anon, 401, "no client certificate"},
		{"no client certificate (trust)", "GET", NodeTrustPath, "", nil, anon, 401, "no client certificate"},
		{"not JSON", "POST", NodeLogPath, "application/json", []byte("{"), c.client, 400, "malformed log request"},
		{"unknown field", "POST", NodeLogPath, "application/json", []byte(`{"envelope":"e30=","certificate":"","extra":1}`), c.client, 400, `unknown field`},
		{"trailing data", "POST", NodeLogPath, "application/json", append(append([]byte{}, good...), good...), c.client, 400, "data after the JSON object"},
		{"oversized", "POST", NodeLogPath, "application/json", bytes.Repeat([]byte(" "), maxNodeLogRequest+1), c.client, 413, "at most 4194304 bytes"},
		{"oversized certificate request", "POST", NodeCertificatePath, "application/json", bytes.Repeat([]byte(" "), maxNodeRequest+1), c.client, 413, "at most 65536 bytes"},
		{"badly signed envelope", "POST", NodeLogPath, "application/json", badSig, c.client, 400, "does not verify with any given verifier"},
		{"not a certificate", "POST", NodeLogPath, "application/json", []byte(`{"envelope":"e30=","certificate":"x"}`), c.client, 400, "not one PEM CERTIFICATE block"},
		{"wrong media type", "POST", NodeLogPath, "text/plain", good, c.client, 415, "application/json"},
		{"wrong method", "GET", NodeLogPath, "", nil, c.client, 405, "takes POST"},
		{"unknown path", "GET", "/v1/node/keys", "", nil, c.client, 404, "no such endpoint"},
		{"empty timestamp", "POST", NodeTimestampPath, "application/json", []byte(`{"signature":""}`), c.client, 400, "want 1 to 1024"},
	} {
		code, body := post(tc.client, tc.method, tc.path, tc.ctype, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d saying %q", tc.what, code, body, tc.code, tc.want)
		}
	}
	if got := n.appended.Load(); got != 0 {
		t.Fatalf("%d entries appended by refused requests", got)
	}
	// The good request goes through (so the refusals above were for what they say).
	if code, body := post(c.client, "POST", NodeLogPath, "application/json", good); code != 200 {
		t.Fatalf("good log request: %d %s", code, body)
	}

	// Revoked: every request refused, at once.
	if ok, err := RevokeNode(n.cal, "worker"); !ok || err != nil {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	if ok, err := RevokeNode(n.cal, "worker"); ok || err != nil {
		t.Fatalf("revoke again: %v %v", ok, err)
	}
	if _, err := c.Trust(ctx); !errors.Is(err, ErrNodeRefused) || !strings.Contains(err.Error(), `node "worker" was revoked at`) {
		t.Errorf("trust for a revoked node: %v", err)
	}
	if _, _, err := newWorkload(t, c, "spiffe://ssf.local/pipeline/web-1"); !errors.Is(err, ErrNodeRefused) {
		t.Errorf("certificate for a revoked node: %v", err)
	}
	if _, err := c.AppendDSSE(ctx, signedEnvelope(t, wkey, "{}"), wcert); !errors.Is(err, ErrNodeRefused) {
		t.Errorf("log entry from a revoked node: %v", err)
	}
	if got := n.appended.Load(); got != 1 {
		t.Fatalf("%d entries appended, want the one good request's", got)
	}
	if _, err := RevokeNode(n.cal, "ca-node"); err == nil || !strings.Contains(err.Error(), "factory's own node") {
		t.Errorf("revoking the factory's own node: %v", err)
	}
	nodes, err := ListNodes(n.cal)
	if err != nil || len(nodes) != 3 || !nodes[0].Own || nodes[1].Name != "worker" || nodes[1].Revoked == nil || nodes[1].Pipelines[0] != "web-*" {
		t.Fatalf("list: %v %+v", err, nodes)
	}
	_ = node
}

// TestScopedTokenGlobs: a token's --pipelines must be globs of one pipeline name.
func TestScopedTokenGlobs(t *testing.T) {
	cal := caHome(t, DefaultTrustDomain)
	// White space alone would be read back from the node's record as no scope at all: every pipeline.
	for _, g := range []string{"", "a/b", "a,b", "[", "a b", "\t", "\u00a0", "\v", "web-*\t", "\u2003", "web:*", "wéb"} {
		if _, _, err := NewScopedJoinToken(cal, DefaultTrustDomain, DefaultTokenTTL, time.Now(), []string{g}); err == nil {
			t.Errorf("glob %q accepted", g)
		}
	}
	if _, _, err := NewScopedJoinToken(cal, DefaultTrustDomain, DefaultTokenTTL, time.Now(), []string{"web-*", "api"}); err != nil {
		t.Fatal(err)
	}
}

// FuzzNodeAPIRequest: whatever a node sends, the node API's handlers answer with an error or a value, never
// panic, and append nothing unless a workload certificate of the CA signed the entry (which fuzzing cannot make).
func FuzzNodeAPIRequest(f *testing.F) {
	cal := home.Layout{Dir: f.TempDir()}
	if _, err := Init(cal, Options{Host: "ca-node"}); err != nil {
		f.Fatal(err)
	}
	fac, err := Load(cal, Options{})
	if err != nil {
		f.Fatal(err)
	}
	var appended atomic.Int64
	api := &NodeAPI{Layout: cal, Factory: fac, TrustDomain: DefaultTrustDomain, Issuer: DefaultIssuer(DefaultTrustDomain),
		Append: func(context.Context, tlog.Entry) (*tlog.LogEntry, error) {
			appended.Add(1)
			return nil, errors.New("not appended in the fuzz test")
		}}
	node, err := LoadNode(cal, "ca-node")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{`{}`, `{"envelope":"e30=","certificate":"x"}`, `{"request":{"spiffeId":"spiffe://ssf.local/pipeline/a"},"signature":"AA=="}`,
		`{"signature":"c2ln"}`, `[`, `{"request":{"nodeCertificate":"AA=="}}`} {
		f.Add(uint8(0), []byte(seed))
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		h := []func(context.Context, *NodeRecord, []byte) (any, error){api.certificate, api.logEntry, api.timestamp}[int(which)%3]
		if v, err := h(context.Background(), node, body); err == nil && v == nil {
			t.Fatal("no answer and no error")
		}
		if appended.Load() != 0 {
			t.Fatalf("appended for %q", body)
		}
	})
}

// TestNodeAPIAfterRotation: after ssf trust rotate (and the server's restart with the new intermediate), a node
// joined before is refused, told to join again.
func TestNodeAPIAfterRotation(t *testing.T) {
	cal := caHome(t, DefaultTrustDomain)
	var current atomic.Pointer[http.Handler]
	api := func() http.Handler {
		f, err := Load(cal, Options{})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := Export(cal, DefaultTrustDomain)
		if err != nil {
			t.Fatal(err)
		}
		a := &NodeAPI{Layout: cal, Factory: f, TrustDomain: DefaultTrustDomain, Issuer: DefaultIssuer(DefaultTrustDomain), TrustedRoot: tr, Logf: t.Logf}
		return NodeHandler(JoinHandler(admitTo(cal, Options{}), t.Logf), a)
	}
	h := api()
	current.Store(&h)
	cert, err := ServerCertificate(cal, Options{}, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*current.Load()).ServeHTTP(w, r) }))
	srv.TLS = NodeServerTLS(cert)
	srv.StartTLS()
	defer srv.Close()
	n := &nodeAPI{cal: cal, srv: srv}
	_, c := n.join(t, "worker")
	if _, err := c.Trust(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(cal, Options{}); err != nil {
		t.Fatal(err)
	}
	h = api() // the server restarted after the rotation
	current.Store(&h)
	if _, err := c.Trust(context.Background()); !errors.Is(err, ErrNodeRefused) || !strings.Contains(err.Error(), "after ssf trust rotate, nodes join again") {
		t.Fatalf("a node of the retired intermediate: %v", err)
	}
}

// TestNodeAPIShortValidity: a node asking for a certificate valid for less than a minute (1 ns: it would end
// before the CA's own check of it) is refused with the reason (403), not answered 500.
func TestNodeAPIShortValidity(t *testing.T) {
	n := startNodeAPI(t)
	_, c := n.join(t, "worker")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	for _, v := range []time.Duration{time.Nanosecond, 59 * time.Second} {
		req, err := c.node.Request(ca.Request{SPIFFEID: "spiffe://ssf.local/pipeline/web", PublicKey: der, Validity: v})
		if err != nil {
			t.Fatal(err)
		}
		var resp NodeCertificateResponse
		err = c.do(context.Background(), NodeCertificatePath, NodeCertificateRequest{Request: *req, Signature: req.Signature}, &resp)
		var ae *NodeAPIError
		if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || !strings.Contains(ae.Reason, "validity "+v.String()+" is shorter than 1m0s") {
			t.Errorf("validity %v: %v, want 403 saying it is shorter than 1m0s", v, err)
		}
	}
	req, _ := c.node.Request(ca.Request{SPIFFEID: "spiffe://ssf.local/pipeline/web", PublicKey: der, Validity: time.Minute})
	var resp NodeCertificateResponse
	if err := c.do(context.Background(), NodeCertificatePath, NodeCertificateRequest{Request: *req, Signature: req.Signature}, &resp); err != nil {
		t.Fatalf("validity 1m: %v", err)
	}
}

// TestNodeAPIStaleAfterRotation: ssf trust rotate while ssf node serve runs (not restarted): the server refuses
// every request (503, saying to restart it) instead of issuing from the retired intermediate and accepting nodes
// of it.
func TestNodeAPIStaleAfterRotation(t *testing.T) {
	cal := caHome(t, DefaultTrustDomain)
	f, err := Load(cal, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Export(cal, DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	api := &NodeAPI{Layout: cal, Factory: f, TrustDomain: DefaultTrustDomain, Issuer: DefaultIssuer(DefaultTrustDomain), TrustedRoot: tr, Logf: t.Logf}
	cert, err := ServerCertificate(cal, Options{}, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(NodeHandler(JoinHandler(admitTo(cal, Options{}), t.Logf), api))
	srv.TLS = NodeServerTLS(cert)
	srv.StartTLS()
	defer srv.Close()
	n := &nodeAPI{cal: cal, srv: srv}
	_, c := n.join(t, "worker")
	if _, err := c.Trust(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(cal, Options{}); err != nil {
		t.Fatal(err)
	}
	var ae *NodeAPIError
	if _, err := c.Trust(context.Background()); !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || !strings.Contains(ae.Reason, "restart ssf node serve") {
		t.Fatalf("trust from a server older than the rotation: %v, want 503 saying to restart it", err)
	}
	if _, _, err := newWorkload(t, c, "spiffe://ssf.local/pipeline/web"); !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Fatalf("certificate from a server older than the rotation: %v, want 503", err)
	}
}

// TestNodeRecordScopeFailsClosed: a node whose token was scoped is never read back as unscoped: a scope header
// that reads empty (white space, as a PEM header's value is trimmed) allows no pipeline, and the node API refuses
// the node's requests.
func TestNodeRecordScopeFailsClosed(t *testing.T) {
	n := startNodeAPI(t)
	_, c := n.join(t, "worker", "web-*")
	rec, err := LoadNode(n.cal, "worker")
	if err != nil || len(rec.Pipelines) != 1 || rec.Pipelines[0] != "web-*" {
		t.Fatalf("record: %v %+v", err, rec)
	}
	// The record as a glob of white space was written before globs were checked for it.
	if err := os.WriteFile(filepath.Join(n.cal.NodeHosts(), "worker"), nodeHostPEM(rec.Certificate, []string{"\u00a0"}), 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err := LoadNode(n.cal, "worker"); err != nil || len(r.Pipelines) == 0 || r.Allows("api") {
		t.Fatalf("a record whose scope reads empty: %+v, %v; want a scope that allows no pipeline", r, err)
	}
	if _, _, err := newWorkload(t, c, "spiffe://ssf.local/pipeline/api"); !errors.Is(err, ErrNodeRefused) {
		t.Fatalf("certificate outside the node's scope: %v, want a refusal", err)
	}
}

// TestNodeAPIBoundsANodesRequests: one node has at most maxNodeInFlight POST requests in the server at once (each
// holds a body of up to 4 MiB); the others wait, and another node is not held up by them.
func TestNodeAPIBoundsANodesRequests(t *testing.T) {
	cal := caHome(t, DefaultTrustDomain)
	f, err := Load(cal, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Export(cal, DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	arrived := make(chan struct{}, 64)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	api := &NodeAPI{Layout: cal, Factory: f, TrustDomain: DefaultTrustDomain, Issuer: DefaultIssuer(DefaultTrustDomain), TrustedRoot: tr, Logf: t.Logf,
		Append: func(ctx context.Context, e tlog.Entry) (*tlog.LogEntry, error) {
			arrived <- struct{}{}
			<-release
			return nil, ErrLogBusy
		}}
	cert, err := ServerCertificate(cal, Options{}, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(NodeHandler(JoinHandler(admitTo(cal, Options{}), t.Logf), api))
	srv.TLS = NodeServerTLS(cert)
	srv.StartTLS()
	defer srv.Close()
	defer free() // before the server's Close, which waits for its handlers
	n := &nodeAPI{cal: cal, srv: srv}
	_, c := n.join(t, "worker")
	_, other := n.join(t, "other")
	ctx := context.Background()
	key, wcert, err := newWorkload(t, c, "spiffe://ssf.local/pipeline/web")
	if err != nil {
		t.Fatal(err)
	}
	okey, ocert, err := newWorkload(t, other, "spiffe://ssf.local/pipeline/web")
	if err != nil {
		t.Fatal(err)
	}
	const sent = maxNodeInFlight + 4
	done := make(chan error, sent+1)
	for i := 0; i < sent; i++ {
		env := signedEnvelope(t, key, fmt.Sprintf(`{"i":%d}`, i))
		go func() { _, err := c.AppendDSSE(ctx, env, wcert); done <- err }()
	}
	for i := 0; i < maxNodeInFlight; i++ {
		<-arrived
	}
	// Another node's request is answered while this one's wait.
	oenv := signedEnvelope(t, okey, `{"other":1}`)
	go func() { _, err := other.AppendDSSE(ctx, oenv, ocert); done <- err }()
	<-arrived
	select {
	case <-arrived:
		t.Fatalf("more than %d requests of one node in the server at once", maxNodeInFlight)
	case <-time.After(300 * time.Millisecond): // the node's other requests stay waiting
	}
	free()
	for i := 0; i < sent+1; i++ {
		if err := <-done; !errors.Is(err, ErrLogBusy) && (err == nil || !strings.Contains(err.Error(), "busy")) {
			t.Errorf("request %d: %v, want the append's answer (busy)", i, err)
		}
	}
}
