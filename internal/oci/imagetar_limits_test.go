package oci_test

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
)

// Attacks by a build step on the control plane's check of an image tarball: documents that different parsers
// read differently, and tarballs made to exhaust the control plane's memory.

func TestImageInTarRefusesAmbiguousJSONKeys(t *testing.T) {
	g := newGoodImage(t)
	evil := []byte("bytes the control plane never saw")
	config := string(mustJSON(t, desc("application/vnd.oci.image.config.v1+json", g.config)))
	good := string(mustJSON(t, []oci.Descriptor{desc("application/vnd.oci.image.layer.v1.tar", g.layer1)}))
	bad := string(mustJSON(t, []oci.Descriptor{desc("application/vnd.oci.image.layer.v1.tar", evil)}))
	for _, key := range []string{"layers", "Layers", "layer\u017f"} {
		t.Run(key, func(t *testing.T) {
			// encoding/json keeps the last of the keys that fold alike, so it checks the good layers; a parser that
			// keeps the first, or matches case exactly, reads the image as the evil layer the tarball lacks.
			m := []byte(`{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageManifest + `","config":` + config +
				`,"layers":` + bad + `,"` + key + `":` + good + `}`)
			if key == "layer\u017f" {
				// Here only Go folds the two keys together; a case-sensitive parser sees "layers" = evil.
				m = []byte(`{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageManifest + `","config":` + config +
					`,"layers":` + bad + `,"layer\u017f":` + good + `}`)
			}
			_, err := readImage(t, g.layout(t, desc(ocispec.MediaTypeImageManifest, m), g.config, g.layer1, m).bytes(t))
			if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), "appears twice in one object") {
				t.Fatalf("err = %v, want ErrBadImage naming a key that appears twice", err)
			}
		})
	}
	t.Run("index.json", func(t *testing.T) {
		md := desc(ocispec.MediaTypeImageManifest, g.manifest)
		l := &layoutTar{}
		l.add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
		other := string(mustJSON(t, []oci.Descriptor{desc(ocispec.MediaTypeImageManifest, []byte("elsewhere"))}))
		l.add("index.json", []byte(`{"schemaVersion":2,"manifests":`+other+`,"Manifests":`+string(mustJSON(t, []oci.Descriptor{md}))+`}`))
		for _, b := range [][]byte{g.config, g.layer1, g.layer2, g.manifest} {
			l.blob(b)
		}
		_, err := readImage(t, l.bytes(t))
		if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), "appears twice in one object") {
			t.Fatalf("err = %v, want ErrBadImage naming a key that appears twice", err)
		}
	})
	t.Run("same key in different objects is fine", func(t *testing.T) {
		md := desc(ocispec.MediaTypeImageManifest, g.manifest)
		if _, err := readImage(t, g.layout(t, md).bytes(t)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestImageInTarBoundsManifestBytes: a step cannot make the control plane hold 1024 manifests of 4 MiB each.
func TestImageInTarBoundsManifestBytes(t *testing.T) {
	g := newGoodImage(t)
	l := &layoutTar{}
	var children []oci.Descriptor
	var blobs [][]byte
	for i := range 5 {
		m := mustJSON(t, map[string]any{
			"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest,
			"config":      desc("application/vnd.oci.image.config.v1+json", g.config),
			"layers":      []oci.Descriptor{desc("application/vnd.oci.image.layer.v1.tar", g.layer1)},
			"annotations": map[string]string{"pad": fmt.Sprint(i) + strings.Repeat("x", 4<<20-4096)},
		})
		children = append(children, desc(ocispec.MediaTypeImageManifest, m))
		blobs = append(blobs, m)
	}
	idx := mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageIndex, "manifests": children})
	l.add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	l.add("index.json", mustJSON(t, map[string]any{"schemaVersion": 2, "manifests": []oci.Descriptor{desc(ocispec.MediaTypeImageIndex, idx)}}))
	for _, b := range append(blobs, g.config, g.layer1, idx) {
		l.blob(b)
	}
	_, err := readImage(t, l.bytes(t))
	if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), "the manifests and indexes together are larger than") {
		t.Fatalf("err = %v, want ErrBadImage about the manifests' total size", err)
	}
}

