package trust

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ssf-dev/ssf/internal/ca"
	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/tlog"
)

// The node API (`ssf node serve` on the factory node, docs/keyless.md "Nodes"): what a joined node needs to sign
// keyless without the factory's keys. Every request is authenticated by mutual TLS with the node's certificate:
// it must be the one the factory gave that node (node-hosts/<host>, or keys/node.crt for its own), issued by the
// current intermediate, valid now, and the node not revoked. The JSON shapes are the types below.

// The node API's paths.
const (
	NodeTrustPath       = "/v1/node/trust"       // GET: NodeTrust
	NodeCertificatePath = "/v1/node/certificate" // POST NodeCertificateRequest: NodeCertificateResponse
	NodeLogPath         = "/v1/node/log/entries" // POST NodeLogRequest: a bundle's tlogEntries[] element
	NodeTimestampPath   = "/v1/node/timestamp"   // POST NodeTimestampRequest: NodeTimestampResponse
)

// Bounds of the node API's request bodies.
const (
	maxNodeRequest    = 64 << 10 // certificate and timestamp requests
	maxNodeLogRequest = 4 << 20  // a log request carries the whole DSSE envelope
	maxTimestamped    = 1 << 10  // a signature to timestamp (an ECDSA signature is ~72 bytes)
)

// minNodeValidity is the shortest workload certificate a node may ask for: it must outlive its signing, logging
// and timestamping.
const minNodeValidity = time.Minute

// NodeTrust is what a node learns of the factory it signs for: its trust domain, its issuer and its Sigstore
// trusted root (JSON), which the node checks every bundle it makes against.
type NodeTrust struct {
	TrustDomain string          `json:"trustDomain"`
	Issuer      string          `json:"issuer"`
	TrustedRoot json.RawMessage `json:"trustedRoot"`
}

// NodeCertificateRequest asks for a workload certificate: a ca.Request signed by the node (its signature apart,
// because ca.Request does not encode it).
type NodeCertificateRequest struct {
	Request   ca.Request `json:"request"`
	Signature []byte     `json:"signature"`
}

// NodeCertificateResponse is the workload certificate and its chain [intermediate, root] (DER).
type NodeCertificateResponse struct {
	Certificate []byte   `json:"certificate"`
	Chain       [][]byte `json:"chain"`
}

// NodeLogRequest asks for a dsse 0.0.1 entry: the DSSE envelope's JSON exactly as the bundle holds it (its
// sha256 is in the entry) and the workload certificate (PEM) that signed it.
type NodeLogRequest struct {
	Envelope    []byte `json:"envelope"`
	Certificate string `json:"certificate"`
}

// NodeTimestampRequest asks for an RFC 3161 timestamp over sha256 of a signature.
type NodeTimestampRequest struct {
	Signature []byte `json:"signature"`
}

// NodeTimestampResponse is the DER timestamp response.
type NodeTimestampResponse struct {
	SignedTimestamp []byte `json:"signedTimestamp"`
}

// ErrLogBusy is what the log backend of a NodeAPI returns when the factory's log stayed busy (a local build holds
// its turn) for longer than a request may wait: 503, retry later.
var ErrLogBusy = errors.New("the factory's transparency log is busy")

// ErrTrustRotated is what the node API answers (503) once `ssf trust rotate` has replaced the intermediate CA or
// the log key the server loaded at its start: it would go on issuing from the retired intermediate, accepting nodes
// of it, and start the new log with the retired key (which every later identity build would then fail to open).
var ErrTrustRotated = errors.New("the factory's trust was rotated (ssf trust rotate) since ssf node serve started: restart ssf node serve")

// CheckCurrent returns ErrTrustRotated when the intermediate CA or the transparency log key under l is no longer
// the one f holds.
func CheckCurrent(l home.Layout, f *Factory) error {
	inter, err := readCert(l.CAIntermediateCert())
	if err != nil {
		return fmt.Errorf("reading the factory's intermediate CA: %w", err)
	}
	key, err := sign.LoadKey(l.TLogKey())
	if err != nil {
		return fmt.Errorf("reading the factory's transparency log key: %w", err)
	}
	if !inter.Equal(f.CA.Chain()[0]) || !key.PublicKey.Equal(&f.TLogKey.PublicKey) {
		return ErrTrustRotated
	}
	return nil
}

// ErrLogDuplicate is what the log backend of a NodeAPI returns for an entry the log holds already (a replayed
// request): 409, as the log's REST API answers.
var ErrLogDuplicate = errors.New("an equivalent entry is in the factory's transparency log already")

