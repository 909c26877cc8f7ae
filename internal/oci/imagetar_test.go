package oci_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/archive/archivetest"
	"github.com/ssf-dev/ssf/internal/oci"
)

// layoutTar builds OCI image layout tarballs entry by entry, so that tests can break them in one place.
type layoutTar struct {
	entries []tarEntry
}

type tarEntry struct {
	hdr  tar.Header
	body []byte
}

func (l *layoutTar) add(name string, body []byte) {
	l.entries = append(l.entries, tarEntry{hdr: tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}, body: body})
}

func (l *layoutTar) blob(body []byte) string {
	d := "sha256:" + sha(body)
	l.add("blobs/sha256/"+sha(body), body)
	return d
}

func (l *layoutTar) bytes(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range l.entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func desc(mediaType string, body []byte) oci.Descriptor {
	return oci.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(body), Size: int64(len(body))}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goodImage is a small valid image: config, two layers, manifest, index.json naming it.
type goodImage struct {
	config, layer1, layer2, manifest []byte
}

func newGoodImage(t *testing.T) goodImage {
	g := goodImage{
		config: []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`),
		layer1: []byte("layer one bytes"),
		layer2: []byte("layer two bytes, longer"),
	}
	g.manifest = mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest,
		"config": desc("application/vnd.oci.image.config.v1+json", g.config),
		"layers": []oci.Descriptor{desc("application/vnd.oci.image.layer.v1.tar", g.layer1), desc("application/vnd.oci.image.layer.v1.tar", g.layer2)},
	})
	return g
}

// tarball writes the image with the given index.json descriptor and blobs (nil: the good ones).
func (g goodImage) layout(t *testing.T, index oci.Descriptor, blobs ...[]byte) *layoutTar {
	l := &layoutTar{}
	l.add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	l.add("index.json", mustJSON(t, map[string]any{"schemaVersion": 2, "manifests": []oci.Descriptor{index}}))
	if blobs == nil {
		blobs = [][]byte{g.config, g.layer1, g.layer2, g.manifest}
	}
	for _, b := range blobs {
		l.blob(b)
	}
	return l
}

func readImage(t *testing.T, data []byte) (*oci.Descriptor, error) {
	t.Helper()
	return oci.ImageInTar(context.Background(), bytes.NewReader(data), int64(len(data)))
}

func TestImageInTarChecksEveryBlob(t *testing.T) {
	g := newGoodImage(t)
	md := desc(ocispec.MediaTypeImageManifest, g.manifest)
	got, err := readImage(t, g.layout(t, md).bytes(t))
	if err != nil || got.Digest != md.Digest || got.Size != md.Size {
		t.Fatalf("good image: %+v, %v; want %s", got, err, md.Digest)
	}

	other := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)
	tests := []struct {
		name string
		tar  func() []byte
		want string
	}{
		{"index names a manifest not in the tar", func() []byte {
			// The attack: a step names any image anywhere and ships none of it.
			return g.layout(t, desc(ocispec.MediaTypeImageManifest, other), g.config, g.layer1, g.layer2, g.manifest).bytes(t)
		}, "sha256:" + sha(other) + ", which is not in the tarball"},
		{"manifest bytes do not hash to its name", func() []byte {
			l := g.layout(t, md, g.config, g.layer1, g.layer2)
			l.add("blobs/sha256/"+sha(g.manifest), other)
			return l.bytes(t)
		}, "blob sha256:" + sha(g.manifest) + " does not match its name"},
		{"config missing", func() []byte {
			return g.layout(t, md, g.layer1, g.layer2, g.manifest).bytes(t)
		}, "(config) names application/vnd.oci.image.config.v1+json sha256:" + sha(g.config) + ", which is not in the tarball"},
		{"config does not match", func() []byte {
			l := g.layout(t, md, g.layer1, g.layer2, g.manifest)
			l.add("blobs/sha256/"+sha(g.config), []byte(`{"evil":true}`))
			return l.bytes(t)
		}, "blob sha256:" + sha(g.config) + " does not match its name"},
		{"layer missing", func() []byte {
			return g.layout(t, md, g.config, g.layer1, g.manifest).bytes(t)
		}, "(layer) names application/vnd.oci.image.layer.v1.tar sha256:" + sha(g.layer2) + ", which is not in the tarball"},
		{"layer does not match", func() []byte {
			l := g.layout(t, md, g.config, g.layer2, g.manifest)
			l.add("blobs/sha256/"+sha(g.layer1), []byte("other layer"))
			return l.bytes(t)
		}, "blob sha256:" + sha(g.layer1) + " does not match its name"},
		{"index.json gives the manifest another size", func() []byte {
			bad := md
			bad.Size++
			return g.layout(t, bad).bytes(t)
		}, fmt.Sprintf("with size %d, but the blob has %d bytes", md.Size+1, md.Size)},
		{"manifest gives a layer another size", func() []byte {
			m := bytes.Replace(g.manifest, fmt.Appendf(nil, `"size":%d`, len(g.layer1)), fmt.Appendf(nil, `"size":%d`, len(g.layer1)-1), 1)
			return g.layout(t, desc(ocispec.MediaTypeImageManifest, m), g.config, g.layer1, g.layer2, m).bytes(t)
		}, fmt.Sprintf("with size %d, but the blob has %d bytes", len(g.layer1)-1, len(g.layer1))},
		{"blob is a symlink", func() []byte {
			l := g.layout(t, md, g.config, g.layer2, g.manifest)
			l.entries = append(l.entries, tarEntry{hdr: tar.Header{Name: "blobs/sha256/" + sha(g.layer1), Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}})
			return l.bytes(t)
		}, "is not a regular file"},
		{"blob listed twice", func() []byte {
			l := g.layout(t, md)
			l.add("blobs/sha256/"+sha(g.layer1), g.layer1)
			return l.bytes(t)
		}, "appears twice"},
		{"index of a missing manifest", func() []byte {
			idx := mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageIndex, "manifests": []oci.Descriptor{desc(ocispec.MediaTypeImageManifest, other)}})
			return g.layout(t, desc(ocispec.MediaTypeImageIndex, idx), g.config, g.layer1, g.layer2, g.manifest, idx).bytes(t)
		}, "index sha256:"},
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

// sparseTar returns an image tarball one of whose blobs is a GNU sparse file of logical size size, in the PAX
// format (1.0) GNU tar writes: the entry's data starts with the sparse map (one data region of one byte at the
// end), then that byte. Go's tar writer cannot write sparse entries, so the blocks are made here.
func sparseTar(t *testing.T, g goodImage, size int64) []byte {
	l := g.layout(t, desc(ocispec.MediaTypeImageManifest, g.manifest), g.config, g.layer2, g.manifest)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range l.entries {
		h := e.hdr
		tw.WriteHeader(&h)
		tw.Write(e.body)
	}
	tw.Flush()
	b.Write(archivetest.SparseEntry("blobs/sha256/"+sha(g.layer1), size))
	b.Write(archivetest.End())
	return b.Bytes()
}

// A sparse entry expands when read: a few kilobytes of tarball can claim terabytes. It is refused unread.
func TestImageInTarRefusesSparseEntries(t *testing.T) {
	g := newGoodImage(t)
	data := sparseTar(t, g, 600) // smaller than the tarball, so only the sparse check can refuse it
	// The fixture really is a sparse entry as Go's tar reader sees it.
	tr := tar.NewReader(bytes.NewReader(data))
	found := false
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Size == 600 {
			found = true
		}
	}
	if !found {
		t.Fatal("fixture has no sparse entry")
	}
	_, err := readImage(t, data)
	if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), "sparse") {
		t.Fatalf("err = %v, want ErrBadImage naming the sparse entry", err)
	}
}

// Entries claiming more bytes than the tarball holds (here a 1 TiB sparse entry in a few kilobytes) are refused
// before anything is read from them.
func TestImageInTarRefusesBomb(t *testing.T) {
	g := newGoodImage(t)
	data := sparseTar(t, g, 1<<40)
	_, err := readImage(t, data)
	if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), "archive bomb") {
		t.Fatalf("err = %v, want ErrBadImage refusing an archive bomb", err)
	}
}

// BuildSubjects names no image it could not check: the build fails, naming the output and the blob.
func TestBuildSubjectsRefusesForgedImage(t *testing.T) {
	g := newGoodImage(t)
	forged := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)
	data := g.layout(t, desc(ocispec.MediaTypeImageManifest, forged)).bytes(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "image.tar"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := oci.BuildSubjects(context.Background(), dir, []oci.File{{Path: "image.tar", Digest: digest.FromBytes(data), Size: int64(len(data))}})
	if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), `output "image.tar"`) || !strings.Contains(err.Error(), sha(forged)) {
		t.Fatalf("err = %v, want ErrBadImage naming output \"image.tar\" and sha256:%s", err, sha(forged))
	}
}

// A layout with several images stays a plain file: no image subject is named for it.
func TestImageInTarSeveralImagesIsAFile(t *testing.T) {
	g := newGoodImage(t)
	l := &layoutTar{}
	l.add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	md := desc(ocispec.MediaTypeImageManifest, g.manifest)
	l.add("index.json", mustJSON(t, map[string]any{"schemaVersion": 2, "manifests": []oci.Descriptor{md, md}}))
	if _, err := readImage(t, l.bytes(t)); !errors.Is(err, oci.ErrNotImage) {
		t.Fatalf("err = %v, want ErrNotImage", err)
	}
}

// Publish checks image tarballs as the build does: a bundle that names an image whose tarball is a bomb, has a
// sparse entry or lacks a blob (signed by a factory that did not check it) pushes nothing.
func TestPublishRefusesBadImageTarball(t *testing.T) {
	g := newGoodImage(t)
	md := desc(ocispec.MediaTypeImageManifest, g.manifest)
	tests := []struct {
		name string
		tar  []byte
		want string
	}{
		{"sparse entry", sparseTar(t, g, 600), "sparse"},
		{"archive bomb", sparseTar(t, g, 1<<40), "archive bomb"},
		{"missing layer", g.layout(t, md, g.config, g.layer1, g.manifest).bytes(t), "which is not in the tarball"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// What an unchecking factory would have signed: the image index.json names.
			trusting := func(_ context.Context, dir string, files []oci.File) ([]oci.Subject, error) {
				raw, err := oci.ArtifactManifest(files)
				if err != nil {
					return nil, err
				}
				return []oci.Subject{
					{Name: oci.ArtifactSubject, Digest: digest.FromBytes(raw), Size: int64(len(raw))},
					{Name: oci.ImageSubjectPrefix + "image.tar", Digest: md.Digest, Size: md.Size},
				}, nil
			}
			f := newFixtureWith(t, map[string][]byte{"image.tar": tt.tar}, nil, trusting)
			host, log := newRegistry(t, false)
			repo, _, _ := oci.ParseTarget(host + "/app")
			_, err := oci.Publish(context.Background(), oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Verify: f.verifier()})
			if !errors.Is(err, oci.ErrBadImage) || !strings.Contains(err.Error(), `output "image.tar"`) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrBadImage naming the output and %q", err, tt.want)
			}
			if n := log.count(""); n != 0 {
				t.Errorf("a refused publish made %d requests to the registry", n)
			}
		})
	}
}

// An index of images (one OCI, one Docker v2 manifest) is checked through every level and published as it is,
// each blob streamed from the tarball.
func TestPublishImageIndex(t *testing.T) {
	ctx := context.Background()
	g := newGoodImage(t)
	docker := mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
		"config": desc("application/vnd.docker.container.image.v1+json", g.config),
		"layers": []oci.Descriptor{desc("application/vnd.docker.image.rootfs.diff.tar", g.layer2)},
	})
	idx := mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageIndex, "manifests": []oci.Descriptor{
		desc(ocispec.MediaTypeImageManifest, g.manifest), desc("application/vnd.docker.distribution.manifest.v2+json", docker),
	}})
	id := desc(ocispec.MediaTypeImageIndex, idx)
	data := g.layout(t, id, g.config, g.layer1, g.layer2, g.manifest, docker, idx).bytes(t)
	if d, err := readImage(t, data); err != nil || d.Digest != id.Digest {
		t.Fatalf("index: %+v, %v", d, err)
	}
	// Without the Docker manifest's layer, the index is refused.
	if _, err := readImage(t, g.layout(t, id, g.config, g.layer1, g.manifest, docker, idx).bytes(t)); !errors.Is(err, oci.ErrBadImage) {
		t.Fatalf("index with a missing grandchild blob: %v", err)
	}

	f := newFixture(t, map[string][]byte{"image.tar": data}, nil)
	if s := f.subject(oci.ImageSubjectPrefix + "image.tar"); s.Digest != id.Digest {
		t.Fatalf("subjects %+v lack the index %s", f.subj, id.Digest)
	}
	host, _ := newRegistry(t, false)
	repo, _, _ := oci.ParseTarget(host + "/app")
	pub, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Verify: f.verifier()})
	if err != nil {
		t.Fatal(err)
	}
	if pub.Images["image.tar"] != host+"/app@"+string(id.Digest) {
		t.Fatalf("images = %v", pub.Images)
	}
	for _, want := range []struct {
		ref  string
		body []byte
	}{{string(id.Digest), idx}, {"sha256:" + sha(g.manifest), g.manifest}, {"sha256:" + sha(docker), docker}} {
		resp, err := http.Get("http://" + host + "/v2/app/manifests/" + want.ref)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, want.body) {
			t.Errorf("registry holds %s as %q", want.ref, got)
		}
	}
	for _, b := range [][]byte{g.config, g.layer1, g.layer2} {
		resp, err := http.Get("http://" + host + "/v2/app/blobs/sha256:" + sha(b))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, b) {
			t.Errorf("blob sha256:%s = %q", sha(b), got)
		}
	}
}
