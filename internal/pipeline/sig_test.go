package pipeline

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestSignVerify(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for name, key := range map[string]crypto.Signer{"ecdsa-p256": ec, "ed25519": ed} {
		t.Run(name, func(t *testing.T) {
			data := []byte("apiVersion: ssf.dev/v1alpha1\nkind: Pipeline\n")
			sig, err := Sign(context.Background(), data, key)
			if err != nil {
				t.Fatal(err)
			}
			fp, err := VerifySignature(data, sig)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := Fingerprint(key.Public())
			if fp != want || !strings.HasPrefix(fp, "sha256:") || len(fp) != 71 {
				t.Fatalf("fingerprint %q, want %q", fp, want)
			}
			tampered := append([]byte{}, data...)
			tampered[0] = 'A'
			if _, err := VerifySignature(tampered, sig); err == nil || !strings.Contains(err.Error(), "does not verify") {
				t.Fatalf("a changed file verified: %v", err)
			}
			// Another key named in the hint: its signature is not over these bytes.
			other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			osig, _ := Sign(context.Background(), []byte("other"), other)
			if _, err := VerifySignature(data, osig); err == nil {
				t.Fatal("another file's signature verified")
			}
		})
	}
}

func TestParseSigningKey(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p8, _ := x509.MarshalPKCS8PrivateKey(ed)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	sec384, _ := x509.MarshalECPrivateKey(p384)
	for _, c := range []struct {
		typ  string
		der  []byte
		want string
	}{
		{"EC PRIVATE KEY", sec1, ""},
		{"PRIVATE KEY", p8, ""},
		{"EC PRIVATE KEY", sec384, "P-384"},
		{"ENCRYPTED SIGSTORE PRIVATE KEY", []byte("x"), "encrypted"},
		{"PUBLIC KEY", []byte("x"), "want a private key"},
	} {
		_, err := ParseSigningKey(pem.EncodeToMemory(&pem.Block{Type: c.typ, Bytes: c.der}))
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.typ, err, c.want)
		}
	}
}

// FuzzVerifySignature: a signature file is untrusted input; whatever it holds, VerifySignature returns a
// fingerprint only for a signature that verifies over the data, and never panics.
func FuzzVerifySignature(f *testing.F) {
	// A fixed key: the fuzzing workers are other processes, and must know the key the seed was signed with.
	key, err := ParseSigningKey([]byte(fuzzKey))
	if err != nil {
		f.Fatal(err)
	}
	data := []byte("apiVersion: ssf.dev/v1alpha1\n")
	sig, _ := Sign(context.Background(), data, key)
	f.Add(sig)
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fp, err := VerifySignature(data, b)
		if err == nil {
			want, _ := Fingerprint(key.Public())
			if fp != want {
				// Another key's valid signature over the same data is possible only with its private key.
				t.Fatalf("a fuzzed bundle verified with key %s", fp)
			}
		}
	})
}

const fuzzKey = `-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIO63KmzuBni4qQXhOUw0qooz5VBtYYYLsN9nWLDtpwKHoAoGCCqGSM49
AwEHoUQDQgAEtMJfoaAqkITV/OkuDM6RWUn5/XXtZ7yEaNTfabLIno0r+5WzvkO8
gDxZPKu2zndqinEhgyunUeCYJhhhfpGJTg==
-----END EC PRIVATE KEY-----
`
