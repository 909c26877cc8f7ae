package builder

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/archive"
	"github.com/ssf-dev/ssf/internal/durable"
)

// mountPoints are the directories Rootfs makes sure every root filesystem has, because the sandbox mounts
// filesystems on them and cannot create them in a read-only root.
var mountPoints = []string{"proc", "dev", "sys", "tmp", "workspace", "outputs", "inputs", "deps", "run", "run/secrets"}

// Rootfs returns the path of the unpacked root filesystem of the image with the given digest, cacheDir/<hex>,
// unpacking it on first use.
//
// The image is unpacked into a temporary directory beside its cache entry, with every blob (manifest, config,
// layer) hashed as it is read. Only if all match their digests is the tree given the empty directories the
// sandbox mounts on (proc, dev, sys, tmp, workspace, outputs, inputs, deps, run/secrets) and mode 0755, flushed to disk, and renamed
// into place. A crash, a damaged blob or a cancelled ctx leaves no cache entry, and concurrent calls for the same
// digest all return the one that was published first. A published root filesystem is never changed: callers must
// mount it read-only.
func (s *Store) Rootfs(ctx context.Context, d digest.Digest, cacheDir string) (string, error) {
	if _, err := s.Lookup(d); err != nil {
		return "", fmt.Errorf("unpacking builder image: %w", err)
	}
	dest := filepath.Join(cacheDir, d.Encoded())
	if ok, err := isPublished(dest); err != nil {
		return "", fmt.Errorf("unpacking builder image %s: %w", d, err)
	} else if ok {
		return dest, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("unpacking builder image %s: %w", d, err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".tmp-"+filepath.Base(dest)+"-")
	if err != nil {
		return "", fmt.Errorf("unpacking builder image %s: %w", d, err)
	}
	published := false
	defer func() {
		if !published {
			os.RemoveAll(tmp)
		}
	}()
	if err := s.unpack(ctx, d, tmp); err != nil {
		return "", fmt.Errorf("unpacking builder image %s: %w", d, err)
	}
	err = os.Rename(tmp, dest)
	published = err == nil
	if err != nil {
		// Another caller published first: its tree is the same, verified the same way.
		if ok, _ := isPublished(dest); ok {
			return dest, nil
		}
		return "", fmt.Errorf("unpacking builder image %s: %w", d, err)
	}
	if err := durable.SyncDir(cacheDir); err != nil {
		return "", fmt.Errorf("unpacking builder image %s: %w", d, err)
	}
	return dest, nil
}

// isPublished reports whether dest is a published root filesystem. Anything but a directory there is an error,
// not something to replace.
func isPublished(dest string) (bool, error) {
	info, err := os.Lstat(dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("checking cached root filesystem: %w", err)
	case !info.IsDir():
		return false, fmt.Errorf("checking cached root filesystem %q: not a directory", dest)
	}
	return true, nil
}

// unpack verifies the image's manifest and config, extracts its layer into the empty directory dest while hashing
// it, and prepares dest to be published.
func (s *Store) unpack(ctx context.Context, d digest.Digest, dest string) error {
	m, err := s.readManifest(d)
	if err != nil {
		return err
	}
	layer := m.Layers[0]
	if err := s.readConfig(m.Config, layer); err != nil {
		return err
	}
	if err := s.extractLayer(ctx, layer, dest); err != nil {
		return err
	}
	if err := addMountPoints(dest); err != nil {
		return err
	}
	if err := os.Chmod(dest, 0o755); err != nil {
		return err
	}
	return durable.SyncDir(dest)
}

// extractLayer extracts the layer blob into dest in one pass, hashing what it reads, and fails if the blob's size
// or digest is not the descriptor's. What was extracted before a mismatch is discovered is only ever in dest,
// which the caller then removes; archive.Extract keeps even a hostile layer inside dest. A digest mismatch is
// reported in preference to the extraction error it may have caused, since it is the cause.
func (s *Store) extractLayer(ctx context.Context, layer v1.Descriptor, dest string) error {
	want := layer.Digest
	p, err := s.blobPath(want)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("reading layer: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	r := io.TeeReader(io.LimitReader(f, layer.Size+1), h)
	extractErr := archive.Extract(ctx, r, dest, archive.ExtractOptions{Sync: true})
	if err := ctx.Err(); err != nil {
		return err
	}
	// Read the rest: the tar stream's padding, or whatever Extract left unread. Hashing one byte past the size
	// the manifest gives makes a blob of any other size a mismatch too.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("reading layer %s: %w", want, err)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != want {
		return &DigestMismatchError{Want: want, Got: got}
	}
	if extractErr != nil {
		return fmt.Errorf("extracting layer %s: %w", want, extractErr)
	}
	return nil
}

// addMountPoints makes sure the root filesystem in dir has an empty directory at each of mountPoints.
// A symlink or file at one of them is an error: the sandbox must not mount through a link the image chose.
func addMountPoints(dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, name := range mountPoints {
		info, err := root.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := root.Mkdir(name, 0o755); err != nil {
				return err
			}
			if err := root.Chmod(name, 0o755); err != nil { // whatever the umask
				return err
			}
		case err != nil:
			return err
		case !info.IsDir():
			return fmt.Errorf("root filesystem has /%s, which is not a directory: the sandbox mounts there", name)
		}
	}
	return nil
}
