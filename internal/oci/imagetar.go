package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ssf-dev/ssf/internal/archive"
	"io"
	"path"
	"strings"
	"unicode"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/content"
)

// Bounds on what is read from an image layout tarball into memory. Manifests and indexes are parsed, so they are
// held whole; distribution's own limit for a manifest is 4 MiB. Blobs (configs and layers) are only hashed,
// streaming, whatever their size.
const (
	maxIndexJSON    = 1 << 20
	maxManifestSize = 4 << 20
	maxManifests    = 1024 // manifests and indexes reachable from index.json
	maxIndexDepth   = 4    // index -> index -> ... -> manifest
	// All manifests and indexes held at once: a step could otherwise make the control plane hold maxManifests
	// manifests of maxManifestSize each (4 GiB). Real multi-platform indexes are a few hundred KiB in all.
	maxManifestBytes = 16 << 20
	// Blob entries recorded per tarball. Each costs the control plane memory while the tarball is checked, and a
	// tarball of tiny distinct blobs has about one per KiB; an image reaches at most a few thousand.
	maxBlobs = 1 << 16
)

// ErrNotImage is returned by ImageInTar for a file that is not an OCI image layout tarball.
var ErrNotImage = errors.New("not an OCI image layout tarball")

// ErrBadImage is wrapped when a file is an OCI image layout tarball (it holds oci-layout and an index.json naming
// one image) but that image is not wholly and exactly in it: a blob is missing, does not hash to its name, has
// another size than its descriptor says, or the tarball has sparse entries or expands beyond its own size. The
// factory never names such an image as a subject.
var ErrBadImage = errors.New("invalid OCI image layout tarball")

// ImageTar is an OCI image layout tarball whose image the caller's own process has read and checked: every blob
// in the tarball hashes to its name, and the index.json's one image, every manifest and index it reaches, their
// configs and layers are all present with the digests and sizes their descriptors give.
type ImageTar struct {
	Image Descriptor // the one image index.json names: a manifest or an index

	r     io.ReaderAt
	blobs map[digest.Digest]tarBlob // where each blob's bytes are in the tarball
	raw   map[digest.Digest][]byte  // manifests and indexes read, by digest
	// as is the media type each of raw's digests was checked as: a document named once as an index and once as
	// a manifest is checked as both (and fails one), never skipped as already done.
	as map[digest.Digest]string
	// rawBytes is the size of raw's values together, at most maxManifestBytes.
	rawBytes int64
}

