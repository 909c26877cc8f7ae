// Package verify is ssf's one verifier of build evidence: ssf verify FILE, ssf verify REF, ssf publish (and later
// the admission controller) reach their verdict through it, so they cannot disagree.
//
// # Trust
//
// The caller gives trusted material (sigstore-go's [root.TrustedMaterial]): the factory's provenance key, made
// with [KeyMaterial], or a Sigstore trusted root (CA, transparency and CT logs, TSA) together with the identity
// that must have signed, made with [CertificateMaterial] (keyless bundles of `ssf build --signer identity`).
// sigstore-go checks the bundle's signature with it — for certificate material also the chain, the SCT, the log
// entry (inclusion proof, SET), the integrated time and the signed timestamp within the certificate's validity,
// and the identity, as stock cosign does; this package then checks itself that the payload is an in-toto
// statement about the artifact with an ssf SLSA provenance v1 predicate, or a task attestation
// (content.TaskPredicateType, [TaskAttestation]).
//
// # Expectations
//
// [Options] holds what the caller requires of the build: builder id, builder image, pipeline, params, source.
// Each one set is checked; each one left unset is reported in [Result.Unchecked], never silently wildcarded.
//
// # Where artifacts come from
//
// [Artifact] takes a digest, [File] hashes a regular file itself, and [Reference] fetches the bundles attached
// to a registry manifest (REGISTRY/REPO@sha256:HEX) and passes when one of them verifies for that manifest's
// digest; unusable referrers are skipped and reported, never fatal by themselves.
//
// # Evidence
//
// [Collect], [FileEvidence] and [ReferenceEvidence] (evidence.go) return every statement about an artifact that
// verifies — provenance, task attestations, SBOMs, summaries — each with the signer verification established (never
// one the statement names), for the policies of ssf verify and the admission controller, and the provenance verdict
// Artifact would give. A bundle whose statement does not name the artifact is skipped before its signature is
// checked; skipping admits nothing.
//
// # What it must never do
//
// It must never accept a bundle without checking its signature against the trusted material, never accept a certificate
// bundle without an identity to match or without a log entry and SCT, never accept a statement about a different
// artifact (but for a published files artifact, one about its build's outputs that the verified provenance names,
// marked LinkedBy: see Collect), never treat an unset expectation as a silent wildcard, and never let a registry's
// referrers (their number, size or shape) decide the verdict of a bundle that does verify.
//
// Key-only bundles carry no transparency log entry and no timestamp, so none is required with key material; a
// log entry a key-signed bundle does carry is not checked, and Result.Checks says so.
package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/ssf-dev/ssf/internal/archive"
	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/provenance"
)

// ErrVerification is wrapped by every verification failure, with the specific reason in the message.
// Errors for bad arguments (no key, a malformed digest, a path that is not a regular file) do not wrap it.
var ErrVerification = errors.New("verification failed")

// Options are the verifier's trust and expectations. Trusted is required; an empty expectation is not checked,
// and Result.Unchecked says so.
type Options struct {
	Trusted root.TrustedMaterial // required: what signatures are checked against (see KeyMaterial)

	// BuilderID, if set, must equal runDetails.builder.id.
	BuilderID string

	// SourceDigest, if set, must match the digest of the resolvedDependency named "source". "ALG:VALUE" (e.g.
	// "gitCommit:abc…", "sha256:…") must equal that digest's ALG entry; a bare VALUE must equal one of its entries.
	// Hex values compare case-insensitively.
	SourceDigest string

	// PipelineDigest, if set ("sha256:HEX"), must equal the pipeline file's digest the provenance records.
	PipelineDigest string

	// BuilderDigest, if set ("sha256:HEX"), must equal the digest of the resolvedDependency named "builder" (the
	// builder image's manifest).
	BuilderDigest string

	// Params, if non-nil, must equal the build's params exactly: the same names with the same values.
	Params map[string]string
}

