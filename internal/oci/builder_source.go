package oci

import (
	"context"
	"io"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
)

// RemoteOptions returns the go-containerregistry options every ssf registry request uses: credentials from the
// keychain, plain HTTP only to loopback registries, redirects kept on TLS and off local addresses, and a deadline
// on progress. Callers outside this package (builder pull) use it so that there is one transport policy.
func RemoteOptions(ctx context.Context, opts ...RegistryOption) []remote.Option {
	return remoteOptions(ctx, opts)
}

// Open returns a reader of the blob with digest d, which ReadImageTar found in the tarball and hashed. The
// tarball may have changed since: callers that trust the bytes hash them again as they read.
func (it *ImageTar) Open(d digest.Digest) (io.ReadCloser, error) { return it.open(d) }
