// Package builder keeps the factory's builder images: OCI images that hold the root filesystem a task runs in.
//
// # Storing
//
// [Store.Import] turns a directory into a single-layer image (an uncompressed, deterministic tar layer made by
// [archive.WriteTree], a config with no timestamps and a manifest) and stores it content-addressed in an OCI image
// layout, so that the same tree always gets the same digest, on any host and under any name. Names live only in
// the layout's index.json, as org.opencontainers.image.ref.name annotations; they are for people.
//
// [Store.Pull] (from a registry, pinned by digest) and [Store.ImportLayout] (an OCI image layout directory or
// tarball) bring in images made elsewhere: the manifest (an index is resolved to linux and this host's
// architecture), config and one layer are bounded and hashed as they are read, the layer (tar or tar+gzip) is
// checked against the config's diff ID and unpacked by [archive.Extract] into a scratch directory, and the tree,
// which must have /bin/sh, is packed by Import. So every stored image has the one form Import makes, and a builder's
// digest is that of its tree, whatever registry or compression it came through. [Store.Remove] drops a name, and
// with the last name the blobs no other image uses and the unpacked root filesystem.
//
// # Running
//
// [Store.Rootfs] unpacks an image, found by digest, into a per-digest cache directory and returns the path of
// its root filesystem, which the sandbox mounts read-only. The tree is unpacked beside the cache entry and renamed
// into place only once every blob has been verified, so no caller ever sees half a root filesystem.
//
// # What it must never do
//
// It must never trust a blob whose digest it has not just verified: manifests, configs and layers are hashed
// as they are read. It must never change a cached root filesystem after it is published. It must never let a name
// choose the image for a build: builds name images by digest, and names only help people find digests. It must
// never pull by tag, unpack a layer outside its scratch directory or make a device node, nor store an image
// that was not wholly verified, nor let a pulled image grow beyond its bound once stored (hard links are stored
// as copies, so they count as such).
package builder

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/archive"
	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/durable"
)

// ErrNotFound means that the store holds no image with the digest asked for.
var ErrNotFound = errors.New("builder image not found")

// DigestMismatchError means that a blob's contents do not hash to the digest that names it.
type DigestMismatchError struct {
	Want digest.Digest // the digest the blob was asked for by
	Got  digest.Digest // the digest of what was read
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("blob %s: digest mismatch: contents hash to %s", e.Want, e.Got)
}

// Image is a builder image in a store.
type Image struct {
	Name   string        // the name it was imported under, for people
	Digest digest.Digest // of its manifest: what builds use
	Size   int64         // size of its layer in bytes
	Files  int           // regular files in its layer
}

