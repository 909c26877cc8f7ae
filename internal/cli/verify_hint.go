package cli

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/ssf-dev/ssf/internal/verify"
)

// workloadSAN is the shape of an identity ssf's CA issues: a run (spiffe://TD/pipeline/NAME) or one of its tasks
// (.../task/TASK). A name a bundle claims is echoed in a hint only when it has this shape, so a forged bundle
// cannot print control characters or megabytes.
var workloadSAN = regexp.MustCompile(`^spiffe://([a-z0-9][a-z0-9.-]{0,252})/pipeline/[a-z0-9][a-z0-9_-]{0,127}(/task/[a-z0-9][a-z0-9_-]{0,127})?$`)

// claimedIdentity is the SPIFFE ID the certificate of a bundle names, read without verifying anything, with its
// trust domain; "" when the bundle has no certificate or it names no ssf workload identity.
func claimedIdentity(bundleJSON []byte) (id, trustDomain string) {
	var b struct {
		VerificationMaterial struct {
			Certificate *struct {
				RawBytes string `json:"rawBytes"`
			} `json:"certificate"`
			Chain *struct {
				Certificates []struct {
					RawBytes string `json:"rawBytes"`
				} `json:"certificates"`
			} `json:"x509CertificateChain"`
		} `json:"verificationMaterial"`
	}
	if json.Unmarshal(bundleJSON, &b) != nil {
		return "", ""
	}
	raw := ""
	switch vm := b.VerificationMaterial; {
	case vm.Certificate != nil:
		raw = vm.Certificate.RawBytes
	case vm.Chain != nil && len(vm.Chain.Certificates) > 0:
		raw = vm.Chain.Certificates[0].RawBytes
	}
	der, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(der) == 0 {
		return "", ""
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil || len(cert.URIs) != 1 {
		return "", ""
	}
	m := workloadSAN.FindStringSubmatch(cert.URIs[0].String())
	if m == nil {
		return "", ""
	}
	return m[0], m[1]
}

// localSigner is the local factory's trust domain and issuer (config.yaml), or "" when there is no factory here.
func localSigner() (trustDomain, issuer string) {
	h, err := home()
	if err != nil {
		return "", ""
	}
	cfg, err := h.Config()
	if err != nil {
		return "", ""
	}
	return cfg.TrustDomain, cfg.Issuer
}

// needIdentity is the refusal of a certificate bundle given without an identity: it stays bad usage (a verifier
// must say who it trusts), and the hint spells out the flags with the values that fit: the identity the bundle's
// certificate claims (marked as not yet verified) and the local factory's issuer when the trust domains match.
func needIdentity(file, bundlePath string) error {
	err := usagef("%s is signed by a certificate: name who must have signed it with --certificate-identity ID (or --certificate-identity-regexp RE) and --certificate-oidc-issuer ISS", bundlePath)
	data, rerr := verify.ReadBundle(bundlePath)
	if rerr != nil {
		return err
	}
	id, td := claimedIdentity(data)
	localTD, localIssuer := localSigner()
	issuer, whereIssuer := "ISS", "the issuer in config.yaml of the factory that built it, https://TD/issuer by default"
	if localTD != "" && (td == "" || td == localTD) {
		issuer, whereIssuer = localIssuer, "this factory's issuer, config.yaml"
	}
	var hint strings.Builder
	if id != "" {
		fmt.Fprintf(&hint, "its certificate names %s (not verified yet: give it only if that is the pipeline, or task, you expect); ", id)
	} else {
		id = "spiffe://" + orDefault(localTD, "TD") + "/pipeline/NAME"
		fmt.Fprintf(&hint, "a build's provenance and SBOMs are signed by spiffe://TD/pipeline/NAME (NAME: the pipeline's metadata.name), each task's attestation by .../task/TASK; ")
	}
	fmt.Fprintf(&hint, "the issuer is %s (%s): ssf verify %s --bundle %s --certificate-identity %s --certificate-oidc-issuer %s",
		issuer, whereIssuer, file, bundlePath, id, issuer)
	return &hintError{err: err, hint: hint.String()}
}

// needSigner is the refusal of a registry reference given with neither --key nor an identity, with the local
// factory's trust domain and issuer as the values to give.
func needSigner(ref string) error {
	err := usagef("name who must have signed the provenance of %s: --certificate-identity ID and --certificate-oidc-issuer ISS for a build signed by identity (the default), or --key KEY.pub for one built with --signer key", ref)
	td, issuer := localSigner()
	if td == "" {
		return err
	}
	return &hintError{err: err, hint: fmt.Sprintf("this factory signs builds as spiffe://%s/pipeline/NAME (NAME: the pipeline's metadata.name) with issuer %s (config.yaml): ssf verify %s --certificate-identity spiffe://%s/pipeline/NAME --certificate-oidc-issuer %s",
		td, issuer, ref, td, issuer)}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