// NodeAPI answers the node API for the factory under Layout.
type NodeAPI struct {
	Layout      home.Layout
	Factory     *Factory // the CA and the TSA (Load)
	TrustDomain string
	Issuer      string
	TrustedRoot []byte
	// Append appends an entry to the factory's transparency log (the caller owns the log and its turn lock),
	// refusing one the log holds already with ErrLogDuplicate.
	Append func(ctx context.Context, e tlog.Entry) (*tlog.LogEntry, error)
	Logf   func(format string, args ...any)
	Now    func() time.Time // time.Now when nil

	mu       sync.Mutex
	inFlight map[string]chan struct{} // per node: its POST requests in the server (maxNodeInFlight)
}

// maxNodeInFlight bounds the POST requests one node has in the server at once; more wait for their turn. Each
// holds its body (up to 4 MiB) and what is decoded from it: without the bound one node's connections (128 from
// an address) took 1.8 GB of the server's memory.
const maxNodeInFlight = 8

// slot waits until node has fewer than maxNodeInFlight requests in the server, and returns what gives the slot back.
func (a *NodeAPI) slot(ctx context.Context, node string) (func(), error) {
	a.mu.Lock()
	if a.inFlight == nil {
		a.inFlight = map[string]chan struct{}{}
	}
	ch := a.inFlight[node]
	if ch == nil {
		ch = make(chan struct{}, maxNodeInFlight)
		a.inFlight[node] = ch
	}
	a.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// apiError is a handler's answer when it fails: the status and what the node is told.
type apiError struct {
	code int
	err  error
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

func refused(format string, a ...any) error {
	return &apiError{http.StatusForbidden, fmt.Errorf("%w: "+format, append([]any{ErrNodeRefused}, a...)...)}
}

func badRequest(format string, a ...any) error {
	return &apiError{http.StatusBadRequest, fmt.Errorf(format, a...)}
}

// Handler serves the node API under /v1/node/ (join excepted: see NodeHandler).
func (a *NodeAPI) Handler() http.Handler {
	routes := map[string]struct {
		method string
		limit  int64
		h      func(context.Context, *NodeRecord, []byte) (any, error)
	}{
		NodeTrustPath:       {http.MethodGet, 0, a.trust},
		NodeCertificatePath: {http.MethodPost, maxNodeRequest, a.certificate},
		NodeLogPath:         {http.MethodPost, maxNodeLogRequest, a.logEntry},
		NodeTimestampPath:   {http.MethodPost, maxNodeRequest, a.timestamp},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route, ok := routes[r.URL.Path]
		var node *NodeRecord
		answer, err := func() (any, error) {
			if !ok {
				return nil, &apiError{http.StatusNotFound, fmt.Errorf("no such endpoint %q (docs/keyless.md, Nodes)", r.URL.Path)}
			}
			if r.Method != route.method {
				w.Header().Set("Allow", route.method)
				return nil, &apiError{http.StatusMethodNotAllowed, fmt.Errorf("%s takes %s requests", r.URL.Path, route.method)}
			}
			// Checked before the client certificate: a stale server would accept nodes of the retired intermediate.
			if err := CheckCurrent(a.Layout, a.Factory); errors.Is(err, ErrTrustRotated) {
				return nil, &apiError{http.StatusServiceUnavailable, err}
			} else if err != nil {
				return nil, err
			}
			var err error
			if node, err = a.authenticate(r); err != nil {
				return nil, err
			}
			var body []byte
			if route.method == http.MethodPost {
				if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
					return nil, &apiError{http.StatusUnsupportedMediaType, fmt.Errorf("%s takes application/json", r.URL.Path)}
				}
				done, err := a.slot(r.Context(), node.Name)
				if err != nil {
					return nil, &apiError{http.StatusServiceUnavailable, fmt.Errorf("waiting for this node's earlier requests: %w", err)}
				}
				defer done()
				body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, route.limit))
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					return nil, &apiError{http.StatusRequestEntityTooLarge, fmt.Errorf("a request to %s is at most %d bytes", r.URL.Path, route.limit)}
				} else if err != nil {
					return nil, badRequest("reading the request: %w", err)
				}
			}
			return route.h(r.Context(), node, body)
		}()
		who := r.RemoteAddr
		if node != nil {
			who = node.SPIFFEID + " (" + r.RemoteAddr + ")"
		}
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				a.logf("node API %s from %s failed: %v", r.URL.Path, who, err)
				ae = &apiError{http.StatusInternalServerError, errors.New("the factory could not answer; its log says why")}
			} else {
				a.logf("node API %s from %s: %d: %v", r.URL.Path, who, ae.code, ae.err)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(ae.code)
			json.NewEncoder(w).Encode(map[string]string{"error": ae.err.Error()})
			return
		}
		out, err := json.Marshal(answer)
		if raw, ok := answer.(json.RawMessage); ok {
			out, err = raw, nil
		}
		if err != nil {
			a.logf("node API %s from %s: encoding the answer: %v", r.URL.Path, who, err)
			http.Error(w, `{"error":"encoding the answer"}`, http.StatusInternalServerError)
			return
		}
		a.logf("node API %s from %s: ok", r.URL.Path, who)
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	})
}

