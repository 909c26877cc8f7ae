package oci

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/content"
)

// ErrNotFound is wrapped when the registry does not have the manifest (or the repository) a reference names.
var ErrNotFound = errors.New("not found in the registry")

// ParseReference parses REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:<hex>. The registry must be written out (a
// host with a dot or a port, or localhost) and so must the tag: a bare "app" or "dir/file" is not taken for a
// Docker Hub image, so that a mistyped file name is never looked up on the network.
func ParseReference(s string) (name.Reference, error) {
	host, _, ok := strings.Cut(s, "/")
	if !ok || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		return nil, fmt.Errorf("%w: %q: want REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:<hex>, with the registry's host written out", ErrBadReference, s)
	}
	if d, err := name.NewDigest(s, name.StrictValidation); err == nil {
		return d, nil
	}
	t, err := name.NewTag(s, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: want REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:<hex>: %w", ErrBadReference, s, err)
	}
	return t, nil
}

// maxResolvedManifest bounds the manifest read when a registry does not answer HEAD for a tag; the distribution
// spec asks registries to accept manifests of at least 4 MiB.
const maxResolvedManifest = 4 << 20

// manifestAccept is every manifest kind a tag may name.
var manifestAccept = strings.Join([]string{ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
	content.DockerManifestMediaType, content.DockerListMediaType}, ", ")

// Resolve asks the registry for the manifest ref names (a HEAD request: no body is read) and returns it by
// digest. A tag gives whatever digest the registry holds for it now (when HEAD fails, a GET of the manifest, at
// most 4 MiB, hashed here); a digest must be the one the registry answers with, or is returned as given when
// HEAD fails for another reason than not found (fetching its bundles then reports what the registry says). A
// manifest or repository the registry does not have is an error wrapping ErrNotFound.
func Resolve(ctx context.Context, ref name.Reference, opts ...RegistryOption) (name.Digest, error) {
	desc, err := remote.Head(ref, remoteOptions(ctx, opts)...)
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return name.Digest{}, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	want, byDigest := ref.(name.Digest)
	switch {
	case err != nil && byDigest:
		return want, nil
	case err != nil:
		return resolveByGet(ctx, ref, opts)
	}
	d := ref.Context().Digest(desc.Digest.String())
	if byDigest && !strings.EqualFold(want.DigestStr(), d.DigestStr()) {
		return name.Digest{}, fmt.Errorf("looking up %s: the registry answered with %s", ref, desc.Digest)
	}
	return d, nil
}

// resolveByGet reads the manifest a tag names, bounded, and returns it by the digest of its bytes.
func resolveByGet(ctx context.Context, ref name.Reference, opts []RegistryOption) (name.Digest, error) {
	c, err := newRawClient(ctx, ref.Context(), opts)
	if err != nil {
		return name.Digest{}, fmt.Errorf("looking up %s: %w", ref, err)
	}
	resp, b, err := c.get(ctx, c.base+"/manifests/"+ref.Identifier(), manifestAccept, maxResolvedManifest)
	if err != nil {
		return name.Digest{}, fmt.Errorf("looking up %s: %w", ref, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return ref.Context().Digest(string(digest.FromBytes(b))), nil
	case http.StatusNotFound:
		return name.Digest{}, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	return name.Digest{}, fmt.Errorf("looking up %s: %s", ref, resp.Status)
}
