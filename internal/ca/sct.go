package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"time"

	ct "github.com/google/certificate-transparency-go"
	"github.com/google/certificate-transparency-go/ctutil"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	"github.com/google/certificate-transparency-go/x509util"
)

// RFC 6962 extensions: the precertificate poison (critical, ASN.1 NULL) and the embedded SCT list (an OCTET STRING
// holding the TLS-encoded SignedCertificateTimestampList).
var (
	oidCTPoison  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 3}
	oidCTSCTList = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
)

// CTLog is the factory's certificate-transparency log as far as SCTs go: a key that promises (signs) the inclusion
// of every precertificate the CA makes. Its log ID is sha256 of its PKIX DER public key, the `ctlogs[].logId` of
// the trusted root.
type CTLog struct {
	key   *ecdsa.PrivateKey
	der   []byte
	logID [32]byte
}

// NewCTLog returns the CT log signing with key (ECDSA P-256).
func NewCTLog(key *ecdsa.PrivateKey) (*CTLog, error) {
	if key == nil {
		return nil, fmt.Errorf("CT log: no key")
	}
	if err := checkP256(key.Public()); err != nil {
		return nil, fmt.Errorf("CT log key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("CT log key: %w", err)
	}
	return &CTLog{key: key, der: der, logID: sha256.Sum256(der)}, nil
}

// PublicKeyDER is the log's public key as PKIX DER.
func (l *CTLog) PublicKeyDER() []byte { return append([]byte(nil), l.der...) }

// PublicKey is the log's public key.
func (l *CTLog) PublicKey() crypto.PublicKey { return l.key.Public() }

// LogID is sha256 of the log's PKIX DER public key.
func (l *CTLog) LogID() [32]byte { return l.logID }

// signPrecert returns the SCT of precert (DER, signed by issuer) at t: a V1 SCT whose signature covers the
// precert entry (issuer key hash and the TBS without the poison).
func (l *CTLog) signPrecert(precert []byte, issuer *x509.Certificate, t time.Time) (*ct.SignedCertificateTimestamp, error) {
	ms := uint64(t.UnixMilli())
	leaf, err := ct.MerkleTreeLeafFromRawChain([]ct.ASN1Cert{{Data: precert}, {Data: issuer.Raw}}, ct.PrecertLogEntryType, ms)
	if err != nil {
		return nil, fmt.Errorf("making the precertificate entry: %w", err)
	}
	sct := ct.SignedCertificateTimestamp{SCTVersion: ct.V1, LogID: ct.LogID{KeyID: l.logID}, Timestamp: ms}
	input, err := ct.SerializeSCTSignatureInput(sct, ct.LogEntry{Leaf: *leaf})
	if err != nil {
		return nil, fmt.Errorf("serialising the SCT input: %w", err)
	}
	sig, err := cttls.CreateSignature(*l.key, cttls.SHA256, input)
	if err != nil {
		return nil, fmt.Errorf("signing the SCT: %w", err)
	}
	sct.Signature = ct.DigitallySigned(sig)
	return &sct, nil
}

// sctListExtension is the non-critical extension embedding scts.
func sctListExtension(scts ...*ct.SignedCertificateTimestamp) ([]byte, error) {
	list, err := x509util.MarshalSCTsIntoSCTList(scts)
	if err != nil {
		return nil, fmt.Errorf("encoding the SCT list: %w", err)
	}
	tlsList, err := cttls.Marshal(*list)
	if err != nil {
		return nil, fmt.Errorf("encoding the SCT list: %w", err)
	}
	return asn1.Marshal(tlsList)
}

// verifyEmbeddedSCT checks, as sigstore-go does, that cert embeds an SCT of this log that verifies against issuer.
func (l *CTLog) verifyEmbeddedSCT(cert []byte, issuer *x509.Certificate) error {
	scts, err := x509util.ParseSCTsFromCertificate(cert)
	if err != nil {
		return fmt.Errorf("reading the embedded SCTs: %w", err)
	}
	chain, err := ctx509.ParseCertificates(append(append([]byte(nil), cert...), issuer.Raw...))
	if err != nil {
		return fmt.Errorf("parsing the certificate for its SCT: %w", err)
	}
	for _, s := range scts {
		if s.LogID.KeyID == l.logID {
			return ctutil.VerifySCT(l.key.Public(), chain, s, true)
		}
	}
	return fmt.Errorf("the certificate embeds no SCT of log %x", l.logID)
}