func (a *NodeAPI) logf(format string, args ...any) {
	if a.Logf != nil {
		a.Logf(format, args...)
	}
}

func (a *NodeAPI) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// authenticate finds the node the request's client certificate names, and checks that it is the certificate the
// factory gave that node, issued by the current intermediate, valid now, and the node not revoked.
func (a *NodeAPI) authenticate(r *http.Request) (*NodeRecord, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, &apiError{http.StatusUnauthorized, fmt.Errorf("%w: no client certificate: the node API answers only nodes, over mutual TLS with their node certificate (keys/node.crt of a node that joined with ssf node join --ca)", ErrNodeRefused)}
	}
	leaf := r.TLS.PeerCertificates[0]
	chain := a.Factory.CA.Chain()
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool(chain[1]), Intermediates: pool(chain[0]), CurrentTime: a.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, &apiError{http.StatusUnauthorized, fmt.Errorf("%w: the client certificate is not a node certificate of this factory's current intermediate, valid now (after ssf trust rotate, nodes join again): %w", ErrNodeRefused, err)}
	}
	if err := leaf.CheckSignatureFrom(chain[0]); err != nil {
		return nil, &apiError{http.StatusUnauthorized, fmt.Errorf("%w: the client certificate was not issued by the factory's current intermediate (after ssf trust rotate, nodes join again): %w", ErrNodeRefused, err)}
	}
	if len(leaf.URIs) != 1 {
		return nil, &apiError{http.StatusUnauthorized, fmt.Errorf("%w: the client certificate names %d URIs, a node certificate one", ErrNodeRefused, len(leaf.URIs))}
	}
	id := leaf.URIs[0].String()
	host, ok := strings.CutPrefix(id, "spiffe://"+a.TrustDomain+"/node/")
	if !ok || host == "" || NodeName(host) != host {
		return nil, &apiError{http.StatusUnauthorized, fmt.Errorf("%w: the client certificate names %q, not a node of trust domain %q", ErrNodeRefused, id, a.TrustDomain)}
	}
	rec, err := LoadNode(a.Layout, host)
	if err != nil {
		return nil, &apiError{http.StatusUnauthorized, fmt.Errorf("%w: node %q: %w", ErrNodeRefused, host, err)}
	}
	if !rec.Certificate.Equal(leaf) {
		return nil, &apiError{http.StatusUnauthorized, fmt.Errorf("%w: the client certificate is not the one the factory gave node %q when it joined", ErrNodeRefused, host)}
	}
	if rec.Revoked != nil {
		return nil, &apiError{http.StatusForbidden, fmt.Errorf("%w: node %q was revoked at %s (ssf node revoke): it may not sign for this factory", ErrNodeRefused, host, rec.Revoked.Format(time.RFC3339))}
	}
	return rec, nil
}

// checkScope refuses a workload SPIFFE ID that is not a pipeline's or task's of this trust domain, or whose
// pipeline is outside the node's scope.
func (a *NodeAPI) checkScope(node *NodeRecord, id string) error {
	if err := ca.CheckWorkloadID(a.TrustDomain, id); err != nil {
		return refused("node %q may sign only as workloads of this factory: %w", node.Name, err)
	}
	// Only a pipeline's or a task's: the CA issues other workload identities (the factory's own verifier) that
	// a node must never hold, whatever its scope.
	rest, ok := strings.CutPrefix(id, "spiffe://"+a.TrustDomain+"/pipeline/")
	if !ok {
		return refused("node %q may sign only as pipelines and tasks of this factory (spiffe://%s/pipeline/<pipeline>[/task/<task>]), not as %q", node.Name, a.TrustDomain, id)
	}
	pipeline, _, _ := strings.Cut(rest, "/")
	if !node.Allows(pipeline) {
		return refused("node %q may sign only for pipelines matching %s (its token's --pipelines), not for pipeline %q (%s)", node.Name, strings.Join(node.Pipelines, ","), pipeline, id)
	}
	return nil
}

// decode reads one JSON object of type T strictly: unknown fields and trailing data are errors.
func decode[T any](body []byte, what string) (*T, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return nil, badRequest("malformed %s: %w", what, err)
	}
	if dec.More() {
		return nil, badRequest("malformed %s: data after the JSON object", what)
	}
	return &v, nil
}

