package sign

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

const hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func testStatement(subjectSHA256 string) []byte {
	return fmt.Appendf(nil, `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"out/app","digest":{"sha256":%q}}],`+
		`"predicateType":"https://example.com/test/v1","predicate":{"ok":true}}`, subjectSHA256)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wireBundle is the JSON shape of a bundle v0.3 with a DSSE envelope, read here with encoding/json on purpose:
// it checks the bytes other tools read, not what the protobuf types make of them.
type wireBundle struct {
	MediaType            string `json:"mediaType"`
	VerificationMaterial struct {
		PublicKey *struct {
			Hint string `json:"hint"`
		} `json:"publicKey"`
		Certificate               json.RawMessage `json:"certificate"`
		X509CertificateChain      json.RawMessage `json:"x509CertificateChain"`
		TlogEntries               json.RawMessage `json:"tlogEntries"`
		TimestampVerificationData json.RawMessage `json:"timestampVerificationData"`
	} `json:"verificationMaterial"`
	DSSEEnvelope *struct {
		Payload     []byte `json:"payload"`
		PayloadType string `json:"payloadType"`
		Signatures  []struct {
			Sig []byte `json:"sig"`
		} `json:"signatures"`
	} `json:"dsseEnvelope"`
	MessageSignature json.RawMessage `json:"messageSignature"`
}

func TestStatementBundleShape(t *testing.T) {
	key := newKey(t)
	st := testStatement(hexA)
	out, err := NewSigner(key).Statement(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	var b wireBundle
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatalf("bundle is not JSON: %v\n%s", err, out)
	}
	if b.MediaType != "application/vnd.dev.sigstore.bundle.v0.3+json" {
		t.Errorf("mediaType = %q", b.MediaType)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	if b.VerificationMaterial.PublicKey == nil || b.VerificationMaterial.PublicKey.Hint != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Errorf("verificationMaterial.publicKey = %+v, want hint base64(sha256(DER))", b.VerificationMaterial.PublicKey)
	}
	vm := b.VerificationMaterial
	for name, raw := range map[string]json.RawMessage{
		"certificate": vm.Certificate, "x509CertificateChain": vm.X509CertificateChain,
		"tlogEntries": vm.TlogEntries, "timestampVerificationData": vm.TimestampVerificationData,
		"messageSignature": b.MessageSignature,
	} {
		if len(raw) != 0 && string(raw) != "[]" && string(raw) != "{}" {
			t.Errorf("bundle has %s: %s", name, raw)
		}
	}
	env := b.DSSEEnvelope
	if env == nil {
		t.Fatalf("bundle has no dsseEnvelope: %s", out)
	}
	if env.PayloadType != "application/vnd.in-toto+json" {
		t.Errorf("payloadType = %q", env.PayloadType)
	}
	if string(env.Payload) != string(st) {
		t.Errorf("payload is not the statement byte for byte:\n got %s\nwant %s", env.Payload, st)
	}
	if len(env.Signatures) != 1 {
		t.Fatalf("%d signatures, want 1", len(env.Signatures))
	}
	// The signature is ECDSA over SHA-256 of the DSSE pre-authentication encoding.
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(env.PayloadType), env.PayloadType, len(env.Payload), env.Payload)
	digest := sha256.Sum256([]byte(pae))
	if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], env.Signatures[0].Sig) {
		t.Error("signature does not verify over the DSSE PAE with the signer's public key")
	}
}

func TestStatementRefuses(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		signer *Signer
		ctx    context.Context
		in     []byte
		want   string
	}{
		{"nil key", NewSigner(nil), context.Background(), testStatement(hexA), "no key"},
		{"P-384 key", NewSigner(p384), context.Background(), testStatement(hexA), "want P-256"},
		{"not JSON", NewSigner(newKey(t)), context.Background(), []byte("hello"), "not an in-toto statement"},
		{"legacy statement", NewSigner(newKey(t)), context.Background(),
			[]byte(strings.Replace(string(testStatement(hexA)), "Statement/v1", "Statement/v0.1", 1)), "_type"},
		{"no subject", NewSigner(newKey(t)), context.Background(),
			[]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"x","predicate":{}}`), "subject"},
		{"canceled", NewSigner(newKey(t)), canceled, testStatement(hexA), "canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.signer.Statement(tt.ctx, tt.in)
			if err == nil {
				t.Fatalf("signed it: %s", out)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestSignatureIsFresh: ECDSA signatures are randomised, so two bundles of one statement differ only there.
func TestSignatureIsFresh(t *testing.T) {
	s := NewSigner(newKey(t))
	a, err := s.Statement(context.Background(), testStatement(hexA))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Statement(context.Background(), testStatement(hexA))
	if err != nil {
		t.Fatal(err)
	}
	if string(a) == string(b) {
		t.Error("two signatures are identical: is the signer using randomness?")
	}
}
