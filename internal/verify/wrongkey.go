package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

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

// ErrNotASubject is wrapped when the artifact is not among the subjects of the bundle's statement: the file and the
// bundle belong to different builds (or the file changed since).
var ErrNotASubject = errors.New("not a subject of the bundle")

// subjectsWithout reports, for a bundle sigstore-go has refused, whether its DSSE payload decodes as a statement
// none of whose subjects has the artifact's sha256, and if so names (a few of) those subjects, so the refusal can
// say that the file is not one of them rather than repeat sigstore-go's words. Like notSignedByKey it only
// explains a refusal; what it reads has not been verified.
// maxQuotedName bounds each subject name a refusal quotes.
const maxQuotedName = 200

func subjectsWithout(b *bundle.Bundle, artifact digest.Digest) ([]string, bool) {
	env := b.GetDsseEnvelope()
	if env == nil {
		return nil, false
	}
	var st struct {
		Subject []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if json.Unmarshal(env.GetPayload(), &st) != nil || len(st.Subject) == 0 {
		return nil, false
	}
	var names []string
	for _, s := range st.Subject {
		if s.Digest["sha256"] == artifact.Encoded() {
			return nil, false
		}
		if len(names) < 5 {
			// A name is shortened: it is read before anything is verified (under certificate material), and a
			// bundle can carry one of megabytes, which would otherwise be printed whole.
			name := s.Name
			if len(name) > maxQuotedName {
				name = strings.ToValidUTF8(name[:maxQuotedName], "") + "..."
			}
			names = append(names, strconv.Quote(name))
		}
	}
	if len(st.Subject) > len(names) {
		names = append(names, fmt.Sprintf("and %d more", len(st.Subject)-len(names)))
	}
	return names, true
}
