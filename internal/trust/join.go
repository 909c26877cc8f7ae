package trust

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ssf-dev/ssf/internal/ca"
	"github.com/ssf-dev/ssf/internal/durable"
	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/sign"
)

// Joining a node (`ssf node token`, `ssf node join`): the CA's operator makes a one-time token; the new node makes
// a fresh key, and sends a join request carrying the token, signed by that key (proof that it holds it); the CA
// checks the request, spends the token, and issues spiffe://TD/node/<host> for the key.

// ErrJoinRefused is wrapped by every refusal of a join: a malformed request, a token that is unknown, used,
// expired or of another trust domain, a bad signature.
var ErrJoinRefused = errors.New("node join refused")

// Token bounds.
const (
	MinTokenTTL     = time.Minute
	MaxTokenTTL     = 24 * time.Hour
	DefaultTokenTTL = 15 * time.Minute
	tokenPrefix     = "ssfjoin1"
	maxJoinRequest  = 16 << 10
	joinContext     = "ssf-node-join-request-v1\n"
)

// tokenRecord is node-tokens/<sha256 of the token>.json: the token itself is never stored.
type tokenRecord struct {
	TrustDomain string   `json:"trustDomain"`
	Expires     string   `json:"expires"`             // RFC 3339
	Pipelines   []string `json:"pipelines,omitempty"` // the node's scope (CheckPipelineGlobs); none: every pipeline
}

// NewJoinToken makes a one-time join token for trust domain td valid for ttl from now, stores its hash under l,
// and returns it: ssfjoin1.<td>.<32 random bytes, base64url>.
func NewJoinToken(l home.Layout, td string, ttl time.Duration, now time.Time) (string, time.Time, error) {
	return NewScopedJoinToken(l, td, ttl, now, nil)
}

// NewScopedJoinToken is NewJoinToken for a node that may sign only as workloads of the pipelines that match one
// of pipelines (path.Match globs of the pipeline name; none means every pipeline of the trust domain).
func NewScopedJoinToken(l home.Layout, td string, ttl time.Duration, now time.Time, pipelines []string) (string, time.Time, error) {
	if err := CheckPipelineGlobs(pipelines); err != nil {
		return "", time.Time{}, err
	}
	if ttl < MinTokenTTL || ttl > MaxTokenTTL {
		return "", time.Time{}, fmt.Errorf("a join token's lifetime must be between %v and %v, not %v", MinTokenTTL, MaxTokenTTL, ttl)
	}
	if err := ca.CheckTrustDomain(td); err != nil {
		return "", time.Time{}, err
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("making a join token: %w", err)
	}
	tok := tokenPrefix + "." + td + "." + base64.RawURLEncoding.EncodeToString(secret[:])
	expires := now.Add(ttl).UTC().Truncate(time.Second)
	rec, _ := json.Marshal(tokenRecord{TrustDomain: td, Expires: expires.Format(time.RFC3339), Pipelines: pipelines})
	if err := durable.MkdirAll(l.NodeTokens(), 0o700); err != nil {
		return "", time.Time{}, fmt.Errorf("storing the join token: %w", err)
	}
	if err := durable.WriteNew(tokenPath(l, tok, ".json"), append(rec, '\n'), 0o600); err != nil {
		return "", time.Time{}, fmt.Errorf("storing the join token: %w", err)
	}
	return tok, expires, nil
}

func tokenPath(l home.Layout, tok, ext string) string {
	h := sha256.Sum256([]byte(tok))
	return filepath.Join(l.NodeTokens(), hex.EncodeToString(h[:])+ext)
}

// parseToken checks a token's form and returns its trust domain.
func parseToken(tok string) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) < 3 || parts[0] != tokenPrefix {
		return "", fmt.Errorf("%w: the token is not an ssf join token (want %s.TRUST-DOMAIN.SECRET, as `ssf node token` prints it)", ErrJoinRefused, tokenPrefix)
	}
	secret, err := base64.RawURLEncoding.DecodeString(parts[len(parts)-1])
	if err != nil || len(secret) != 32 {
		return "", fmt.Errorf("%w: the token's secret is not 32 bytes of base64url: was it cut when copied?", ErrJoinRefused)
	}
	td := strings.Join(parts[1:len(parts)-1], ".")
	if err := ca.CheckTrustDomain(td); err != nil {
		return "", fmt.Errorf("%w: the token's trust domain: %w", ErrJoinRefused, err)
	}
	return td, nil
}

