package oci

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
)

// RemoteOptions returns the go-containerregistry options every ssf registry request uses: credentials from the
// keychain, plain HTTP only to loopback registries, redirects kept on TLS and off local addresses, and a deadline
// on progress. Callers outside this package (builder pull) use it so that there is one transport policy.
func RemoteOptions(ctx context.Context, opts ...RegistryOption) []remote.Option {
	return remoteOptions(ctx, opts)
}

// GetManifest reads the manifest ref names, at most limit bytes of it: go-containerregistry's remote.Get would
// hold up to 100 MiB of a hostile registry's answer in memory. The bytes are not hashed here; the caller checks
// them against the digest. A manifest the registry does not have is an error wrapping ErrNotFound.
func GetManifest(ctx context.Context, ref name.Digest, limit int64, opts ...RegistryOption) ([]byte, error) {
	c, err := newRawClient(ctx, ref.Context(), opts)
	if err != nil {
		return nil, fmt.Errorf("fetching manifest %s: %w", ref, err)
	}
	resp, b, err := c.get(ctx, c.base+"/manifests/"+ref.DigestStr(), manifestAccept, limit)
	if err != nil {
		return nil, fmt.Errorf("fetching manifest %s: %w", ref, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return b, nil
	case http.StatusNotFound:
		return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	return nil, fmt.Errorf("fetching manifest %s: %s", ref, resp.Status)
}

// Open returns a reader of the blob with digest d, which ReadImageTar found in the tarball and hashed. The
// tarball may have changed since: callers that trust the bytes hash them again as they read.
func (it *ImageTar) Open(d digest.Digest) (io.ReadCloser, error) { return it.open(d) }
