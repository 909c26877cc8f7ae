package factory

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/ssf-dev/ssf/internal/trust"
)

// RotateTrust retires the factory's intermediate CA and transparency log key and makes new ones (`ssf trust
// rotate`; trust.Rotate). A missing root key or a log in use is the caller's to fix (an InputError).
func (h Home) RotateTrust() (*trust.RotateResult, error) {
	cfg, err := h.Config()
	if err != nil {
		return nil, err
	}
	res, err := trust.Rotate(h.layout(), trust.Options{TrustDomain: cfg.TrustDomain, Issuer: cfg.Issuer})
	if errors.Is(err, trust.ErrRootKeyOffline) || errors.Is(err, trust.ErrBusy) {
		return nil, &InputError{Err: err}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no factory trust to rotate (%w); run `ssf init`", ErrNotInitialised, h.Dir, err)
	}
	return res, err
}

// NodeToken makes a one-time token a node joins this factory's CA with (`ssf node token`). A node joined with it
// may sign only as workloads of pipelines matching one of pipelines (none: every pipeline of the trust domain).
func (h Home) NodeToken(ttl time.Duration, pipelines ...string) (string, time.Time, error) {
	cfg, err := h.Config()
	if err != nil {
		return "", time.Time{}, err
	}
	if _, err := os.Stat(h.layout().CAIntermediateKey()); err != nil {
		return "", time.Time{}, &InputError{Err: fmt.Errorf("%s holds no factory CA to admit nodes (%w): make tokens on the CA's home", h.Dir, err)}
	}
	tok, exp, err := trust.NewScopedJoinToken(h.layout(), cfg.TrustDomain, ttl, time.Now(), pipelines)
	if err != nil && !errors.Is(err, fs.ErrPermission) {
		return "", time.Time{}, &InputError{Err: err}
	}
	return tok, exp, err
}

// AdmitNode is the CA side of a join: it checks the request and issues the node certificate (trust.Admit). A
// refusal is an InputError.
func (h Home) AdmitNode(req []byte) ([]byte, error) {
	cfg, err := h.Config()
	if err != nil {
		return nil, err
	}
	resp, err := trust.Admit(h.layout(), trust.Options{TrustDomain: cfg.TrustDomain, Issuer: cfg.Issuer}, req)
	if errors.Is(err, trust.ErrJoinRefused) {
		return nil, &InputError{Err: err}
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

// JoinNode makes this home a node of the CA that ca reaches (trust.JoinAt): its own key, the certificate
// spiffe://TD/node/<host> the CA issues for it, the CA's root, and joined.json naming the factory's node API
// (url, with the root's pin; empty for an in-process join). The home is then initialised for builds (config.yaml
// with the factory's trust domain and issuer, the provenance key, the builder store), without a CA of its own.
// Refusals are InputErrors.
func (h Home) JoinNode(token, host string, ca func([]byte) ([]byte, error), url, pin string) (string, error) {
	cert, err := trust.JoinAt(h.layout(), token, host, time.Now(), ca, url, pin)
	var ie *InputError
	switch {
	case err == nil:
		j, err := trust.LoadJoined(h.layout())
		if err != nil {
			return "", err
		}
		if _, err := h.Init(WithTrustDomain(j.TrustDomain), WithIssuer(j.Issuer)); err != nil {
			return "", fmt.Errorf("joined as %s, but initialising the home for builds: %w", cert.URIs[0], err)
		}
		if url != "" {
			// The first use of the node API, with the new certificate: the node keeps the factory's trusted root
			// (to verify here), and a node API that does not answer it is found now, not at the first build.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := trust.NewNodeClient(h.layout())
			if err == nil {
				_, err = c.Trust(ctx)
			}
			if err != nil {
				return "", fmt.Errorf("joined as %s, but fetching the factory's trusted root over its node API: %w", cert.URIs[0], err)
			}
		}
		return cert.URIs[0].String(), nil
	case errors.As(err, &ie):
		return "", err
	case errors.Is(err, trust.ErrJoinRefused):
		return "", &InputError{Err: err}
	}
	return "", err
}

// JoinServerCertificate is the TLS certificate of this CA's join endpoint (`ssf node serve`) for hosts, and the
// pin of the root joining nodes check it against.
func (h Home) JoinServerCertificate(hosts []string) (*tls.Certificate, string, error) {
	cfg, err := h.Config()
	if err != nil {
		return nil, "", err
	}
	l := h.layout()
	if _, err := os.Stat(l.CAIntermediateKey()); err != nil {
		return nil, "", &InputError{Err: fmt.Errorf("%s holds no factory CA to admit nodes (%w): serve joins from the CA's home", h.Dir, err)}
	}
	c, err := trust.ServerCertificate(l, trust.Options{TrustDomain: cfg.TrustDomain, Issuer: cfg.Issuer}, hosts)
	if err != nil {
		return nil, "", err
	}
	pin, err := trust.RootPin(l)
	return c, pin, err
}

// RootPin is the pin (sha256:HEX of the root certificate) a node checks this factory's CA by when it joins.
func (h Home) RootPin() (string, error) { return trust.RootPin(h.layout()) }

// Nodes lists this factory's nodes (`ssf node list`): its own, then those that joined.
func (h Home) Nodes() ([]*trust.NodeRecord, error) {
	if _, err := os.Stat(h.layout().CAIntermediateKey()); err != nil {
		return nil, &InputError{Err: fmt.Errorf("%s holds no factory CA (it is a joined node, or not initialised): list nodes on the factory's home", h.Dir)}
	}
	return trust.ListNodes(h.layout())
}

// RevokeNode revokes the joined node name (`ssf node revoke`): the node API refuses its requests from now on.
// It reports false when the node was revoked already.
func (h Home) RevokeNode(name string) (bool, error) {
	if _, err := os.Stat(h.layout().CAIntermediateKey()); err != nil {
		return false, &InputError{Err: fmt.Errorf("%s holds no factory CA (it is a joined node, or not initialised): revoke nodes on the factory's home", h.Dir)}
	}
	ok, err := trust.RevokeNode(h.layout(), name)
	if err != nil && !errors.Is(err, fs.ErrPermission) {
		return false, &InputError{Err: err}
	}
	return ok, err
}
