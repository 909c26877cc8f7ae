package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	intoto "github.com/in-toto/attestation/go/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	sigsign "github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ssf-dev/ssf/internal/content"
)

// Signer signs with an ECDSA P-256 key using SHA-256. It implements sigstore-go's sign.Keypair.
//
// Its hint (the bundle's verificationMaterial.publicKey.hint) is the standard base64 encoding of the SHA-256 of
// the DER SubjectPublicKeyInfo of the public key, the same hint sigstore-go's own key pairs use. The hint only
// names the key; verifiers (ssf verify, cosign --key) use the key they are given and never trust the hint.
type Signer struct {
	key  *ecdsa.PrivateKey
	hint []byte
	err  error // set by NewSigner for a key this Signer cannot use; returned by every signing call
}

var _ sigsign.Keypair = (*Signer)(nil)

// NewSigner returns a Signer for key. A nil key or a curve other than P-256 makes every signing call fail.
func NewSigner(key *ecdsa.PrivateKey) *Signer {
	s := &Signer{key: key}
	switch {
	case key == nil:
		s.err = errors.New("signer has no key")
	case key.Curve != elliptic.P256():
		s.err = fmt.Errorf("signer key is on curve %s, want P-256", key.Curve.Params().Name)
	default:
		der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			s.err = fmt.Errorf("encoding signer public key: %w", err)
			break
		}
		sum := sha256.Sum256(der)
		s.hint = []byte(base64.StdEncoding.EncodeToString(sum[:]))
	}
	return s
}

// GetHashAlgorithm returns SHA2-256, the digest signed.
func (s *Signer) GetHashAlgorithm() protocommon.HashAlgorithm {
	return protocommon.HashAlgorithm_SHA2_256
}

// GetSigningAlgorithm returns ECDSA P-256 with SHA-256.
func (s *Signer) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}

// GetHint returns the public key hint described at Signer.
func (s *Signer) GetHint() []byte { return s.hint }

// GetKeyAlgorithm returns "ECDSA".
func (s *Signer) GetKeyAlgorithm() string { return "ECDSA" }

// GetPublicKey returns the public half of the key.
func (s *Signer) GetPublicKey() crypto.PublicKey {
	if s.key == nil {
		return nil
	}
	return &s.key.PublicKey
}

// GetPublicKeyPem returns the public key as a PKIX PEM block.
func (s *Signer) GetPublicKeyPem() (string, error) {
	if s.err != nil {
		return "", s.err
	}
	b, err := PublicKeyPEM(&s.key.PublicKey)
	return string(b), err
}

// SignData signs the SHA-256 of data (ASN.1 DER ECDSA signature) and returns the signature and the digest.
func (s *Signer) SignData(ctx context.Context, data []byte) ([]byte, []byte, error) {
	if s.err != nil {
		return nil, nil, s.err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	digest := sha256.Sum256(data)
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, digest[:])
	if err != nil {
		return nil, nil, fmt.Errorf("signing: %w", err)
	}
	return sig, digest[:], nil
}

// Statement signs an in-toto Statement v1 (JSON) as a DSSE envelope with payloadType application/vnd.in-toto+json
// and returns the Sigstore bundle v0.3 as JSON. The bundle carries no transparency log entry, no timestamp and no
// certificate: its verification material is the public key hint only, so it verifies offline against the public
// key (cosign: --key with --insecure-ignore-tlog and a trusted root without logs).
//
// The statement is signed byte for byte as given; it must decode as an in-toto Statement v1 with subjects and a
// predicate. Before returning, the bundle is verified with the signer's public key.
func (s *Signer) Statement(ctx context.Context, statement []byte) ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	if err := checkStatement(statement); err != nil {
		return nil, err
	}
	selfCheck, err := s.trustedMaterial()
	if err != nil {
		return nil, err
	}
	bundle, err := sigsign.Bundle(
		&sigsign.DSSEData{Data: statement, PayloadType: content.InTotoPayloadType},
		s,
		sigsign.BundleOptions{Context: ctx, TrustedRoot: selfCheck},
	)
	if err != nil {
		return nil, fmt.Errorf("signing statement: %w", err)
	}
	if bundle.GetMediaType() != content.BundleMediaType {
		return nil, fmt.Errorf("signing statement: sigstore-go made a bundle of media type %q, want %q",
			bundle.GetMediaType(), content.BundleMediaType)
	}
	out, err := protojson.Marshal(bundle)
	if err != nil {
		return nil, fmt.Errorf("encoding bundle: %w", err)
	}
	// protojson varies its whitespace on purpose; compact output keeps bundles byte-stable for a given signature.
	var buf bytes.Buffer
	if err := json.Compact(&buf, out); err != nil {
		return nil, fmt.Errorf("encoding bundle: %w", err)
	}
	return buf.Bytes(), nil
}

// trustedMaterial trusts exactly this signer's public key, for sign.Bundle's check of what it just signed.
func (s *Signer) trustedMaterial() (root.TrustedMaterial, error) {
	v, err := signature.LoadVerifier(&s.key.PublicKey, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("loading signer public key: %w", err)
	}
	key := root.NewExpiringKey(v, time.Time{}, time.Time{})
	return root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return key, nil
	}), nil
}

// checkStatement refuses to sign what is not an in-toto Statement v1: the signature would vouch for it.
func checkStatement(statement []byte) error {
	var st intoto.Statement
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(statement, &st); err != nil {
		return fmt.Errorf("signing statement: not an in-toto statement: %w", err)
	}
	if st.GetType() != intoto.StatementTypeUri {
		return fmt.Errorf("signing statement: _type is %q, want %q", st.GetType(), intoto.StatementTypeUri)
	}
	if err := st.Validate(); err != nil {
		return fmt.Errorf("signing statement: %w", err)
	}
	return nil
}