// JoinRequest is what a joining node sends: the token, its host name and its fresh key, signed by that key.
type JoinRequest struct {
	Token     string    `json:"token"`
	Host      string    `json:"host"`
	PublicKey []byte    `json:"publicKey"` // PKIX DER, ECDSA P-256
	IssuedAt  time.Time `json:"issuedAt"`
	Signature []byte    `json:"signature,omitempty"` // over joinContext and the JSON without the signature
}

func (r *JoinRequest) signedBytes() ([]byte, error) {
	c := *r
	c.Signature = nil
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, err
	}
	return append([]byte(joinContext), b...), nil
}

// NewJoinRequest is the request of the node host holding key, with token, as JSON.
func NewJoinRequest(token, host string, key *ecdsa.PrivateKey, now time.Time) ([]byte, error) {
	if _, err := parseToken(token); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	r := &JoinRequest{Token: token, Host: host, PublicKey: der, IssuedAt: now.UTC()}
	msg, err := r.signedBytes()
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(msg)
	if r.Signature, err = ecdsa.SignASN1(rand.Reader, key, h[:]); err != nil {
		return nil, fmt.Errorf("signing the join request: %w", err)
	}
	return json.Marshal(r)
}

// JoinResponse is the CA's answer: the node certificate and the chain [intermediate, root] (DER), the factory's
// issuer (for the node's own checks of what it signs) and the node's scope.
type JoinResponse struct {
	NodeCertificate []byte   `json:"nodeCertificate"`
	Chain           [][]byte `json:"chain"`
	Issuer          string   `json:"issuer,omitempty"`
	Pipelines       []string `json:"pipelines,omitempty"`
}

// Admit is the CA side of a join (under l, the CA's home; o names its trust domain and issuer): it checks the
// request (form, signature, freshness, the token's trust domain), then spends the token (it must exist, be unused
// and unexpired), then issues the node certificate. Every refusal wraps ErrJoinRefused and changes nothing, except
// that a token is spent once the request around it has checked out.
func Admit(l home.Layout, o Options, raw []byte) (*JoinResponse, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	now := o.Now()
	if len(raw) > maxJoinRequest {
		return nil, fmt.Errorf("%w: the request is over %d bytes", ErrJoinRefused, maxJoinRequest)
	}
	var req JoinRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("%w: malformed join request: %w", ErrJoinRefused, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: malformed join request: data after the JSON object", ErrJoinRefused)
	}
	td, err := parseToken(req.Token)
	if err != nil {
		return nil, err
	}
	if td != o.TrustDomain {
		return nil, fmt.Errorf("%w: the token is for trust domain %q, this CA issues for %q: make a token on this factory (`ssf node token`)", ErrJoinRefused, td, o.TrustDomain)
	}
	if req.Host == "" || NodeName(req.Host) != req.Host {
		return nil, fmt.Errorf("%w: host %q is not a node name (lower-case a-z, 0-9, '.', '-', '_')", ErrJoinRefused, req.Host)
	}
	pub, err := x509.ParsePKIXPublicKey(req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: the node's public key: %w", ErrJoinRefused, err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: the node's key is %T, want ECDSA P-256", ErrJoinRefused, pub)
	}
	msg, err := req.signedBytes()
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(ec, h[:], req.Signature) {
		return nil, fmt.Errorf("%w: the request is not signed by the key it names", ErrJoinRefused)
	}
	if d := req.IssuedAt.Sub(now); d > 2*time.Minute || d < -2*time.Minute {
		return nil, fmt.Errorf("%w: the request was made at %s, more than 2 minutes from the CA's clock (%s)", ErrJoinRefused, req.IssuedAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	a, err := loadCA(l, o, ca.WithClock(o.Now))
	if err != nil {
		return nil, fmt.Errorf("loading the factory CA: %w", err)
	}
	// A node name is one node's: a token holder must not get the identity of the CA's own node or of a node that
	// joined before (two holders of one SPIFFE ID could not be told apart). Checked before the token is spent so
	// that a typo does not waste it; claimed (exclusively) after, so that two joins racing for one name get it once.
	if err := hostFree(l, req.Host); err != nil {
		return nil, err
	}
	rec, err := spendToken(l, req.Token, o.TrustDomain, now)
	if err != nil {
		return nil, err
	}
	cert, err := a.IssueNode(req.Host, pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrJoinRefused, err)
	}
	if err := claimHost(l, req.Host, cert, rec.Pipelines); err != nil {
		return nil, err
	}
	resp := &JoinResponse{NodeCertificate: cert.Raw, Issuer: o.Issuer, Pipelines: rec.Pipelines}
	for _, c := range a.Chain() {
		resp.Chain = append(resp.Chain, c.Raw)
	}
	return resp, nil
}

// hostFree refuses host if it is the CA's own node or a node that joined before.
func hostFree(l home.Layout, host string) error {
	if own, err := readCert(l.NodeCert()); err == nil && len(own.URIs) == 1 && own.URIs[0].Path == "/node/"+host {
		return fmt.Errorf("%w: host %q is the CA's own node: a joining node needs a name of its own (--host)", ErrJoinRefused, host)
	}
	if host == "" || host == "." || host == ".." || filepath.Base(host) != host {
		return fmt.Errorf("%w: host %q is not a node name", ErrJoinRefused, host)
	}
	if _, err := os.Lstat(filepath.Join(l.NodeHosts(), host)); err == nil {
		return fmt.Errorf("%w: a node named %q joined already: a joining node needs a name of its own (--host)", ErrJoinRefused, host)
	}
	return nil
}

// claimHost records that host is now the node certified by cert; it fails if another join claimed it first.
func claimHost(l home.Layout, host string, cert *x509.Certificate, pipelines []string) error {
	if err := hostFree(l, host); err != nil {
		return err
	}
	if err := durable.MkdirAll(l.NodeHosts(), 0o700); err != nil {
		return fmt.Errorf("recording the node name %q: %w", host, err)
	}
	if err := durable.WriteNew(filepath.Join(l.NodeHosts(), host), nodeHostPEM(cert, pipelines), 0o600); errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: a node named %q joined already: a joining node needs a name of its own (--host)", ErrJoinRefused, host)
	} else if err != nil {
		return fmt.Errorf("recording the node name %q: %w", host, err)
	}
	return nil
}

