package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/provenance"
)

// Identity is who must have signed a certificate bundle: the certificate's first URI SAN (a SPIFFE ID such as
// spiffe://TD/pipeline/NAME) and its OIDC issuer extension, each matched exactly or by a regular expression, as
// cosign's --certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp] do.
type Identity struct {
	SAN, SANRegexp       string
	Issuer, IssuerRegexp string
}

// String describes the identity for messages.
func (id Identity) String() string {
	san, iss := id.SAN, id.Issuer
	if san == "" {
		san = "~" + id.SANRegexp
	}
	if iss == "" {
		iss = "~" + id.IssuerRegexp
	}
	return fmt.Sprintf("%s (issuer %s)", san, iss)
}

// check refuses an identity that names nothing, names one part twice, or holds a regexp that does not compile.
func (id Identity) check() error {
	switch {
	case id.SAN == "" && id.SANRegexp == "":
		return errors.New("a certificate identity is required (--certificate-identity or --certificate-identity-regexp)")
	case id.SAN != "" && id.SANRegexp != "":
		return errors.New("give --certificate-identity or --certificate-identity-regexp, not both")
	case id.Issuer == "" && id.IssuerRegexp == "":
		return errors.New("a certificate OIDC issuer is required (--certificate-oidc-issuer or --certificate-oidc-issuer-regexp)")
	case id.Issuer != "" && id.IssuerRegexp != "":
		return errors.New("give --certificate-oidc-issuer or --certificate-oidc-issuer-regexp, not both")
	}
	for _, re := range []string{id.SANRegexp, id.IssuerRegexp} {
		if _, err := regexp.Compile(re); err != nil {
			return fmt.Errorf("regular expression %q: %w", re, err)
		}
	}
	return nil
}

// certMaterial is a Sigstore trusted root (a CA, transparency logs, CT logs, timestamp authorities) together with
// the identity a bundle's certificate must name: a CA alone vouches for every workload it certified.
type certMaterial struct {
	root.TrustedMaterial
	id  Identity
	err error // why the identity is unusable, reported when the material is used
}

// CertificateMaterial returns trusted material that accepts a bundle only when its certificate chains to one of
// tm's CAs, carries an SCT of one of its CT logs, has an entry (inclusion proof and SET) in one of its
// transparency logs, was used within its validity (the log's integrated time and, when tm has timestamp
// authorities, a signed timestamp), and names id.
func CertificateMaterial(tm root.TrustedMaterial, id Identity) root.TrustedMaterial {
	cm := &certMaterial{TrustedMaterial: tm, id: id}
	switch {
	case tm == nil:
		cm.err = errors.New("no trusted root given")
	case len(tm.FulcioCertificateAuthorities()) == 0:
		cm.err = errors.New("the trusted root has no certificate authority")
	case len(tm.RekorLogs()) == 0:
		cm.err = errors.New("the trusted root has no transparency log")
	case len(tm.CTLogs()) == 0:
		cm.err = errors.New("the trusted root has no certificate-transparency log")
	default:
		cm.err = id.check()
	}
	return cm
}

// certVerifier configures sigstore-go for certificate material with every check stock cosign makes on: one log
// entry, one SCT, the integrated time, and a signed timestamp where the root has a TSA (ssf's bundles carry one).
func certVerifier(cm *certMaterial) (*sgverify.Verifier, []string, error) {
	opts := []sgverify.VerifierOption{sgverify.WithTransparencyLog(1), sgverify.WithSignedCertificateTimestamps(1),
		sgverify.WithIntegratedTimestamps(1)}
	checks := []string{
		"certificate chains to a certificate authority of the trusted root",
		"certificate carries an SCT of a CT log of the trusted root",
		"transparency log entry verified: body, inclusion proof against a signed checkpoint, signed entry timestamp",
		"the log's integrated time is within the certificate's validity",
	}
	if len(cm.TimestampingAuthorities()) > 0 {
		opts = append(opts, sgverify.WithSignedTimestamps(1))
		checks = append(checks, "an RFC 3161 timestamp of a timestamp authority of the trusted root is within the certificate's validity")
	}
	v, err := sgverify.NewVerifier(cm.TrustedMaterial, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("verifying: configuring sigstore-go: %w", err)
	}
	return v, append(checks, "certificate identity is "+cm.id.String()), nil
}

// certIdentityPolicy is the policy option requiring cm's identity.
func certIdentityPolicy(cm *certMaterial) sgverify.PolicyOption {
	ci, err := sgverify.NewShortCertificateIdentity(cm.id.Issuer, cm.id.IssuerRegexp, cm.id.SAN, cm.id.SANRegexp)
	if err != nil {
		// check() compiled both regexps already; an error here is a sigstore-go rule, reported by Verify.
		return func(*sgverify.PolicyConfig) error { return err }
	}
	return sgverify.WithCertificateIdentity(ci)
}

