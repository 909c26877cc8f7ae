package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
	"unicode"
)

// Fulcio's certificate extensions (github.com/sigstore/fulcio docs/oid-info.md; sigstore-go v1.3.0
// pkg/fulcio/certificate parses them). .1 holds the issuer as raw bytes (deprecated, still read); .8 onwards hold
// DER UTF8Strings.
var (
	oidIssuerV1               = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidIssuerV2               = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
	oidBuildSignerURI         = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 9}
	oidBuildSignerDigest      = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 10}
	oidSourceRepositoryURI    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 12}
	oidSourceRepositoryDigest = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 13}
	oidSourceRepositoryRef    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 14}
	oidBuildConfigURI         = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 18}
	oidBuildConfigDigest      = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 19}
	oidRunInvocationURI       = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 21}
)

// requestFreshness bounds how far a request's IssuedAt may be from the CA's clock: a captured request cannot be
// replayed later to get another certificate (for a key only the workload holds, but still unasked for).
const requestFreshness = 2 * time.Minute

// requestContext separates a node's request signatures from anything else its key might sign.
const requestContext = "ssf-ca-workload-request-v1\n"

// Claims are what the control plane observed about a workload, written into its certificate as Fulcio extensions.
// Empty fields are left out.
type Claims struct {
	BuildSignerURI         string `json:"buildSignerURI,omitempty"`         // .9: the pipeline file, as a URI
	BuildSignerDigest      string `json:"buildSignerDigest,omitempty"`      // .10: its digest
	SourceRepositoryURI    string `json:"sourceRepositoryURI,omitempty"`    // .12
	SourceRepositoryDigest string `json:"sourceRepositoryDigest,omitempty"` // .13: the source revision
	SourceRepositoryRef    string `json:"sourceRepositoryRef,omitempty"`    // .14
	BuildConfigURI         string `json:"buildConfigURI,omitempty"`         // .18
	BuildConfigDigest      string `json:"buildConfigDigest,omitempty"`      // .19
	RunInvocationURI       string `json:"runInvocationURI,omitempty"`       // .21: the build's invocation
}

// Request asks for a workload certificate. A Node fills in and signs NodeCertificate, IssuedAt and Signature.
type Request struct {
	SPIFFEID  string        `json:"spiffeId"`
	PublicKey []byte        `json:"publicKey"` // PKIX DER of the workload's key (ECDSA P-256)
	Validity  time.Duration `json:"validity"`  // 0 means MaxWorkloadValidity
	Claims    Claims        `json:"claims"`

	NodeCertificate []byte    `json:"nodeCertificate"` // DER
	IssuedAt        time.Time `json:"issuedAt"`
	Signature       []byte    `json:"-"` // the node key's ECDSA signature over signedBytes
}

// signedBytes is what the node signs: a context string and the request's JSON without its signature.
func (r *Request) signedBytes() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding the certificate request: %w", err)
	}
	return append([]byte(requestContext), b...), nil
}

// Node is a node identity: its certificate (spiffe://TD/node/<host>) and key. It signs workload requests.
type Node struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// NewNode returns the node holding cert and key.
func NewNode(cert *x509.Certificate, key crypto.Signer) (*Node, error) {
	if cert == nil || key == nil || !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("node identity: the key does not match the node certificate")
	}
	return &Node{cert: cert, key: key}, nil
}

// Certificate is the node's certificate.
func (n *Node) Certificate() *x509.Certificate { return n.cert }

// Request signs r as this node's request (IssuedAt is now unless set).
func (n *Node) Request(r Request) (*Request, error) {
	r.NodeCertificate = n.cert.Raw
	if r.IssuedAt.IsZero() {
		r.IssuedAt = time.Now()
	}
	r.IssuedAt = r.IssuedAt.UTC()
	msg, err := r.signedBytes()
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(msg)
	sig, err := n.key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate request for %q: %w", r.SPIFFEID, err)
	}
	r.Signature = sig
	return &r, nil
}

