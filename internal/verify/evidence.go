package verify

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/policy"
	"github.com/ssf-dev/ssf/internal/provenance"
)

// Evidence is every statement about one artifact that verified with the trusted material, and the verdict on its
// factory provenance. Its statements are what the ssf.verify and ssf.deploy policies read (input.statements).
type Evidence struct {
	URI    string        // the artifact as the caller named it: a file path, or REGISTRY/REPO@sha256:<hex>
	Digest digest.Digest // the artifact's sha256

	// Statements are the verified statements, in the order their bundles were given: provenance, task
	// attestations, SBOMs (SPDX, CycloneDX), VSAs and any other in-toto statement v1 whose bundle verified with
	// the trusted material and names the artifact among its subjects; then those the verified provenance links
	// (LinkedBy "provenance": see link), such as a published build's task attestations.
	Statements []VerifiedStatement

	// Skipped are the bundles that were not used, and why: not about this artifact, not verifying, not an
	// in-toto statement. A skipped bundle decides nothing by itself.
	Skipped []SkippedBundle

	// Provenance is the verdict on the factory provenance: the first SLSA provenance statement that passes every
	// check of Artifact with the caller's Options (the expectations included); nil when none does, and then
	// ProvenanceErr (wrapping ErrVerification) says why.
	Provenance    *Result
	ProvenanceErr error
	// ProvenanceBundle is the sha256 of the bundle Provenance was read from ("" without one).
	ProvenanceBundle digest.Digest
}

// VerifiedStatement is one verified in-toto statement and where its bundle came from.
type VerifiedStatement struct {
	policy.Statement // _type, subject, predicateType, predicate and signer: what a policy reads

	Bundle digest.Digest // sha256 of the bundle's bytes, as read
	// Source locates the bundle: the file it was read from, or REGISTRY/REPO@sha256:<bundle digest> for a
	// registry referrer (the bundle blob in the artifact's repository).
	Source string
}

// SkippedBundle is a bundle that was not used, and why.
type SkippedBundle struct {
	Source string
	Bundle digest.Digest // "" when the bundle could not even be read
	Reason error
}

func (s SkippedBundle) Error() string { return s.Source + ": " + s.Reason.Error() }

// SignedByAnotherIdentity says whether a bundle was refused because its certificate names another identity (or
// issuer) than the one required: the reason a build's task attestations, signed by spiffe://TD/pipeline/NAME/task/T,
// are skipped when the run's identity spiffe://TD/pipeline/NAME is required exactly.
func SignedByAnotherIdentity(err error) bool {
	var e *sgverify.ErrNoMatchingCertificateIdentity
	return errors.As(err, &e)
}

// EvidenceBundle is one bundle given to Collect: its bytes and where they came from (for messages and VSAs).
type EvidenceBundle struct {
	Source string
	Data   []byte
}

// MaxEvidenceBundles bounds the bundles Collect considers for one artifact: a build of 1023 outputs has about
// 2050 (provenance, two SBOMs per output, one per task).
const MaxEvidenceBundles = 4096

