package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"
)

// bundleWithSAN is a bundle whose only verification material is a self-signed certificate naming san: what a
// forger can write, since nothing of it is verified before the hint is printed.
func bundleWithSAN(t *testing.T, san string, chain bool) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	if san != "" {
		u, err := url.Parse(san)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	raw := map[string]any{"rawBytes": base64.StdEncoding.EncodeToString(der)}
	vm := map[string]any{"certificate": raw}
	if chain {
		vm = map[string]any{"x509CertificateChain": map[string]any{"certificates": []any{raw}}}
	}
	b, err := json.Marshal(map[string]any{"verificationMaterial": vm})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestClaimedIdentity: the hint echoes only a name of the shape ssf's CA issues (a run or a task of a pipeline),
// never another URI a forged certificate carries.
func TestClaimedIdentity(t *testing.T) {
	for _, tc := range []struct {
		san, want, td string
		chain         bool
	}{
		{"spiffe://ssf.local/pipeline/hello", "spiffe://ssf.local/pipeline/hello", "ssf.local", false},
		{"spiffe://example.org/pipeline/app/task/build", "spiffe://example.org/pipeline/app/task/build", "example.org", true},
		{"spiffe://ssf.local/node/host", "", "", false},                               // not a workload
		{"spiffe://ssf.local/pipeline/hello/../../x", "", "", false},                  // not the shape
		{"spiffe://ssf.local/pipeline/hello?run=ssf%20verify%20--key", "", "", false}, // a query to mislead
		{"https://evil.example/pipeline/hello", "", "", false},
		{"spiffe://ssf.local/pipeline/" + strings.Repeat("a", 200), "", "", false}, // too long to be a name
		{"", "", "", false}, // no URI at all
	} {
		id, td := claimedIdentity(bundleWithSAN(t, tc.san, tc.chain))
		if id != tc.want || td != tc.td {
			t.Errorf("claimedIdentity(SAN %q) = %q, %q; want %q, %q", tc.san, id, td, tc.want, tc.td)
		}
	}
	for _, junk := range []string{``, `{}`, `{"verificationMaterial":{"certificate":{"rawBytes":"!!"}}}`, `{"verificationMaterial":{"publicKey":{"hint":"x"}}}`} {
		if id, td := claimedIdentity([]byte(junk)); id != "" || td != "" {
			t.Errorf("claimedIdentity(%s) = %q, %q; want nothing", junk, id, td)
		}
	}
}
