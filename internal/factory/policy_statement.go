package factory

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/policy"
)

// PolicyStatement is the in-toto statement of a bundle as the policies see it (policy.Statement), with who signed
// it: the fingerprint of the trusted key its hint names, or its certificate's identity and issuer.
//
// Call it only with a bundle that has just verified against trusted: it reads the payload and the signer without
// checking the signature again. (The verifier established that this exact envelope was signed by that key or
// certificate; this reads what it said.)
func PolicyStatement(bundleJSON []byte, trusted root.TrustedMaterial) (policy.Statement, error) {
	var st policy.Statement
	var b bundle.Bundle
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return st, fmt.Errorf("reading a verified bundle: %w", err)
	}
	env := b.GetDsseEnvelope()
	if env == nil {
		return st, errors.New("reading a verified bundle: it holds no DSSE envelope")
	}
	var raw struct {
		Type          string           `json:"_type"`
		Subject       []policy.Subject `json:"subject"`
		PredicateType string           `json:"predicateType"`
		Predicate     json.RawMessage  `json:"predicate"`
	}
	if err := json.Unmarshal(env.GetPayload(), &raw); err != nil {
		return st, fmt.Errorf("reading a verified statement: %w", err)
	}
	st = policy.Statement{Type: raw.Type, Subject: raw.Subject, PredicateType: raw.PredicateType, Predicate: raw.Predicate}
	if st.Subject == nil {
		st.Subject = []policy.Subject{}
	}
	for i := range st.Subject {
		if st.Subject[i].Digest == nil {
			st.Subject[i].Digest = map[string]string{}
		}
	}
	if len(st.Predicate) == 0 {
		st.Predicate = json.RawMessage("{}")
	}
	vc, err := b.VerificationContent()
	if err != nil {
		return st, fmt.Errorf("reading a verified bundle's signer: %w", err)
	}
	switch {
	case vc.Certificate() != nil:
		sum, err := certificate.SummarizeCertificate(vc.Certificate())
		if err != nil {
			return st, fmt.Errorf("reading a verified bundle's certificate: %w", err)
		}
		st.Signer = policy.Signer{Identity: sum.SubjectAlternativeName, Issuer: sum.Extensions.Issuer}
	case vc.PublicKey() != nil:
		v, err := trusted.PublicKeyVerifier(vc.PublicKey().Hint())
		if err != nil {
			return st, fmt.Errorf("finding the key a verified bundle was signed with: %w", err)
		}
		pub, err := v.PublicKey()
		if err != nil {
			return st, fmt.Errorf("finding the key a verified bundle was signed with: %w", err)
		}
		if st.Signer.Key, err = pipeline.Fingerprint(pub); err != nil {
			return st, err
		}
	default:
		return st, errors.New("a verified bundle names neither a key nor a certificate")
	}
	return st, nil
}
