package oci

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ssf-dev/ssf/internal/archive"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/content"
)

// Names of the provenance subjects that are OCI manifests rather than output files. Both contain "//", which no
// output path can (outputs are clean relative paths), so they never collide with an output's name.
const (
	ArtifactSubject    = "oci://artifact"
	ImageSubjectPrefix = "oci://image/"
)

// emptyJSON is the OCI empty descriptor's content, `{}`.
var emptyJSON = []byte("{}")

// Descriptor is an OCI content descriptor. ssf writes its manifests from these types, not from a library's, so
// that the bytes (and so the digest recorded in provenance at build time) stay the same whatever library version
// publishes them later.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// manifest is an OCI image manifest (image-spec v1.1), fields in the spec's order.
type manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        Descriptor        `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Subject       *Descriptor       `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

func emptyDescriptor() Descriptor {
	return Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: digest.FromBytes(emptyJSON), Size: int64(len(emptyJSON))}
}

// File is one output file of a build as it goes into an artifact: its path relative to the output directory,
// its sha256 digest and size.
type File struct {
	Path   string
	Digest digest.Digest
	Size   int64
}

// ArtifactManifest returns the manifest of the OCI artifact holding files, a pure function of their paths,
// digests and sizes: artifactType content.ArtifactType, the empty config, one layer per file in path order (media type
// content.FileMediaType, annotation org.opencontainers.image.title = the path, which `oras pull` restores), and no
// annotations or timestamps. With no files its one layer is the empty descriptor, as image-spec asks.
func ArtifactManifest(files []File) ([]byte, error) {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	m := manifest{
		SchemaVersion: 2, MediaType: ocispec.MediaTypeImageManifest, ArtifactType: content.ArtifactType,
		Config: emptyDescriptor(), Layers: []Descriptor{},
	}
	for i, f := range sorted {
		if err := checkPath(f.Path); err != nil {
			return nil, err
		}
		if i > 0 && sorted[i-1].Path == f.Path {
			return nil, fmt.Errorf("artifact manifest: file %q listed twice", f.Path)
		}
		if _, err := content.Parse(string(f.Digest)); err != nil || f.Size < 0 {
			return nil, fmt.Errorf("artifact manifest: file %q: bad digest %q or size %d", f.Path, f.Digest, f.Size)
		}
		m.Layers = append(m.Layers, Descriptor{
			MediaType: content.FileMediaType, Digest: f.Digest, Size: f.Size,
			Annotations: map[string]string{ocispec.AnnotationTitle: f.Path},
		})
	}
	if len(m.Layers) == 0 {
		m.Layers = append(m.Layers, emptyDescriptor())
	}
	return json.Marshal(m)
}

// Subject is a provenance subject that is an OCI manifest: ArtifactSubject or ImageSubjectPrefix + output path.
type Subject struct {
	Name   string
	Digest digest.Digest // of the manifest
	Size   int64         // of the manifest
}

// BuildSubjects returns the provenance subjects that let a build be published and verified in a registry: the
// artifact manifest of all the files (see ArtifactManifest), and, for each file that is an OCI image layout
// tarball (see ReadImageTar), that image's manifest: named only when every manifest, config and layer of it is in
// the tarball and hashes to its descriptor, otherwise the error wraps ErrBadImage and names the output and the
// blob. root is the output directory; files are the outputs with the digests and sizes the control plane computed
// when it collected them, so nothing is hashed twice. Every file must be a regular file beneath root reached
// without a symlink. It stops when ctx is done (hashing an image's blobs takes a while).
func BuildSubjects(ctx context.Context, root string, files []File) ([]Subject, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var images []Subject
	for _, f := range files {
		it, file, err := imageInRoot(ctx, r, f.Path)
		if err != nil {
			return nil, err
		}
		if it != nil {
			file.Close()
			img := it.Image
			images = append(images, Subject{Name: ImageSubjectPrefix + f.Path, Digest: img.Digest, Size: img.Size})
		}
	}
	raw, err := ArtifactManifest(files)
	if err != nil {
		return nil, err
	}
	return append([]Subject{{Name: ArtifactSubject, Digest: digest.FromBytes(raw), Size: int64(len(raw))}}, images...), nil
}

