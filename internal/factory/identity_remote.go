package factory

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	sigsign "github.com/sigstore/sigstore-go/pkg/sign"

	"github.com/ssf-dev/ssf/internal/ca"
	"github.com/ssf-dev/ssf/internal/trust"
)

// A joined node (a home with joined.json, made by `ssf node join --ca`) holds no CA, log or TSA: its identity
// builds get each workload certificate, log entry and timestamp from the factory's node API (`ssf node serve`,
// trust.NodeAPI) over mutual TLS, and check every bundle against the factory's trusted root exactly as the factory
// node does, so the bundles are the same as local ones.

// openRemoteIdentity is openIdentity on a joined node: the node API's client, and the factory's trust domain,
// issuer and trusted root as the factory gives them.
func (h Home) openRemoteIdentity(ctx context.Context) (*identity, error) {
	c, err := trust.NewNodeClient(h.layout())
	if err != nil {
		return nil, inputErrorf("--signer identity on a joined node: %w", err)
	}
	t, err := c.Trust(ctx)
	if errors.Is(err, trust.ErrNodeRefused) {
		return nil, inputErrorf("--signer identity on a joined node: %w", err)
	} else if err != nil {
		return nil, fmt.Errorf("--signer identity on a joined node: %w", err)
	}
	tr, err := root.NewTrustedRootFromJSON(t.TrustedRoot)
	if err != nil {
		return nil, fmt.Errorf("--signer identity on a joined node: the factory's trusted root: %w", err)
	}
	return &identity{remote: c, trusted: tr, td: t.TrustDomain, issuer: t.Issuer}, nil
}

// backend is what signs for id: the factory's own CA, log and TSA in-process, or the node API on a joined node.
func (id *identity) backend(spiffeID string, claims ca.Claims) (sigsign.CertificateProvider, sigsign.Transparency, func(context.Context, []byte) ([]byte, error)) {
	if id.remote == nil {
		return &ca.Provider{CA: id.trust.CA, Node: id.trust.Node, SPIFFEID: spiffeID, Claims: claims},
			logAppender{id.log},
			func(_ context.Context, sig []byte) ([]byte, error) { return id.trust.TSA.Timestamp(sig) }
	}
	return remoteProvider{c: id.remote, spiffeID: spiffeID, claims: claims}, remoteLog{id.remote}, id.remote.Timestamp
}

// remoteProvider is sigstore-go's CertificateProvider through the node API: the node signs the request (as
// ca.Provider does in-process) and the factory's CA answers.
type remoteProvider struct {
	c        *trust.NodeClient
	spiffeID string
	claims   ca.Claims
}

var _ sigsign.CertificateProvider = remoteProvider{}

func (p remoteProvider) GetCertificate(ctx context.Context, kp sigsign.Keypair, _ *sigsign.CertificateProviderOptions) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(kp.GetPublicKey())
	if err != nil {
		return nil, fmt.Errorf("certificate for %q: encoding the workload key: %w", p.spiffeID, err)
	}
	return p.c.Certificate(ctx, p.spiffeID, der, p.claims)
}

// remoteLog is sigstore-go's Transparency through the node API: the same dsse entry logAppender makes, appended
// by the factory.
type remoteLog struct{ c *trust.NodeClient }

var _ sigsign.Transparency = remoteLog{}

func (rl remoteLog) GetTransparencyLogEntry(ctx context.Context, certPEM []byte, b *protobundle.Bundle) error {
	envJSON, err := envelopeJSON(b)
	if err != nil {
		return err
	}
	e, err := rl.c.AppendDSSE(ctx, envJSON, certPEM)
	if err != nil {
		return fmt.Errorf("appending to the factory's transparency log: %w", err)
	}
	b.VerificationMaterial.TlogEntries = append(b.VerificationMaterial.TlogEntries, e)
	return nil
}

// envelopeJSON is the bundle's DSSE envelope as the log's dsse entry hashes it.
func envelopeJSON(b *protobundle.Bundle) ([]byte, error) {
	env := b.GetDsseEnvelope()
	type sig struct {
		Sig string `json:"sig"`
	}
	e := struct {
		Payload     string `json:"payload"`
		PayloadType string `json:"payloadType"`
		Signatures  []sig  `json:"signatures"`
	}{Payload: base64.StdEncoding.EncodeToString(env.GetPayload()), PayloadType: env.GetPayloadType()}
	for _, s := range env.GetSignatures() {
		e.Signatures = append(e.Signatures, sig{Sig: base64.StdEncoding.EncodeToString(s.GetSig())})
	}
	return json.Marshal(e)
}

// admitsPipeline refuses, at admission (before anything runs), a build of a pipeline outside a joined node's
// scope as the factory gave it at the join (joined.json): the factory's node API would refuse its certificates.
// The factory's check is the one that counts; this one only spares the build.
func (id *identity) admitsPipeline(pipeline string) error {
	if id == nil || id.remote == nil || len(id.remote.Joined.Pipelines) == 0 {
		return nil
	}
	rec := trust.NodeRecord{Pipelines: id.remote.Joined.Pipelines}
	if rec.Allows(pipeline) {
		return nil
	}
	return inputErrorf("--signer identity: this node (%s) may sign only for pipelines matching %s (its join token's --pipelines), not for pipeline %q: build it on a node whose scope covers it, or join one with `ssf node token --pipelines`",
		id.remote.Joined.Host, strings.Join(id.remote.Joined.Pipelines, ","), pipeline)
}