// IssueNode issues the node certificate of host (spiffe://TD/node/<host>) for pub, valid for NodeValidity.
// Only the factory's operator calls it (at `ssf init`, later `ssf node join`): it is not a workload request.
func (a *Authority) IssueNode(host string, pub crypto.PublicKey) (*x509.Certificate, error) {
	id := NodeID(a.trustDomain, host)
	if _, err := nodeHost(a.trustDomain, id); err != nil {
		return nil, fmt.Errorf("%w: node %q: %w", ErrRefused, host, err)
	}
	if err := checkP256(pub); err != nil {
		return nil, fmt.Errorf("%w: node key: %w", ErrRefused, err)
	}
	u, _ := url.Parse(id)
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := a.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		URIs:                  []*url.URL{u},
		NotBefore:             now.Add(-Backdate).UTC(),
		NotAfter:              minTime(now.Add(NodeValidity), a.inter.NotAfter).UTC(),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	return create(tmpl, a.inter, pub, a.interKey)
}

// Issue checks req (see the package doc) and issues its workload certificate with an embedded SCT.
func (a *Authority) Issue(req *Request) (*x509.Certificate, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: no request", ErrRefused)
	}
	now := a.now()
	node, err := a.checkNode(req, now)
	if err != nil {
		return nil, fmt.Errorf("%w: workload %q: %w", ErrRefused, req.SPIFFEID, err)
	}
	if err := CheckWorkloadID(a.trustDomain, req.SPIFFEID); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	validity := req.Validity
	if validity == 0 {
		validity = MaxWorkloadValidity
	}
	if validity < 0 || validity > MaxWorkloadValidity {
		return nil, fmt.Errorf("%w: workload %q: validity %v is not between 0 and %v", ErrRefused, req.SPIFFEID, req.Validity, MaxWorkloadValidity)
	}
	pub, err := x509.ParsePKIXPublicKey(req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: workload %q: parsing its public key: %w", ErrRefused, req.SPIFFEID, err)
	}
	if err := checkP256(pub); err != nil {
		return nil, fmt.Errorf("%w: workload %q: %w", ErrRefused, req.SPIFFEID, err)
	}
	if publicKeysEqual(pub, node.PublicKey) || publicKeysEqual(pub, a.inter.PublicKey) || publicKeysEqual(pub, a.root.PublicKey) {
		return nil, fmt.Errorf("%w: workload %q: its key is a node's or the CA's; a workload needs a fresh key", ErrRefused, req.SPIFFEID)
	}
	exts, err := a.extensions(req.Claims)
	if err != nil {
		return nil, fmt.Errorf("%w: workload %q: %w", ErrRefused, req.SPIFFEID, err)
	}
	u, _ := url.Parse(req.SPIFFEID)
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(validity)
	if notAfter.After(a.inter.NotAfter) {
		return nil, fmt.Errorf("%w: workload %q: the intermediate CA expires at %s; rotate it", ErrRefused, req.SPIFFEID, a.inter.NotAfter.Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		URIs:                  []*url.URL{u}, // the only SAN, so cert.URIs[0] is what --certificate-identity matches
		NotBefore:             now.UTC(),
		NotAfter:              notAfter.UTC(),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
	}
	// The precertificate: the final extensions plus the poison, last. The final certificate has the SCT list in
	// the poison's place, so that removing either gives the same TBS (what the SCT signs).
	tmpl.ExtraExtensions = append(exts, pkix.Extension{Id: oidCTPoison, Critical: true, Value: asn1.NullBytes})
	precert, err := x509.CreateCertificate(rand.Reader, tmpl, a.inter, pub, a.interKey)
	if err != nil {
		return nil, fmt.Errorf("signing the precertificate of %q: %w", req.SPIFFEID, err)
	}
	sct, err := a.ct.signPrecert(precert, a.inter, now)
	if err != nil {
		return nil, fmt.Errorf("workload %q: %w", req.SPIFFEID, err)
	}
	list, err := sctListExtension(sct)
	if err != nil {
		return nil, err
	}
	tmpl.ExtraExtensions = append(exts, pkix.Extension{Id: oidCTSCTList, Value: list})
	cert, err := create(tmpl, a.inter, pub, a.interKey)
	if err != nil {
		return nil, err
	}
	// Check what was made as a verifier will, before anyone relies on it.
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots: pool(a.root), Intermediates: pool(a.inter), CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}); err != nil {
		return nil, fmt.Errorf("the certificate issued for %q does not verify: %w", req.SPIFFEID, err)
	}
	if err := a.ct.verifyEmbeddedSCT(cert.Raw, a.inter); err != nil {
		return nil, fmt.Errorf("the SCT of the certificate issued for %q does not verify: %w", req.SPIFFEID, err)
	}
	return cert, nil
}

