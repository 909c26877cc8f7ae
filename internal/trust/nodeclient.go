package trust

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"time"

	rekorpb "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ssf-dev/ssf/internal/ca"
	"github.com/ssf-dev/ssf/internal/durable"
	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/tlog"
)

// Joined is joined.json in a node's home: the factory it joined (trust domain, issuer, and where its node API
// is, with the root's pin) and the node's own name and scope.
type Joined struct {
	TrustDomain string   `json:"trustDomain"`
	Issuer      string   `json:"issuer"`
	URL         string   `json:"url,omitempty"` // https://HOST:PORT of ssf node serve; empty after a --ca-home join
	Pin         string   `json:"pin,omitempty"`
	Host        string   `json:"host"`
	Pipelines   []string `json:"pipelines,omitempty"`
}

func writeJoined(l home.Layout, j Joined) error {
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.Replace(l.Joined(), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("recording the factory joined: %w", err)
	}
	return nil
}

// LoadJoined reads joined.json; an error wrapping fs.ErrNotExist means the home is not a joined node.
func LoadJoined(l home.Layout) (*Joined, error) {
	data, err := readSmall(l.Joined())
	if err != nil {
		return nil, err
	}
	var j Joined
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("reading %s: %w", l.Joined(), err)
	}
	if err := ca.CheckTrustDomain(j.TrustDomain); err != nil {
		return nil, fmt.Errorf("reading %s: %w", l.Joined(), err)
	}
	return &j, nil
}

// maxNodeResponse bounds what a node reads of one answer of the node API.
const maxNodeResponse = 4 << 20

// NodeClient is a joined node's client of its factory's node API: mutual TLS with the node's certificate, the
// server checked against the factory root the node pinned when it joined.
type NodeClient struct {
	Joined *Joined
	layout home.Layout
	node   *ca.Node
	base   string
	client *http.Client
}

// NewNodeClient is the node API client of the node whose home is l.
func NewNodeClient(l home.Layout) (*NodeClient, error) {
	j, err := LoadJoined(l)
	if err != nil {
		return nil, err
	}
	if j.URL == "" {
		return nil, fmt.Errorf("this node joined its factory in-process (ssf node join --ca-home), so it knows no node API to sign through: join a new home with ssf node join --ca https://HOST:PORT (ssf node serve on the factory), or build with --signer key")
	}
	u, err := url.Parse(j.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%s: url %q is not https://HOST:PORT", l.Joined(), j.URL)
	}
	root, err := readCert(l.CARootCert())
	if err != nil {
		return nil, err
	}
	if pinOf(root) != j.Pin {
		return nil, fmt.Errorf("the factory root %s is not the one pinned at the join (%s)", l.CARootCert(), j.Pin)
	}
	cert, err := readCert(l.NodeCert())
	if err != nil {
		return nil, err
	}
	key, err := sign.LoadKey(l.NodeKey())
	if err != nil {
		return nil, err
	}
	node, err := ca.NewNode(cert, key)
	if err != nil {
		return nil, err
	}
	host := u.Hostname()
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}},
		// The usual verification is replaced, not dropped: the chain must reach the pinned factory root, and the
		// leaf name the host dialled.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			certs := cs.PeerCertificates
			if len(certs) == 0 {
				return errors.New("the server sent no certificate")
			}
			if err := verifyServer(certs[0], certs[1:], root, host); err != nil {
				return fmt.Errorf("the server is not the factory pinned at the join (%s): %w", j.Pin, err)
			}
			return nil
		},
	}
	return &NodeClient{Joined: j, layout: l, node: node, base: u.Scheme + "://" + u.Host,
		client: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc}}}, nil
}

// Node is the node's identity, which signs its certificate requests.
func (c *NodeClient) Node() *ca.Node { return c.node }

// NodeAPIError is an answer of the node API other than 200: its status and reason. A 401 or 403 matches
// ErrNodeRefused.
type NodeAPIError struct {
	Endpoint string
	Status   int
	Reason   string
}

func (e *NodeAPIError) Error() string {
	return fmt.Sprintf("the factory's node API (%s) answered %d: %s", e.Endpoint, e.Status, e.Reason)
}

// Is makes refusals match ErrNodeRefused.
func (e *NodeAPIError) Is(target error) bool {
	return target == ErrNodeRefused && (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden)
}

// do sends req (nil: a GET) to path and decodes the answer into resp (a proto message is decoded with protojson).
func (c *NodeClient) do(ctx context.Context, path string, req any, resp any) error {
	endpoint := c.base + path
	method, body := http.MethodGet, io.Reader(nil)
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return err
		}
		method, body = http.MethodPost, bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, method, endpoint, body)
	if err != nil {
		return err
	}
	if req != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	r, err := c.client.Do(hr)
	if err != nil {
		return fmt.Errorf("reaching the factory's node API at %s: %w", endpoint, err)
	}
	defer r.Body.Close()
	data, err := io.ReadAll(io.LimitReader(r.Body, maxNodeResponse+1))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", endpoint, err)
	}
	if len(data) > maxNodeResponse {
		return fmt.Errorf("the answer of %s is over %d bytes", endpoint, maxNodeResponse)
	}
	if r.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = "no reason given"
		}
		return &NodeAPIError{Endpoint: endpoint, Status: r.StatusCode, Reason: e.Error}
	}
	if m, ok := resp.(*rekorpb.TransparencyLogEntry); ok {
		err = protojson.Unmarshal(data, m)
	} else {
		err = json.Unmarshal(data, resp)
	}
	if err != nil {
		return fmt.Errorf("the answer of %s: %w", endpoint, err)
	}
	return nil
}

