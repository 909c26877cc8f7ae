// Package trust is the factory's trust as files under $SSF_HOME/keys: it makes the CA root and intermediate, the
// CT log key, the transparency log key, the timestamp authority and this node's identity at `ssf init` ([Init]),
// loads them for signing ([Load]), and exports their public halves as a Sigstore trusted root ([Export]) for
// cosign and sigstore-go. It admits other nodes ([Admit], [Join]), and serves joined nodes what they sign with
// ([NodeAPI], [NodeClient]: certificates, log entries and timestamps over mutual TLS; docs/keyless.md "Nodes").
//
// Keys are ECDSA P-256 PKCS#8 PEM files of mode 0600 (written and read by package sign, which refuses a key that
// group or others can read); certificates are PEM files of mode 0644 beside them. The root key is read only to
// make a certificate it signs (the intermediate and the TSA certificate), so after init it can be moved offline
// (docs/keyless.md); the trusted root needs only the root certificate.
//
// # What it must never do
//
//   - Never overwrite or replace a key or certificate, except in Rotate: Init makes only what is missing (files
//     are created with link(2), which never replaces), and refuses when what exists does not fit together. Rotate
//     replaces the intermediate, log key and node certificate only after recording the retired public halves.
//   - Never drop a retired intermediate or log key from the trusted root, and never let one be valid after its
//     rotation's end.
//   - Never write a private key readable by anyone but its owner, and never put a private key into a trusted root.
//   - Never need the root key except to make a certificate it signs.
//   - Never store a join token itself, admit a node with a token that is used, expired, unknown or of another
//     trust domain, or send a token to a server that does not chain to the pinned root.
//   - Never answer the node API ([NodeAPI]) without a client certificate that is exactly the one recorded for a
//     node of the current intermediate that is not revoked; never issue a certificate or append a log entry for
//     a workload that is not a pipeline's or task's of the node's scope; never append for a refused request.
package trust

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ssf-dev/ssf/internal/ca"
	"github.com/ssf-dev/ssf/internal/durable"
	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/tsa"
)

// DefaultTrustDomain is the trust domain of a factory initialised without --trust-domain.
const DefaultTrustDomain = "ssf.local"

// DefaultIssuer is the issuer URL of trust domain td when none is given.
func DefaultIssuer(td string) string { return "https://" + td + "/issuer" }

// Options name the factory's identity: its SPIFFE trust domain, the OIDC issuer written into workload
// certificates, and this node's host name.
type Options struct {
	TrustDomain string
	Issuer      string
	Host        string           // this node; os.Hostname() when empty
	Now         func() time.Time // time.Now when nil (tests move it)
}

func (o *Options) fill() error {
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	if o.Issuer == "" {
		o.Issuer = DefaultIssuer(o.TrustDomain)
	}
	if o.Host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		o.Host = NodeName(h)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return CheckOptions(o.TrustDomain, o.Issuer)
}

// CheckOptions checks a trust domain and an issuer URL (empty means the default) before anything is written.
func CheckOptions(trustDomain, issuer string) error {
	if trustDomain != "" {
		if err := ca.CheckTrustDomain(trustDomain); err != nil {
			return err
		}
	}
	if issuer != "" {
		return ca.CheckIssuer(issuer)
	}
	return nil
}

// NodeName turns a host name into a SPIFFE path segment: lower case, anything but a-z, 0-9, '.', '-' and '_'
// becomes '-'.
func NodeName(host string) string {
	b := []byte(strings.ToLower(host))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	if s := strings.Trim(string(b), "."); s != "" {
		return s
	}
	return "localhost"
}