// foldKey maps every key that bytes.EqualFold (and so encoding/json's field matching) takes for k to one string:
// each rune becomes the least of its case-folding orbit, so "layers", "LAYERS" and "layerſ" (U+017F) fold alike.
func foldKey(k string) string {
	var b strings.Builder
	for _, r := range k {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// checkJSONKeys refuses JSON in which one object has two keys that are equal ignoring case: parsers disagree on
// which one counts, so the document does not mean one thing.
func checkJSONKeys(raw []byte) error {
	type frame struct {
		keys    map[string]bool // folded keys seen; nil for an array
		wantKey bool            // in an object, the next token is a key
	}
	var stack []*frame
	valueDone := func() { // a value ended: in an object, a key comes next
		if n := len(stack); n > 0 && stack[n-1].keys != nil {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("decoding JSON: %v", err)
		}
		if n := len(stack); n > 0 && stack[n-1].wantKey {
			if k, ok := tok.(string); ok {
				f := foldKey(k)
				if stack[n-1].keys[f] {
					return fmt.Errorf("key %s appears twice in one object (ignoring case): refusing JSON that parsers read differently", quoteName(k))
				}
				stack[n-1].keys[f] = true
				stack[n-1].wantKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
	}
}

// tarBlob locates a regular file's bytes in an uncompressed, non-sparse tarball.
type tarBlob struct {
	off, size int64
}

// ImageInTar reads an image layout tarball from r (size bytes) and returns the descriptor of its one image; see
// ReadImageTar.
func ImageInTar(ctx context.Context, r io.ReaderAt, size int64) (*Descriptor, error) {
	it, err := ReadImageTar(ctx, r, size)
	if err != nil {
		return nil, err
	}
	return &it.Image, nil
}

// ReadImageTar reads the tarball in r (size bytes) and, when it is an OCI image layout (it holds oci-layout and an
// index.json that names exactly one manifest or index), checks that image completely. Anything that is not a tar
// stream, a tar without both files, or a layout with zero or several images is ErrNotImage (it is then just a
// file). A layout with one image is accepted only if every blob entry hashes to its name and the image's every
// manifest, index, config and layer is in the tarball with its descriptor's digest and size; otherwise the error
// wraps ErrBadImage and names the blob. Sparse entries, and entries that together are larger than the tarball
// (an archive bomb), are ErrBadImage too. Hashing streams: memory holds only manifests and indexes.
func ReadImageTar(ctx context.Context, r io.ReaderAt, size int64) (*ImageTar, error) {
	sc, err := scanTar(ctx, r, size)
	if err != nil {
		return nil, err
	}
	if sc.layout == nil || sc.index == nil {
		return nil, ErrNotImage
	}
	var l struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(sc.layout, &l); err != nil || l.Version == "" {
		return nil, fmt.Errorf("%w: oci-layout has no imageLayoutVersion", ErrNotImage)
	}
	var idx struct {
		Manifests []Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(sc.index, &idx); err != nil {
		return nil, fmt.Errorf("%w: index.json: %v", ErrNotImage, err)
	}
	if len(idx.Manifests) != 1 {
		return nil, fmt.Errorf("%w: index.json names %d images, want 1", ErrNotImage, len(idx.Manifests))
	}
	d := idx.Manifests[0]
	if d.MediaType != ocispec.MediaTypeImageManifest && d.MediaType != ocispec.MediaTypeImageIndex {
		return nil, fmt.Errorf("%w: index.json's image is %s %s", ErrNotImage, d.MediaType, d.Digest)
	}
	// From here on the file claims to be an image: anything wrong is an error, never "just a file".
	if sc.problem != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadImage, sc.problem)
	}
	if err := checkJSONKeys(sc.index); err != nil {
		return nil, fmt.Errorf("%w: index.json: %w", ErrBadImage, err)
	}
	it := &ImageTar{
		Image: Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size},
		r:     r, blobs: sc.blobs, raw: map[digest.Digest][]byte{}, as: map[digest.Digest]string{},
	}
	if err := it.check(ctx, "index.json", it.Image, 0); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadImage, err)
	}
	return it, nil
}

// scanned is what one pass over a tarball found.
type scanned struct {
	layout, index []byte
	blobs         map[digest.Digest]tarBlob
	problem       error // the first thing that makes the tarball unusable as an image, if it is one
}