// Trust is the factory's trust domain, issuer and trusted root. The trusted root is kept in the node's home
// (home.Layout.FactoryTrustedRoot) for verifying there without the network.
func (c *NodeClient) Trust(ctx context.Context) (*NodeTrust, error) {
	var t NodeTrust
	if err := c.do(ctx, NodeTrustPath, nil, &t); err != nil {
		return nil, err
	}
	if t.TrustDomain != c.Joined.TrustDomain {
		return nil, fmt.Errorf("the factory at %s is of trust domain %q, this node joined %q", c.base, t.TrustDomain, c.Joined.TrustDomain)
	}
	var mt struct {
		MediaType string `json:"mediaType"`
	}
	if err := json.Unmarshal(t.TrustedRoot, &mt); err != nil || mt.MediaType != TrustedRootMediaType {
		return nil, fmt.Errorf("the factory at %s sent no Sigstore trusted root (%s)", c.base, TrustedRootMediaType)
	}
	// Kept in the form Export writes, so that `ssf trust export` gives the same file on the node as on the factory.
	var kept bytes.Buffer
	if err := json.Indent(&kept, t.TrustedRoot, "", "  "); err != nil {
		return nil, fmt.Errorf("the factory's trusted root: %w", err)
	}
	kept.WriteByte('\n')
	if err := durable.Replace(c.layout.FactoryTrustedRoot(), kept.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("keeping the factory's trusted root: %w", err)
	}
	return &t, nil
}

// LoadFactoryTrustedRoot is the trusted root a joined node keeps: what `ssf verify` and `ssf trust export` use there.
func LoadFactoryTrustedRoot(l home.Layout) ([]byte, error) {
	data, err := readBounded(l.FactoryTrustedRoot(), maxNodeResponse)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is a node of another factory and has no copy of its trusted root yet (an identity build or ssf node join --ca fetches it): %w", l.Dir, fs.ErrNotExist)
	}
	return data, err
}

// Certificate asks for the workload certificate of spiffeID for the public key pub (PKIX DER) with claims, on a
// request this node signs; it returns the certificate (DER).
func (c *NodeClient) Certificate(ctx context.Context, spiffeID string, pub []byte, claims ca.Claims) ([]byte, error) {
	req, err := c.node.Request(ca.Request{SPIFFEID: spiffeID, PublicKey: pub, Claims: claims})
	if err != nil {
		return nil, err
	}
	var resp NodeCertificateResponse
	if err := c.do(ctx, NodeCertificatePath, NodeCertificateRequest{Request: *req, Signature: req.Signature}, &resp); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(resp.Certificate)
	if err != nil {
		return nil, fmt.Errorf("the certificate the factory issued for %s: %w", spiffeID, err)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != spiffeID {
		return nil, fmt.Errorf("the factory issued a certificate that is not for %s", spiffeID)
	}
	return cert.Raw, nil
}

// AppendDSSE has the factory append the dsse entry of the envelope (its JSON, as the bundle holds it) signed by
// the workload certificate certPEM, and returns the entry as a bundle holds it. The entry's body must be the one
// this node computes itself; its proofs are checked with the bundle (against the trusted root).
func (c *NodeClient) AppendDSSE(ctx context.Context, envelopeJSON, certPEM []byte) (*rekorpb.TransparencyLogEntry, error) {
	want, err := tlog.NewDSSEEntry(envelopeJSON, certPEM)
	if err != nil {
		return nil, fmt.Errorf("making the log entry: %w", err)
	}
	var e rekorpb.TransparencyLogEntry
	if err := c.do(ctx, NodeLogPath, NodeLogRequest{Envelope: envelopeJSON, Certificate: string(certPEM)}, &e); err != nil {
		return nil, err
	}
	if !bytes.Equal(e.GetCanonicalizedBody(), want.Body()) || e.GetKindVersion().GetKind() != tlog.KindDSSE {
		return nil, fmt.Errorf("the factory's log answered with an entry that is not the one sent (%s)", c.base+NodeLogPath)
	}
	return &e, nil
}

// Timestamp has the factory's TSA timestamp sig; it returns the DER RFC 3161 response.
func (c *NodeClient) Timestamp(ctx context.Context, sig []byte) ([]byte, error) {
	var resp NodeTimestampResponse
	if err := c.do(ctx, NodeTimestampPath, NodeTimestampRequest{Signature: sig}, &resp); err != nil {
		return nil, err
	}
	if len(resp.SignedTimestamp) == 0 {
		return nil, fmt.Errorf("the factory's TSA answered with no timestamp")
	}
	return resp.SignedTimestamp, nil
}

// IsJoinedNode reports whether the home l is a node that joined another factory (it has joined.json).
func IsJoinedNode(l home.Layout) bool {
	_, err := os.Lstat(l.Joined())
	return !errors.Is(err, fs.ErrNotExist)
}
