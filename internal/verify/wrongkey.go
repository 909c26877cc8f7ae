package verify

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
)

// ErrNotSignedByKey is wrapped when a bundle's signature does not verify with the trusted key: another key signed
// it, or what it signs was changed afterwards. sigstore-go says this as a threshold of accepted signatures; people
// need to hear that the key is not the one.
var ErrNotSignedByKey = errors.New("not signed by this key")

// notSignedByKey reports whether trusted is a single public key (KeyMaterial) and no DSSE signature of b verifies
// with it. It is asked only after sigstore-go has refused the bundle, to say why in words; it never accepts.
func notSignedByKey(b *bundle.Bundle, trusted root.TrustedMaterial) bool {
	km, ok := trusted.(*keyMaterial)
	if !ok || km.err != nil {
		return false
	}
	env := b.GetDsseEnvelope()
	if env == nil || len(env.GetSignatures()) == 0 {
		return false
	}
	v, err := km.PublicKeyVerifier("") // the material trusts one key whatever the hint
	if err != nil {
		return false
	}
	pae := preAuthEncoding(env.GetPayloadType(), env.GetPayload())
	for _, s := range env.GetSignatures() {
		if v.VerifySignature(bytes.NewReader(s.GetSig()), bytes.NewReader(pae)) == nil {
			return false
		}
	}
	return true
}

// preAuthEncoding is what a DSSE signature signs (the DSSE v1 protocol's PAE).
func preAuthEncoding(payloadType string, payload []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
}