// Result is what a successful verification established.
type Result struct {
	Subject    provenance.Subject     // the statement's subject that is the artifact
	Provenance *provenance.Provenance // the verified statement, when it is a build's provenance
	Task       *TaskAttestation       // the verified statement, when it is a task's attestation (nil otherwise)
	Checks     []string               // what was checked, and what was deliberately not, in human words
	Unchecked  []string               // every expectation the caller left unset, in human words
	// Signer is who signed a certificate bundle, as its certificate says: "SAN (issuer ISS)"; "" for a key. With a
	// --certificate-identity-regexp it is the identity the expression matched, which a verdict must name rather
	// than the expression (an unanchored one also matches the run's tasks and longer pipeline names).
	Signer string
}

// Validate checks the options themselves (trusted material present and usable, expectations well formed), so a
// caller can tell a malformed request from a failed verification before fetching anything.
func (o Options) Validate() error {
	if o.Trusted == nil {
		return errors.New("verifying: no trusted material given (no public key)")
	}
	if km, ok := o.Trusted.(*keyMaterial); ok && km.err != nil {
		return fmt.Errorf("verifying: %w", km.err)
	}
	if cm, ok := o.Trusted.(*certMaterial); ok && cm.err != nil {
		return fmt.Errorf("verifying: %w", cm.err)
	}
	if _, _, err := parseSourceDigest(o.SourceDigest); err != nil {
		return err
	}
	if _, err := parseSHA256("pipeline digest", o.PipelineDigest); err != nil {
		return err
	}
	if _, err := parseSHA256("builder digest", o.BuilderDigest); err != nil {
		return err
	}
	return nil
}

