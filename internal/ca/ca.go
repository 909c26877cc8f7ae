package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Validities of the certificates the CA makes.
const (
	RootValidity         = 10 * 365 * 24 * time.Hour
	IntermediateValidity = 5 * 365 * 24 * time.Hour
	NodeValidity         = 365 * 24 * time.Hour
	MaxWorkloadValidity  = 10 * time.Minute
	// Backdate is how far before "now" CA and node certificates start, so that a verifier whose clock is a little
	// behind still accepts them. Workload certificates are never backdated: their window is the point.
	Backdate = 5 * time.Minute
)

// ErrRefused is wrapped by every refusal to issue a certificate (bad request, bad node, bad identity).
var ErrRefused = errors.New("certificate request refused")

// NewRoot makes the factory's self-signed root CA certificate for key, named after the trust domain.
func NewRoot(trustDomain string, key crypto.Signer, now time.Time) (*x509.Certificate, error) {
	if err := CheckTrustDomain(trustDomain); err != nil {
		return nil, err
	}
	if err := checkP256(key.Public()); err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	tmpl, err := caTemplate(trustDomain+" root CA", trustDomain, now, RootValidity)
	if err != nil {
		return nil, err
	}
	tmpl.MaxPathLen = 1
	return create(tmpl, tmpl, key.Public(), key)
}

// NewIntermediate makes the intermediate CA certificate for pub, signed by the root. It may issue only end-entity
// certificates (path length 0).
func NewIntermediate(root *x509.Certificate, rootKey crypto.Signer, pub crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	if err := checkP256(pub); err != nil {
		return nil, fmt.Errorf("intermediate key: %w", err)
	}
	org := ""
	if len(root.Subject.Organization) > 0 {
		org = root.Subject.Organization[0]
	}
	tmpl, err := caTemplate(org+" intermediate CA", org, now, IntermediateValidity)
	if err != nil {
		return nil, err
	}
	tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
	if tmpl.NotAfter.After(root.NotAfter) {
		tmpl.NotAfter = root.NotAfter
	}
	return create(tmpl, root, pub, rootKey)
}

// caTemplate is a CA certificate's template; crypto/x509 derives its subject key ID from the key.
func caTemplate(cn, org string, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{org}},
		NotBefore:             now.Add(-Backdate).UTC(),
		NotAfter:              now.Add(validity).UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil
}

// create signs tmpl with the parent's key and parses the result.
func create(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("signing certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// newSerial is a random positive 159-bit serial number (RFC 5280 allows 20 octets).
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	if err != nil {
		return nil, fmt.Errorf("making a serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func checkP256(pub crypto.PublicKey) error {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return fmt.Errorf("key is %T, want ECDSA P-256", pub)
	}
	return nil
}

// Authority issues node and workload certificates with the intermediate CA. Make one with New.
type Authority struct {
	trustDomain string
	issuer      string
	root        *x509.Certificate
	inter       *x509.Certificate
	interKey    crypto.Signer
	ct          *CTLog
	now         func() time.Time
}

// Config is what an Authority needs: its trust domain and OIDC issuer (written into every workload certificate),
// the CA chain, the intermediate's key and the CT log that signs SCTs.
type Config struct {
	TrustDomain     string
	Issuer          string
	Root            *x509.Certificate
	Intermediate    *x509.Certificate
	IntermediateKey crypto.Signer
	CTLog           *CTLog
}

// Option changes an Authority.
type Option func(*Authority)

// WithClock makes the Authority read the time from now (tests of expiry use it).
func WithClock(now func() time.Time) Option { return func(a *Authority) { a.now = now } }

// New checks cfg (the intermediate is the root's, its key matches it) and returns the Authority.
func New(cfg Config, opts ...Option) (*Authority, error) {
	if err := CheckTrustDomain(cfg.TrustDomain); err != nil {
		return nil, err
	}
	if err := CheckIssuer(cfg.Issuer); err != nil {
		return nil, err
	}
	if cfg.Root == nil || cfg.Intermediate == nil || cfg.IntermediateKey == nil || cfg.CTLog == nil {
		return nil, errors.New("making the CA: the root, the intermediate, its key and the CT log are all needed")
	}
	if err := cfg.Intermediate.CheckSignatureFrom(cfg.Root); err != nil {
		return nil, fmt.Errorf("making the CA: the intermediate certificate is not signed by the root: %w", err)
	}
	if !cfg.Intermediate.IsCA {
		return nil, errors.New("making the CA: the intermediate certificate is not a CA certificate")
	}
	if !publicKeysEqual(cfg.Intermediate.PublicKey, cfg.IntermediateKey.Public()) {
		return nil, errors.New("making the CA: the intermediate key does not match the intermediate certificate")
	}
	a := &Authority{
		trustDomain: cfg.TrustDomain, issuer: cfg.Issuer, root: cfg.Root, inter: cfg.Intermediate,
		interKey: cfg.IntermediateKey, ct: cfg.CTLog, now: time.Now,
	}
	for _, o := range opts {
		o(a)
	}
	return a, nil
}

// TrustDomain is the SPIFFE trust domain the Authority issues in.
func (a *Authority) TrustDomain() string { return a.trustDomain }

// Issuer is the OIDC issuer URL written into workload certificates (what --certificate-oidc-issuer matches).
func (a *Authority) Issuer() string { return a.issuer }

// Chain is the CA chain ordered [intermediate, root], as a trusted root's certChain wants it.
func (a *Authority) Chain() []*x509.Certificate { return []*x509.Certificate{a.inter, a.root} }

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}
