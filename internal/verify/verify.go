// Package verify is ssf's one verifier of build evidence, used by ssf verify (and later by admission and publish).
//
// Given an artifact's sha256, a Sigstore bundle and a public key, it checks with sigstore-go that the bundle's DSSE
// signature was made by that key, then checks itself that the payload is an in-toto statement about that artifact
// with an ssf SLSA provenance v1 predicate, and any expectations the caller set (builder id, source digest).
//
// # Never
//
// This package never accepts a bundle without checking its signature, never accepts a statement about a different
// artifact, and never treats an unset expectation as a silent wildcard: Result.Checks lists what was checked and
// what was not.
//
// Key-only bundles carry no transparency log entry and no timestamp, so none is required here; a log entry a
// bundle does carry is not checked, and Result.Checks says so.
package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/ssf-dev/ssf/internal/provenance"
)

// ErrVerification is wrapped by every verification failure, with the specific reason in the message.
// Errors for bad arguments (no key, a malformed digest, a path that is not a regular file) do not wrap it.
var ErrVerification = errors.New("verification failed")

// InTotoPayloadType is the only DSSE payloadType accepted.
const InTotoPayloadType = "application/vnd.in-toto+json"

// Options are the verifier's expectations. PublicKey is required; an empty optional field is not checked, and
// Result.Checks says so.
type Options struct {
	PublicKey crypto.PublicKey // required: the factory's provenance key

	// BuilderID, if set, must equal runDetails.builder.id.
	BuilderID string

	// SourceDigest, if set, must match the digest of the resolvedDependency named "source". "ALG:VALUE" (e.g.
	// "gitCommit:abc…", "sha256:…") must equal that digest's ALG entry; a bare VALUE must equal one of its entries.
	// Hex values compare case-insensitively.
	SourceDigest string
}

// Result is what a successful verification established.
type Result struct {
	Subject    provenance.Subject     // the statement's subject that is the artifact
	Provenance *provenance.Provenance // the verified statement
	Checks     []string               // what was checked, and what was deliberately not, in human words
}

