package trust

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ssf-dev/ssf/internal/ca"
	"github.com/ssf-dev/ssf/internal/durable"
	"github.com/ssf-dev/ssf/internal/home"
)

// The factory's record of its nodes: node-hosts/<host> holds the certificate a joined node was given, with the
// node's scope as a PEM header (written once, with the claim of the name, so that the two never disagree);
// node-revoked/<host> exists once the node is revoked. The factory's own node is keys/node.crt, unscoped.

// ErrNodeRefused is wrapped by every refusal of a node's request on the node API: no or an unknown client
// certificate, a revoked node, a workload outside the node's scope.
var ErrNodeRefused = errors.New("node request refused")

// scopeHeader is the PEM header of node-hosts/<host> that lists the pipeline globs the node may sign as.
const scopeHeader = "Ssf-Pipelines"

// globChars are the characters of a scope's glob: those of a SPIFFE ID path segment, and path.Match's.
const globChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_*?[]^\\"

// maxScopeGlobs bounds a token's --pipelines.
const maxScopeGlobs = 64

// CheckPipelineGlobs checks the pipeline globs of a node's scope (ssf node token --pipelines): each a
// path.Match pattern of one pipeline name (no '/', no ','), at most 64.
func CheckPipelineGlobs(globs []string) error {
	if len(globs) > maxScopeGlobs {
		return fmt.Errorf("--pipelines: %d globs, at most %d", len(globs), maxScopeGlobs)
	}
	for _, g := range globs {
		// Only what a pipeline's SPIFFE ID segment holds, and path.Match's own characters: the globs are stored as
		// a PEM header, whose value is trimmed of white space when read, and a glob of white space alone would
		// come back as no scope at all (every pipeline).
		if g == "" || len(g) > 256 || strings.TrimLeft(g, globChars) != "" {
			return fmt.Errorf("--pipelines %q: a glob is one pipeline name pattern (1 to 256 bytes of a-z, A-Z, 0-9, '.', '-', '_' and the glob characters * ? [ ] ^ \\), such as 'web-*'", g)
		}
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("--pipelines %q: %w", g, err)
		}
	}
	return nil
}

// NodeRecord is one node of the factory, as `ssf node list` shows it.
type NodeRecord struct {
	Name        string            `json:"name"`
	SPIFFEID    string            `json:"spiffeId"`
	Own         bool              `json:"own,omitempty"`       // the factory's own node (made at ssf init)
	JoinedAt    time.Time         `json:"joinedAt"`            // when its certificate was issued
	Expires     time.Time         `json:"expires"`             // its certificate's end
	Revoked     *time.Time        `json:"revoked,omitempty"`   // when ssf node revoke revoked it
	Pipelines   []string          `json:"pipelines,omitempty"` // its scope; none means every pipeline of the trust domain
	Certificate *x509.Certificate `json:"-"`
}

// Allows reports whether the node may sign as a workload of pipeline.
func (r *NodeRecord) Allows(pipeline string) bool {
	if len(r.Pipelines) == 0 {
		return true
	}
	for _, g := range r.Pipelines {
		if ok, _ := path.Match(g, pipeline); ok {
			return true
		}
	}
	return false
}

// nodeHostPEM is the record claimHost writes: the certificate, with the scope as a header.
func nodeHostPEM(cert *x509.Certificate, pipelines []string) []byte {
	b := &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}
	if len(pipelines) > 0 {
		b.Headers = map[string]string{scopeHeader: strings.Join(pipelines, ",")}
	}
	return pem.EncodeToMemory(b)
}

// LoadNode reads the record of node name: the factory's own node, or one that joined.
func LoadNode(l home.Layout, name string) (*NodeRecord, error) {
	if name == "" || name == "." || name == ".." || filepath.Base(name) != name || NodeName(name) != name {
		return nil, fmt.Errorf("%q is not a node name", name)
	}
	if own, err := readCert(l.NodeCert()); err == nil && len(own.URIs) == 1 && own.URIs[0].Path == "/node/"+name {
		return record(name, own, nil, true), nil
	}
	data, err := readSmall(filepath.Join(l.NodeHosts(), name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no node named %q joined this factory (ssf node list shows those that did)", name)
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("the record of node %q (%s) is not a PEM certificate", name, filepath.Join(l.NodeHosts(), name))
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the record of node %q: %w", name, err)
	}
	var scope []string
	if s, ok := block.Headers[scopeHeader]; ok {
		// A scope header that reads empty (a glob of white space, trimmed) is the glob "", which matches no
		// pipeline: never a node that may sign for every pipeline. The node can still be listed and revoked.
		scope = strings.Split(s, ",")
	}
	r := record(name, cert, scope, false)
	if fi, err := os.Lstat(filepath.Join(l.NodeRevoked(), name)); err == nil {
		t := fi.ModTime().UTC()
		r.Revoked = &t
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the revocation of node %q: %w", name, err)
	}
	return r, nil
}

func record(name string, c *x509.Certificate, scope []string, own bool) *NodeRecord {
	r := &NodeRecord{Name: name, Own: own, JoinedAt: c.NotBefore.Add(ca.Backdate).UTC(), Expires: c.NotAfter.UTC(),
		Pipelines: scope, Certificate: c}
	if len(c.URIs) == 1 {
		r.SPIFFEID = c.URIs[0].String()
	}
	return r
}

func readSmall(p string) ([]byte, error) { return readBounded(p, maxCertFile) }

// readBounded reads the regular file p (not through a final symlink) of at most max bytes.
func readBounded(p string, max int64) ([]byte, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > max {
		return nil, fmt.Errorf("%s is not a regular file of at most %d bytes", p, max)
	}
	return os.ReadFile(p)
}

// ListNodes is every node of the factory under l: its own first, then those that joined, by name.
func ListNodes(l home.Layout) ([]*NodeRecord, error) {
	var out []*NodeRecord
	if own, err := readCert(l.NodeCert()); err == nil && len(own.URIs) == 1 {
		out = append(out, record(path.Base(own.URIs[0].Path), own, nil, true))
	}
	ents, err := os.ReadDir(l.NodeHosts())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listing the nodes: %w", err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		r, err := LoadNode(l, n)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// RevokeNode revokes the joined node name: from now on the node API refuses its requests. It reports false when
// the node was revoked already. The factory's own node cannot be revoked (it is the CA's host).
func RevokeNode(l home.Layout, name string) (bool, error) {
	r, err := LoadNode(l, name)
	if err != nil {
		return false, err
	}
	if r.Own {
		return false, fmt.Errorf("%q is the factory's own node, which holds the CA: it cannot be revoked (revoke nodes that joined)", name)
	}
	if r.Revoked != nil {
		return false, nil
	}
	if err := durable.MkdirAll(l.NodeRevoked(), 0o700); err != nil {
		return false, fmt.Errorf("revoking node %q: %w", name, err)
	}
	rec := fmt.Sprintf("%s revoked at %s\n", r.SPIFFEID, time.Now().UTC().Format(time.RFC3339))
	if err := durable.WriteNew(filepath.Join(l.NodeRevoked(), name), []byte(rec), 0o600); errors.Is(err, fs.ErrExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("revoking node %q: %w", name, err)
	}
	return true, nil
}
