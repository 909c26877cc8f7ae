package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Every file ssf admission serve reads (--tls-cert, --tls-key, --key, --trusted-root) given as a fifo with no
// writer fails at once with exit 2 (it reads as empty): the open waited for a writer for ever (SIGTERM caught), and
// the TLS pair was read whole, unbounded, again at every reload.
func TestAdmissionServeFifoFiles(t *testing.T) {
	tmp := t.TempDir()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(tmp, "key.pub")
	cert := filepath.Join(tmp, "tls.crt")
	tlsKey := filepath.Join(tmp, "tls.key")
	for f, b := range map[string][]byte{pub: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}),
		tlsKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fifo := filepath.Join(tmp, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", cert, "--tls-key", fifo, "--key", pub}, fifo},
		{[]string{"--tls-cert", fifo, "--tls-key", tlsKey, "--key", pub}, fifo},
		{[]string{"--tls-cert", cert, "--tls-key", tlsKey, "--key", fifo}, "reading the trusted key"},
		{[]string{"--tls-cert", cert, "--tls-key", tlsKey, "--trusted-root", fifo, "--certificate-identity", "spiffe://x/pipeline/a", "--certificate-oidc-issuer", "https://x/issuer"}, "reading the trusted root"},
	} {
		r := ssf(t, tmp, append([]string{"admission", "serve", "--addr", "127.0.0.1:0"}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("admission serve %s: exit %d, want 2 saying %q\n%s%s", strings.Join(c.args, " "), r.code, c.want, r.stdout, r.stderr)
		}
	}
}
