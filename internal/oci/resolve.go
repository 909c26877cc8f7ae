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

// Resolve asks the registry for the manifest ref names (a HEAD request: no body is read) and returns it by
// digest. A tag gives whatever digest the registry holds for it now; a digest must be the one the registry
// answers with. A manifest or repository the registry does not have is an error wrapping ErrNotFound.
func Resolve(ctx context.Context, ref name.Reference, opts ...RegistryOption) (name.Digest, error) {
	desc, err := remote.Head(ref, remoteOptions(ctx, opts)...)
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return name.Digest{}, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	if err != nil {
		return name.Digest{}, fmt.Errorf("looking up %s: %w", ref, err)
	}
	d := ref.Context().Digest(desc.Digest.String())
	if want, ok := ref.(name.Digest); ok && !strings.EqualFold(want.DigestStr(), d.DigestStr()) {
		return name.Digest{}, fmt.Errorf("looking up %s: the registry answered with %s", ref, desc.Digest)
	}
	return d, nil
}