// TestImageInTarBoundsBlobCount: every blob entry costs the control plane memory; a tarball of tiny distinct
// blobs is refused past a count no image needs.
func TestImageInTarBoundsBlobCount(t *testing.T) {
	g := newGoodImage(t)
	l := g.layout(t, desc(ocispec.MediaTypeImageManifest, g.manifest))
	for i := range 1<<16 + 1 {
		l.blob(fmt.Append(nil, i))
	}
	_, err := readImage(t, l.bytes(t))
	if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), "more than 65536 blobs") {
		t.Fatalf("err = %v, want ErrBadImage about the number of blobs", err)
	}
}

// peakReader samples the heap as the tarball is read.
type peakReader struct {
	r    io.ReaderAt
	next int64
	peak uint64
}

func (p *peakReader) ReadAt(b []byte, off int64) (int, error) {
	if off >= p.next {
		p.next = off + 4<<20
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		p.peak = max(p.peak, ms.HeapAlloc)
	}
	return p.r.ReadAt(b, off)
}

// TestImageInTarLongNamesUnderBlobs: entry names of almost 1 MiB (a PAX record) under blobs/ are neither
// remembered nor quoted whole.
func TestImageInTarLongNamesUnderBlobs(t *testing.T) {
	g := newGoodImage(t)
	// On disk, not in memory: the heap then holds only what the check keeps (and garbage up to its size).
	f, err := os.Create(filepath.Join(t.TempDir(), "names.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, e := range g.layout(t, desc(ocispec.MediaTypeImageManifest, g.manifest)).entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.body)
	}
	const n, nameLen = 96, 1<<20 - 1024
	for i := range n {
		name := fmt.Sprintf("blobs/%03d", i) + strings.Repeat("a", nameLen)
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	pr := &peakReader{r: f}
	_, err = oci.ImageInTar(context.Background(), pr, size)
	if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), "is not a blob") {
		t.Fatalf("err = %v, want ErrBadImage naming an entry that is not a blob", err)
	}
	if len(err.Error()) > 1024 {
		t.Errorf("message is %d bytes long; the name should be cut short", len(err.Error()))
	}
	// Remembering every name would hold n MiB by the end of the tarball.
	if grown := int64(pr.peak) - int64(before.HeapAlloc); grown > n/2<<20 {
		t.Errorf("heap grew by %d MiB while reading %d names of 1 MiB; want well under %d MiB", grown>>20, n, n/2)
	}
}

// TestImageInTarOneDocumentOneKind: an index that names the same document once as an index and once as a
// manifest gets it checked as both, not skipped the second time as already checked.
func TestImageInTarOneDocumentOneKind(t *testing.T) {
	g := newGoodImage(t)
	md := desc(ocispec.MediaTypeImageManifest, g.manifest)
	inner := mustJSON(t, map[string]any{"schemaVersion": 2, "manifests": []oci.Descriptor{md}}) // no mediaType: either kind
	asIndex, asManifest := desc(ocispec.MediaTypeImageIndex, inner), desc(ocispec.MediaTypeImageManifest, inner)
	outer := mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageIndex, "manifests": []oci.Descriptor{asIndex, asManifest}})
	_, err := readImage(t, g.layout(t, desc(ocispec.MediaTypeImageIndex, outer), g.config, g.layer1, g.layer2, g.manifest, inner, outer).bytes(t))
	if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), "named "+ocispec.MediaTypeImageIndex+" elsewhere") {
		t.Fatalf("err = %v, want ErrBadImage naming the document's two kinds", err)
	}
}

// TestImageInTarRefusesSubject: an image output whose manifest names a subject would, once published, sit among
// that other artifact's referrers (here shaped as a Sigstore bundle, and one per child of an index: enough to
// crowd out the real bundles a verifier reads).
func TestImageInTarRefusesSubject(t *testing.T) {
	g := newGoodImage(t)
	victim := oci.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest("sha256:" + strings.Repeat("b", 64)), Size: 500}
	m := mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest, "artifactType": content.BundleMediaType,
		"config":  desc("application/vnd.oci.image.config.v1+json", g.config),
		"layers":  []oci.Descriptor{desc(content.BundleMediaType, g.layer1)},
		"subject": victim,
	})
	_, err := readImage(t, g.layout(t, desc(ocispec.MediaTypeImageManifest, m), g.config, g.layer1, m).bytes(t))
	if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), "has a subject ("+string(victim.Digest)+")") {
		t.Fatalf("err = %v, want ErrBadImage naming the subject", err)
	}
}

