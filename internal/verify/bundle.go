package verify

import (
	"fmt"
	"io"
	"os"
)

// MaxBundleSize is the largest bundle read: a key-signed provenance bundle is a few KiB, and a registry's
// referrer bundles are bounded the same way (see oci.FetchBundles).
const MaxBundleSize = 16 << 20

// ReadBundle reads the bundle file at path, at most MaxBundleSize bytes: a bundle is untrusted input until it
// verifies, and reading a huge file (or /dev/zero) whole would exhaust memory before any check could refuse it.
// A pipe is fine (--bundle <(...)).
func ReadBundle(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading bundle: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading bundle %q: %w", path, err)
	}
	if len(b) > MaxBundleSize {
		return nil, fmt.Errorf("bundle %q is larger than %d bytes: not a provenance bundle", path, MaxBundleSize)
	}
	return b, nil
}