// spendToken marks the token used (renaming its record, which only one caller can do) if it exists and has not
// expired.
func spendToken(l home.Layout, tok, td string, now time.Time) (*tokenRecord, error) {
	pending, used := tokenPath(l, tok, ".json"), tokenPath(l, tok, ".used")
	data, err := os.ReadFile(pending)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(used); err == nil {
			return nil, fmt.Errorf("%w: the token was used already (a token admits one node): make a new one with `ssf node token`", ErrJoinRefused)
		}
		return nil, fmt.Errorf("%w: the token is not one this factory made (or its record was removed): make one with `ssf node token`", ErrJoinRefused)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the join token's record: %w", err)
	}
	var rec tokenRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("the join token's record %s: %w", pending, err)
	}
	exp, err := time.Parse(time.RFC3339, rec.Expires)
	if err != nil {
		return nil, fmt.Errorf("the join token's record %s: %w", pending, err)
	}
	if rec.TrustDomain != td {
		return nil, fmt.Errorf("%w: the token was made for trust domain %q, not %q", ErrJoinRefused, rec.TrustDomain, td)
	}
	if !now.Before(exp) {
		return nil, fmt.Errorf("%w: the token expired at %s: make a new one with `ssf node token`", ErrJoinRefused, exp.Format(time.RFC3339))
	}
	if err := os.Rename(pending, used); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: the token was used already (a token admits one node): make a new one with `ssf node token`", ErrJoinRefused)
	} else if err != nil {
		return nil, fmt.Errorf("spending the join token: %w", err)
	}
	return &rec, durable.SyncDir(l.NodeTokens())
}

// Join makes this home (l) a node of another factory's CA: it makes the node key if there is none, sends a join
// request with token through send (in-process to Admit, or over the network), checks the answer (a certificate
// for its own key and host, chaining to the root the answer names) and writes keys/node.crt and keys/ca-root.crt.
// A home that already has a node certificate is refused: a node certificate is never replaced.
func Join(l home.Layout, token, host string, now time.Time, send func([]byte) ([]byte, error)) (*x509.Certificate, error) {
	return JoinAt(l, token, host, now, send, "", "")
}