// TestImageInTarBoundsIndexes: indexes nested too deep, too many manifests, or one manifest too large are
// refused; each bound keeps the control plane's work and memory in check whatever the step wrote.
func TestImageInTarBoundsIndexes(t *testing.T) {
	g := newGoodImage(t)
	md := desc(ocispec.MediaTypeImageManifest, g.manifest)
	index := func(children ...oci.Descriptor) []byte {
		return mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageIndex, "manifests": children})
	}
	manifest := func(i int, pad int) []byte {
		return mustJSON(t, map[string]any{
			"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest,
			"config":      desc("application/vnd.oci.image.config.v1+json", g.config),
			"layers":      []oci.Descriptor{desc("application/vnd.oci.image.layer.v1.tar", g.layer1)},
			"annotations": map[string]string{"i": fmt.Sprint(i), "pad": strings.Repeat("x", pad)},
		})
	}
	tests := []struct {
		name string
		tar  func() []byte
		want string
	}{
		{"nested six deep", func() []byte {
			blobs := [][]byte{g.config, g.layer1, g.layer2, g.manifest}
			top := md
			for range 6 {
				idx := index(top)
				blobs = append(blobs, idx)
				top = desc(ocispec.MediaTypeImageIndex, idx)
			}
			return g.layout(t, top, blobs...).bytes(t)
		}, "nested more than 4 deep"},
		{"1025 manifests", func() []byte {
			blobs := [][]byte{g.config, g.layer1}
			var children []oci.Descriptor
			for i := range 1025 {
				m := manifest(i, 0)
				blobs = append(blobs, m)
				children = append(children, desc(ocispec.MediaTypeImageManifest, m))
			}
			idx := index(children...)
			return g.layout(t, desc(ocispec.MediaTypeImageIndex, idx), append(blobs, idx)...).bytes(t)
		}, "more than 1024 manifests"},
		{"one manifest over 4 MiB", func() []byte {
			m := manifest(0, 4<<20)
			return g.layout(t, desc(ocispec.MediaTypeImageManifest, m), g.config, g.layer1, m).bytes(t)
		}, "is larger than 4194304 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readImage(t, tt.tar())
			if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrBadImage containing %q", err, tt.want)
			}
		})
	}
}

// TestImageInTarBlobNames: a blob's bytes are found under one spelling of its name only; other spellings under
// blobs/ are refused rather than ignored, and "./" spells the same name (so it cannot hide a second copy).
func TestImageInTarBlobNames(t *testing.T) {
	g := newGoodImage(t)
	md := desc(ocispec.MediaTypeImageManifest, g.manifest)
	h := sha(g.layer1)
	tests := []struct{ name, entry, want string }{
		{"dot slash duplicate", "./blobs/sha256/" + h, "appears twice"},
		{"double slash", "blobs//sha256/" + h, "is another spelling of"},
		{"dot segment", "blobs/./sha256/" + h, "is another spelling of"},
		{"upper-case hex", "blobs/sha256/" + strings.ToUpper(h), "is not a blob"},
		{"sha512", "blobs/sha512/" + h + h, "is not a blob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := g.layout(t, md)
			l.add(tt.entry, []byte("other bytes"))
			_, err := readImage(t, l.bytes(t))
			if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrBadImage containing %q", err, tt.want)
			}
		})
	}
}

// TestImageInTarOtherSpellings: an entry whose name another tool may read as index.json, oci-layout or a blob
// (after removing a leading "/", "./" twice or a ".." segment) makes the tarball refused, not half-read.
func TestImageInTarOtherSpellings(t *testing.T) {
	g := newGoodImage(t)
	md := desc(ocispec.MediaTypeImageManifest, g.manifest)
	for _, entry := range []string{"/index.json", "././index.json", "x/../index.json", "/oci-layout", "/blobs/sha256/" + sha(g.layer1), "x/../blobs/sha256/" + sha(g.layer1)} {
		t.Run(entry, func(t *testing.T) {
			l := g.layout(t, md)
			l.add(entry, []byte(`{"schemaVersion":2,"manifests":[]}`))
			_, err := readImage(t, l.bytes(t))
			if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), "is another spelling of") {
				t.Fatalf("err = %v, want ErrBadImage about another spelling", err)
			}
		})
	}
}
