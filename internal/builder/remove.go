package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Remove removes the builder image ref names, NAME@sha256:HEX or NAME, and returns it. A NAME that names several
// digests (a newer import moved it on, and the older image is still kept for the pipelines pinned to it) is
// refused, listing them. Once no name is left for the digest, its blobs that no other image uses and its unpacked
// root filesystem in cacheDir are deleted too. A build already running with the image keeps its mount.
func (s *Store) Remove(ctx context.Context, ref, cacheDir string) (Image, error) {
	img, err := s.remove(ctx, ref, cacheDir)
	if err != nil {
		return Image{}, fmt.Errorf("removing builder image %q: %w", ref, err)
	}
	return img, nil
}

func (s *Store) remove(ctx context.Context, ref, cacheDir string) (Image, error) {
	name, dig, pinned := strings.Cut(ref, "@")
	if err := CheckName(name); err != nil {
		return Image{}, err
	}
	if pinned && !valid(digest.Digest(dig)) {
		return Image{}, badf("digest %q: want sha256: and 64 lower-case hex digits", dig)
	}
	unlock, err := s.lock()
	if err != nil {
		return Image{}, err
	}
	defer unlock()
	index, err := s.readIndex()
	if err != nil {
		return Image{}, err
	}
	matches := func(d v1.Descriptor) bool {
		if pinned && string(d.Digest) != dig {
			return false
		}
		ref := d.Annotations[v1.AnnotationRefName]
		return ref == name || ref == "" && slices.Contains(recordedNames(d), name)
	}
	var digests []digest.Digest
	for _, d := range index.Manifests {
		if matches(d) && !slices.Contains(digests, d.Digest) {
			digests = append(digests, d.Digest)
		}
	}
	switch len(digests) {
	case 0:
		return Image{}, badf("%w (ssf builder list shows what there is)", ErrNotFound)
	case 1:
	default:
		refs := make([]string, len(digests))
		for i, d := range digests {
			refs[i] = name + "@" + string(d)
		}
		return Image{}, badf("%q names %d images: give one of %s", name, len(digests), strings.Join(refs, ", "))
	}
	d := digests[0]
	var img Image
	for _, desc := range index.Manifests {
		if matches(desc) {
			img, _ = s.image(desc)
			img.Name, img.Digest = name, d
		}
	}
	index.Manifests = slices.DeleteFunc(index.Manifests, matches)
	if err := s.writeIndex(index); err != nil {
		return Image{}, err
	}
	if slices.ContainsFunc(index.Manifests, func(desc v1.Descriptor) bool { return desc.Digest == d }) {
		return img, nil // still stored under another name
	}
	if err := os.RemoveAll(filepath.Join(cacheDir, d.Encoded())); err != nil {
		return Image{}, fmt.Errorf("removing its unpacked root filesystem: %w", err)
	}
	return img, s.collect(ctx, d, index)
}

// collect deletes the blobs of the manifest d that no image in index uses. If any remaining manifest cannot be
// read, nothing is deleted: a blob kept too long costs disk, a blob deleted too soon breaks a builder.
func (s *Store) collect(ctx context.Context, d digest.Digest, index v1.Index) error {
	used := map[digest.Digest]bool{}
	for _, desc := range index.Manifests {
		m, err := s.readManifest(desc.Digest)
		if err != nil {
			return fmt.Errorf("keeping the image's blobs: %w", err)
		}
		used[desc.Digest], used[m.Config.Digest], used[m.Layers[0].Digest] = true, true, true
	}
	candidates := []digest.Digest{d}
	if m, err := s.readManifest(d); err == nil {
		candidates = append(candidates, m.Config.Digest, m.Layers[0].Digest)
	}
	for _, c := range candidates {
		if err := ctx.Err(); err != nil {
			return err
		}
		if used[c] {
			continue
		}
		p, err := s.blobPath(c)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("deleting blob %s: %w", c, err)
		}
	}
	return nil
}