// Artifact verifies bundleJSON (a Sigstore bundle) for the artifact whose sha256 digest is artifact.
func Artifact(ctx context.Context, artifact digest.Digest, bundleJSON []byte, opts Options) (*Result, error) {
	if _, err := content.Parse(string(artifact)); err != nil {
		return nil, fmt.Errorf("verifying: artifact %w", err)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	payload, checks, signer, err := signedPayload(artifact, bundleJSON, opts.Trusted)
	if err != nil {
		return nil, err
	}
	return signedResult(artifact, payload, checks, signer, opts)
}

// signedResult checks payload, whose signature signedPayload verified for artifact, against opts (which Validate
// accepted): Artifact's checks after the signature's, shared with Collect so it verifies each bundle once.
func signedResult(artifact digest.Digest, payload []byte, checks []string, signer string, opts Options) (*Result, error) {
	srcAlg, srcValue, _ := parseSourceDigest(opts.SourceDigest)
	pipelineDigest, err := parseSHA256("pipeline digest", opts.PipelineDigest)
	if err != nil {
		return nil, err
	}
	builderDigest, err := parseSHA256("builder digest", opts.BuilderDigest)
	if err != nil {
		return nil, err
	}
	if predicateTypeOf(payload) == content.TaskPredicateType {
		res, err := taskResult(artifact, payload, checks, opts) // identity.go
		if res != nil {
			res.Signer = signer
		}
		return res, err
	}
	prov, err := provenance.Parse(payload)
	if err != nil {
		return nil, fail("reading the signed statement: %w", err)
	}
	checks = append(checks, fmt.Sprintf("statement is %s with predicate %s", provenance.StatementType, provenance.PredicateType))

	i := slices.IndexFunc(prov.Subjects, func(s provenance.Subject) bool { return s.Digest == artifact })
	if i < 0 {
		return nil, fail("artifact %s is not a subject of the statement (subjects: %s)",
			artifact, subjectList(prov.Subjects))
	}
	subject := prov.Subjects[i]
	checks = append(checks, fmt.Sprintf("artifact %s is subject %q", artifact, subject.Name))

	if prov.BuildType != provenance.BuildType {
		return nil, fail("buildType is %q, want %q", prov.BuildType, provenance.BuildType)
	}
	checks = append(checks, "buildType is "+provenance.BuildType)

	var unchecked []string
	if opts.BuilderID == "" {
		unchecked = append(unchecked, fmt.Sprintf("builder id (the statement says %q)", prov.BuilderID))
	} else {
		if prov.BuilderID != opts.BuilderID {
			return nil, fail("builder id is %q, want %q", prov.BuilderID, opts.BuilderID)
		}
		checks = append(checks, fmt.Sprintf("builder id is %q", opts.BuilderID))
	}

	if opts.BuilderDigest == "" {
		unchecked = append(unchecked, "builder image (the statement says "+dependencyDigest(prov.Dependencies, "builder")+")")
	} else {
		got, err := matchDependency(prov.Dependencies, "builder", string(builderDigest.Algorithm()), builderDigest.Encoded())
		if err != nil {
			return nil, err
		}
		checks = append(checks, "builder image is "+got)
	}

	if opts.PipelineDigest == "" {
		unchecked = append(unchecked, fmt.Sprintf("pipeline digest (the statement says %q %s)", prov.PipelineName, prov.PipelineDigest))
	} else {
		if prov.PipelineDigest != pipelineDigest {
			return nil, fail("pipeline digest is %s, want %s", prov.PipelineDigest, pipelineDigest)
		}
		checks = append(checks, "pipeline digest is "+string(pipelineDigest))
	}

	if opts.Params == nil {
		unchecked = append(unchecked, fmt.Sprintf("params (the statement has %d)", len(prov.Params)))
	} else {
		if err := matchParams(prov.Params, opts.Params); err != nil {
			return nil, err
		}
		checks = append(checks, fmt.Sprintf("params are exactly the %d expected", len(opts.Params)))
	}

	if opts.SourceDigest == "" {
		unchecked = append(unchecked, "source digest (the statement says "+dependencyDigest(prov.Dependencies, provenance.SourceDependencyName)+")")
	} else {
		got, err := matchSource(prov.Dependencies, srcAlg, srcValue)
		if err != nil {
			return nil, err
		}
		checks = append(checks, fmt.Sprintf("source dependency has digest %s", got))
	}
	for _, u := range unchecked {
		what, says, _ := strings.Cut(u, " (")
		checks = append(checks, what+" NOT checked (no expectation given; "+says)
	}
	if _, ok := opts.Trusted.(*certMaterial); !ok {
		checks = append(checks, "transparency log NOT checked (key-only verification; log entries, if any, are ignored)")
	}

	return &Result{Subject: subject, Provenance: prov, Checks: checks, Unchecked: unchecked, Signer: signer}, nil
}

// signedPayload checks bundleJSON's signature with trusted for the artifact (sigstore-go finds the artifact among
// the statement's subjects) and that it holds one DSSE signature over an in-toto payload, and returns the
// payload, what was checked and, for a certificate bundle, who signed it ("SAN (issuer ISS)", "" for a key).
func signedPayload(artifact digest.Digest, bundleJSON []byte, trusted root.TrustedMaterial) ([]byte, []string, string, error) {
	var b bundle.Bundle
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return nil, nil, "", fail("decoding Sigstore bundle: %w", err)
	}
	v, material, err := newSigstoreVerifier(trusted)
	if err != nil {
		return nil, nil, "", err
	}
	sum, _ := hex.DecodeString(artifact.Encoded()) // the caller parsed artifact
	policy := sgverify.NewPolicy(sgverify.WithArtifactDigest("sha256", sum), identityPolicy(trusted))
	vr, err := v.Verify(&b, policy)
	if err != nil {
		if notSignedByKey(&b, trusted) {
			return nil, nil, "", fail("the bundle is %w (sigstore-go rejected it: %w)", ErrNotSignedByKey, err)
		}
		if names, ok := subjectsWithout(&b, artifact); ok {
			// The names are the bundle's own, unverified words: sigstore-go's reason stays in the message, so a forged
			// bundle cannot pass for a genuine one of another build.
			return nil, nil, "", fail("the file (%s) is %w: the statement names %s; check that the file and --bundle come from the same build (sigstore-go: %w)", artifact, ErrNotASubject, strings.Join(names, ", "), err)
		}
		return nil, nil, "", fail("sigstore-go rejected the bundle: %w", err)
	}
	checks := append([]string{
		"bundle signature verified by sigstore-go with the trusted material (the bundle's key hint is not trusted)",
		"sigstore-go found the artifact's sha256 among the statement's subjects",
	}, material...)
	var signer string
	if vr != nil && vr.Signature != nil && vr.Signature.Certificate != nil {
		c := vr.Signature.Certificate
		signer = fmt.Sprintf("%s (issuer %s)", printableText(c.SubjectAlternativeName), printableText(c.Extensions.Issuer))
		checks = append(checks, "the certificate names "+signer)
	}
	// sigstore-go has verified the signature over this exact envelope. The caller re-checks the parts that make it
	// a statement of the kind it wants about this artifact rather than any signed statement.
	env := b.GetDsseEnvelope()
	if env == nil {
		return nil, nil, "", fail("bundle content is not a DSSE envelope")
	}
	if env.GetPayloadType() != content.InTotoPayloadType {
		return nil, nil, "", fail("DSSE payloadType is %q, want %q", env.GetPayloadType(), content.InTotoPayloadType)
	}
	if n := len(env.GetSignatures()); n != 1 {
		return nil, nil, "", fail("DSSE envelope has %d signatures, want 1", n)
	}
	return env.GetPayload(), append(checks, "DSSE payloadType is "+content.InTotoPayloadType), signer, nil
}