// JoinAt is Join through the node endpoint url (https://HOST:PORT of ssf node serve, "" for an in-process join)
// whose root has pin: it records both in joined.json, with the factory's trust domain, issuer and the node's
// scope, so that the node's keyless builds reach the factory there (NodeClient).
func JoinAt(l home.Layout, token, host string, now time.Time, send func([]byte) ([]byte, error), url, pin string) (*x509.Certificate, error) {
	td, err := parseToken(token)
	if err != nil {
		return nil, err
	}
	if host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		host = NodeName(h)
	}
	if _, err := os.Stat(l.NodeCert()); err == nil {
		return nil, fmt.Errorf("%w: %s already has a node certificate (%s): a joining node needs a home of its own (set SSF_HOME to a new directory)", ErrJoinRefused, l.Dir, l.NodeCert())
	}
	if _, err := os.Stat(l.CARootKey()); err == nil {
		return nil, fmt.Errorf("%w: %s holds a CA of its own (%s): a joining node needs a home of its own (set SSF_HOME to a new directory)", ErrJoinRefused, l.Dir, l.CARootKey())
	}
	created, err := ensureKey(l.NodeKey())
	if err != nil {
		return nil, err
	}
	joined := false
	if created {
		// A refused join (a used token, a name taken, a wrong pin) leaves the new home as it found it: the key
		// was made for this join only.
		defer func() {
			if !joined {
				os.Remove(l.NodeKey())
				os.Remove(filepath.Dir(l.NodeKey())) // only if empty
			}
		}()
	}
	key, err := sign.LoadKey(l.NodeKey())
	if err != nil {
		return nil, err
	}
	req, err := NewJoinRequest(token, host, key, now)
	if err != nil {
		return nil, err
	}
	raw, err := send(req)
	if err != nil {
		return nil, err
	}
	var resp JoinResponse
	if err := json.Unmarshal(raw, &resp); err != nil {
		return nil, fmt.Errorf("the CA's answer to the join: %w", err)
	}
	cert, err := x509.ParseCertificate(resp.NodeCertificate)
	if err != nil {
		return nil, fmt.Errorf("the CA's answer to the join: the node certificate: %w", err)
	}
	if len(resp.Chain) != 2 {
		return nil, fmt.Errorf("the CA's answer to the join: want the chain [intermediate, root], got %d certificates", len(resp.Chain))
	}
	inter, err := x509.ParseCertificate(resp.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("the CA's answer to the join: the intermediate: %w", err)
	}
	root, err := x509.ParseCertificate(resp.Chain[1])
	if err != nil {
		return nil, fmt.Errorf("the CA's answer to the join: the root: %w", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(root), Intermediates: pool(inter), CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("the CA's answer to the join: the node certificate does not chain to its root: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) || len(cert.URIs) != 1 || cert.URIs[0].String() != ca.NodeID(td, host) {
		return nil, fmt.Errorf("the CA's answer to the join: the certificate is not %s for this node's key", ca.NodeID(td, host))
	}
	if old, err := readCert(l.CARootCert()); err == nil {
		if !old.Equal(root) {
			return nil, fmt.Errorf("%s holds another CA root (%s) than the one that answered", l.Dir, l.CARootCert())
		}
	} else if err := writeCert(l.CARootCert(), root); err != nil {
		return nil, err
	}
	issuer := resp.Issuer
	if issuer == "" {
		issuer = DefaultIssuer(td)
	}
	if err := ca.CheckIssuer(issuer); err != nil {
		return nil, fmt.Errorf("the CA's answer to the join: %w", err)
	}
	j := Joined{TrustDomain: td, Issuer: issuer, URL: url, Pin: pin, Pipelines: resp.Pipelines, Host: host}
	if url != "" && pin == "" {
		j.Pin = pinOf(root)
	}
	if err := writeJoined(l, j); err != nil {
		return nil, err
	}
	if err := writeCert(l.NodeCert(), cert); err != nil {
		return nil, err
	}
	joined = true
	return cert, nil
}

// verifyServer checks a TLS server's leaf certificate as the one of host chaining, through intermediates, to root
// alone: the join and the node API pin the factory's root, so no system root may stand in for it.
func verifyServer(leaf *x509.Certificate, intermediates []*x509.Certificate, root *x509.Certificate, host string) error {
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool(root), Intermediates: pool(intermediates...), DNSName: host,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
