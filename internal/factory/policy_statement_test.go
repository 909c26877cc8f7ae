package factory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

// TestPolicyStatementKeySigner: a key-signed bundle reaches the policy as its statement with the key's
// fingerprint as signer.
func TestPolicyStatementKeySigner(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	stmt := `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"app","digest":{"sha256":"` +
		"5555555555555555555555555555555555555555555555555555555555555555" + `"}}],"predicateType":"https://example.com/p","predicate":{"a":1}}`
	b, err := sign.NewSigner(key).Statement(context.Background(), []byte(stmt))
	if err != nil {
		t.Fatal(err)
	}
	st, err := PolicyStatement(b, verify.KeyMaterial(&key.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := pipeline.Fingerprint(&key.PublicKey)
	if st.Signer.Key != fp || st.Signer.Identity != "" || st.PredicateType != "https://example.com/p" ||
		len(st.Subject) != 1 || st.Subject[0].Name != "app" || string(st.Predicate) != `{"a":1}` {
		t.Errorf("statement = %+v, want signer key %s", st, fp)
	}
}