func (a *NodeAPI) trust(context.Context, *NodeRecord, []byte) (any, error) {
	return NodeTrust{TrustDomain: a.TrustDomain, Issuer: a.Issuer, TrustedRoot: a.TrustedRoot}, nil
}

func (a *NodeAPI) certificate(_ context.Context, node *NodeRecord, body []byte) (any, error) {
	req, err := decode[NodeCertificateRequest](body, "certificate request")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(req.Request.NodeCertificate, node.Certificate.Raw) {
		return nil, refused("the certificate request is signed for another node certificate than the connection's (%s)", node.SPIFFEID)
	}
	if err := a.checkScope(node, req.Request.SPIFFEID); err != nil {
		return nil, err
	}
	// A certificate that ends before it can be checked (x509 times are whole seconds) would be made, signed into
	// an SCT, and then fail the CA's own check: a 500 that says nothing to the node. Refuse it with the reason.
	if v := req.Request.Validity; v > 0 && v < minNodeValidity {
		return nil, &apiError{http.StatusForbidden, fmt.Errorf("%w: workload %q: validity %v is shorter than %v: ask for %v to %v (0 means %v)",
			ca.ErrRefused, req.Request.SPIFFEID, v, minNodeValidity, minNodeValidity, ca.MaxWorkloadValidity, ca.MaxWorkloadValidity)}
	}
	r := req.Request
	r.Signature = req.Signature
	cert, err := a.Factory.CA.Issue(&r)
	if errors.Is(err, ca.ErrRefused) {
		return nil, &apiError{http.StatusForbidden, err}
	} else if err != nil {
		return nil, err
	}
	resp := NodeCertificateResponse{Certificate: cert.Raw}
	for _, c := range a.Factory.CA.Chain() {
		resp.Chain = append(resp.Chain, c.Raw)
	}
	return resp, nil
}

// logEntry appends a dsse entry signed by a workload certificate of this CA, valid now, for a workload in the
// node's scope; everything is checked before anything is appended.
func (a *NodeAPI) logEntry(ctx context.Context, node *NodeRecord, body []byte) (any, error) {
	req, err := decode[NodeLogRequest](body, "log request")
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode([]byte(req.Certificate))
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, badRequest("the log request's certificate is not one PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, badRequest("the log request's certificate: %w", err)
	}
	chain := a.Factory.CA.Chain()
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(chain[1]), Intermediates: pool(chain[0]), CurrentTime: a.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
		return nil, refused("the log request's certificate is not a workload certificate of this factory valid now: %w", err)
	}
	if len(cert.URIs) != 1 {
		return nil, refused("the log request's certificate names %d URIs, a workload certificate one", len(cert.URIs))
	}
	if err := a.checkScope(node, cert.URIs[0].String()); err != nil {
		return nil, err
	}
	entry, err := tlog.NewDSSEEntry(req.Envelope, []byte(req.Certificate))
	if errors.Is(err, tlog.ErrBadEntry) {
		return nil, badRequest("the log request: %w", err)
	} else if err != nil {
		return nil, err
	}
	le, err := a.Append(ctx, entry)
	if errors.Is(err, ErrLogBusy) || errors.Is(err, ErrTrustRotated) {
		return nil, &apiError{http.StatusServiceUnavailable, err}
	} else if errors.Is(err, ErrLogDuplicate) {
		return nil, &apiError{http.StatusConflict, err}
	} else if err != nil {
		return nil, err
	}
	out, err := protojson.Marshal(le.Proto())
	if err != nil {
		return nil, err
	}
	return json.RawMessage(out), nil
}

func (a *NodeAPI) timestamp(_ context.Context, _ *NodeRecord, body []byte) (any, error) {
	req, err := decode[NodeTimestampRequest](body, "timestamp request")
	if err != nil {
		return nil, err
	}
	if len(req.Signature) == 0 || len(req.Signature) > maxTimestamped {
		return nil, badRequest("the signature to timestamp is %d bytes: want 1 to %d", len(req.Signature), maxTimestamped)
	}
	ts, err := a.Factory.TSA.Timestamp(req.Signature)
	if err != nil {
		return nil, err
	}
	return NodeTimestampResponse{SignedTimestamp: ts}, nil
}

// NodeHandler is the whole of `ssf node serve`: joins at JoinPath (no client certificate: the token is the
// credential) and the node API (mutual TLS).
func NodeHandler(join http.Handler, api *NodeAPI) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(JoinPath, join)
	mux.Handle("/", api.Handler())
	return mux
}

// NodeServerTLS is the server side of `ssf node serve`: its certificate, and client certificates requested (not
// required, so that joins work without one) and checked by the node API itself, which answers with a reason.
func NodeServerTLS(cert *tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
}
