package builder

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/archive"
	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
)

// Bounds on an image brought in from a registry or an image layout. Manifests and configs are held in memory
// (maxJSONBlob, as for the store's own); a layer is streamed, but its compressed size and what it expands to
// are bounded so that a hostile image cannot fill the disk.
const maxLayerSize = 8 << 30 // compressed bytes of the one layer

// maxUnpackedSize bounds the bytes of the layer's tar stream once decompressed, and the bytes of the unpacked
// tree's files counted once per name, which is what repacking it writes (a variable for tests).
var maxUnpackedSize int64 = 32 << 30

// ErrBadInput is wrapped by errors that are the caller's to fix: an invalid name, a reference that is not pinned
// by digest, an image that cannot be a builder (no /bin/sh, several layers, another platform).
// Such errors match it with errors.Is without saying so in their text.
var ErrBadInput = errors.New("bad builder input")

// ErrNoShell is wrapped when a root file system has no /bin/sh, which every step runs as. It is bad input.
var ErrNoShell = errors.New("no /bin/sh in the root file system (steps run as /bin/sh -e -c SCRIPT)")

// badInput is an error that is the caller's to fix: it matches ErrBadInput.
type badInput struct{ err error }

func (e *badInput) Error() string        { return e.err.Error() }
func (e *badInput) Unwrap() error        { return e.err }
func (e *badInput) Is(target error) bool { return target == ErrBadInput }

func badf(format string, args ...any) error { return &badInput{fmt.Errorf(format, args...)} }

// CheckName reports whether name can name a builder image.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return badf("invalid builder name %q: want lower-case letters and digits separated by '.', '_', '-' or '/'", name)
	}
	return nil
}

// CheckRootfs checks that the tree under dir can be a builder's root file system: it has /bin/sh (a file or a
// symlink; a symlinked /bin inside the tree is followed, nothing outside it is).
func CheckRootfs(dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	info, err := root.Lstat("bin/sh")
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !strings.Contains(err.Error(), "escapes") {
		return fmt.Errorf("checking %q for /bin/sh: %w", dir, err)
	}
	if err != nil || info.IsDir() {
		return badf("%q: %w", dir, ErrNoShell)
	}
	return nil
}

// source is where an OCI image's manifests and blobs come from. Nothing it returns is trusted: what is read is
// bounded and hashed against the digest it was asked for.
type source interface {
	manifest(ctx context.Context, d digest.Digest) (io.ReadCloser, error)
	blob(ctx context.Context, d digest.Digest) (io.ReadCloser, error)
}

// ParsePullRef parses REGISTRY/REPO@sha256:HEX. A tag, with or without a digest, is refused: a builder is pinned
// by digest, and a tag beside it would be ignored silently.
func ParsePullRef(s string) (name.Digest, error) {
	repo, dig, ok := strings.Cut(s, "@")
	if !ok {
		return name.Digest{}, badf("%q has no digest: builders are pinned by digest, give REGISTRY/REPO@sha256:HEX "+
			"(crane digest %s prints it)", s, s)
	}
	if _, err := content.Parse(dig); err != nil {
		return name.Digest{}, badf("%q: digest %q: want sha256: and 64 lower-case hex digits", s, dig)
	}
	if i := strings.LastIndex(repo, "/"); strings.Contains(repo[i+1:], ":") {
		return name.Digest{}, badf("%q has a tag and a digest: give REGISTRY/REPO@sha256:HEX only", s)
	}
	ref, err := name.NewDigest(s, name.StrictValidation)
	if err != nil {
		return name.Digest{}, badf("%q: %w", s, err)
	}
	return ref, nil
}

// DefaultName returns the builder name a pulled image gets when none is given: the repository's last path element.
func DefaultName(ref name.Digest) string {
	r := ref.Context().RepositoryStr()
	return r[strings.LastIndex(r, "/")+1:]
}

// Pulled is an image brought into the store from elsewhere.
type Pulled struct {
	Image
	Source   string        // where it came from: REGISTRY/REPO@sha256:HEX, or the layout's path
	Manifest digest.Digest // the platform manifest that was unpacked (the source digest's own, or its index's child)
}

// Pull fetches the image ref pins from its registry (through oci's registry client: credentials from the Docker
// config, plain HTTP only to loopback), verifies every blob against its descriptor, and stores its root file
// system as a builder image called name. See importImage for what is checked and how it is stored.
func (s *Store) Pull(ctx context.Context, ref name.Digest, name string, opts ...oci.RegistryOption) (Pulled, error) {
	src := registrySource{repo: ref.Context(), opts: oci.RemoteOptions(ctx, opts...), regOpts: opts}
	p, err := s.importImage(ctx, src, digest.Digest(ref.DigestStr()), "", name, ref.String())
	if err != nil {
		return Pulled{}, fmt.Errorf("pulling builder image %q: %w", ref.String(), err)
	}
	p.Source = ref.String()
	return p, nil
}

