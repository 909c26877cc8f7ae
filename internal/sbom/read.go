package sbom

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	spdxjson "github.com/spdx/tools-golang/json"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/provenance"
)

// Verified is an SBOM statement whose signature, subject and predicate type were checked.
type Verified struct {
	Subject       provenance.Subject // the statement's subject that is the artifact
	PredicateType string
	Document      []byte // the SBOM (the statement's predicate), indented JSON
}

// ErrVerification is wrapped by every failed check of Verify, with the reason in the message; bad arguments do not
// wrap it.
var ErrVerification = errors.New("SBOM verification failed")

// Verify checks that bundleJSON is a Sigstore bundle signed by trusted (key material, as verify.KeyMaterial makes;
// the caller checks it is usable with verify.Options.Validate) holding an in-toto statement of predicateType about
// the artifact whose sha256 is artifact, and returns the SBOM it carries.
//
// It lives here rather than in package verify because package oci (which verify uses) reads this package's
// names; it configures sigstore-go the way verify does for key-only material.
func Verify(ctx context.Context, artifact digest.Digest, bundleJSON []byte, trusted root.TrustedMaterial, predicateType string) (*Verified, error) {
	if _, err := content.Parse(string(artifact)); err != nil {
		return nil, fmt.Errorf("verifying SBOM: artifact %w", err)
	}
	if predicateType != SPDXPredicateType && predicateType != CycloneDXPredicateType {
		return nil, fmt.Errorf("verifying SBOM: predicate type %q is not an SBOM type", predicateType)
	}
	if trusted == nil {
		return nil, errors.New("verifying SBOM: no trusted material given (no public key)")
	}
	if len(trusted.FulcioCertificateAuthorities()) > 0 || len(trusted.RekorLogs()) > 0 || len(trusted.TimestampingAuthorities()) > 0 {
		return nil, fmt.Errorf("verifying SBOM: trusted material with certificate authorities, logs or timestamp authorities is not supported yet")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return nil, fail("decoding Sigstore bundle: %w", err)
	}
	// Key-only material has nothing that observed when the signature was made, so no timestamp is required; the
	// same configuration verify uses for provenance.
	v, err := sgverify.NewVerifier(trusted, sgverify.WithNoObserverTimestamps())
	if err != nil {
		return nil, fmt.Errorf("verifying SBOM: configuring sigstore-go: %w", err)
	}
	sum, _ := hex.DecodeString(artifact.Encoded()) // checked above
	if _, err := v.Verify(&b, sgverify.NewPolicy(sgverify.WithArtifactDigest("sha256", sum), sgverify.WithKey())); err != nil {
		return nil, fail("sigstore-go rejected the bundle: %w", err)
	}
	env := b.GetDsseEnvelope()
	if env == nil {
		return nil, fail("bundle content is not a DSSE envelope")
	}
	if env.GetPayloadType() != content.InTotoPayloadType {
		return nil, fail("DSSE payloadType is %q, want %q", env.GetPayloadType(), content.InTotoPayloadType)
	}
	if n := len(env.GetSignatures()); n != 1 {
		return nil, fail("DSSE envelope has %d signatures, want 1", n)
	}
	var st intoto.Statement
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(env.GetPayload(), &st); err != nil {
		return nil, fail("decoding the signed statement: %w", err)
	}
	if st.GetType() != intoto.StatementTypeUri {
		return nil, fail("statement _type is %q, want %q", st.GetType(), intoto.StatementTypeUri)
	}
	if st.GetPredicateType() != predicateType {
		return nil, fail("statement predicateType is %q, want %q", st.GetPredicateType(), predicateType)
	}
	if err := st.Validate(); err != nil {
		return nil, fail("signed statement: %w", err)
	}
	i := slices.IndexFunc(st.GetSubject(), func(s *intoto.ResourceDescriptor) bool {
		return strings.EqualFold(s.GetDigest()["sha256"], artifact.Encoded())
	})
	if i < 0 {
		return nil, fail("artifact %s is not a subject of the SBOM statement", artifact)
	}
	pred, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		return nil, fail("reading the SBOM: %w", err)
	}
	var doc bytes.Buffer
	if err := json.Indent(&doc, pred, "", "  "); err != nil {
		return nil, fail("reading the SBOM: %w", err)
	}
	doc.WriteByte('\n')
	return &Verified{
		Subject:       provenance.Subject{Name: st.GetSubject()[i].GetName(), Digest: artifact},
		PredicateType: predicateType,
		Document:      doc.Bytes(),
	}, nil
}

func fail(format string, args ...any) error {
	return fmt.Errorf("%w: %w", ErrVerification, fmt.Errorf(format, args...))
}

// Row is one component of an SBOM, as ssf sbom prints it.
type Row struct {
	Name, Version string
	Type          string // KindGoModule, KindNpm or KindFile (from the purl)
	PURL          string
	Ingested      string // "yes", "NO" (compiled in but not ingested, or another hash), "-" (not applicable)
}

// Rows reads the components of an SBOM document of predicateType with the format's own library, sorted by name
// and version. The described output itself is not a row.
func Rows(predicateType string, doc []byte) ([]Row, error) {
	var rows []Row
	switch predicateType {
	case CycloneDXPredicateType:
		var bom cdx.BOM
		if err := cdx.NewBOMDecoder(bytes.NewReader(doc), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
			return nil, fmt.Errorf("reading CycloneDX SBOM: %w", err)
		}
		if bom.Components != nil {
			for _, c := range *bom.Components {
				var props []property
				if c.Properties != nil {
					for _, p := range *c.Properties {
						props = append(props, property{p.Name, p.Value})
					}
				}
				rows = append(rows, row(c.Name, c.Version, c.PackageURL, props))
			}
		}
	case SPDXPredicateType:
		d, err := spdxjson.Read(bytes.NewReader(doc))
		if err != nil {
			return nil, fmt.Errorf("reading SPDX SBOM: %w", err)
		}
		described := map[string]bool{}
		for _, r := range d.Relationships {
			if r != nil && r.Relationship == "DESCRIBES" {
				described[string(r.RefB.ElementRefID)] = true
			}
		}
		for _, p := range d.Packages {
			if p == nil || described[string(p.PackageSPDXIdentifier)] {
				continue
			}
			var purl string
			for _, ref := range p.PackageExternalReferences {
				if ref != nil && ref.RefType == "purl" {
					purl = ref.Locator
				}
			}
			var props []property
			for _, a := range p.Annotations {
				if name, value, ok := strings.Cut(a.AnnotationComment, "="); ok {
					props = append(props, property{name, value})
				}
			}
			rows = append(rows, row(p.PackageName, p.PackageVersion, purl, props))
		}
	default:
		return nil, fmt.Errorf("predicate type %q is not an SBOM type", predicateType)
	}
	slices.SortFunc(rows, func(a, b Row) int { return cmpStrings(a.Name, b.Name, a.Version, b.Version, a.PURL, b.PURL) })
	return rows, nil
}

func row(name, version, purl string, props []property) Row {
	r := Row{Name: name, Version: version, PURL: purl, Ingested: "-"}
	switch {
	case strings.HasPrefix(purl, "pkg:golang/"):
		r.Type = KindGoModule
	case strings.HasPrefix(purl, "pkg:npm/"):
		r.Type = KindNpm
	default:
		r.Type = KindFile
	}
	for _, p := range props {
		if p.name == PropIngested {
			switch p.value {
			case "true":
				r.Ingested = "yes"
			case "false":
				r.Ingested = "NO"
			}
		}
	}
	return r
}