// Init makes whatever of the factory trust is missing under l and returns the paths it created. It never replaces
// a file. The root key is needed only when the intermediate or the TSA certificate is missing.
func Init(l home.Layout, o Options) ([]string, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	var created []string
	if err := os.MkdirAll(filepath.Dir(l.CARootKey()), 0o700); err != nil {
		return nil, fmt.Errorf("creating the key directory: %w", err)
	}
	now := o.Now()
	for _, k := range []string{l.CTLogKey(), l.TLogKey(), l.CAIntermediateKey(), l.TSAKey(), l.NodeKey()} {
		made, err := ensureKey(k)
		if err != nil {
			return created, err
		}
		if made {
			created = append(created, k)
		}
	}
	// The root: its certificate is made from its key, once. Without the certificate, a missing root key is made.
	var rootKey *ecdsa.PrivateKey
	loadRootKey := func(why string) (*ecdsa.PrivateKey, error) {
		if rootKey != nil {
			return rootKey, nil
		}
		k, err := sign.LoadKey(l.CARootKey())
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s needs the CA root key %s, which is not there (moved offline?): put it back for this init, then move it away again (docs/keyless.md)", why, l.CARootKey())
		}
		rootKey = k
		return k, err
	}
	root, err := readCert(l.CARootCert())
	if errors.Is(err, fs.ErrNotExist) {
		made, err := ensureKey(l.CARootKey())
		if err != nil {
			return created, err
		}
		if made {
			created = append(created, l.CARootKey())
		}
		k, err := loadRootKey("making the root certificate")
		if err != nil {
			return created, err
		}
		if root, err = ca.NewRoot(o.TrustDomain, k, now); err != nil {
			return created, err
		}
		if err := writeCert(l.CARootCert(), root); err != nil {
			return created, err
		}
		created = append(created, l.CARootCert())
	} else if err != nil {
		return created, err
	}
	if td := orgOf(root); td != o.TrustDomain {
		return created, fmt.Errorf("the factory CA in %s is for trust domain %q, not %q: keep %q, or initialise a new SSF_HOME for %q", l.Dir, td, o.TrustDomain, td, o.TrustDomain)
	}
	signedByRoot := []struct {
		cert, key string
		make      func(rootKey crypto.Signer, pub crypto.PublicKey) (*x509.Certificate, error)
	}{
		{l.CAIntermediateCert(), l.CAIntermediateKey(), func(rk crypto.Signer, pub crypto.PublicKey) (*x509.Certificate, error) {
			return ca.NewIntermediate(root, rk, pub, now)
		}},
		{l.TSACert(), l.TSAKey(), func(rk crypto.Signer, pub crypto.PublicKey) (*x509.Certificate, error) {
			return tsa.NewCertificate(o.TrustDomain, root, rk, pub, now)
		}},
	}
	for _, s := range signedByRoot {
		made, err := ensureCert(s.cert, s.key, func(pub crypto.PublicKey) (*x509.Certificate, error) {
			rk, err := loadRootKey("making " + s.cert)
			if err != nil {
				return nil, err
			}
			return s.make(rk, pub)
		})
		if err != nil {
			return created, err
		}
		if made {
			created = append(created, s.cert)
		}
	}
	// The node certificate is the intermediate's.
	made, err := ensureCert(l.NodeCert(), l.NodeKey(), func(pub crypto.PublicKey) (*x509.Certificate, error) {
		a, err := loadCA(l, o, ca.WithClock(o.Now))
		if err != nil {
			return nil, err
		}
		return a.IssueNode(o.Host, pub)
	})
	if err != nil {
		return created, err
	}
	if made {
		created = append(created, l.NodeCert())
	}
	return created, nil
}

// ensureKey makes a P-256 key at path unless one is there.
func ensureKey(path string) (bool, error) {
	switch err := sign.GenerateKey(path); {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil
	default:
		return false, err
	}
}

