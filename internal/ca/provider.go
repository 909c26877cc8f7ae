package ca

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	sigsign "github.com/sigstore/sigstore-go/pkg/sign"
)

// Provider is sigstore-go's sign.CertificateProvider for one workload: sign.Bundle hands it the workload's keypair
// (made in memory, e.g. sign.NewEphemeralKeypair) and gets back the certificate this factory's CA issues for it on
// the node's signed request. It needs no OIDC token: the node's signature is the attestation.
type Provider struct {
	CA       *Authority
	Node     *Node
	SPIFFEID string
	Claims   Claims
	Validity time.Duration // 0 means MaxWorkloadValidity
}

var _ sigsign.CertificateProvider = (*Provider)(nil)

// GetCertificate returns the DER certificate for kp's public key.
func (p *Provider) GetCertificate(ctx context.Context, kp sigsign.Keypair, _ *sigsign.CertificateProviderOptions) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(kp.GetPublicKey())
	if err != nil {
		return nil, fmt.Errorf("certificate for %q: encoding the workload key: %w", p.SPIFFEID, err)
	}
	req, err := p.Node.Request(Request{SPIFFEID: p.SPIFFEID, PublicKey: der, Validity: p.Validity, Claims: p.Claims})
	if err != nil {
		return nil, err
	}
	cert, err := p.CA.Issue(req)
	if err != nil {
		return nil, err
	}
	return cert.Raw, nil
}