// Artifact verifies bundleJSON (a Sigstore bundle) for the artifact whose sha256 is artifactSHA256 (hex).
func Artifact(ctx context.Context, artifactSHA256 string, bundleJSON []byte, opts Options) (*Result, error) {
	if !provenance.IsSHA256Hex(artifactSHA256) {
		return nil, fmt.Errorf("verifying: artifact digest %q is not a sha256 hex digest", artifactSHA256)
	}
	artifactSHA256 = strings.ToLower(artifactSHA256)
	if noKey(opts.PublicKey) {
		return nil, errors.New("verifying: no public key given")
	}
	srcAlg, srcValue, err := parseSourceDigest(opts.SourceDigest)
	if err != nil {
		return nil, err
	}
	keyVerifier, err := signature.LoadDefaultVerifier(opts.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("verifying: unusable public key: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	var b bundle.Bundle
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return nil, fail("decoding Sigstore bundle: %w", err)
	}

	// Exactly one trusted key, whatever hint the bundle names: the hint is unsigned and only a label. cosign
	// --key does the same.
	key := root.NewExpiringKey(keyVerifier, time.Time{}, time.Time{})
	trusted := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
	// A key-only bundle has no log entry and no timestamp to require.
	v, err := sgverify.NewVerifier(trusted, sgverify.WithNoObserverTimestamps())
	if err != nil {
		return nil, fmt.Errorf("verifying: configuring sigstore-go: %w", err)
	}
	digest, _ := hex.DecodeString(artifactSHA256) // checked above
	policy := sgverify.NewPolicy(sgverify.WithArtifactDigest("sha256", digest), sgverify.WithKey())
	if _, err := v.Verify(&b, policy); err != nil {
		return nil, fail("sigstore-go rejected the bundle: %w", err)
	}
	checks := []string{
		"bundle signature verified by sigstore-go with the given public key (the bundle's key hint is not trusted)",
		"sigstore-go found the artifact's sha256 among the statement's subjects",
	}

	// sigstore-go has verified the signature over this exact envelope. Re-check the parts that make it ssf
	// provenance about this artifact rather than any signed statement.
	env := b.GetDsseEnvelope()
	if env == nil {
		return nil, fail("bundle content is not a DSSE envelope")
	}
	if env.GetPayloadType() != InTotoPayloadType {
		return nil, fail("DSSE payloadType is %q, want %q", env.GetPayloadType(), InTotoPayloadType)
	}
	if n := len(env.GetSignatures()); n != 1 {
		return nil, fail("DSSE envelope has %d signatures, want 1", n)
	}
	checks = append(checks, "DSSE payloadType is "+InTotoPayloadType)

	prov, err := provenance.Parse(env.GetPayload())
	if err != nil {
		return nil, fail("reading the signed statement: %w", err)
	}
	checks = append(checks, fmt.Sprintf("statement is %s with predicate %s", provenance.StatementType, provenance.PredicateType))

	i := slices.IndexFunc(prov.Subjects, func(s provenance.Subject) bool { return s.SHA256 == artifactSHA256 })
	if i < 0 {
		return nil, fail("artifact sha256:%s is not a subject of the statement (subjects: %s)",
			artifactSHA256, subjectList(prov.Subjects))
	}
	subject := prov.Subjects[i]
	checks = append(checks, fmt.Sprintf("artifact sha256:%s is subject %q", artifactSHA256, subject.Name))

	if prov.BuildType != provenance.BuildType {
		return nil, fail("buildType is %q, want %q", prov.BuildType, provenance.BuildType)
	}
	checks = append(checks, "buildType is "+provenance.BuildType)

	if opts.BuilderID == "" {
		checks = append(checks, fmt.Sprintf("builder id NOT checked (no expectation given; statement says %q)", prov.BuilderID))
	} else {
		if prov.BuilderID != opts.BuilderID {
			return nil, fail("builder id is %q, want %q", prov.BuilderID, opts.BuilderID)
		}
		checks = append(checks, fmt.Sprintf("builder id is %q", opts.BuilderID))
	}

	if opts.SourceDigest == "" {
		checks = append(checks, "source digest NOT checked (no expectation given)")
	} else {
		got, err := matchSource(prov.Dependencies, srcAlg, srcValue)
		if err != nil {
			return nil, err
		}
		checks = append(checks, fmt.Sprintf("source dependency has digest %s", got))
	}

	checks = append(checks, "transparency log NOT checked (key-only verification; log entries, if any, are ignored)")
	return &Result{Subject: subject, Provenance: prov, Checks: checks}, nil
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

func hashFile(ctx context.Context, path string) (string, error) {
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
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return "", fmt.Errorf("hashing artifact %q: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ctxReader stops a long hash when the context is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// noKey reports a missing key, including a typed nil or an ECDSA key without a curve, which sigstore's key loader
// would dereference.
func noKey(k crypto.PublicKey) bool {
	switch k := k.(type) {
	case nil:
		return true
	case *ecdsa.PublicKey:
		return k == nil || k.Curve == nil
	case *rsa.PublicKey:
		return k == nil || k.N == nil
	case ed25519.PublicKey:
		return len(k) == 0
	}
	return false
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
			return "", fail("source dependency has no %s digest (it has: %s)", alg, digestList(src.Digest))
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
	return "", fail("source digest %s is none of the source dependency's digests (%s)", value, digestList(src.Digest))
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
		parts = append(parts, fmt.Sprintf("%q sha256:%s", s.Name, s.SHA256))
	}
	return strings.Join(parts, ", ")
}

func digestList(d provenance.Digest) string {
	parts := make([]string, 0, len(d))
	for alg, v := range d {
		parts = append(parts, alg+":"+v)
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
