package factory

import (
	"context"
	"io"
	"strings"

	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/trust"
)

// Verifier is what signs the factory's verification summaries (ssf verify --vsa), and how it is named in them.
type Verifier struct {
	Attestor Attestor
	// ID is the VSA's verifier.id: the factory's builder id with "/verifier" appended, so a consumer that pins the
	// factory by its builder id can pin its verifier the same way.
	ID string
	// Identity and Issuer are the certificate identity that signs with SignerIdentity (spiffe://TD/verifier) and
	// its issuer, as cosign's --certificate-identity and --certificate-oidc-issuer take them; "" with SignerKey.
	Identity, Issuer string

	close func(context.Context) error
}

// Close releases what signing held (the transparency log of an identity signer); later calls do nothing.
func (v *Verifier) Close(ctx context.Context) error {
	if v == nil || v.close == nil {
		return nil
	}
	c := v.close
	v.close = nil
	return c(ctx)
}

// VerifierID is the SPIFFE ID that signs verification summaries in trust domain td.
func VerifierID(td string) string { return "spiffe://" + td + "/verifier" }

// OpenVerifier returns the signer of verification summaries for signer: SignerKey signs with the factory's
// provenance key; SignerIdentity with a short-lived certificate for spiffe://TD/verifier from the factory CA,
// logged in the factory's transparency log and timestamped by its TSA, exactly as a build's statements are (it
// takes the log's turn, waiting for a running identity build, until Close). log receives "waiting" notes.
func (h Home) OpenVerifier(ctx context.Context, signer string, log io.Writer) (*Verifier, error) {
	cfg, err := h.Config()
	if err != nil {
		return nil, err
	}
	v := &Verifier{ID: strings.TrimSuffix(cfg.BuilderID, "/") + "/verifier"}
	switch signer {
	case SignerKey:
		key, err := sign.LoadKey(h.KeyPath())
		if err != nil {
			return nil, inputErrorf("loading the provenance key to sign the verification summary (run `ssf init` if the factory is new): %w", err)
		}
		v.Attestor = sign.NewSigner(key)
		return v, nil
	case SignerIdentity:
		// The factory's node API never issues the verifier's identity to a joined node (trust.NodeAPI checkScope):
		// say so before anything is verified, rather than fail to sign after it.
		if trust.IsJoinedNode(h.layout()) {
			return nil, inputErrorf("--vsa-signer %s: this home is a node joined to its factory, and only the factory's own node signs as %s: sign the summary with this node's key (--vsa-signer %s), or run ssf verify --vsa on the factory", SignerIdentity, VerifierID(cfg.TrustDomain), SignerKey)
		}
		id, err := h.openIdentity(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		v.Attestor = workloadAttestor{id: id, spiffe: func() string { return VerifierID(cfg.TrustDomain) }}
		v.Identity, v.Issuer, v.close = VerifierID(cfg.TrustDomain), cfg.Issuer, id.close
		return v, nil
	}
	return nil, inputErrorf("--signer %q: want %q (the factory's provenance key) or %q (a short-lived certificate for %s)", signer, SignerKey, SignerIdentity, VerifierID(cfg.TrustDomain))
}