// ensureCert makes the certificate at certPath for the key at keyPath unless it is there; an existing one must be
// for that key.
func ensureCert(certPath, keyPath string, make func(crypto.PublicKey) (*x509.Certificate, error)) (bool, error) {
	key, err := sign.LoadKey(keyPath)
	if err != nil {
		return false, err
	}
	c, err := readCert(certPath)
	if err == nil {
		if !key.PublicKey.Equal(c.PublicKey) {
			return false, fmt.Errorf("certificate %s is not for the key %s: restore the key that belongs to it, or move both away to make new ones", certPath, keyPath)
		}
		return false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	c, err = make(key.Public())
	if err != nil {
		return false, err
	}
	return true, writeCert(certPath, c)
}

func orgOf(c *x509.Certificate) string {
	if len(c.Subject.Organization) == 0 {
		return ""
	}
	return c.Subject.Organization[0]
}

// maxCertFile bounds what readCert reads.
const maxCertFile = 64 << 10

// readCert reads one PEM certificate.
func readCert(path string) (*x509.Certificate, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading certificate: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxCertFile {
		return nil, fmt.Errorf("certificate %s is not a regular file of at most %d bytes", path, maxCertFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading certificate: %w", err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("certificate %s: want one PEM CERTIFICATE block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", path, err)
	}
	return c, nil
}

func writeCert(path string, c *x509.Certificate) error {
	if err := durable.WriteNew(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644); err != nil {
		return fmt.Errorf("writing certificate %s: %w", path, err)
	}
	return nil
}

// loadCA loads the intermediate CA and the CT log (not the root key).
func loadCA(l home.Layout, o Options, opts ...ca.Option) (*ca.Authority, error) {
	root, err := readCert(l.CARootCert())
	if err != nil {
		return nil, err
	}
	inter, err := readCert(l.CAIntermediateCert())
	if err != nil {
		return nil, err
	}
	// A rotation that stopped half-way (kill -9) has recorded the current intermediate and log key as retired:
	// until `ssf trust rotate` finishes it, signing would use a retired intermediate after its end, or extend the
	// retired log (or start a new one under the retired key), none of which verifies against the exported root.
	retired, err := LoadRetired(l, o.TrustDomain)
	if err != nil {
		return nil, err
	}
	if n := len(retired); n > 0 && retired[n-1].Intermediate.Equal(inter) {
		return nil, fmt.Errorf("a rotation of the factory trust (%s) did not finish: run `ssf trust rotate` again to finish it", retired[n-1].Dir)
	}
	interKey, err := sign.LoadKey(l.CAIntermediateKey())
	if err != nil {
		return nil, err
	}
	ctKey, err := sign.LoadKey(l.CTLogKey())
	if err != nil {
		return nil, err
	}
	ctLog, err := ca.NewCTLog(ctKey)
	if err != nil {
		return nil, err
	}
	return ca.New(ca.Config{TrustDomain: o.TrustDomain, Issuer: o.Issuer, Root: root, Intermediate: inter, IntermediateKey: interKey, CTLog: ctLog}, opts...)
}

// Factory is the loaded trust of a factory: what signs, issues and timestamps.
type Factory struct {
	CA      *ca.Authority
	Node    *ca.Node
	TSA     *tsa.Authority
	TLogKey *ecdsa.PrivateKey // the transparency log's signing key (tlog.Open)
}

// Load reads the factory trust under l for signing. The clock of o (if set) is the CA's and the TSA's.
func Load(l home.Layout, o Options) (*Factory, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	a, err := loadCA(l, o, ca.WithClock(o.Now))
	if err != nil {
		return nil, fmt.Errorf("loading the factory CA: %w (run `ssf init`)", err)
	}
	nodeCert, err := readCert(l.NodeCert())
	if err != nil {
		return nil, err
	}
	nodeKey, err := sign.LoadKey(l.NodeKey())
	if err != nil {
		return nil, err
	}
	node, err := ca.NewNode(nodeCert, nodeKey)
	if err != nil {
		return nil, err
	}
	root, err := readCert(l.CARootCert())
	if err != nil {
		return nil, err
	}
	tsaCert, err := readCert(l.TSACert())
	if err != nil {
		return nil, err
	}
	tsaKey, err := sign.LoadKey(l.TSAKey())
	if err != nil {
		return nil, err
	}
	t, err := tsa.New([]*x509.Certificate{tsaCert, root}, tsaKey, tsa.WithClock(o.Now))
	if err != nil {
		return nil, err
	}
	tlogKey, err := sign.LoadKey(l.TLogKey())
	if err != nil {
		return nil, err
	}
	return &Factory{CA: a, Node: node, TSA: t, TLogKey: tlogKey}, nil
}