// Ref returns the image as NAME@sha256:<hex>.
func (i Image) Ref() string {
	if i.Name == "" {
		return string(i.Digest) // an image whose name moved on to a newer import
	}
	return i.Name + "@" + string(i.Digest)
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+([._/-][a-z0-9]+)*$`)
)

const (
	// filesAnnotation records on an index entry how many files the image's layer holds, so List does not have
	// to read layers. It is informational: nothing in a build depends on it.
	filesAnnotation = "dev.ssf.builder.files"

	// namesAnnotation records on an index entry every name its digest was imported under, comma-separated and
	// sorted (names cannot hold commas). It outlives the ref name when that moves on to a newer import.
	namesAnnotation = "dev.ssf.builder.names"

	// sourceAnnotation records on an index entry where a pulled or layout-imported image came from: the registry
	// reference it was pulled by, or the layout's path, with the platform manifest unpacked. For people only.
	sourceAnnotation = "dev.ssf.builder.source"

	// maxJSONBlob bounds what is read of a manifest, config or index.
	maxJSONBlob = 4 << 20
)

// Store is a directory holding builder images as an OCI image layout: oci-layout, index.json and
// blobs/sha256/<hex>. Its methods are safe for concurrent use, by goroutines and by processes.
type Store struct {
	dir string
}

// Open opens the store in dir, creating an empty image layout there if there is none.
func Open(dir string) (*Store, error) {
	s := &Store{dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("opening builder image store %q: %w", dir, err)
	}
	unlock, err := s.lock()
	if err != nil {
		return nil, fmt.Errorf("opening builder image store %q: %w", dir, err)
	}
	defer unlock()
	if err := s.initLayout(); err != nil {
		return nil, fmt.Errorf("opening builder image store %q: %w", dir, err)
	}
	return s, nil
}

func (s *Store) initLayout() error {
	b, err := os.ReadFile(filepath.Join(s.dir, v1.ImageLayoutFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		b, err := json.Marshal(v1.ImageLayout{Version: v1.ImageLayoutVersion})
		if err != nil {
			return err
		}
		if err := durable.Replace(filepath.Join(s.dir, v1.ImageLayoutFile), b, 0o644); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		var layout v1.ImageLayout
		if err := json.Unmarshal(b, &layout); err != nil {
			return fmt.Errorf("reading %s: %w", v1.ImageLayoutFile, err)
		}
		if layout.Version != v1.ImageLayoutVersion {
			return fmt.Errorf("reading %s: unsupported image layout version %q", v1.ImageLayoutFile, layout.Version)
		}
	}
	if _, err := os.Stat(filepath.Join(s.dir, v1.ImageIndexFile)); errors.Is(err, os.ErrNotExist) {
		return s.writeIndex(emptyIndex())
	} else if err != nil {
		return err
	}
	_, err = s.readIndex()
	return err
}

func emptyIndex() v1.Index {
	return v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{},
	}
}

// Import stores the tree under rootfs as an image called name, replacing any image of that name, and returns it.
// The image's digest depends only on the tree's names, contents, permission bits and symlink targets (and the
// host's architecture): not on name, owners, timestamps or the order files were created in. name must match
// ^[a-z0-9]+([._/-][a-z0-9]+)*$.
func (s *Store) Import(ctx context.Context, rootfs, name string) (Image, error) {
	return s.importTree(ctx, rootfs, name, "")
}

// importTree is Import, recording source (where a pulled image came from, if it was pulled) on the index entry.
func (s *Store) importTree(ctx context.Context, rootfs, name, source string) (Image, error) {
	if !nameRE.MatchString(name) {
		return Image{}, fmt.Errorf("importing builder image %q: invalid name: want lower-case letters and digits "+
			"separated by '.', '_', '-' or '/'", name)
	}
	info, err := os.Stat(rootfs)
	if err != nil {
		return Image{}, fmt.Errorf("importing builder image %q from %q: %w", name, rootfs, err)
	}
	if !info.IsDir() {
		return Image{}, fmt.Errorf("importing builder image %q from %q: not a directory", name, rootfs)
	}
	var stats archive.TreeStats
	layer, err := s.writeBlob(ctx, v1.MediaTypeImageLayer, func(w io.Writer) error {
		var err error
		stats, err = archive.WriteTree(ctx, w, rootfs, nil)
		return err
	})
	if err != nil {
		return Image{}, fmt.Errorf("importing builder image %q from %q: writing layer: %w", name, rootfs, err)
	}
	config := v1.Image{
		Platform: v1.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		RootFS:   v1.RootFS{Type: "layers"},
	}
	config.RootFS.DiffIDs = []digest.Digest{layer.Digest}
	configDesc, err := s.writeJSON(ctx, v1.MediaTypeImageConfig, config)
	if err != nil {
		return Image{}, fmt.Errorf("importing builder image %q from %q: writing config: %w", name, rootfs, err)
	}
	manifest := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []v1.Descriptor{layer},
	}
	manifestDesc, err := s.writeJSON(ctx, v1.MediaTypeImageManifest, manifest)
	if err != nil {
		return Image{}, fmt.Errorf("importing builder image %q from %q: writing manifest: %w", name, rootfs, err)
	}
	manifestDesc.Annotations = map[string]string{
		v1.AnnotationRefName: name,
		filesAnnotation:      strconv.Itoa(stats.Files),
	}
	if source != "" {
		manifestDesc.Annotations[sourceAnnotation] = source
	}
	if err := s.addToIndex(manifestDesc); err != nil {
		return Image{}, fmt.Errorf("importing builder image %q from %q: %w", name, rootfs, err)
	}
	return Image{Name: name, Digest: manifestDesc.Digest, Size: layer.Size, Files: stats.Files}, nil
}

// addToIndex adds desc to index.json under its name. An image that loses its last name stays in the index without
// one, so pipelines pinned to its digest keep working.
func (s *Store) addToIndex(desc v1.Descriptor) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	// Remove deletes blobs under this lock; Import wrote them without it. An image whose blob went meanwhile (the
	// same tree was being removed) must not be named.
	if err := s.checkBlobs(desc.Digest); err != nil {
		return fmt.Errorf("%w (removed while being imported? import again)", err)
	}
	index, err := s.readIndex()
	if err != nil {
		return err
	}
	name := desc.Annotations[v1.AnnotationRefName]
	names := []string{name}
	for _, d := range index.Manifests {
		if d.Digest == desc.Digest {
			names = append(names, recordedNames(d)...)
		}
	}
	desc.Annotations[namesAnnotation] = joinNames(names)
	var replaced []v1.Descriptor
	index.Manifests = slices.DeleteFunc(index.Manifests, func(d v1.Descriptor) bool {
		if d.Annotations[v1.AnnotationRefName] == name || (d.Digest == desc.Digest && d.Annotations[v1.AnnotationRefName] == "") {
			replaced = append(replaced, d)
			return true
		}
		return false
	})
	index.Manifests = append(index.Manifests, desc)
	for _, old := range replaced {
		if !slices.ContainsFunc(index.Manifests, func(d v1.Descriptor) bool { return d.Digest == old.Digest }) {
			old.Annotations = maps.Clone(old.Annotations)
			old.Annotations[namesAnnotation] = joinNames(recordedNames(old))
			delete(old.Annotations, v1.AnnotationRefName)
			index.Manifests = append(index.Manifests, old)
		}
	}
	slices.SortFunc(index.Manifests, func(a, b v1.Descriptor) int {
		if c := strings.Compare(a.Annotations[v1.AnnotationRefName], b.Annotations[v1.AnnotationRefName]); c != 0 {
			return c
		}
		return strings.Compare(string(a.Digest), string(b.Digest))
	})
	return s.writeIndex(index)
}

// List returns the store's images sorted by name. An image stored under several names is listed once per name.
func (s *Store) List() ([]Image, error) {
	index, err := s.readIndex()
	if err != nil {
		return nil, fmt.Errorf("listing builder images in %q: %w", s.dir, err)
	}
	var images []Image
	for _, desc := range index.Manifests {
		img, err := s.image(desc)
		if err != nil {
			return nil, fmt.Errorf("listing builder images in %q: %w", s.dir, err)
		}
		images = append(images, img)
	}
	slices.SortFunc(images, func(a, b Image) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(string(a.Digest), string(b.Digest))
	})
	return images, nil
}

// Lookup returns the image with the given manifest digest ("sha256:<hex>"), or an error wrapping ErrNotFound if
// the store has none. If the image has several names, Name is the first in byte order.
func (s *Store) Lookup(d digest.Digest) (Image, error) {
	if !valid(d) {
		return Image{}, fmt.Errorf("looking up builder image %q: invalid digest: want sha256:<64 lower-case hex digits>",
			d)
	}
	index, err := s.readIndex()
	if err != nil {
		return Image{}, fmt.Errorf("looking up builder image %q: %w", d, err)
	}
	var found *v1.Descriptor
	for i, desc := range index.Manifests {
		if desc.Digest != d {
			continue
		}
		if found == nil || desc.Annotations[v1.AnnotationRefName] < found.Annotations[v1.AnnotationRefName] {
			found = &index.Manifests[i]
		}
	}
	if found == nil {
		return Image{}, fmt.Errorf("looking up builder image %q in %q: %w", d, s.dir, ErrNotFound)
	}
	img, err := s.image(*found)
	if err != nil {
		return Image{}, fmt.Errorf("looking up builder image %q: %w", d, err)
	}
	return img, nil
}

// NamesOf returns every name the image with the given digest was ever imported under, sorted, including names
// that have since moved on to newer imports. A pipeline may call the image by any of them and by no other, so a
// builder name in signed provenance is always one the factory gave that digest. An image imported before names
// were recorded has only its current name, if any.
func (s *Store) NamesOf(d digest.Digest) ([]string, error) {
	index, err := s.readIndex()
	if err != nil {
		return nil, fmt.Errorf("reading the names of builder image %q: %w", d, err)
	}
	var names []string
	for _, desc := range index.Manifests {
		if desc.Digest == d {
			names = append(names, recordedNames(desc)...)
		}
	}
	if all := joinNames(names); all != "" {
		return strings.Split(all, ","), nil
	}
	return nil, nil
}

// recordedNames returns the names an index entry records for its digest: its ref name and its names
// annotation. An entry written before the annotation existed has only its ref name.
func recordedNames(desc v1.Descriptor) []string {
	var names []string
	if n := desc.Annotations[v1.AnnotationRefName]; n != "" {
		names = append(names, n)
	}
	if all := desc.Annotations[namesAnnotation]; all != "" {
		names = append(names, strings.Split(all, ",")...)
	}
	return names
}

// joinNames returns the distinct non-empty names, sorted and comma-separated.
func joinNames(names []string) string {
	names = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "" })
	slices.Sort(names)
	return strings.Join(slices.Compact(names), ",")
}

// image describes the index entry desc, reading and verifying its manifest.
func (s *Store) image(desc v1.Descriptor) (Image, error) {
	m, err := s.readManifest(desc.Digest)
	if err != nil {
		return Image{}, err
	}
	files, _ := strconv.Atoi(desc.Annotations[filesAnnotation])
	return Image{
		Name:   desc.Annotations[v1.AnnotationRefName],
		Digest: desc.Digest,
		Size:   m.Layers[0].Size,
		Files:  files,
	}, nil
}

// checkBlobs checks that the manifest d and the config and layer it names are all stored.
func (s *Store) checkBlobs(d digest.Digest) error {
	m, err := s.readManifest(d)
	if err != nil {
		return err
	}
	for _, b := range []digest.Digest{m.Config.Digest, m.Layers[0].Digest} {
		p, err := s.blobPath(b)
		if err != nil {
			return err
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("blob %s of manifest %s: %w", b, d, err)
		}
	}
	return nil
}

// readManifest reads and verifies the manifest with the given digest and checks that it is an image this
// package made: one uncompressed layer and an image config.
func (s *Store) readManifest(d digest.Digest) (v1.Manifest, error) {
	var m v1.Manifest
	b, err := s.readJSONBlob(d)
	if err != nil {
		return m, fmt.Errorf("reading manifest: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("reading manifest %s: %w", d, err)
	}
	switch {
	case m.SchemaVersion != 2:
		err = fmt.Errorf("schemaVersion %d, want 2", m.SchemaVersion)
	case m.MediaType != v1.MediaTypeImageManifest:
		err = fmt.Errorf("mediaType %q, want %q", m.MediaType, v1.MediaTypeImageManifest)
	case m.Config.MediaType != v1.MediaTypeImageConfig:
		err = fmt.Errorf("config mediaType %q, want %q", m.Config.MediaType, v1.MediaTypeImageConfig)
	case len(m.Layers) != 1:
		err = fmt.Errorf("%d layers, want 1", len(m.Layers))
	case m.Layers[0].MediaType != v1.MediaTypeImageLayer:
		err = fmt.Errorf("layer mediaType %q, want %q", m.Layers[0].MediaType, v1.MediaTypeImageLayer)
	case !valid(m.Config.Digest) || !valid(m.Layers[0].Digest):
		err = errors.New("invalid blob digest")
	case m.Config.Size < 0 || m.Layers[0].Size < 0:
		err = errors.New("negative blob size")
	}
	if err != nil {
		return m, fmt.Errorf("reading manifest %s: not a builder image: %w", d, err)
	}
	return m, nil
}

// readConfig reads and verifies the config that desc names and checks that it describes a Linux image for
// this host whose only layer is layer.
func (s *Store) readConfig(desc, layer v1.Descriptor) error {
	b, err := s.readJSONBlob(desc.Digest)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	if int64(len(b)) != desc.Size {
		return fmt.Errorf("reading config %s: %d bytes, manifest says %d", desc.Digest, len(b), desc.Size)
	}
	var c v1.Image
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("reading config %s: %w", desc.Digest, err)
	}
	switch {
	case c.OS != "linux":
		err = fmt.Errorf("os %q, want linux", c.OS)
	case c.Architecture != runtime.GOARCH:
		err = fmt.Errorf("architecture %q, this host is %q", c.Architecture, runtime.GOARCH)
	case c.RootFS.Type != "layers" || len(c.RootFS.DiffIDs) != 1 || c.RootFS.DiffIDs[0] != layer.Digest:
		err = errors.New("rootfs.diff_ids do not match the layer")
	}
	if err != nil {
		return fmt.Errorf("reading config %s: %w", desc.Digest, err)
	}
	return nil
}

// readJSONBlob reads the small blob with the given digest and verifies it.
func (s *Store) readJSONBlob(d digest.Digest) ([]byte, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJSONBlob+1))
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", d, err)
	}
	if len(b) > maxJSONBlob {
		return nil, fmt.Errorf("reading blob %s: larger than %d bytes", d, maxJSONBlob)
	}
	if got := digest.FromBytes(b); got != d {
		return nil, &DigestMismatchError{Want: d, Got: got}
	}
	return b, nil
}

// blobPath returns the path of a blob, refusing digests that are not sha256:<hex> (and so any path tricks).
func (s *Store) blobPath(d digest.Digest) (string, error) {
	if !valid(d) {
		return "", fmt.Errorf("invalid blob digest %q", d)
	}
	return filepath.Join(s.dir, "blobs", string(d.Algorithm()), d.Encoded()), nil
}

// valid reports whether d is a digest this store names blobs by: sha256, 64 lower-case hex digits.
func valid(d digest.Digest) bool {
	_, err := content.Parse(string(d))
	return err == nil
}

func (s *Store) readIndex() (v1.Index, error) {
	var index v1.Index
	f, err := os.Open(filepath.Join(s.dir, v1.ImageIndexFile))
	if err != nil {
		return index, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJSONBlob+1))
	if err != nil {
		return index, fmt.Errorf("reading %s: %w", v1.ImageIndexFile, err)
	}
	if len(b) > maxJSONBlob {
		return index, fmt.Errorf("reading %s: larger than %d bytes", v1.ImageIndexFile, maxJSONBlob)
	}
	if err := json.Unmarshal(b, &index); err != nil {
		return index, fmt.Errorf("reading %s: %w", v1.ImageIndexFile, err)
	}
	if index.SchemaVersion != 2 {
		return index, fmt.Errorf("reading %s: schemaVersion %d, want 2", v1.ImageIndexFile, index.SchemaVersion)
	}
	for _, desc := range index.Manifests {
		if !valid(desc.Digest) {
			return index, fmt.Errorf("reading %s: invalid manifest digest %q", v1.ImageIndexFile, desc.Digest)
		}
	}
	return index, nil
}

func (s *Store) writeIndex(index v1.Index) error {
	b, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return err
	}
	return durable.Replace(filepath.Join(s.dir, v1.ImageIndexFile), append(b, '\n'), 0o644)
}

// lock takes an exclusive flock on the store directory, which serialises changes to index.json between
// goroutines (each call opens its own descriptor) and processes.
func (s *Store) lock() (unlock func(), err error) {
	d, err := os.Open(s.dir)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(d.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("locking %q: %w", s.dir, err)
	}
	return func() { d.Close() }, nil // closing the last descriptor releases the lock
}

func (s *Store) writeJSON(ctx context.Context, mediaType string, v any) (v1.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return s.writeBlob(ctx, mediaType, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// writeBlob stores what write writes as a blob and returns its descriptor. The blob is streamed to a temporary
// file in the blobs directory and hashed on the way, flushed, and renamed into place; the directory is then
// flushed too, so a blob that is named is a blob that is stored. A blob already present is replaced by the new,
// identical copy, which also repairs one that was damaged.
func (s *Store) writeBlob(ctx context.Context, mediaType string, write func(io.Writer) error) (v1.Descriptor, error) {
	blobs := filepath.Join(s.dir, "blobs")
	f, err := os.CreateTemp(blobs, ".tmp-")
	if err != nil {
		return v1.Descriptor{}, err
	}
	renamed := false
	defer func() {
		f.Close()
		if !renamed {
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(f, h)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	if err := write(bw); err != nil {
		return v1.Descriptor{}, err
	}
	if err := bw.Flush(); err != nil {
		return v1.Descriptor{}, err
	}
	if err := ctx.Err(); err != nil {
		return v1.Descriptor{}, err
	}
	if err := f.Chmod(0o444); err != nil {
		return v1.Descriptor{}, err
	}
	if err := durable.Sync(f); err != nil {
		return v1.Descriptor{}, err
	}
	if err := f.Close(); err != nil {
		return v1.Descriptor{}, err
	}
	d := digest.NewDigest(digest.SHA256, h)
	p, err := s.blobPath(d)
	if err != nil {
		return v1.Descriptor{}, err
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return v1.Descriptor{}, err
	}
	renamed = true
	if err := durable.SyncDir(filepath.Dir(p)); err != nil {
		return v1.Descriptor{}, err
	}
	desc := v1.Descriptor{MediaType: mediaType, Digest: d, Size: cw.n}
	return desc, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