// TaskAttestation is a verified task attestation (content.TaskPredicateType): what one task of a build read and
// made, signed by the task's own identity.
type TaskAttestation struct {
	Pipeline     string `json:"pipeline"`
	Task         string `json:"task"`
	InvocationID string `json:"invocationId"`
	BuilderID    string `json:"builderId"`
	Builder      struct {
		URI    string            `json:"uri"`
		Digest provenance.Digest `json:"digest"`
	} `json:"builder"`
	Source struct {
		URI    string            `json:"uri"`
		Digest provenance.Digest `json:"digest"`
	} `json:"source"`
}

// predicateTypeOf reads only the statement's predicateType.
func predicateTypeOf(payload []byte) string {
	var st struct {
		PredicateType string `json:"predicateType"`
	}
	_ = json.Unmarshal(payload, &st)
	return st.PredicateType
}

// taskResult checks a signed task attestation about artifact against opts: the expectations a task attestation
// records are checked; one it cannot answer (params, pipeline digest) fails rather than pass unchecked.
func taskResult(artifact digest.Digest, payload []byte, checks []string, opts Options) (*Result, error) {
	var st struct {
		Type    string `json:"_type"`
		Subject []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		PredicateType string          `json:"predicateType"`
		Predicate     TaskAttestation `json:"predicate"`
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		return nil, fail("reading the signed task attestation: %w", err)
	}
	if st.Type != provenance.StatementType || st.PredicateType != content.TaskPredicateType {
		return nil, fail("statement is %q with predicate %q, want %q with %q", st.Type, st.PredicateType, provenance.StatementType, content.TaskPredicateType)
	}
	checks = append(checks, fmt.Sprintf("statement is %s with predicate %s (task %q)", provenance.StatementType, content.TaskPredicateType, st.Predicate.Task))
	var subjects []provenance.Subject
	for _, s := range st.Subject {
		if d, err := content.FromHex(s.Digest["sha256"]); err == nil {
			subjects = append(subjects, provenance.Subject{Name: s.Name, Digest: d})
		}
	}
	i := slices.IndexFunc(subjects, func(s provenance.Subject) bool { return s.Digest == artifact })
	if i < 0 {
		return nil, fail("artifact %s is not a subject of the task attestation (subjects: %s)", artifact, subjectList(subjects))
	}
	checks = append(checks, fmt.Sprintf("artifact %s is subject %q", artifact, subjects[i].Name))
	p := st.Predicate
	var unchecked []string
	if opts.BuilderID == "" {
		unchecked = append(unchecked, fmt.Sprintf("builder id (the statement says %q)", p.BuilderID))
	} else if p.BuilderID != opts.BuilderID {
		return nil, fail("builder id is %q, want %q", p.BuilderID, opts.BuilderID)
	} else {
		checks = append(checks, fmt.Sprintf("builder id is %q", opts.BuilderID))
	}
	if opts.BuilderDigest == "" {
		unchecked = append(unchecked, "builder image (the statement says "+p.Builder.Digest.String()+")")
	} else {
		want, _ := parseSHA256("builder digest", opts.BuilderDigest)
		if !sameDigest(p.Builder.Digest["sha256"], want.Encoded()) {
			return nil, fail("builder sha256 digest is %s, want %s", p.Builder.Digest["sha256"], want.Encoded())
		}
		checks = append(checks, "builder image is "+string(want))
	}
	if opts.SourceDigest == "" {
		unchecked = append(unchecked, "source digest (the statement says "+p.Source.Digest.String()+")")
	} else {
		alg, value, _ := parseSourceDigest(opts.SourceDigest)
		got, err := matchSource([]provenance.ResourceDescriptor{{Name: provenance.SourceDependencyName, Digest: p.Source.Digest}}, alg, value)
		if err != nil {
			return nil, err
		}
		checks = append(checks, "source dependency has digest "+got)
	}
	if opts.PipelineDigest != "" || opts.Params != nil {
		return nil, fail("a task attestation records neither the pipeline file's digest nor the params: verify the build's provenance for them")
	}
	for _, u := range unchecked {
		checks = append(checks, u+" NOT checked (no expectation given)")
	}
	return &Result{Subject: subjects[i], Task: &p, Checks: checks, Unchecked: unchecked}, nil
}

// HasCertificate reports whether bundleJSON is a Sigstore bundle whose verification material is a certificate
// (keyless signing), as opposed to a public key hint; false when it does not decode.
func HasCertificate(bundleJSON []byte) bool {
	var b struct {
		VerificationMaterial map[string]json.RawMessage `json:"verificationMaterial"`
	}
	if json.Unmarshal(bundleJSON, &b) != nil {
		return false
	}
	_, cert := b.VerificationMaterial["certificate"]
	_, chain := b.VerificationMaterial["x509CertificateChain"]
	return cert || chain
}
