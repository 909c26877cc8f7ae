package verify

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// MaxBundleSize is the largest bundle read: a key-signed provenance bundle is a few KiB, and a registry's
// referrer bundles are bounded the same way (see oci.FetchBundles).
const MaxBundleSize = 16 << 20

// ReadBundle reads the bundle file at path, at most MaxBundleSize bytes: a bundle is untrusted input until it
// verifies, and reading a huge file (or /dev/zero) whole would exhaust memory before any check could refuse it.
// A pipe is fine (--bundle <(...)); a named pipe with no writer reads as empty rather than blocking ssf for ever
// (one swapped into an attestations directory after it was listed, say).
func ReadBundle(path string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer. Go's poller still waits for the data
	// of a pipe that has one, so process substitution reads whole.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
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
