package verify_test

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/verify"
)

const sbomType = "https://spdx.dev/Document"

func sbomStatement(predicateType string, subjects ...digest.Digest) []byte {
	var subs []string
	for i, d := range subjects {
		subs = append(subs, fmt.Sprintf(`{"name":"out/%d","digest":{"sha256":%q}}`, i, d.Encoded()))
	}
	return []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[` + strings.Join(subs, ",") +
		`],"predicateType":"` + predicateType + `","predicate":{"spdxVersion":"SPDX-2.3"}}`)
}

func TestAttestation(t *testing.T) {
	key, other := newKey(t), newKey(t)
	art, art2 := digest.FromBytes([]byte("artifact")), digest.FromBytes([]byte("another"))
	good := signStatement(t, key, sbomStatement(sbomType, art2, art))
	trusted := verify.KeyMaterial(&key.PublicKey)

	st, err := verify.Attestation(context.Background(), art, good, trusted, sbomType)
	if err != nil {
		t.Fatal(err)
	}
	if st.Subject != (provenance.Subject{Name: "out/1", Digest: art}) || len(st.Subjects) != 2 ||
		string(st.Predicate) != `{"spdxVersion":"SPDX-2.3"}` {
		t.Errorf("Attestation() = %+v", st)
	}

	for _, tc := range []struct {
		name    string
		bundle  []byte
		art     digest.Digest
		trusted *ecdsaKey
		want    string
	}{
		{"another artifact", good, digest.FromBytes([]byte("x")), nil, "is not a subject of the bundle"},
		{"another predicate type", signStatement(t, key, sbomStatement("https://cyclonedx.org/bom", art)), art, nil, "predicateType"},
		{"provenance is not an SBOM", signStatement(t, key, sbomStatement(provenance.PredicateType, art)), art, nil, "predicateType"},
		{"another key", good, art, &ecdsaKey{other}, "not signed by this key"},
		{"flipped signature", flipSignatureByte(t, good), art, nil, "not signed by this key"},
		{"not in-toto", signDSSE(t, key, "text/plain", sbomStatement(sbomType, art)), art, nil, "payload type"},
		{"swapped payload", replacePayload(t, good, sbomStatement(sbomType, art)), art, nil, "not signed by this key"},
		{"wrong statement type", signDSSE(t, key, "application/vnd.in-toto+json", []byte(strings.Replace(string(sbomStatement(sbomType, art)), "Statement/v1", "Statement/v0.1", 1))), art, nil, "_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm := trusted
			if tc.trusted != nil {
				tm = verify.KeyMaterial(&tc.trusted.k.PublicKey)
			}
			_, err := verify.Attestation(context.Background(), tc.art, tc.bundle, tm, sbomType)
			if !errors.Is(err, verify.ErrVerification) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Attestation() error = %v, want a verification failure mentioning %q", err, tc.want)
			}
		})
	}
}

type ecdsaKey struct{ k *ecdsa.PrivateKey }