// scanTar reads the tarball once: it keeps oci-layout and index.json, hashes every blobs/sha256/<hex> entry
// against its name and records where its bytes are. It never reads a sparse entry's data (the tar reader would
// expand it), and stops hashing once the entries claim more bytes than the tarball holds.
func scanTar(ctx context.Context, r io.ReaderAt, size int64) (*scanned, error) {
	cr := &countingReader{r: io.NewSectionReader(r, 0, size)}
	tr := tar.NewReader(cr)
	sc := &scanned{blobs: map[digest.Digest]tarBlob{}}
	seen := map[string]bool{}
	problem := func(err error) {
		if sc.problem == nil {
			sc.problem = err
		}
	}
	var total int64
	buf := make([]byte, copyBufferSize)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if sc.layout != nil && sc.index != nil {
				problem(fmt.Errorf("reading the tarball: %v", err))
				break
			}
			return nil, ErrNotImage
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		// Both checks skip the entry unread: Next then passes over its physical bytes without expanding them.
		total += hdr.Size
		if total > size {
			problem(fmt.Errorf("entries up to %s add up to %d bytes, more than the tarball's own %d: refusing an archive bomb", quoteName(hdr.Name), total, size))
			continue
		}
		if archive.IsSparse(hdr) {
			problem(fmt.Errorf("entry %s is a sparse file: image tarballs with sparse entries are refused", quoteName(hdr.Name)))
			continue
		}
		clean := strings.TrimSuffix(name, "/")
		if c := path.Clean("/" + hdr.Name)[1:]; c != clean && (c == "oci-layout" || c == "index.json" || c == "blobs" || strings.HasPrefix(c, "blobs/")) {
			// "/index.json", "././index.json" or "x/../index.json" are ignored by this check but may be what
			// another tool unpacks as index.json: then the tarball would hold two images, one of them unchecked.
			problem(fmt.Errorf("entry %s is another spelling of %q: refusing a tarball that tools may read differently", quoteName(hdr.Name), c))
			continue
		}
		hexName, isBlob := strings.CutPrefix(clean, "blobs/sha256/")
		blobDigest := digest.NewDigestFromEncoded(digest.SHA256, hexName)
		if _, err := content.Parse(string(blobDigest)); isBlob && err != nil || !isBlob && strings.HasPrefix(clean, "blobs/") && clean != "blobs/sha256" {
			// Refused before it is remembered, so that seen holds only names of bounded length.
			problem(fmt.Errorf("entry %s is not a blob: only blobs/sha256/<64 lower-case hex digits> belongs under blobs/", quoteName(hdr.Name)))
			continue
		}
		if clean == "oci-layout" || clean == "index.json" || strings.HasPrefix(clean, "blobs/") {
			if seen[clean] {
				problem(fmt.Errorf("entry %s appears twice", quoteName(hdr.Name)))
				continue
			}
			if isBlob && sc.problem != nil {
				continue // the tarball is refused anyway: hash and remember nothing more
			}
			if isBlob && len(seen) > maxBlobs {
				problem(fmt.Errorf("more than %d blobs: no image needs that many, refusing the tarball", maxBlobs))
				continue
			}
			seen[clean] = true
		}
		switch {
		case clean == "oci-layout" || clean == "index.json":
			if hdr.Typeflag != tar.TypeReg {
				problem(fmt.Errorf("%s is not a regular file", clean))
				continue
			}
			b, err := io.ReadAll(io.LimitReader(tr, maxIndexJSON+1))
			if err != nil {
				return nil, ErrNotImage
			}
			if len(b) > maxIndexJSON {
				return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrNotImage, clean, maxIndexJSON)
			}
			if clean == "oci-layout" {
				sc.layout = b
			} else {
				sc.index = b
			}
		case clean == "blobs" || clean == "blobs/sha256":
			if hdr.Typeflag != tar.TypeDir {
				problem(fmt.Errorf("entry %s is not a directory", quoteName(hdr.Name)))
			}
		case isBlob:
			if hdr.Typeflag != tar.TypeReg {
				problem(fmt.Errorf("blob %s is not a regular file (tar type %q)", blobDigest, hdr.Typeflag))
				continue
			}
			off := cr.n // Next leaves the reader at the entry's first data byte
			h := sha256.New()
			n, err := archive.CopyContext(ctx, h, tr, buf)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				problem(fmt.Errorf("reading blob %s: %v", blobDigest, err))
				continue
			}
			if n != hdr.Size {
				problem(fmt.Errorf("blob %s: read %d bytes, its entry says %d", blobDigest, n, hdr.Size))
				continue
			}
			if got := digest.NewDigest(digest.SHA256, h); got != blobDigest {
				problem(fmt.Errorf("blob %s does not match its name: its bytes hash to %s", blobDigest, got))
				continue
			}
			sc.blobs[blobDigest] = tarBlob{off: off, size: hdr.Size}
		}
	}
	return sc, nil
}

// quoteName quotes an entry's name for a message, cut short: a PAX record can make a name a megabyte long.
func quoteName(name string) string {
	const max = 200
	if len(name) > max {
		return fmt.Sprintf("%q... (%d bytes)", name[:max], len(name))
	}
	return fmt.Sprintf("%q", name)
}

// countingReader counts the bytes read through it, which is the offset in the tarball.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// blob checks that the blob d names is in the tarball with d's size; from is what named it, for the message.
func (it *ImageTar) blob(from string, d Descriptor) (tarBlob, error) {
	if _, err := content.Parse(string(d.Digest)); err != nil {
		return tarBlob{}, fmt.Errorf("%s names %s %q: only sha256 digests are supported", from, d.MediaType, d.Digest)
	}
	b, ok := it.blobs[d.Digest]
	if !ok {
		return tarBlob{}, fmt.Errorf("%s names %s %s, which is not in the tarball", from, d.MediaType, d.Digest)
	}
	if b.size != d.Size {
		return tarBlob{}, fmt.Errorf("%s names %s %s with size %d, but the blob has %d bytes", from, d.MediaType, d.Digest, d.Size, b.size)
	}
	return b, nil
}

