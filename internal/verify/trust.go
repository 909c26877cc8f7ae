package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
)

// keyMaterial is trusted material holding exactly one public key: the factory's provenance key.
type keyMaterial struct {
	*root.TrustedPublicKeyMaterial
	err error // why the key is unusable, reported when it is used
}

// KeyMaterial returns trusted material that trusts exactly pub, whatever key hint a bundle names: the hint is
// unsigned and only a label (cosign --key does the same). It carries no CA and no transparency log, so bundles
// verified with it need no log entry or timestamp. An unusable key is reported when the material is used.
func KeyMaterial(pub crypto.PublicKey) root.TrustedMaterial {
	if noKey(pub) {
		return &keyMaterial{err: errors.New("no public key given")}
	}
	v, err := signature.LoadDefaultVerifier(pub)
	if err != nil {
		return &keyMaterial{err: fmt.Errorf("unusable public key: %w", err)}
	}
	key := root.NewExpiringKey(v, time.Time{}, time.Time{})
	return &keyMaterial{TrustedPublicKeyMaterial: root.NewTrustedPublicKeyMaterial(
		func(string) (root.TimeConstrainedVerifier, error) { return key, nil })}
}

// newSigstoreVerifier configures sigstore-go for the material and says what it will check beyond the signature:
// key-only material has nothing to observe a signature's time, so none is required; certificate material
// (CertificateMaterial) requires everything cosign does. Other material with a CA or a log comes without the
// identity that must go with it: it is refused rather than half-used.
func newSigstoreVerifier(trusted root.TrustedMaterial) (*sgverify.Verifier, []string, error) {
	if cm, ok := trusted.(*certMaterial); ok {
		if cm.err != nil {
			return nil, nil, fmt.Errorf("verifying: %w", cm.err)
		}
		return certVerifier(cm) // identity.go
	}
	if len(trusted.FulcioCertificateAuthorities()) > 0 || len(trusted.RekorLogs()) > 0 || len(trusted.TimestampingAuthorities()) > 0 {
		return nil, nil, errors.New("verifying: a trusted root with certificate authorities or logs needs the identity that must have signed (verify.CertificateMaterial)")
	}
	v, err := sgverify.NewVerifier(trusted, sgverify.WithNoObserverTimestamps())
	if err != nil {
		return nil, nil, fmt.Errorf("verifying: configuring sigstore-go: %w", err)
	}
	return v, nil, nil
}

// identityPolicy says whose signature is accepted: with key material, the key's; with certificate material, the
// certificate identity's.
func identityPolicy(trusted root.TrustedMaterial) sgverify.PolicyOption {
	if cm, ok := trusted.(*certMaterial); ok {
		return certIdentityPolicy(cm)
	}
	return sgverify.WithKey()
}

// noKey reports a missing key, including a typed nil or an ECDSA key without a curve, which sigstore's key loader
// would dereference.
func noKey(k crypto.PublicKey) bool {
	switch k := k.(type) {
	case nil:
		return true
	case *ecdsa.PublicKey:
		return k == nil || k.Curve == nil
	case *rsa.PublicKey:
		return k == nil || k.N == nil
	case ed25519.PublicKey:
		return len(k) == 0
	}
	return false
}