// ImportLayout stores the one image of the OCI image layout at path (a directory, or a tarball of one) as a
// builder image called name, checking it as Pull does.
func (s *Store) ImportLayout(ctx context.Context, path, name string) (Pulled, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Pulled{}, err
	}
	p, err := s.importLayout(ctx, path, name, abs)
	if err != nil {
		return Pulled{}, fmt.Errorf("importing builder image %q from image layout %q: %w", name, path, err)
	}
	p.Source = path
	return p, nil
}

func (s *Store) importLayout(ctx context.Context, path, name, source string) (Pulled, error) {
	info, err := os.Stat(path)
	if err != nil {
		return Pulled{}, err
	}
	if info.IsDir() {
		root, err := os.OpenRoot(path)
		if err != nil {
			return Pulled{}, err
		}
		defer root.Close()
		b, err := oci.ReadRegular(root, v1.ImageIndexFile, maxJSONBlob)
		if err != nil {
			return Pulled{}, badf("reading %s: %w", v1.ImageIndexFile, err)
		}
		var index v1.Index
		if err := json.Unmarshal(b, &index); err != nil {
			return Pulled{}, badf("reading %s: %w", v1.ImageIndexFile, err)
		}
		if len(index.Manifests) != 1 {
			return Pulled{}, badf("%s names %d images, want 1", v1.ImageIndexFile, len(index.Manifests))
		}
		top := index.Manifests[0]
		return s.importImage(ctx, layoutSource{root}, top.Digest, top.MediaType, name, source)
	}
	f, err := os.Open(path)
	if err != nil {
		return Pulled{}, err
	}
	defer f.Close()
	it, err := oci.ReadImageTar(ctx, f, info.Size())
	if err != nil {
		return Pulled{}, badf("%w", err)
	}
	return s.importImage(ctx, tarSource{it}, it.Image.Digest, it.Image.MediaType, name, source)
}

// importImage reads the manifest (or index, resolved to linux and this host's architecture) top names from src,
// its config and its one layer, each bounded and hashed as it is read, unpacks the layer with archive.Extract's
// rules (nothing outside the tree, no device nodes, no sparse files) and checks the tree has /bin/sh. The tree
// is then packed by Import like any other, so a pulled builder is stored, listed, unpacked and used by builds
// exactly as an imported one: its digest is the repacked image's, which depends only on the tree.
func (s *Store) importImage(ctx context.Context, src source, top digest.Digest, mediaType, name, from string) (Pulled, error) {
	if err := CheckName(name); err != nil {
		return Pulled{}, err
	}
	raw, err := readVerified(ctx, src.manifest, top, -1, maxJSONBlob)
	if err != nil {
		return Pulled{}, fmt.Errorf("reading manifest: %w", err)
	}
	var m struct {
		MediaType string          `json:"mediaType"`
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return Pulled{}, fmt.Errorf("decoding manifest %s: %w", top, err)
	}
	if mediaType == "" {
		mediaType = m.MediaType
	}
	manifestDigest := top
	if isIndex(mediaType) || (mediaType == "" && m.Manifests != nil) {
		child, err := pickPlatform(top, m.Manifests)
		if err != nil {
			return Pulled{}, err
		}
		manifestDigest = child.Digest
		raw, err = readVerified(ctx, src.manifest, child.Digest, child.Size, maxJSONBlob)
		if err != nil {
			return Pulled{}, fmt.Errorf("reading manifest: %w", err)
		}
		m.Config, m.Layers, m.Manifests = nil, nil, nil
		if err := json.Unmarshal(raw, &m); err != nil {
			return Pulled{}, fmt.Errorf("decoding manifest %s: %w", child.Digest, err)
		}
	}
	if m.Config == nil || m.Manifests != nil {
		return Pulled{}, badf("%s is not an image manifest", manifestDigest)
	}
	if len(m.Layers) != 1 {
		return Pulled{}, badf("image %s has %d layers; a builder is one layer: flatten it first "+
			"(crane flatten REF) and pull the flattened digest", manifestDigest, len(m.Layers))
	}
	layer := m.Layers[0]
	gz, err := layerCompression(layer)
	if err != nil {
		return Pulled{}, err
	}
	if layer.Size < 0 || layer.Size > maxLayerSize {
		return Pulled{}, fmt.Errorf("layer %s: size %d: refusing a layer larger than %d bytes", layer.Digest, layer.Size, int64(maxLayerSize))
	}
	diffID, err := readImageConfig(ctx, src, *m.Config)
	if err != nil {
		return Pulled{}, err
	}
	tmp, err := os.MkdirTemp(s.dir, ".unpack-")
	if err != nil {
		return Pulled{}, err
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "rootfs")
	if err := unpackLayer(ctx, src, layer, gz, diffID, tree); err != nil {
		return Pulled{}, err
	}
	if err := CheckRootfs(tree); err != nil {
		return Pulled{}, badf("image %s: %w", manifestDigest, ErrNoShell)
	}
	if err := checkTreeSize(ctx, tree); err != nil {
		return Pulled{}, fmt.Errorf("image %s: %w", manifestDigest, err)
	}
	img, err := s.importTree(ctx, tree, name, from+" manifest "+string(manifestDigest))
	if err != nil {
		return Pulled{}, err
	}
	return Pulled{Image: img, Manifest: manifestDigest}, nil
}

