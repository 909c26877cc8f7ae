package factory

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/ssf-dev/ssf/internal/trust"
)

// initOptions are what `ssf init` was asked for beyond the defaults.
type initOptions struct {
	trustDomain, issuer string
}

// InitOption changes what Init creates.
type InitOption func(*initOptions)

// WithTrustDomain sets the SPIFFE trust domain of a new factory (default ssf.local). On an existing home it must
// be the one config.yaml records.
func WithTrustDomain(td string) InitOption { return func(o *initOptions) { o.trustDomain = td } }

// WithIssuer sets the OIDC issuer URL written into workload certificates (default https://TD/issuer). On an
// existing home it must be the one config.yaml records.
func WithIssuer(url string) InitOption { return func(o *initOptions) { o.issuer = url } }

// fillTrust gives a config without trustDomain or issuer (one written before they existed) the defaults.
func (c *Config) fillTrust() {
	if c.TrustDomain == "" {
		c.TrustDomain = trust.DefaultTrustDomain
	}
	if c.Issuer == "" {
		c.Issuer = trust.DefaultIssuer(c.TrustDomain)
	}
}

// checkInitTrust refuses an init whose --trust-domain or --issuer differs from what the home already records:
// its certificates are for those, and nothing is overwritten.
func checkInitTrust(cfg Config, path string, o initOptions) error {
	if o.trustDomain != "" && o.trustDomain != cfg.TrustDomain {
		return &InputError{Err: fmt.Errorf("factory config %q records trust domain %q, not %q: keep it (drop --trust-domain), or use a new SSF_HOME", path, cfg.TrustDomain, o.trustDomain)}
	}
	if o.issuer != "" && o.issuer != cfg.Issuer {
		return &InputError{Err: fmt.Errorf("factory config %q records issuer %q, not %q: keep it (drop --issuer), or use a new SSF_HOME", path, cfg.Issuer, o.issuer)}
	}
	return nil
}

// initTrust makes what is missing of the factory trust (CA, logs' keys, TSA, node identity) for cfg.
func (h Home) initTrust(cfg Config) ([]string, error) {
	if trust.IsJoinedNode(h.layout()) {
		return nil, nil // a joined node signs through its factory's node API (identity_remote.go): no CA of its own
	}
	return trust.Init(h.layout(), trust.Options{TrustDomain: cfg.TrustDomain, Issuer: cfg.Issuer})
}

// TrustedRoot is the factory's Sigstore trusted root (JSON) for verifiers: `ssf trust export`.
func (h Home) TrustedRoot() ([]byte, error) {
	if trust.IsJoinedNode(h.layout()) { // a joined node keeps its factory's (identity_remote.go)
		return trust.LoadFactoryTrustedRoot(h.layout())
	}
	cfg, err := h.Config()
	if err != nil {
		return nil, err
	}
	tr, err := trust.Export(h.layout(), cfg.TrustDomain)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no factory trust yet (%w); run `ssf init`, which adds what is missing", ErrNotInitialised, h.Dir, err)
	}
	return tr, err
}
