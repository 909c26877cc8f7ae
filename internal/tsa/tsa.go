// Package tsa is the factory's RFC 3161 timestamp authority: it countersigns the time at which a signature
// existed, so that a bundle verifies where signed timestamps are required (`cosign --use-signed-timestamps`,
// sigstore-go's WithSignedTimestamps) and for Rekor-v2-shaped log entries, which carry no integrated time.
//
// # Shape
//
// The TSA certificate (ECDSA P-256, [Validity]) is an end-entity certificate with one critical extended key usage,
// timeStamping, and nothing else — what sigstore's timestamp verification requires. It is signed directly by the
// factory's root CA, not by the intermediate that issues workload certificates: one offline root anchors all of the
// factory's trust, and a compromised intermediate cannot mint a timestamping certificate (the intermediate signs
// only code-signing and node certificates). The trusted root lists it as `timestampAuthorities[].certChain`
// [TSA certificate, root]. Its responses hash with SHA-256, name the policy [PolicyOID], embed the TSA
// certificate, and are made with github.com/digitorus/timestamp.
//
// The message timestamped is the raw signature bytes of a bundle (the DSSE signature, or the message signature),
// exactly what verifiers hash when they check the timestamp.
//
// # What it must never do
//
//   - Never timestamp with a time other than its own clock's, and never with a certificate that is not valid at
//     that time.
//   - Never sign with a certificate whose EKU is not exactly timeStamping (critical), or with a key that does not
//     match it; never hold or write a key file itself (package trust stores the key, mode 0600).
package tsa

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/digitorus/timestamp"
)

// Validity of the TSA certificate.
const Validity = 5 * 365 * 24 * time.Hour

// PolicyOID is the TSA policy named in every response: the default policy of Sigstore's timestamp-authority,
// whose profile this TSA follows (ssf has no OID arc of its own; verifiers do not pin it).
var PolicyOID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 2}

var oidExtKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37}

// NewCertificate makes the TSA certificate for pub, signed by the CA certificate issuer with issuerKey: an
// end-entity certificate whose only EKU is timeStamping, marked critical.
func NewCertificate(trustDomain string, issuer *x509.Certificate, issuerKey crypto.Signer, pub crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	if err != nil {
		return nil, fmt.Errorf("making a serial number: %w", err)
	}
	// crypto/x509 writes the EKU extension non-critical; RFC 3161 2.3 wants it critical, so it is given raw.
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(Validity)
	if notAfter.After(issuer.NotAfter) {
		notAfter = issuer.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: trustDomain + " timestamp authority", Organization: []string{trustDomain}},
		NotBefore:             now.Add(-5 * time.Minute).UTC(),
		NotAfter:              notAfter.UTC(),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: oidExtKeyUsage, Critical: true, Value: eku}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, issuerKey)
	if err != nil {
		return nil, fmt.Errorf("signing the TSA certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// Authority timestamps signatures. Make one with New.
type Authority struct {
	cert  *x509.Certificate
	chain []*x509.Certificate // [cert, ..., root]
	key   crypto.Signer
	now   func() time.Time
}

// Option changes an Authority.
type Option func(*Authority)

// WithClock makes the Authority read the time from now (tests use it).
func WithClock(now func() time.Time) Option { return func(a *Authority) { a.now = now } }

// New returns the TSA signing with key under cert, whose chain up to a root is chain ([cert, ..., root]).
func New(chain []*x509.Certificate, key crypto.Signer, opts ...Option) (*Authority, error) {
	if len(chain) < 2 {
		return nil, errors.New("TSA: the chain must be [TSA certificate, ..., root]")
	}
	cert := chain[0]
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageTimeStamping || len(cert.UnknownExtKeyUsage) != 0 || cert.IsCA {
		return nil, errors.New("TSA: the certificate's only extended key usage must be timeStamping, and it must not be a CA")
	}
	critical := false
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidExtKeyUsage) {
			critical = e.Critical
		}
	}
	if !critical {
		return nil, errors.New("TSA: the certificate's extended key usage is not critical")
	}
	if eq, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || key == nil || !eq.Equal(key.Public()) {
		return nil, errors.New("TSA: the key does not match the TSA certificate")
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return nil, fmt.Errorf("TSA: certificate %d of the chain is not signed by the next: %w", i, err)
		}
	}
	a := &Authority{cert: cert, chain: chain, key: key, now: time.Now}
	for _, o := range opts {
		o(a)
	}
	return a, nil
}

// Chain is the TSA's certificate chain, [TSA certificate, ..., root].
func (a *Authority) Chain() []*x509.Certificate { return a.chain }

// Timestamp returns a DER RFC 3161 timestamp response over SHA-256 of signature (a bundle's raw signature bytes),
// for a bundle's verificationMaterial.timestampVerificationData.rfc3161Timestamps[].signedTimestamp.
func (a *Authority) Timestamp(signature []byte) ([]byte, error) {
	if len(signature) == 0 {
		return nil, errors.New("timestamping: no signature to timestamp")
	}
	now := a.now().UTC().Truncate(time.Second) // GeneralizedTime without fractions: what every parser reads
	if now.Before(a.cert.NotBefore) || now.After(a.cert.NotAfter) {
		return nil, fmt.Errorf("timestamping: the TSA certificate is valid from %s to %s, not now (%s)",
			a.cert.NotBefore.Format(time.RFC3339), a.cert.NotAfter.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	digest := sha256.Sum256(signature)
	ts := timestamp.Timestamp{
		HashAlgorithm:     crypto.SHA256,
		HashedMessage:     digest[:],
		Time:              now,
		Accuracy:          time.Second,
		Policy:            PolicyOID,
		AddTSACertificate: true,
	}
	resp, err := ts.CreateResponseWithOpts(a.cert, a.key, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("making the timestamp response: %w", err)
	}
	return resp, nil
}