// Collect verifies each bundle for the artifact whose sha256 is artifact (uri names it in the evidence) and returns
// every statement that verified, and the verdict on the factory provenance under opts (see Evidence). Bundles whose
// statement does not name the artifact are skipped before their signature is checked (their subjects are read
// unverified only to skip them: skipping admits nothing), unless the verified provenance links them (see link):
// those are verified as well and added after the others. It fails only when the request itself is malformed
// (opts, the digest, too many bundles) or ctx ends; a bundle that does not verify is skipped, never an error.
func Collect(ctx context.Context, uri string, artifact digest.Digest, bundles []EvidenceBundle, opts Options) (*Evidence, error) {
	if _, err := content.Parse(string(artifact)); err != nil {
		return nil, fmt.Errorf("collecting evidence: artifact %w", err)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if len(bundles) > MaxEvidenceBundles {
		return nil, fmt.Errorf("collecting evidence for %s: %d bundles, more than the %d read for one artifact", uri, len(bundles), MaxEvidenceBundles)
	}
	ev := &Evidence{URI: uri, Digest: artifact}
	signer, err := keySigner(opts.Trusted)
	if err != nil {
		return nil, err
	}
	var provErrs, unverified []error
	var others []elsewhere
	seen := map[digest.Digest]string{}
	claims := map[string]string{} // a verified statement's payload digest and signer: the first bundle that held it
	for _, b := range bundles {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sum := digest.FromBytes(b.Data)
		skip := func(reason error) {
			ev.Skipped = append(ev.Skipped, SkippedBundle{Source: b.Source, Bundle: sum, Reason: reason})
		}
		if first, dup := seen[sum]; dup {
			// The same bytes twice (--bundle and --attestations naming one file) are one piece of evidence.
			skip(fmt.Errorf("the same bundle as %s", first))
			continue
		}
		seen[sum] = b.Source
		if names, about := mentions(b.Data, artifact); !about {
			// Perhaps linked through the provenance, once that is verified (linked, below).
			others = append(others, elsewhere{b, sum, fmt.Errorf("%w (it names %s)", ErrNotASubject, strings.Join(names, ", "))})
			continue
		}
		payload, checks, signerText, err := signedPayload(artifact, b.Data, opts.Trusted)
		if err != nil {
			skip(err)
			unverified = append(unverified, fmt.Errorf("%s: %w", b.Source, err))
			continue
		}
		st, err := readStatement(payload, artifact)
		if err != nil {
			skip(err)
			continue
		}
		st.Signer = signer
		if signer == (policy.Signer{}) {
			if st.Signer, err = certificateSigner(b.Data); err != nil {
				skip(err)
				continue
			}
		}
		// A bundle's JSON is not what is signed: the same envelope re-indented (or with another log entry) is other
		// bytes that verify as well. One signed statement is one piece of evidence however many copies are given, so
		// a policy that counts statements (two SBOMs, two attestations) counts claims, not files.
		claim := string(digest.FromBytes(payload)) + " " + st.Signer.Key + " " + st.Signer.Identity + " " + st.Signer.Issuer
		if first, dup := claims[claim]; dup {
			skip(fmt.Errorf("the same statement, signed by the same signer, as %s", first))
			continue
		}
		claims[claim] = b.Source
		ev.Statements = append(ev.Statements, VerifiedStatement{Statement: st, Bundle: sum, Source: b.Source})
		if st.PredicateType == provenance.PredicateType && ev.Provenance == nil {
			// The verdict is Artifact's, with every expectation the caller set: the same checks as ssf verify, on the
			// payload whose signature was just verified.
			res, err := signedResult(artifact, payload, checks, signerText, opts)
			if err != nil {
				provErrs = append(provErrs, fmt.Errorf("%s: %w", b.Source, err))
				continue
			}
			ev.Provenance, ev.ProvenanceBundle = res, sum
		}
	}
	links := ev.linkable()
	for _, o := range others {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := ev.link(links, o, opts, signer, claims); err != nil {
			ev.Skipped = append(ev.Skipped, SkippedBundle{Source: o.Source, Bundle: o.sum, Reason: err})
		}
	}
	if ev.Provenance == nil {
		switch {
		case len(provErrs) == 0 && len(unverified) > 0:
			// Why the bundles about the artifact did not verify (a wrong key, a wrong identity) is the likely answer.
			if len(unverified) > 5 {
				unverified = append(unverified[:5], fmt.Errorf("and %d more", len(unverified)-5))
			}
			ev.ProvenanceErr = fail("%s (%s): no SLSA provenance verified; of the bundles about it, none verified: %w", uri, artifact, errors.Join(unverified...))
		case len(provErrs) == 0:
			ev.ProvenanceErr = fail("%s (%s): no SLSA provenance verified for it (%d statements about it verified, none a SLSA provenance; ssf verify -v lists the bundles skipped and why)", uri, artifact, len(ev.Statements))
		default:
			ev.ProvenanceErr = fail("%s (%s): no SLSA provenance passed: %w", uri, artifact, errors.Join(provErrs...))
		}
	}
	return ev, nil
}

// elsewhere is a bundle whose statement does not name the artifact, and the reason it is skipped unless the
// verified provenance links it.
type elsewhere struct {
	EvidenceBundle
	sum    digest.Digest
	reason error
}

// LinkedByProvenance is VerifiedStatement.LinkedBy (and input.statements[_].linkedBy) of a statement that is in
// an artifact's evidence through the verified provenance rather than by naming the artifact.
const LinkedByProvenance = "provenance"

// link adds to the evidence the statement of a bundle about other files than the artifact when the VERIFIED
// provenance of the artifact (Evidence.Provenance) names it, and returns why not otherwise. A published files
// artifact's task attestations are about the build's files and task logs, not its manifest: the provenance that
// names the manifest also lists each task's bundle, by digest, among its byproducts. The rule, conservative:
//
//   - the artifact is the build's files artifact: the provenance's subject oci://artifact, the manifest holding
//     every output (never a file or an image, about which another output's statement says nothing);
//   - the bundle's sha256 is one the provenance lists among its byproducts (these very bytes were recorded by
//     the build), or every sha256 subject of its statement (at least one) is a subject or byproduct of the
//     provenance (a statement about nothing but that build's outputs, logs and bundles) — but never so for a task
//     attestation, which says a task of one build ran: only the build's own, listed by bundle;
//   - the bundle verifies with the trusted material exactly as one naming the artifact would (signature, log,
//     identity), against one of those subjects;
//   - it is not itself a SLSA provenance (another build's provenance of the same files decides nothing here).
//
// links is ev.linkable(): nil (nothing is linked) without a verified provenance or for another artifact than the
// files artifact. A bundle about any file the provenance does not name, or not
// signed by the trusted material, stays out.
func (ev *Evidence) link(links *linkable, o elsewhere, opts Options, keySigner policy.Signer, claims map[string]string) error {
	if links == nil {
		return o.reason
	}
	named, byproduct := links.named, links.bundles[o.sum.Encoded()]
	subjects := subjectDigests(o.Data)
	if len(subjects) == 0 {
		return o.reason
	}
	all := true
	for _, h := range subjects {
		all = all && named[h]
	}
	if !byproduct && !all {
		return fmt.Errorf("%w, and the verified provenance does not name it (neither the bundle among its byproducts nor every subject)", o.reason)
	}
	about, err := content.FromHex(subjects[0])
	if err != nil {
		return fail("reading the statement's subject: %w", err)
	}
	payload, _, _, err := signedPayload(about, o.Data, opts.Trusted)
	if err != nil {
		return fmt.Errorf("linked by the provenance, but: %w", err)
	}
	st, err := readStatement(payload, about)
	if err != nil {
		return err
	}
	if st.PredicateType == provenance.PredicateType {
		return fmt.Errorf("%w: a SLSA provenance of other files is not linked", o.reason)
	}
	if !byproduct && st.PredicateType == content.TaskPredicateType {
		// A task attestation says that a task of one build ran (its invocationId, its steps and their exit codes),
		// not only what some bytes are: another build whose outputs are byte-identical to that task's outputs and
		// log (a pipeline that copies them from its source) would otherwise be credited with a task it never ran,
		// such as another build's tests. This build's own task attestations are its provenance's byproducts.
		return fmt.Errorf("%w: a task attestation is linked only when the verified provenance lists its bundle among its byproducts (it is another build's)", o.reason)
	}
	if !byproduct {
		// The subjects checked above were read unverified: the signed statement's own must pass the same rule.
		for _, sub := range st.Subject {
			if !named[strings.ToLower(sub.Digest["sha256"])] {
				return fmt.Errorf("%w, and the verified provenance does not name its subject %.200q", o.reason, sub.Name)
			}
		}
	}
	st.Signer, st.LinkedBy = keySigner, LinkedByProvenance
	if keySigner == (policy.Signer{}) {
		if st.Signer, err = certificateSigner(o.Data); err != nil {
			return err
		}
	}
	claim := string(digest.FromBytes(payload)) + " " + st.Signer.Key + " " + st.Signer.Identity + " " + st.Signer.Issuer
	if first, dup := claims[claim]; dup {
		return fmt.Errorf("the same statement, signed by the same signer, as %s", first)
	}
	claims[claim] = o.Source
	ev.Statements = append(ev.Statements, VerifiedStatement{Statement: st, Bundle: o.sum, Source: o.Source})
	return nil
}

// linkable is what the verified provenance names, for link: the sha256 (hex) of its subjects and byproducts, and
// of its byproducts alone.
type linkable struct {
	named, bundles map[string]bool
}

// linkable returns what the verified provenance names when the artifact is its files artifact (the subject
// oci://artifact), else nil: a file, or an image, is not what a statement about another of the build's outputs
// is about, and without a verified provenance nothing is linked.
func (ev *Evidence) linkable() *linkable {
	if ev.Provenance == nil || ev.Provenance.Provenance == nil {
		return nil
	}
	prov := ev.Provenance.Provenance
	if !slices.ContainsFunc(prov.Subjects, func(s provenance.Subject) bool { return s.Name == oci.ArtifactSubject && s.Digest == ev.Digest }) {
		return nil
	}
	l := &linkable{named: map[string]bool{}, bundles: map[string]bool{}}
	for _, s := range prov.Subjects {
		l.named[s.Digest.Encoded()] = true
	}
	for _, b := range prov.Byproducts {
		if h := strings.ToLower(b.Digest["sha256"]); h != "" {
			// Only a byproduct recorded as a bundle (a task's or an SBOM's) links a bundle whatever it is about: a
			// task log is what the task's steps printed, and its bytes must never stand for a bundle's.
			l.named[h], l.bundles[h] = true, l.bundles[h] || b.MediaType == content.BundleMediaType
		}
	}
	return l
}

// subjectDigests reads, without verifying anything, the lower-case sha256 hex of every subject of the bundle's
// DSSE payload; nil when it cannot be read so or a subject has no sha256 (then it is linked to nothing).
func subjectDigests(bundleJSON []byte) []string {
	var b struct {
		DSSE *struct {
			Payload []byte `json:"payload"`
		} `json:"dsseEnvelope"`
	}
	if json.Unmarshal(bundleJSON, &b) != nil || b.DSSE == nil {
		return nil
	}
	var st struct {
		Subject []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if json.Unmarshal(b.DSSE.Payload, &st) != nil {
		return nil
	}
	var out []string
	for _, s := range st.Subject {
		h := strings.ToLower(s.Digest["sha256"])
		if _, err := content.FromHex(h); err != nil {
			return nil
		}
		out = append(out, h)
	}
	return out
}

// FileEvidence hashes the regular file at path (as File does) and collects the evidence of the bundle files
// given (see AttestationBundles for a build's OUT/attestations).
func FileEvidence(ctx context.Context, path string, bundlePaths []string, opts Options) (*Evidence, error) {
	if len(bundlePaths) > MaxEvidenceBundles {
		return nil, fmt.Errorf("collecting evidence for %q: %d bundles, more than the %d read for one artifact", path, len(bundlePaths), MaxEvidenceBundles)
	}
	sum, err := hashFile(ctx, path)
	if err != nil {
		return nil, err
	}
	var bundles []EvidenceBundle
	var unread, elsewhere []SkippedBundle
	var total int64
	for _, p := range bundlePaths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data, err := ReadBundle(p)
		if err != nil {
			unread = append(unread, SkippedBundle{Source: p, Reason: err})
			continue
		}
		// Every bundle is held until it is verified, and each may be MaxBundleSize: 4096 sparse files of 16 MiB
		// (no disk at all) would make ssf hold 64 GiB. The bytes read together are bounded instead, and a bundle
		// about another artifact (most of a build's) is let go at once, as Collect would skip it.
		if total += int64(len(data)); total > MaxEvidenceBytes {
			return nil, fmt.Errorf("collecting evidence for %q: the bundles given hold more than %d bytes together (at %s): give the build's own bundles (--bundle, --attestations)", path, MaxEvidenceBytes, p)
		}
		if names, about := mentions(data, sum); !about {
			elsewhere = append(elsewhere, SkippedBundle{Source: p, Bundle: digest.FromBytes(data), Reason: fmt.Errorf("%w (it names %s)", ErrNotASubject, strings.Join(names, ", "))})
			continue
		}
		bundles = append(bundles, EvidenceBundle{Source: p, Data: data})
	}
	ev, err := Collect(ctx, path, sum, bundles, opts)
	if err != nil {
		return nil, err
	}
	ev.Skipped = append(append(unread, ev.Skipped...), elsewhere...)
	return ev, nil
}

// MaxEvidenceBytes bounds the bytes FileEvidence reads from all the bundles of one artifact together: a build's
// attestations are a few KiB each (an SBOM of a large output some MiB), far below it.
const MaxEvidenceBytes = 256 << 20

// AttestationBundles lists the bundles of a build's attestations directory (OUT/attestations): every regular file
// named *.sigstore.json directly in dir, sorted by name. Anything else of that name (a symbolic link, a pipe) is
// left out, and dir itself must be a directory, not a link to one.
func AttestationBundles(dir string) ([]string, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("listing attestations: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("listing attestations %q: not a directory (%s)", dir, fi.Mode().Type())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing attestations: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sigstore.json") || e.Type()&fs.ModeType != 0 {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	if len(out) > MaxEvidenceBundles {
		return nil, fmt.Errorf("listing attestations %q: %d bundles, more than the %d read for one artifact", dir, len(out), MaxEvidenceBundles)
	}
	return out, nil
}

// ReferenceEvidence collects the evidence of a registry manifest: ref is REGISTRY/REPO@sha256:<hex> (or a tag, resolved
// first to the digest the registry holds; Evidence.URI is then the digest reference), and its bundles are its referrers
// (or the sha256-<hex> fallback tag), fetched with oci.FetchEvidence: one listing and one read per bundle, every read
// bounded, the provenance candidates first and then the other bundles (SBOMs, task attestations), which the verified
// provenance may link (see Collect). It is ssf verify's for a registry manifest: with opts.Trusted the factory's
// material it returns the statements ssf.verify reads and the provenance verdict (Evidence.Provenance, nil with
// Evidence.ProvenanceErr when no provenance verified). (The admission controller, which may trust a key and a root at
// once, makes the same fetch and calls Collect once per material.) A manifest the registry does not have fails wrapping
// ErrVerification and oci.ErrNotFound; a malformed reference wraps ErrBadReference; a manifest with no bundles is not
// an error: its evidence is empty and its ProvenanceErr says so.
func ReferenceEvidence(ctx context.Context, ref string, opts Options, reg ...oci.RegistryOption) (*Evidence, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	// FetchEvidence: the SBOMs and task attestations too, read after the provenance candidates.
	att, subject, err := fetchReferrers(ctx, ref, oci.FetchEvidence, reg)
	if err != nil {
		return nil, err
	}
	repo := att.Subject.Context().Name()
	bundles := ReferrerBundles(att)
	// The URI policies read (input.artifact.uri) and a summary names: spelled one way, so that a rule about a
	// registry is not passed by writing its host otherwise.
	ev, err := Collect(ctx, oci.CanonicalRepository(att.Subject.Context())+"@"+string(subject), subject, bundles, opts)
	if err != nil {
		return nil, err
	}
	for _, s := range att.Skipped {
		ev.Skipped = append(ev.Skipped, SkippedBundle{Source: repo + "@" + string(subject) + " referrers", Reason: s})
	}
	return ev, nil
}

// ReferrerBundles is the bundles oci.FetchEvidence read, the provenance candidates first, each named
// REPO@sha256:<hex of the bundle>.
func ReferrerBundles(att *oci.Attached) []EvidenceBundle {
	repo := att.Subject.Context().Name()
	bundles := make([]EvidenceBundle, 0, len(att.Bundles)+len(att.Others))
	for _, b := range append(slices.Clip(att.Bundles), att.Others...) {
		bundles = append(bundles, EvidenceBundle{Source: repo + "@" + string(digest.FromBytes(b)), Data: b})
	}
	return bundles
}

// PolicyStatements returns the verified statements as ssf.verify and ssf.deploy read them (input.statements).
func (e *Evidence) PolicyStatements() []policy.Statement {
	out := make([]policy.Statement, 0, len(e.Statements))
	for _, s := range e.Statements {
		out = append(out, s.Statement)
	}
	return out
}

// LevelStatements is what a verification summary's levels are computed from (vsa.Levels): every verified
// statement, but of the SLSA provenance statements only the one the verdict rests on (none without a verdict).
// Another provenance of the same bytes — one that did not meet the caller's expectations (another builder id,
// source, pipeline), or was not checked because an earlier one passed — must not lend the summary its level.
func (e *Evidence) LevelStatements() []policy.Statement {
	out := make([]policy.Statement, 0, len(e.Statements))
	for _, s := range e.Statements {
		if s.PredicateType == provenance.PredicateType && (e.Provenance == nil || s.Bundle != e.ProvenanceBundle) {
			continue
		}
		out = append(out, s.Statement)
	}
	return out
}

// VerifyInput is ssf.verify's input for the evidence.
func (e *Evidence) VerifyInput() policy.VerifyInput {
	return policy.VerifyInput{
		Artifact:   policy.Artifact{URI: e.URI, Digest: string(e.Digest)},
		Statements: e.PolicyStatements(),
	}
}

// mentions reads, without verifying anything, the sha256 subjects of the bundle's DSSE payload, and says whether
// artifact is one of them. A bundle that cannot be read this way counts as mentioning it: verification then says
// what is wrong with it. It reads the envelope with encoding/json, not sigstore-go's bundle parser, which also
// parses every log entry: most bundles of a build are about other outputs.
func mentions(bundleJSON []byte, artifact digest.Digest) ([]string, bool) {
	var b struct {
		DSSE *struct {
			Payload []byte `json:"payload"` // base64, as encoding/json reads []byte
		} `json:"dsseEnvelope"`
	}
	if json.Unmarshal(bundleJSON, &b) != nil || b.DSSE == nil {
		return nil, true
	}
	var st struct {
		Subject []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if json.Unmarshal(b.DSSE.Payload, &st) != nil {
		return nil, true
	}
	var names []string
	for _, s := range st.Subject {
		if strings.EqualFold(s.Digest["sha256"], artifact.Encoded()) {
			return nil, true
		}
		if len(names) < 3 {
			names = append(names, fmt.Sprintf("%.200q", s.Name))
		}
	}
	if len(st.Subject) > len(names) {
		names = append(names, fmt.Sprintf("and %d more", len(st.Subject)-len(names)))
	}
	if len(names) == 0 {
		names = []string{"no subject"}
	}
	return names, false
}

// readStatement reads a verified payload as an in-toto Statement v1 naming artifact among its subjects.
func readStatement(payload []byte, artifact digest.Digest) (policy.Statement, error) {
	var st policy.Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return st, fail("reading the signed statement: %w", err)
	}
	if st.Type != provenance.StatementType {
		return st, fail("statement _type is %q, want %q", st.Type, provenance.StatementType)
	}
	if st.PredicateType == "" {
		return st, fail("statement has no predicateType")
	}
	if len(st.Predicate) == 0 || string(st.Predicate) == "null" {
		st.Predicate = json.RawMessage("{}")
	}
	if !slices.ContainsFunc(st.Subject, func(s policy.Subject) bool { return s.Digest["sha256"] == artifact.Encoded() }) {
		return st, fail("artifact %s is not a subject of the statement", artifact)
	}
	st.Signer = policy.Signer{}
	return st, nil
}

// keySigner is the signer of every bundle verified with key material: the trusted key's fingerprint. It is zero
// for certificate material, whose signer each bundle's certificate names.
func keySigner(trusted root.TrustedMaterial) (policy.Signer, error) {
	km, ok := trusted.(*keyMaterial)
	if !ok {
		return policy.Signer{}, nil
	}
	v, err := km.PublicKeyVerifier("")
	if err != nil {
		return policy.Signer{}, fmt.Errorf("collecting evidence: the trusted key: %w", err)
	}
	pub, err := v.PublicKey()
	if err != nil {
		return policy.Signer{}, fmt.Errorf("collecting evidence: the trusted key: %w", err)
	}
	fp, err := KeyFingerprint(pub)
	if err != nil {
		return policy.Signer{}, err
	}
	return policy.Signer{Key: fp}, nil
}

// KeyFingerprint is a public key's fingerprint as policies read it: "sha256:<hex of its PKIX DER encoding>". It is
// pipeline.Fingerprint, so a statement's signer and a pipeline's (input.pipeline.signers) are named alike.
func KeyFingerprint(pub crypto.PublicKey) (string, error) { return pipeline.Fingerprint(pub) }

// certificateSigner reads who signed a bundle that verified with certificate material: its leaf certificate's
// first URI SAN and issuer, which sigstore-go has just matched against the caller's identity. The bundle is read
// with sigstore-go's own parser, so the certificate is the one it verified.
func certificateSigner(bundleJSON []byte) (policy.Signer, error) {
	var b bundle.Bundle
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return policy.Signer{}, fail("decoding Sigstore bundle: %w", err)
	}
	vc, err := b.VerificationContent()
	if err != nil {
		return policy.Signer{}, fail("reading the bundle's certificate: %w", err)
	}
	cert := vc.Certificate()
	if cert == nil {
		return policy.Signer{}, fail("the bundle verified with certificate material carries no certificate")
	}
	sum, err := certificate.SummarizeCertificate(cert)
	if err != nil {
		return policy.Signer{}, fail("reading the bundle's certificate: %w", err)
	}
	return policy.Signer{Identity: sum.SubjectAlternativeName, Issuer: sum.Extensions.Issuer}, nil
}