// checkNode checks that req comes from a valid node of this CA and that the node signed it recently.
func (a *Authority) checkNode(req *Request, now time.Time) (*x509.Certificate, error) {
	node, err := x509.ParseCertificate(req.NodeCertificate)
	if err != nil {
		return nil, fmt.Errorf("parsing the node certificate: %w", err)
	}
	if _, err := node.Verify(x509.VerifyOptions{
		Roots: pool(a.root), Intermediates: pool(a.inter), CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fmt.Errorf("the node certificate is not one of this CA's, valid now: %w", err)
	}
	if err := node.CheckSignatureFrom(a.inter); err != nil {
		return nil, fmt.Errorf("the node certificate was not issued by this CA's intermediate: %w", err)
	}
	if len(node.URIs) != 1 {
		return nil, errors.New("the node certificate does not name exactly one SPIFFE ID")
	}
	if _, err := nodeHost(a.trustDomain, node.URIs[0].String()); err != nil {
		return nil, err
	}
	msg, err := req.signedBytes()
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(msg)
	pub, ok := node.PublicKey.(*ecdsa.PublicKey)
	if !ok || !ecdsa.VerifyASN1(pub, h[:], req.Signature) {
		return nil, fmt.Errorf("the request is not signed by node %s", node.URIs[0])
	}
	if d := req.IssuedAt.Sub(now); d > requestFreshness || d < -requestFreshness {
		return nil, fmt.Errorf("the request was made at %s, more than %v from now (%s)", req.IssuedAt.Format(time.RFC3339), requestFreshness, now.UTC().Format(time.RFC3339))
	}
	return node, nil
}

// extensions are the Fulcio extensions of a workload certificate, in OID order (.1 before .8, so that a reader
// taking the last issuer it sees agrees with one preferring .8).
func (a *Authority) extensions(c Claims) ([]pkix.Extension, error) {
	v2, err := asn1.MarshalWithParams(a.issuer, "utf8")
	if err != nil {
		return nil, fmt.Errorf("encoding the issuer: %w", err)
	}
	exts := []pkix.Extension{{Id: oidIssuerV1, Value: []byte(a.issuer)}, {Id: oidIssuerV2, Value: v2}}
	for _, f := range []struct {
		oid   asn1.ObjectIdentifier
		name  string
		value string
		isURI bool
	}{
		{oidBuildSignerURI, "BuildSignerURI", c.BuildSignerURI, true},
		{oidBuildSignerDigest, "BuildSignerDigest", c.BuildSignerDigest, false},
		{oidSourceRepositoryURI, "SourceRepositoryURI", c.SourceRepositoryURI, true},
		{oidSourceRepositoryDigest, "SourceRepositoryDigest", c.SourceRepositoryDigest, false},
		{oidSourceRepositoryRef, "SourceRepositoryRef", c.SourceRepositoryRef, false},
		{oidBuildConfigURI, "BuildConfigURI", c.BuildConfigURI, true},
		{oidBuildConfigDigest, "BuildConfigDigest", c.BuildConfigDigest, false},
		{oidRunInvocationURI, "RunInvocationURI", c.RunInvocationURI, true},
	} {
		if f.value == "" {
			continue
		}
		if err := checkClaim(f.name, f.value, f.isURI); err != nil {
			return nil, err
		}
		v, err := asn1.MarshalWithParams(f.value, "utf8")
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", f.name, err)
		}
		exts = append(exts, pkix.Extension{Id: f.oid, Value: v})
	}
	return exts, nil
}

// checkClaim accepts a short printable value; a URI claim must be an absolute URI.
func checkClaim(name, v string, isURI bool) error {
	if len(v) > 2048 {
		return fmt.Errorf("%s is longer than 2048 bytes", name)
	}
	for _, r := range v {
		if !unicode.IsPrint(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("%s %q holds a character that is not printable", name, v)
		}
	}
	if isURI {
		if u, err := url.Parse(v); err != nil || u.Scheme == "" {
			return fmt.Errorf("%s %q is not an absolute URI", name, v)
		}
	}
	return nil
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
