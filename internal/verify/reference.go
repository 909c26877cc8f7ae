package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
)

// ReferenceResult is what a successful verification of a registry manifest established.
type ReferenceResult struct {
	Result
	Ref     string  // REGISTRY/REPO@sha256:HEX that was verified
	Skipped []error // referrers that were not used (another kind, oversized, malformed, not verifying), and why
}

// ErrBadReference is wrapped when a reference is not REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:HEX: a usage
// error, not a failed check.
var ErrBadReference = errors.New("not a registry reference")

// Reference verifies the manifest ref (REGISTRY/REPO@sha256:HEX, as ssf publish prints, or REGISTRY/REPO:TAG)
// against the Sigstore bundles attached to it as OCI referrers (or through the sha256-HEX fallback tag): it passes
// when one of them verifies, as Artifact does, for the manifest's digest. A tag is first resolved to the digest
// the registry holds for it (ReferenceResult.Ref is that digest: what was verified); a manifest the registry does
// not have fails, wrapping ErrVerification and oci.ErrNotFound. Referrers of another artifactType are ignored;
// oversized or malformed ones, and bundles that do not verify, are skipped and listed in ReferenceResult.Skipped,
// and decide nothing by themselves. When none verifies the error wraps ErrVerification and gives every reason.
func Reference(ctx context.Context, ref string, opts Options, reg ...oci.RegistryOption) (*ReferenceResult, error) {
	att, subject, err := fetchReferrers(ctx, ref, oci.FetchBundles, reg)
	if err != nil {
		return nil, err
	}
	var fails []error
	for i, b := range att.Bundles {
		res, err := Artifact(ctx, subject, b, opts)
		if err != nil && !errors.Is(err, ErrVerification) {
			return nil, err // the expectations themselves are malformed: no bundle can pass
		}
		if err != nil {
			fails = append(fails, fmt.Errorf("bundle %d of %d: %w", i+1, len(att.Bundles), err))
			continue
		}
		return &ReferenceResult{Result: *res, Ref: att.Subject.String(), Skipped: append(fails, att.Skipped...)}, nil
	}
	if len(fails) > 0 && !slices.ContainsFunc(fails, func(err error) bool { return !errors.Is(err, ErrNotSignedByKey) }) {
		// Every bundle is there and none is signed by the key: say that, not each threshold.
		return nil, fail("%s: none of its %d bundles is %w: %w", att.Subject, len(att.Bundles), ErrNotSignedByKey, errors.Join(append(fails, att.Skipped...)...))
	}
	fails = append(fails, att.Skipped...)
	if len(att.Bundles) == 0 {
		return nil, fail("%s: %w", att.Subject, errors.Join(append([]error{oci.ErrNoBundles}, att.Skipped...)...))
	}
	return nil, fail("%s: none of its %d bundles verified: %w", att.Subject, len(att.Bundles), errors.Join(fails...))
}

// fetchReferrers parses ref (REGISTRY/REPO@sha256:HEX or REGISTRY/REPO:TAG), resolves a tag to the digest the
// registry holds for it, and reads that manifest's bundle referrers with fetch (oci.FetchBundles, or
// oci.FetchEvidence for every kind). It returns them with the manifest's digest, lower case. A malformed reference
// wraps ErrBadReference; a manifest the registry does not have fails wrapping ErrVerification and oci.ErrNotFound;
// a manifest with no bundles is not an error here.
func fetchReferrers(ctx context.Context, ref string, fetch func(context.Context, string, ...oci.RegistryOption) (*oci.Attached, error), reg []oci.RegistryOption) (*oci.Attached, digest.Digest, error) {
	parsed, err := oci.ParseReference(ref)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrBadReference, err)
	}
	if d, ok := parsed.(name.Digest); ok {
		// go-containerregistry keeps an upper-case digest as written; registries want it lower case.
		dg, err := content.ParseFold(d.DigestStr())
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrBadReference, err)
		}
		parsed = d.Context().Digest(string(dg))
	}
	resolved, err := oci.Resolve(ctx, parsed, reg...)
	if errors.Is(err, oci.ErrNotFound) {
		return nil, "", fail("%w", err)
	}
	if err != nil {
		return nil, "", err
	}
	att, err := fetch(ctx, resolved.String(), reg...)
	if errors.Is(err, oci.ErrBadReference) {
		return nil, "", fmt.Errorf("%w: %w", ErrBadReference, err)
	}
	if err != nil && !errors.Is(err, oci.ErrNoBundles) {
		return nil, "", err
	}
	subject, err := content.ParseFold(att.Subject.DigestStr())
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrBadReference, err)
	}
	return att, subject, nil
}