// check verifies the manifest or index d and everything it reaches.
func (it *ImageTar) check(ctx context.Context, from string, d Descriptor, depth int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if depth > maxIndexDepth {
		return fmt.Errorf("%s: indexes nested more than %d deep", from, maxIndexDepth)
	}
	if len(it.raw) >= maxManifests {
		return fmt.Errorf("more than %d manifests", maxManifests)
	}
	b, err := it.blob(from, d)
	if err != nil {
		return err
	}
	if as, done := it.as[d.Digest]; done {
		if !sameKind(as, d.MediaType) {
			return fmt.Errorf("%s names %s as %s, but it was named %s elsewhere", from, d.Digest, d.MediaType, as)
		}
		return nil
	}
	if b.size > maxManifestSize {
		return fmt.Errorf("%s %s is larger than %d bytes", d.MediaType, d.Digest, maxManifestSize)
	}
	if it.rawBytes+b.size > maxManifestBytes {
		return fmt.Errorf("%s %s: the manifests and indexes together are larger than %d bytes", d.MediaType, d.Digest, maxManifestBytes)
	}
	raw := make([]byte, b.size)
	if _, err := it.r.ReadAt(raw, b.off); err != nil {
		return fmt.Errorf("reading %s: %v", d.Digest, err)
	}
	if digest.FromBytes(raw) != d.Digest {
		return fmt.Errorf("%s changed while being read", d.Digest) // the file changed between the two reads
	}
	it.raw[d.Digest] = raw
	it.as[d.Digest] = d.MediaType
	it.rawBytes += b.size
	var m struct {
		MediaType string       `json:"mediaType"`
		Config    *Descriptor  `json:"config"`
		Layers    []Descriptor `json:"layers"`
		Manifests []Descriptor `json:"manifests"`
		Subject   *Descriptor  `json:"subject"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("decoding %s %s: %v", d.MediaType, d.Digest, err)
	}
	// A registry or client that reads JSON keys case-sensitively, or keeps the first of two equal keys, would
	// see other layers or children than the ones checked here (encoding/json folds case and keeps the last).
	// After Unmarshal, which has refused nesting deeper than encoding/json's limit.
	if err := checkJSONKeys(raw); err != nil {
		return fmt.Errorf("%s %s: %w", d.MediaType, d.Digest, err)
	}
	if m.MediaType != "" && m.MediaType != d.MediaType {
		return fmt.Errorf("%s names %s as %s, but it says it is %s", from, d.Digest, d.MediaType, m.MediaType)
	}
	if m.Subject != nil {
		// Pushed, it would be listed among the referrers of another artifact (where verifiers look for signatures
		// and provenance): a step must not have the publisher attach things to artifacts it did not build.
		return fmt.Errorf("%s %s has a subject (%s): an image output cannot refer to another artifact", d.MediaType, d.Digest, m.Subject.Digest)
	}
	self := "manifest " + string(d.Digest)
	switch d.MediaType {
	case ocispec.MediaTypeImageManifest, content.DockerManifestMediaType:
		if m.Config == nil || m.Manifests != nil {
			return fmt.Errorf("%s is not an image manifest", self)
		}
		if _, err := it.blob(self+" (config)", *m.Config); err != nil {
			return err
		}
		for _, l := range m.Layers {
			if _, err := it.blob(self+" (layer)", l); err != nil {
				return err
			}
		}
	case ocispec.MediaTypeImageIndex, content.DockerListMediaType:
		if m.Config != nil || m.Layers != nil {
			return fmt.Errorf("index %s is not an image index", d.Digest)
		}
		for _, c := range m.Manifests {
			switch c.MediaType {
			case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex, content.DockerManifestMediaType, content.DockerListMediaType:
			default:
				return fmt.Errorf("index %s names %s %s: only OCI and Docker v2 manifests and indexes are supported", d.Digest, c.MediaType, c.Digest)
			}
			if err := it.check(ctx, "index "+string(d.Digest), c, depth+1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%s names %s %s: want an OCI manifest or index", from, d.MediaType, d.Digest)
	}
	return nil
}

// sameKind reports whether two media types are the same, or are both manifests or both indexes: the Docker and
// OCI types are read alike.
func sameKind(a, b string) bool {
	isIndex := func(t string) bool { return t == ocispec.MediaTypeImageIndex || t == content.DockerListMediaType }
	return a == b || isIndex(a) == isIndex(b)
}

// open returns a reader of the checked blob with the given digest.
func (it *ImageTar) open(d digest.Digest) (io.ReadCloser, error) {
	b, ok := it.blobs[d]
	if !ok {
		return nil, fmt.Errorf("blob %s is not in the image tarball", d)
	}
	return io.NopCloser(io.NewSectionReader(it.r, b.off, b.size)), nil
}

// Pushing: the checked image is served to go-containerregistry's pusher straight from the tarball, blob by blob,
// so publishing never unpacks an image onto disk.

// taggable returns the image or index with digest d (checked by ReadImageTar), ready for remote.Push.
func (it *ImageTar) taggable(d Descriptor) (remote.Taggable, error) {
	if d.MediaType == ocispec.MediaTypeImageIndex || d.MediaType == content.DockerListMediaType {
		return &tarIndex{it: it, desc: d}, nil
	}
	return it.image(d)
}

func (it *ImageTar) image(d Descriptor) (v1.Image, error) {
	raw, ok := it.raw[d.Digest]
	if !ok {
		return nil, fmt.Errorf("manifest %s was not checked", d.Digest)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding manifest %s: %w", d.Digest, err)
	}
	return partial.CompressedToImage(&tarImage{it: it, raw: raw, mediaType: d.MediaType, config: m.Config})
}

// tarImage is the core of a v1.Image whose manifest and blobs are in an ImageTar.
type tarImage struct {
	it        *ImageTar
	raw       []byte
	mediaType string
	config    Descriptor
}

func (t *tarImage) RawManifest() ([]byte, error)        { return t.raw, nil }
func (t *tarImage) MediaType() (types.MediaType, error) { return types.MediaType(t.mediaType), nil }
func (t *tarImage) ConfigLayer() (v1.Layer, error) {
	return partial.CompressedToLayer(&tarLayer{t.it, t.config})
}
func (t *tarImage) RawConfigFile() ([]byte, error) {
	rc, err := t.it.open(t.config.Digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, maxManifestSize))
}
func (t *tarImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h.String() == string(t.config.Digest) {
		return &tarLayer{t.it, t.config}, nil
	}
	var m manifest
	if err := json.Unmarshal(t.raw, &m); err != nil {
		return nil, err
	}
	for _, l := range m.Layers {
		if string(l.Digest) == h.String() {
			return &tarLayer{t.it, l}, nil
		}
	}
	return nil, fmt.Errorf("layer %s is not in the manifest", h)
}

// tarLayer is a blob of an ImageTar.
type tarLayer struct {
	it   *ImageTar
	desc Descriptor
}

func (l *tarLayer) Digest() (v1.Hash, error) { return v1.NewHash(string(l.desc.Digest)) }
func (l *tarLayer) Size() (int64, error)     { return l.desc.Size, nil }
func (l *tarLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.desc.MediaType), nil
}
func (l *tarLayer) Compressed() (io.ReadCloser, error) { return l.it.open(l.desc.Digest) }

// tarIndex is a v1.ImageIndex whose manifest and children are in an ImageTar.
type tarIndex struct {
	it   *ImageTar
	desc Descriptor
}

var _ v1.ImageIndex = (*tarIndex)(nil)

func (x *tarIndex) MediaType() (types.MediaType, error) {
	return types.MediaType(x.desc.MediaType), nil
}
func (x *tarIndex) Digest() (v1.Hash, error) { return v1.NewHash(string(x.desc.Digest)) }
func (x *tarIndex) Size() (int64, error)     { return x.desc.Size, nil }
func (x *tarIndex) RawManifest() ([]byte, error) {
	raw, ok := x.it.raw[x.desc.Digest]
	if !ok {
		return nil, fmt.Errorf("index %s was not checked", x.desc.Digest)
	}
	return raw, nil
}
func (x *tarIndex) IndexManifest() (*v1.IndexManifest, error) {
	raw, err := x.RawManifest()
	if err != nil {
		return nil, err
	}
	return v1.ParseIndexManifest(bytes.NewReader(raw))
}
func (x *tarIndex) child(h v1.Hash) (Descriptor, error) {
	im, err := x.IndexManifest()
	if err != nil {
		return Descriptor{}, err
	}
	for _, c := range im.Manifests {
		if c.Digest == h {
			return Descriptor{MediaType: string(c.MediaType), Digest: digest.Digest(c.Digest.String()), Size: c.Size}, nil
		}
	}
	return Descriptor{}, fmt.Errorf("%s is not in index %s", h, x.desc.Digest)
}
func (x *tarIndex) Image(h v1.Hash) (v1.Image, error) {
	d, err := x.child(h)
	if err != nil {
		return nil, err
	}
	return x.it.image(d)
}
func (x *tarIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	d, err := x.child(h)
	if err != nil {
		return nil, err
	}
	return &tarIndex{it: x.it, desc: d}, nil
}
