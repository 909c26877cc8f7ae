package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/certificate-transparency-go/x509util"
)

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testCA is an in-memory factory CA with one node.
type testCA struct {
	ca   *Authority
	node *Node
	now  time.Time
}

func newTestCA(t *testing.T, td string) *testCA {
	t.Helper()
	now := time.Now()
	rootKey, interKey := newKey(t), newKey(t)
	root, err := NewRoot(td, rootKey, now)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := NewIntermediate(root, rootKey, interKey.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := NewCTLog(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCA{now: now}
	tc.ca, err = New(Config{TrustDomain: td, Issuer: "https://" + td + "/issuer", Root: root, Intermediate: inter, IntermediateKey: interKey, CTLog: ct},
		WithClock(func() time.Time { return tc.now }))
	if err != nil {
		t.Fatal(err)
	}
	nodeKey := newKey(t)
	nodeCert, err := tc.ca.IssueNode("node-1", nodeKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	if tc.node, err = NewNode(nodeCert, nodeKey); err != nil {
		t.Fatal(err)
	}
	return tc
}

func pubDER(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestIssueWorkloadCertificate pins the shape cosign and sigstore-go need (the interop tests in package trust
// prove they accept it).
func TestIssueWorkloadCertificate(t *testing.T) {
	tc := newTestCA(t, "ssf.local")
	req, err := tc.node.Request(Request{SPIFFEID: "spiffe://ssf.local/pipeline/hello/task/build", PublicKey: pubDER(t, newKey(t)),
		Claims: Claims{BuildSignerURI: "https://ssf.local/p/ssf.yaml", RunInvocationURI: "https://ssf.local/builds/1", SourceRepositoryDigest: "abc"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tc.ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://ssf.local/pipeline/hello/task/build" || len(cert.DNSNames)+len(cert.EmailAddresses)+len(cert.IPAddresses) != 0 {
		t.Errorf("SANs: URIs %v DNS %v email %v IP %v", cert.URIs, cert.DNSNames, cert.EmailAddresses, cert.IPAddresses)
	}
	if len(cert.Subject.Names) != 0 {
		t.Errorf("subject %q, want empty", cert.Subject)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageCodeSigning || cert.KeyUsage != x509.KeyUsageDigitalSignature || cert.IsCA {
		t.Errorf("usage: EKU %v KU %v CA %v", cert.ExtKeyUsage, cert.KeyUsage, cert.IsCA)
	}
	if d := cert.NotAfter.Sub(cert.NotBefore); d > MaxWorkloadValidity {
		t.Errorf("valid for %v", d)
	}
	want := map[string]string{
		"1.3.6.1.4.1.57264.1.1":  "https://ssf.local/issuer", // raw
		"1.3.6.1.4.1.57264.1.8":  "https://ssf.local/issuer",
		"1.3.6.1.4.1.57264.1.9":  "https://ssf.local/p/ssf.yaml",
		"1.3.6.1.4.1.57264.1.13": "abc",
		"1.3.6.1.4.1.57264.1.21": "https://ssf.local/builds/1",
	}
	got := map[string]string{}
	for _, e := range cert.Extensions {
		id := e.Id.String()
		if id == "1.3.6.1.4.1.57264.1.1" {
			got[id] = string(e.Value)
			continue
		}
		if strings.HasPrefix(id, "1.3.6.1.4.1.57264.") {
			var s string
			if rest, err := asn1.UnmarshalWithParams(e.Value, &s, "utf8"); err != nil || len(rest) != 0 {
				t.Errorf("extension %s is not one DER UTF8String: %v", id, err)
			}
			got[id] = s
		}
		if e.Id.Equal(oidCTPoison) {
			t.Error("the final certificate carries the precertificate poison")
		}
		if e.Critical && !e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) && !e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 15}) && !e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 19}) {
			t.Errorf("unexpected critical extension %s", id)
		}
	}
	for id, v := range want {
		if got[id] != v {
			t.Errorf("extension %s = %q, want %q", id, got[id], v)
		}
	}
	scts, err := x509util.ParseSCTsFromCertificate(cert.Raw)
	if err != nil || len(scts) != 1 {
		t.Fatalf("embedded SCTs: %d, %v", len(scts), err)
	}
	if scts[0].LogID.KeyID != tc.ca.ct.LogID() {
		t.Errorf("SCT log ID %x, want %x", scts[0].LogID.KeyID, tc.ca.ct.LogID())
	}
}

// TestIssueRefuses: each request the CA must refuse, with what the refusal says.
func TestIssueRefuses(t *testing.T) {
	tc := newTestCA(t, "ssf.local")
	other := newTestCA(t, "ssf.local") // another factory, same names
	good := func() Request {
		return Request{SPIFFEID: "spiffe://ssf.local/pipeline/hello", PublicKey: pubDER(t, newKey(t))}
	}
	signed := func(n *Node, r Request) *Request {
		t.Helper()
		s, err := n.Request(r)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	workloadKey := newKey(t)
	workloadCert, err := tc.ca.Issue(signed(tc.node, Request{SPIFFEID: "spiffe://ssf.local/pipeline/hello", PublicKey: pubDER(t, workloadKey)}))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		req  func() *Request
		want string
	}{
		{"no node signature", func() *Request { r := signed(tc.node, good()); r.Signature = nil; return r }, "not signed by node"},
		{"changed after signing", func() *Request {
			r := signed(tc.node, good())
			r.SPIFFEID = "spiffe://ssf.local/pipeline/other"
			return r
		}, "not signed by node"},
		{"signed by another key", func() *Request {
			imposter, _ := NewNode(tc.node.cert, tc.node.key)
			imposter.key = newKey(t)
			return signed(imposter, good())
		}, "not signed by node"},
		{"another factory's node", func() *Request { return signed(other.node, good()) }, "not one of this CA's"},
		{"a workload certificate as node", func() *Request {
			n := &Node{cert: workloadCert, key: workloadKey}
			return signed(n, good())
		}, "not one of this CA's"},
		{"stale request", func() *Request {
			r := good()
			r.IssuedAt = time.Now().Add(-5 * time.Minute)
			return signed(tc.node, r)
		}, "more than 2m0s from now"},
		{"validity over 10 minutes", func() *Request { r := good(); r.Validity = 11 * time.Minute; return signed(tc.node, r) }, "validity 11m0s"},
		{"negative validity", func() *Request { r := good(); r.Validity = -time.Minute; return signed(tc.node, r) }, "validity -1m0s"},
		{"other trust domain", func() *Request {
			r := good()
			r.SPIFFEID = "spiffe://evil.example/pipeline/hello"
			return signed(tc.node, r)
		}, `trust domain "evil.example"`},
		{"node ID", func() *Request { r := good(); r.SPIFFEID = "spiffe://ssf.local/node/node-1"; return signed(tc.node, r) }, "not a workload's"},
		{"dot segment", func() *Request {
			r := good()
			r.SPIFFEID = "spiffe://ssf.local/pipeline/../node"
			return signed(tc.node, r)
		}, "'..'"},
		{"not spiffe", func() *Request {
			r := good()
			r.SPIFFEID = "https://ssf.local/pipeline/hello"
			return signed(tc.node, r)
		}, "spiffe://"},
		{"task without name", func() *Request {
			r := good()
			r.SPIFFEID = "spiffe://ssf.local/pipeline/hello/task"
			return signed(tc.node, r)
		}, "not a workload's"},
		{"node's own key", func() *Request {
			r := good()
			r.PublicKey = pubDER(t, tc.node.key.(*ecdsa.PrivateKey))
			return signed(tc.node, r)
		}, "fresh key"},
		{"not a key", func() *Request { r := good(); r.PublicKey = []byte("x"); return signed(tc.node, r) }, "parsing its public key"},
		{"claim not a URI", func() *Request { r := good(); r.Claims.BuildSignerURI = "ssf.yaml"; return signed(tc.node, r) }, "BuildSignerURI"},
		{"claim with control characters", func() *Request { r := good(); r.Claims.SourceRepositoryRef = "main\x1b[2J"; return signed(tc.node, r) }, "not printable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cert, err := tc.ca.Issue(c.req())
			if err == nil {
				t.Fatalf("issued %v", cert.URIs)
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want ErrRefused mentioning %q", err, c.want)
			}
		})
	}
	t.Run("node certificate expired", func(t *testing.T) {
		r := good()
		r.IssuedAt = time.Now().Add(NodeValidity)
		req := signed(tc.node, r)
		tc.now = time.Now().Add(NodeValidity)
		defer func() { tc.now = time.Now() }()
		if _, err := tc.ca.Issue(req); err == nil || !strings.Contains(err.Error(), "valid now") {
			t.Fatalf("issued on an expired node certificate (err %v)", err)
		}
	})
}

// TestPrecertificateEntry: the SCT signs the TBS of the final certificate without its SCT list, which must equal
// the precertificate's TBS without the poison (the two certificates differ in nothing else).
func TestPrecertificateEntry(t *testing.T) {
	tc := newTestCA(t, "ssf.local")
	req, _ := tc.node.Request(Request{SPIFFEID: "spiffe://ssf.local/pipeline/p", PublicKey: pubDER(t, newKey(t))})
	cert, err := tc.ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.ca.ct.verifyEmbeddedSCT(cert.Raw, tc.ca.inter); err != nil {
		t.Fatal(err)
	}
	// Another CT key's SCT is not this log's.
	otherCT, _ := NewCTLog(newKey(t))
	if err := otherCT.verifyEmbeddedSCT(cert.Raw, tc.ca.inter); err == nil {
		t.Fatal("another CT log accepted the SCT")
	}
	if !bytes.Equal(cert.RawIssuer, tc.ca.inter.RawSubject) {
		t.Fatal("issuer is not the intermediate")
	}
}

func TestNewRefusesMismatchedKeys(t *testing.T) {
	now := time.Now()
	rootKey := newKey(t)
	root, _ := NewRoot("ssf.local", rootKey, now)
	inter, _ := NewIntermediate(root, rootKey, newKey(t).Public(), now)
	ct, _ := NewCTLog(newKey(t))
	if _, err := New(Config{TrustDomain: "ssf.local", Issuer: "https://ssf.local/issuer", Root: root, Intermediate: inter, IntermediateKey: newKey(t), CTLog: ct}); err == nil {
		t.Fatal("accepted an intermediate key that is not the certificate's")
	}
	if _, err := New(Config{TrustDomain: "SSF", Issuer: "https://ssf.local/issuer", Root: root, Intermediate: inter, IntermediateKey: newKey(t), CTLog: ct}); err == nil {
		t.Fatal("accepted an invalid trust domain")
	}
}