func isIndex(mediaType string) bool {
	return mediaType == v1.MediaTypeImageIndex || mediaType == content.DockerListMediaType
}

// pickPlatform returns the index's first manifest for linux on this host's architecture.
func pickPlatform(index digest.Digest, children []v1.Descriptor) (v1.Descriptor, error) {
	var have []string
	for _, c := range children {
		if c.Platform == nil {
			continue
		}
		p := c.Platform.OS + "/" + c.Platform.Architecture
		if c.Platform.Variant != "" {
			p += "/" + c.Platform.Variant
		}
		have = append(have, p)
		if c.Platform.OS == "linux" && c.Platform.Architecture == runtime.GOARCH &&
			(c.Platform.Variant == "" || runtime.GOARCH == "arm64" && c.Platform.Variant == "v8") {
			if isIndex(c.MediaType) || !(c.MediaType == v1.MediaTypeImageManifest || c.MediaType == content.DockerManifestMediaType) {
				return v1.Descriptor{}, badf("index %s: linux/%s entry is %s, want an image manifest", index, runtime.GOARCH, c.MediaType)
			}
			return c, nil
		}
	}
	return v1.Descriptor{}, badf("index %s has no image for linux/%s (it has: %s)", index, runtime.GOARCH, strings.Join(have, ", "))
}

// layerCompression reports whether a layer is gzip-compressed, refusing media types a builder cannot use.
func layerCompression(l v1.Descriptor) (gzipped bool, err error) {
	switch l.MediaType {
	case v1.MediaTypeImageLayer, content.DockerLayerMediaType:
		return false, nil
	case v1.MediaTypeImageLayerGzip, content.DockerLayerGzipMediaType:
		return true, nil
	}
	return false, badf("layer %s has media type %q: only tar and tar+gzip layers are supported", l.Digest, l.MediaType)
}

// readImageConfig reads the config desc names and returns the diff ID of the image's one layer, checking that the
// image is for linux on this host's architecture.
func readImageConfig(ctx context.Context, src source, desc v1.Descriptor) (digest.Digest, error) {
	switch desc.MediaType {
	case v1.MediaTypeImageConfig, content.DockerConfigMediaType:
	default:
		return "", badf("config %s has media type %q, want an image config", desc.Digest, desc.MediaType)
	}
	b, err := readVerified(ctx, src.blob, desc.Digest, desc.Size, maxJSONBlob)
	if err != nil {
		return "", fmt.Errorf("reading config: %w", err)
	}
	var c v1.Image
	if err := json.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("decoding config %s: %w", desc.Digest, err)
	}
	switch {
	case c.OS != "linux" || c.Architecture != runtime.GOARCH:
		return "", badf("config %s: image is for %s/%s, this host is linux/%s", desc.Digest, c.OS, c.Architecture, runtime.GOARCH)
	case len(c.RootFS.DiffIDs) != 1 || !valid(c.RootFS.DiffIDs[0]):
		return "", fmt.Errorf("config %s: rootfs.diff_ids has %d entries, want one sha256 digest", desc.Digest, len(c.RootFS.DiffIDs))
	}
	return c.RootFS.DiffIDs[0], nil
}

// readVerified reads the blob d whole, refusing more than limit bytes, a size other than size (unless size is
// -1) and bytes that do not hash to d.
func readVerified(ctx context.Context, open func(context.Context, digest.Digest) (io.ReadCloser, error), d digest.Digest, size, limit int64) ([]byte, error) {
	if !valid(d) {
		return nil, badf("invalid digest %q: want sha256: and 64 lower-case hex digits", d)
	}
	if size > limit {
		return nil, fmt.Errorf("%s: size %d: refusing more than %d bytes", d, size, limit)
	}
	rc, err := open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", d, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: refusing more than %d bytes", d, limit)
	}
	if got := digest.FromBytes(b); got != d {
		return nil, &DigestMismatchError{Want: d, Got: got}
	}
	if size >= 0 && int64(len(b)) != size {
		return nil, fmt.Errorf("%s: %d bytes, its descriptor says %d", d, len(b), size)
	}
	return b, nil
}

