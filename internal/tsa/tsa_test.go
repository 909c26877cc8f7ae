package tsa

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
	"github.com/sigstore/sigstore-go/pkg/root"
)

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newRoot(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, k
}

// TestTimestampVerifies: a timestamp over a signature verifies as sigstore-go checks it (the TSA chain of a trusted
// root), names the TSA's time, and does not verify for other bytes.
func TestTimestampVerifies(t *testing.T) {
	rootCert, rootKey := newRoot(t)
	key := newKey(t)
	cert, err := NewCertificate("ssf.local", rootCert, rootKey, key.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	a, err := New([]*x509.Certificate{cert, rootCert}, key, WithClock(func() time.Time { return at }))
	if err != nil {
		t.Fatal(err)
	}
	sig := []byte("a signature's raw bytes")
	resp, err := a.Timestamp(sig)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := timestamp.ParseResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if !ts.Time.Equal(at) || !ts.Policy.Equal(PolicyOID) || len(ts.Certificates) != 1 {
		t.Fatalf("timestamp time %v policy %v certs %d", ts.Time, ts.Policy, len(ts.Certificates))
	}
	authority := &root.SigstoreTimestampingAuthority{Root: rootCert, Leaf: cert, URI: "https://ssf.local/tsa"}
	got, err := authority.Verify(resp, sig)
	if err != nil {
		t.Fatalf("sigstore-go refused the timestamp: %v", err)
	}
	if !got.Time.Equal(at) {
		t.Fatalf("verified time %v, want %v", got.Time, at)
	}
	if _, err := authority.Verify(resp, []byte("other bytes")); err == nil {
		t.Fatal("the timestamp verified for other bytes")
	}
	otherRoot, _ := newRoot(t)
	if _, err := (&root.SigstoreTimestampingAuthority{Root: otherRoot}).Verify(resp, sig); err == nil {
		t.Fatal("the timestamp verified under another root")
	}
}

func TestNewRefuses(t *testing.T) {
	rootCert, rootKey := newRoot(t)
	key := newKey(t)
	good, err := NewCertificate("ssf.local", rootCert, rootKey, key.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	codeSigning := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping},
	}
	der, _ := x509.CreateCertificate(rand.Reader, codeSigning, rootCert, key.Public(), rootKey)
	nonCritical, _ := x509.ParseCertificate(der) // crypto/x509 writes the EKU non-critical
	cases := []struct {
		name  string
		chain []*x509.Certificate
		key   *ecdsa.PrivateKey
		want  string
	}{
		{"EKU not critical", []*x509.Certificate{nonCritical, rootCert}, key, "not critical"},
		{"key not the certificate's", []*x509.Certificate{good, rootCert}, newKey(t), "does not match"},
		{"no root", []*x509.Certificate{good}, key, "chain"},
		{"a CA as TSA", []*x509.Certificate{rootCert, rootCert}, rootKey, "timeStamping"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := New(c.chain, c.key); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
	t.Run("outside the certificate's validity", func(t *testing.T) {
		a, err := New([]*x509.Certificate{good, rootCert}, key, WithClock(func() time.Time { return good.NotAfter.Add(time.Hour) }))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Timestamp([]byte("sig")); err == nil {
			t.Fatal("timestamped outside the TSA certificate's validity")
		}
	})
}