// Statement is a verified in-toto statement of another predicate than ssf's provenance (an SBOM).
type Statement struct {
	PredicateType string
	Subjects      []provenance.Subject // the sha256 subjects
	Predicate     []byte               // the predicate as JSON
	Subject       provenance.Subject   // the subject that is the artifact
}

// Attestation verifies bundleJSON (a Sigstore bundle of an in-toto Statement v1) for the artifact whose sha256 is
// artifact: its signature against trusted, one DSSE signature over an in-toto payload, the statement's type, its
// predicate type (which must be predicateType) and the artifact among its subjects.
func Attestation(ctx context.Context, artifact digest.Digest, bundleJSON []byte, trusted root.TrustedMaterial, predicateType string) (*Statement, error) {
	if _, err := content.Parse(string(artifact)); err != nil {
		return nil, fmt.Errorf("verifying: artifact %w", err)
	}
	if err := (Options{Trusted: trusted}).Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	payload, _, _, err := signedPayload(artifact, bundleJSON, trusted)
	if err != nil {
		return nil, err
	}
	var st struct {
		Type    string `json:"_type"`
		Subject []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		PredicateType string          `json:"predicateType"`
		Predicate     json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		return nil, fail("reading the signed statement: %w", err)
	}
	if st.Type != provenance.StatementType {
		return nil, fail("statement _type is %q, want %q", st.Type, provenance.StatementType)
	}
	if st.PredicateType != predicateType {
		return nil, fail("predicateType is %q, want %q", st.PredicateType, predicateType)
	}
	out := &Statement{PredicateType: st.PredicateType, Predicate: st.Predicate}
	for _, sub := range st.Subject {
		if d, err := content.FromHex(sub.Digest["sha256"]); err == nil {
			out.Subjects = append(out.Subjects, provenance.Subject{Name: sub.Name, Digest: d})
		}
	}
	i := slices.IndexFunc(out.Subjects, func(s provenance.Subject) bool { return s.Digest == artifact })
	if i < 0 {
		return nil, fail("artifact %s is not a subject of the statement (subjects: %s)", artifact, subjectList(out.Subjects))
	}
	out.Subject = out.Subjects[i]
	return out, nil
}

// File verifies bundleJSON for the file at path. It hashes the file itself and refuses anything that is not a
// regular file, including a symlink: evidence is about bytes at a path, and a symlink's target can change under it.
func File(ctx context.Context, path string, bundleJSON []byte, opts Options) (*Result, error) {
	sum, err := hashFile(ctx, path)
	if err != nil {
		return nil, err
	}
	return Artifact(ctx, sum, bundleJSON, opts)
}