// unpackLayer extracts the layer into dest (which must not exist) in one pass, hashing the blob as it is read
// and its tar stream as it is decompressed. A blob of another size or digest than its descriptor's, or a tar
// stream that does not hash to the config's diff ID, is an error, reported before the extraction error it may have
// caused; dest is then the caller's to remove.
func unpackLayer(ctx context.Context, src source, layer v1.Descriptor, gzipped bool, diffID digest.Digest, dest string) error {
	rc, err := src.blob(ctx, layer.Digest)
	if err != nil {
		return fmt.Errorf("reading layer %s: %w", layer.Digest, err)
	}
	defer rc.Close()
	h := sha256.New()
	blob := io.TeeReader(io.LimitReader(rc, layer.Size+1), h)
	var stream io.Reader = blob
	var extractErr error
	if gzipped {
		zr, err := gzip.NewReader(blob)
		if err != nil {
			extractErr = fmt.Errorf("decompressing: %w", err)
		} else {
			defer zr.Close()
			stream = zr
		}
	}
	dh := sha256.New()
	bounded := &boundedReader{r: stream, left: maxUnpackedSize}
	tarStream := io.TeeReader(bounded, dh)
	if extractErr == nil {
		extractErr = archive.Extract(ctx, tarStream, dest, archive.ExtractOptions{})
		if extractErr == nil {
			// The tar stream's padding: the diff ID covers all of it.
			_, extractErr = io.Copy(io.Discard, tarStream)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, blob); err != nil {
		return fmt.Errorf("reading layer %s: %w", layer.Digest, err)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != layer.Digest {
		return &DigestMismatchError{Want: layer.Digest, Got: got}
	}
	if extractErr != nil {
		return fmt.Errorf("extracting layer %s: %w", layer.Digest, extractErr)
	}
	if got := digest.NewDigest(digest.SHA256, dh); got != diffID {
		return fmt.Errorf("layer %s: its tar stream hashes to %s, the config's diff ID is %s", layer.Digest, got, diffID)
	}
	return nil
}

// checkTreeSize fails when the regular files under dir, counted once per name, come to more than
// maxUnpackedSize bytes. The tar stream is bounded as it is read, but a hard link costs one header there and a
// whole copy of its file once the tree is repacked (archive.WriteTree writes every name as a file of its own), so
// a few kilobytes of links to one large file would otherwise fill the disk.
func checkTreeSize(ctx context.Context, dir string) error {
	var total int64
	return filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if total += info.Size(); total > maxUnpackedSize {
			return fmt.Errorf("its files come to more than %d bytes (a hard link counts as a copy of its file, "+
				"as the builder stores it): refusing it", maxUnpackedSize)
		}
		return nil
	})
}

// boundedReader fails once more than left bytes have been read through it: a gzip layer of a few megabytes can
// expand to terabytes.
type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("layer expands to more than %d bytes: refusing it", maxUnpackedSize)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// registrySource reads from a registry repository by digest.
type registrySource struct {
	repo    name.Repository
	opts    []remote.Option
	regOpts []oci.RegistryOption
}

// manifest reads at most maxJSONBlob bytes and one more, so that readVerified sees an oversized manifest as such.
func (r registrySource) manifest(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	b, err := oci.GetManifest(ctx, r.repo.Digest(string(d)), maxJSONBlob+1, r.regOpts...)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (r registrySource) blob(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	l, err := remote.Layer(r.repo.Digest(string(d)), r.opts...)
	if err != nil {
		return nil, err
	}
	return l.Compressed()
}

// layoutSource reads the blobs of an image layout directory, as regular files only (no symlink on the way).
type layoutSource struct{ root *os.Root }

func (l layoutSource) manifest(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	return l.blob(ctx, d)
}

func (l layoutSource) blob(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	if !valid(d) {
		return nil, fmt.Errorf("invalid blob digest %q", d)
	}
	return oci.OpenRegular(l.root, filepath.Join("blobs", "sha256", d.Encoded()))
}

// tarSource reads the blobs of an image layout tarball that oci.ReadImageTar checked.
type tarSource struct{ it *oci.ImageTar }

func (t tarSource) manifest(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	return t.blob(ctx, d)
}

func (t tarSource) blob(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	return t.it.Open(d)
}

var (
	_ source = registrySource{}
	_ source = layoutSource{}
	_ source = tarSource{}
)