// hashRegular hashes the regular file rel beneath r, refusing a symlink anywhere on the way.
func hashRegular(ctx context.Context, r *os.Root, rel string) (File, error) {
	f, err := OpenRegular(r, rel)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := archive.CopyContext(ctx, h, f, make([]byte, copyBufferSize))
	if err != nil {
		return File{}, fmt.Errorf("hashing %q: %w", rel, err)
	}
	return File{Path: rel, Digest: digest.NewDigest(digest.SHA256, h), Size: n}, nil
}

// OpenRegular opens the output rel beneath r for reading. Every path component must be a real directory and the
// last a regular file: evidence is about bytes at a path, and a symlink's target can change under it. The factory
// collects outputs and publish reads them through it, so both apply one rule. A refusal is an *OutputError.
func OpenRegular(r *os.Root, rel string) (*os.File, error) {
	if err := checkPath(rel); err != nil {
		return nil, err
	}
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := r.Lstat(p)
		if err != nil {
			return nil, &OutputError{Path: rel, At: p, Err: err}
		}
		last := i == len(parts)-1
		if fi.Mode()&fs.ModeSymlink != 0 || !last && !fi.IsDir() || last && !fi.Mode().IsRegular() {
			return nil, &OutputError{Path: rel, At: p, Mode: fi.Mode()}
		}
	}
	testHookChecked(rel)
	// The path can change between the checks above and the open (publish reads a directory others may write),
	// so the opened file itself is judged too: O_NONBLOCK keeps a fifo swapped in from blocking the open, and
	// a fifo or device opened that way is refused by its own FileInfo before a byte is read.
	f, err := r.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, &OutputError{Path: rel, At: rel, Open: true, Err: err}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, &OutputError{Path: rel, At: rel, Open: true, Err: err}
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &OutputError{Path: rel, At: rel, Mode: fi.Mode()}
	}
	return f, nil
}

// testHookChecked runs in OpenRegular between the checks of rel's components and its open; tests replace it to
// change the path in between.
var testHookChecked = func(rel string) {}

// OutputError is an output that OpenRegular refused: At (Path itself or one of its parents) could not be read
// (Err), is a symlink, is not a directory, or, being Path, is not a regular file (Mode); or, Open, every
// component was fine and opening Path failed (Err).
type OutputError struct {
	Path, At string
	Mode     fs.FileMode
	Open     bool
	Err      error
}

func (e *OutputError) Error() string {
	switch {
	case e.Err != nil:
		return fmt.Sprintf("output %q: %v", e.Path, e.Err)
	case e.Mode&fs.ModeSymlink != 0:
		return fmt.Sprintf("output %q: %s is a symlink; only regular files are published", e.Path, e.At)
	case e.At != e.Path:
		return fmt.Sprintf("output %q: %s is not a directory", e.Path, e.At)
	default:
		return fmt.Sprintf("output %q is not a regular file (%s)", e.Path, e.Mode.Type())
	}
}

func (e *OutputError) Unwrap() error { return e.Err }

func checkPath(rel string) error {
	if rel == "" || path.IsAbs(rel) || path.Clean(rel) != rel || rel == "." || strings.HasPrefix(rel, "../") || rel == ".." {
		return fmt.Errorf("output path %q is not a clean relative path", rel)
	}
	return nil
}

// imageInRoot reads the output rel beneath r as an image layout tarball (see ReadImageTar). It returns nil for a
// file that is not an image, and otherwise the checked image with the open file it reads from, which the caller
// closes.
func imageInRoot(ctx context.Context, r *os.Root, rel string) (*ImageTar, *os.File, error) {
	f, err := OpenRegular(r, rel)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("output %q: %w", rel, err)
	}
	it, err := ReadImageTar(ctx, f, fi.Size())
	if errors.Is(err, ErrNotImage) {
		f.Close()
		return nil, nil, nil
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("output %q: %w", rel, err)
	}
	return it, f, nil
}

// copyBufferSize is the size of the buffer file contents are hashed through.
const copyBufferSize = 256 << 10