func hashFile(ctx context.Context, path string) (digest.Digest, error) {
	before, err := os.Lstat(path)
	if err != nil {
		return "", fmt.Errorf("hashing artifact: %w", err)
	}
	if !before.Mode().IsRegular() {
		return "", fmt.Errorf("hashing artifact %q: not a regular file (%s)", path, before.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hashing artifact: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("hashing artifact %q: %w", path, err)
	}
	if !os.SameFile(before, fi) {
		return "", fmt.Errorf("hashing artifact %q: file was replaced while it was being opened", path)
	}
	h := sha256.New()
	if _, err := archive.CopyContext(ctx, h, f, make([]byte, 256<<10)); err != nil {
		return "", fmt.Errorf("hashing artifact %q: %w", path, err)
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

// parseSourceDigest splits "ALG:VALUE"; a value without a colon is bare (alg ""). An empty string is no expectation.
func parseSourceDigest(s string) (alg, value string, err error) {
	if s == "" {
		return "", "", nil
	}
	alg, value, found := strings.Cut(s, ":")
	if !found {
		alg, value = "", s
	}
	if (found && alg == "") || value == "" || strings.TrimSpace(s) != s {
		return "", "", fmt.Errorf("verifying: source digest %q: want ALG:VALUE (e.g. gitCommit:abc123) or a bare value", s)
	}
	return alg, value, nil
}

// parseSHA256 reads an expectation "sha256:HEX" a person typed (hex of either case); "" is no expectation.
func parseSHA256(what, s string) (digest.Digest, error) {
	if s == "" {
		return "", nil
	}
	d, err := content.ParseFold(s)
	if err != nil {
		return "", fmt.Errorf("verifying: %s %q: want sha256:<64 hex digits>", what, s)
	}
	return d, nil
}

// matchParams requires the build's params to be exactly want.
func matchParams(got, want map[string]string) error {
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			return fail("param %q was not set by the build, want %q", k, w)
		}
		if g != w {
			return fail("param %q is %q, want %q", k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			return fail("param %q=%q was set by the build but not expected", k, g)
		}
	}
	return nil
}

// dependencyDigest describes the digests of the one resolvedDependency called name, for messages.
func dependencyDigest(deps []provenance.ResourceDescriptor, name string) string {
	for _, d := range deps {
		if d.Name == name {
			return d.Digest.String()
		}
	}
	return "nothing"
}

// matchDependency finds the one resolvedDependency called name and checks its alg digest.
func matchDependency(deps []provenance.ResourceDescriptor, name, alg, value string) (string, error) {
	var dep *provenance.ResourceDescriptor
	for i := range deps {
		if deps[i].Name != name {
			continue
		}
		if dep != nil {
			return "", fail("statement has more than one resolvedDependency named %q", name)
		}
		dep = &deps[i]
	}
	if dep == nil {
		return "", fail("statement has no resolvedDependency named %q", name)
	}
	got, ok := dep.Digest[alg]
	if !ok {
		return "", fail("%s dependency has no %s digest (it has: %s)", name, alg, dep.Digest)
	}
	if !sameDigest(got, value) {
		return "", fail("%s %s digest is %s, want %s", name, alg, got, value)
	}
	return alg + ":" + got, nil
}

// matchSource finds the one resolvedDependency named "source" and checks its digest.
func matchSource(deps []provenance.ResourceDescriptor, alg, value string) (string, error) {
	var src *provenance.ResourceDescriptor
	for i := range deps {
		if deps[i].Name != provenance.SourceDependencyName {
			continue
		}
		if src != nil {
			return "", fail("statement has more than one resolvedDependency named %q", provenance.SourceDependencyName)
		}
		src = &deps[i]
	}
	if src == nil {
		return "", fail("statement has no resolvedDependency named %q", provenance.SourceDependencyName)
	}
	if alg != "" {
		got, ok := src.Digest[alg]
		if !ok {
			return "", fail("source dependency has no %s digest (it has: %s)", alg, src.Digest)
		}
		if !sameDigest(got, value) {
			return "", fail("source %s digest is %s, want %s", alg, got, value)
		}
		return alg + ":" + got, nil
	}
	for a, got := range src.Digest {
		if sameDigest(got, value) {
			return a + ":" + got, nil
		}
	}
	return "", fail("source digest %s is none of the source dependency's digests (%s)", value, src.Digest)
}

// sameDigest compares hex digests case-insensitively and anything else exactly.
func sameDigest(a, b string) bool {
	if isHex(a) && isHex(b) {
		return strings.EqualFold(a, b)
	}
	return a == b
}

func isHex(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdefABCDEF") == ""
}

func fail(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrVerification}, args...)...)
}

func subjectList(subjects []provenance.Subject) string {
	parts := make([]string, 0, len(subjects))
	for _, s := range subjects {
		parts = append(parts, fmt.Sprintf("%q %s", s.Name, s.Digest))
	}
	return strings.Join(parts, ", ")
}

// printableText is s for a terminal: quoted, with escapes, when it holds anything but printable characters (a
// certificate's issuer extension is raw bytes, and could carry terminal escape sequences).
func printableText(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
