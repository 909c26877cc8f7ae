package verify_test

import (
	"strings"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/trust"
	"github.com/ssf-dev/ssf/internal/verify"
)

// TestCertificateMaterialNeedsAnIdentity: certificate material is refused, before any bundle is read, without an
// identity and issuer, with both an exact and a regexp form of one, with a regexp that does not compile, and with
// a trusted root that lacks a CA or logs.
func TestCertificateMaterialNeedsAnIdentity(t *testing.T) {
	l := home.Layout{Dir: t.TempDir()}
	if _, err := trust.Init(l, trust.Options{Host: "node-1"}); err != nil {
		t.Fatal(err)
	}
	data, err := trust.Export(l, trust.DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRootFromJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	empty, err := root.NewTrustedRootFromJSON([]byte(`{"mediaType":"` + trust.TrustedRootMediaType + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	const san, iss = "spiffe://ssf.local/pipeline/hello", "https://ssf.local/issuer"
	for _, tc := range []struct {
		name string
		tm   root.TrustedMaterial
		id   verify.Identity
		want string // "" = accepted
	}{
		{"exact", tr, verify.Identity{SAN: san, Issuer: iss}, ""},
		{"regexp", tr, verify.Identity{SANRegexp: "^spiffe://ssf.local/pipeline/[a-z]+$", IssuerRegexp: "^https://"}, ""},
		{"no identity", tr, verify.Identity{Issuer: iss}, "--certificate-identity"},
		{"no issuer", tr, verify.Identity{SAN: san}, "--certificate-oidc-issuer"},
		{"both identity forms", tr, verify.Identity{SAN: san, SANRegexp: ".*", Issuer: iss}, "not both"},
		{"both issuer forms", tr, verify.Identity{SAN: san, Issuer: iss, IssuerRegexp: ".*"}, "not both"},
		{"bad regexp", tr, verify.Identity{SANRegexp: "(", Issuer: iss}, "regular expression"},
		{"no CA", empty, verify.Identity{SAN: san, Issuer: iss}, "no certificate authority"},
		{"no root", nil, verify.Identity{SAN: san, Issuer: iss}, "no trusted root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verify.Options{Trusted: verify.CertificateMaterial(tc.tm, tc.id)}.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
