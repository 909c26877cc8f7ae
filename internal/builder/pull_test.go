package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/archive"
)

var shellTree = []file{
	{"bin/busybox", 0o755, "\x7fELF busybox"},
	{"bin/sh", 0o777, "->busybox"},
	{"etc/marker", 0o644, "pulled\n"},
}

// testImage is an OCI image built by hand: its blobs by digest, and its top manifest or index.
type testImage struct {
	blobs map[digest.Digest][]byte
	top   v1.Descriptor
}

func (ti *testImage) add(mediaType string, b []byte) v1.Descriptor {
	d := digest.FromBytes(b)
	ti.blobs[d] = b
	return v1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

func (ti *testImage) addJSON(t testing.TB, mediaType string, v any) v1.Descriptor {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return ti.add(mediaType, b)
}

// newTestImage makes a one-layer image of the tree files for linux/arch, its layer gzip-compressed if gz.
func newTestImage(t testing.TB, files []file, gz bool, arch string) *testImage {
	t.Helper()
	ti := &testImage{blobs: map[digest.Digest][]byte{}}
	var tarball bytes.Buffer
	if _, err := archive.WriteTree(context.Background(), &tarball, makeRootfs(t, files, false, 0, time.Unix(0, 0)), nil); err != nil {
		t.Fatal(err)
	}
	diffID := digest.FromBytes(tarball.Bytes())
	layerBytes, layerType := tarball.Bytes(), v1.MediaTypeImageLayer
	if gz {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(tarball.Bytes())
		zw.Close()
		layerBytes, layerType = z.Bytes(), v1.MediaTypeImageLayerGzip
	}
	layer := ti.add(layerType, layerBytes)
	config := ti.addJSON(t, v1.MediaTypeImageConfig, v1.Image{
		Platform: v1.Platform{OS: "linux", Architecture: arch},
		RootFS:   v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	})
	ti.top = ti.addJSON(t, v1.MediaTypeImageManifest, v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
		Config: config, Layers: []v1.Descriptor{layer},
	})
	return ti
}

// manifest returns the top manifest, decoded.
func (ti *testImage) manifest(t testing.TB) v1.Manifest {
	t.Helper()
	var m v1.Manifest
	if err := json.Unmarshal(ti.blobs[ti.top.Digest], &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// setManifest replaces the top manifest.
func (ti *testImage) setManifest(t testing.TB, m v1.Manifest) {
	ti.top = ti.addJSON(t, v1.MediaTypeImageManifest, m)
}

// layout writes the image as an OCI image layout directory.
func (ti *testImage) layout(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755)
	for d, b := range ti.blobs {
		writeTestFile(t, filepath.Join(dir, "blobs", "sha256", d.Encoded()), b)
	}
	writeTestFile(t, filepath.Join(dir, v1.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`))
	index, _ := json.Marshal(v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{ti.top}})
	writeTestFile(t, filepath.Join(dir, v1.ImageIndexFile), index)
	return dir
}

// tarLayout writes the image as an OCI image layout tarball.
func (ti *testImage) tarLayout(t testing.TB) string {
	t.Helper()
	dir := ti.layout(t)
	p := filepath.Join(t.TempDir(), "image.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	writeTestFile(t, p, buf.Bytes())
	return p
}

func writeTestFile(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

type rawManifest struct {
	b  []byte
	mt string
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mt), nil }

// push pushes the image to repo in a registry, blob by blob, and returns REGISTRY/REPO@<top digest>.
func (ti *testImage) push(t testing.TB, host, repoName string, opts ...remote.Option) name.Digest {
	t.Helper()
	repo, err := name.NewRepository(host + "/" + repoName)
	if err != nil {
		t.Fatal(err)
	}
	var manifests []v1.Descriptor
	for d, b := range ti.blobs {
		var probe struct {
			MediaType string `json:"mediaType"`
		}
		if json.Unmarshal(b, &probe) == nil && (probe.MediaType == v1.MediaTypeImageManifest || probe.MediaType == v1.MediaTypeImageIndex) {
			manifests = append(manifests, v1.Descriptor{MediaType: probe.MediaType, Digest: d})
			continue
		}
		if err := remote.WriteLayer(repo, static.NewLayer(b, types.OCILayer), opts...); err != nil {
			t.Fatal(err)
		}
	}
	// Children before the index that names them.
	for _, m := range manifests {
		if m.MediaType == v1.MediaTypeImageManifest {
			if err := remote.Put(repo.Digest(string(m.Digest)), rawManifest{ti.blobs[m.Digest], m.MediaType}, opts...); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ti.top.MediaType == v1.MediaTypeImageIndex {
		if err := remote.Put(repo.Digest(string(ti.top.Digest)), rawManifest{ti.blobs[ti.top.Digest], ti.top.MediaType}, opts...); err != nil {
			t.Fatal(err)
		}
	}
	return repo.Digest(string(ti.top.Digest))
}

// testRegistry serves go-containerregistry's in-memory registry on loopback; tamper, if set, may replace a
// response.
func testRegistry(t testing.TB, tamper func(w http.ResponseWriter, r *http.Request) bool) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tamper != nil && tamper(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// checkNoImage asserts the store holds no image and no unpacking leftovers.
func checkNoImage(t testing.TB, s *Store) {
	t.Helper()
	if images, err := s.List(); err != nil || len(images) != 0 {
		t.Errorf("store lists %v (%v), want nothing", images, err)
	}
	if left, _ := filepath.Glob(filepath.Join(s.dir, ".unpack-*")); len(left) != 0 {
		t.Errorf("leftovers: %v", left)
	}
}

// A pulled image, plain or gzip, by manifest or through an index, is stored as the import of the same tree
// would be: same digest, and Rootfs unpacks it.
func TestPullIsImportOfTheSameTree(t *testing.T) {
	want := importTree(t, openStore(t), makeRootfs(t, shellTree, false, 0, time.Unix(0, 0)), "busybox").Digest
	host := testRegistry(t, nil)
	for _, tc := range []struct {
		name  string
		gz    bool
		index bool
	}{{"tar", false, false}, {"gzip", true, false}, {"index", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ti := newTestImage(t, shellTree, tc.gz, runtime.GOARCH)
			platformManifest := ti.top.Digest
			if tc.index {
				other := newTestImage(t, append(shellTree[:2:2], file{"etc/marker", 0o644, "other\n"}), true, "s390x")
				for d, b := range other.blobs {
					ti.blobs[d] = b
				}
				a, o := ti.top, other.top
				a.Platform = &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
				o.Platform = &v1.Platform{OS: "linux", Architecture: "s390x"}
				ti.top = ti.addJSON(t, v1.MediaTypeImageIndex, v1.Index{Versioned: specs.Versioned{SchemaVersion: 2},
					MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{o, a}})
			}
			ref := ti.push(t, host, "tools/busybox-"+tc.name)
			s := openStore(t)
			p, err := s.Pull(t.Context(), ref, "busybox")
			if err != nil {
				t.Fatal(err)
			}
			if p.Digest != want || p.Manifest != platformManifest || p.Ref() != "busybox@"+string(want) {
				t.Errorf("pulled %+v, want digest %s, manifest %s", p, want, platformManifest)
			}
			index, err := s.readIndex()
			if err != nil {
				t.Fatal(err)
			}
			if got, wantSrc := index.Manifests[0].Annotations[sourceAnnotation], ref.String()+" manifest "+string(platformManifest); got != wantSrc {
				t.Errorf("index entry's %s = %q, want %q", sourceAnnotation, got, wantSrc)
			}
			dir, err := s.Rootfs(t.Context(), p.Digest, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "etc/marker")); err != nil || string(b) != "pulled\n" {
				t.Errorf("etc/marker = %q, %v", b, err)
			}
			// The same image from an image layout, directory and tarball, gives the same builder.
			for _, path := range []string{ti.layout(t), ti.tarLayout(t)} {
				if got, err := openStore(t).ImportLayout(t.Context(), path, "busybox"); err != nil || got.Digest != want {
					t.Errorf("ImportLayout(%s) = %s, %v; want %s", path, got.Digest, err, want)
				}
			}
		})
	}
}

// A registry that serves other bytes for a layer than its digest's is caught, and nothing is stored.
func TestPullTamperedLayer(t *testing.T) {
	ti := newTestImage(t, shellTree, true, runtime.GOARCH)
	layer := ti.manifest(t).Layers[0].Digest
	evil := newTestImage(t, append(shellTree[:2:2], file{"etc/marker", 0o644, "evil!!\n"}), true, runtime.GOARCH)
	evilLayer := evil.blobs[evil.manifest(t).Layers[0].Digest]
	host := testRegistry(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+string(layer)) {
			w.Write(evilLayer)
			return true
		}
		return false
	})
	ref := ti.push(t, host, "busybox")
	s := openStore(t)
	if _, err := s.Pull(t.Context(), ref, "busybox"); err == nil || !strings.Contains(err.Error(), string(layer.Encoded())) {
		t.Fatalf("Pull of a tampered layer: %v, want an error naming %s", err, layer)
	}
	checkNoImage(t, s)
}

// Hostile or unusable images in a layout are refused with what is wrong, and nothing is stored. The layout
// reader has no verification of its own: these checks are all there is.
func TestImportLayoutRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, ti *testImage)
		want   string
		bad    bool // ErrBadInput: the caller's to fix
	}{
		{"layer not its digest", func(t *testing.T, ti *testImage) {
			d := ti.manifest(t).Layers[0].Digest
			b := bytes.Clone(ti.blobs[d])
			b[len(b)-10] ^= 1
			ti.blobs[d] = b
		}, "digest mismatch", false},
		{"layer larger than its descriptor", func(t *testing.T, ti *testImage) {
			d := ti.manifest(t).Layers[0].Digest
			ti.blobs[d] = append(bytes.Clone(ti.blobs[d]), 0)
		}, "digest mismatch", false},
		{"huge layer", func(t *testing.T, ti *testImage) {
			m := ti.manifest(t)
			m.Layers[0].Size = 1 << 40
			ti.setManifest(t, m)
		}, "refusing a layer larger than", false},
		{"diff id", func(t *testing.T, ti *testImage) {
			m := ti.manifest(t)
			m.Config = ti.addJSON(t, v1.MediaTypeImageConfig, v1.Image{Platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
				RootFS: v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString("x")}}})
			ti.setManifest(t, m)
		}, "diff ID", false},
		{"config not its digest", func(t *testing.T, ti *testImage) {
			d := ti.manifest(t).Config.Digest
			ti.blobs[d] = []byte(strings.Replace(string(ti.blobs[d]), "linux", "linuX", 1))
		}, "digest mismatch", false},
		{"two layers", func(t *testing.T, ti *testImage) {
			m := ti.manifest(t)
			m.Layers = append(m.Layers, m.Layers[0])
			ti.setManifest(t, m)
		}, "crane flatten", true},
		{"other architecture", func(t *testing.T, ti *testImage) {
			*ti = *newTestImage(t, shellTree, true, "s390x")
		}, "image is for linux/s390x", true},
		{"index without this platform", func(t *testing.T, ti *testImage) {
			other := newTestImage(t, shellTree, true, "s390x")
			for d, b := range other.blobs {
				ti.blobs[d] = b
			}
			o := other.top
			o.Platform = &v1.Platform{OS: "linux", Architecture: "s390x"}
			ti.top = ti.addJSON(t, v1.MediaTypeImageIndex, v1.Index{Versioned: specs.Versioned{SchemaVersion: 2},
				MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{o}})
		}, "has no image for linux/" + runtime.GOARCH + " (it has: linux/s390x)", true},
		{"no shell", func(t *testing.T, ti *testImage) {
			*ti = *newTestImage(t, shellTree[2:], false, runtime.GOARCH)
		}, "no /bin/sh", true},
		{"escaping entry", func(t *testing.T, ti *testImage) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeReg, Mode: 0o755, Size: 2})
			tw.Write([]byte("sh"))
			tw.WriteHeader(&tar.Header{Name: "../escaped", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
			tw.Write([]byte("x"))
			tw.Close()
			setLayer(t, ti, buf.Bytes())
		}, "extracting layer", false},
		{"device node", func(t *testing.T, ti *testImage) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeReg, Mode: 0o755, Size: 2})
			tw.Write([]byte("sh"))
			tw.WriteHeader(&tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o666, Devmajor: 8})
			tw.Close()
			setLayer(t, ti, buf.Bytes())
		}, "extracting layer", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ti := newTestImage(t, shellTree, true, runtime.GOARCH)
			tc.change(t, ti)
			s := openStore(t)
			_, err := s.ImportLayout(t.Context(), ti.layout(t), "busybox")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ImportLayout: %v, want an error containing %q", err, tc.want)
			}
			if errors.Is(err, ErrBadInput) != tc.bad {
				t.Errorf("errors.Is(%v, ErrBadInput) = %v, want %v", err, !tc.bad, tc.bad)
			}
			checkNoImage(t, s)
		})
	}
}

// setLayer makes tarball (uncompressed) the image's one layer, with a matching diff ID.
func setLayer(t *testing.T, ti *testImage, tarball []byte) {
	layer := ti.add(v1.MediaTypeImageLayer, tarball)
	m := ti.manifest(t)
	m.Layers = []v1.Descriptor{layer}
	m.Config = ti.addJSON(t, v1.MediaTypeImageConfig, v1.Image{Platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.Digest}}})
	ti.setManifest(t, m)
}

func TestParsePullRef(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in, want, name string
	}{
		{"localhost:5000/tools/go@" + d, "", "go"},
		{"localhost:5000/busybox@" + d, "", "busybox"},
		{"localhost:5000/busybox:v1", "has no digest", ""},
		{"localhost:5000/busybox", "has no digest", ""},
		{"localhost:5000/busybox:v1@" + d, "has a tag and a digest", ""},
		{"localhost:5000/busybox@sha256:abc", "want sha256:", ""},
		{"localhost:5000/Busybox@" + d, "repository", ""},
	} {
		ref, err := ParsePullRef(tc.in)
		if tc.want == "" {
			if err != nil || DefaultName(ref) != tc.name {
				t.Errorf("ParsePullRef(%q) = %v, %v; want name %q", tc.in, ref, err, tc.name)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePullRef(%q): %v, want a bad-input error containing %q", tc.in, err, tc.want)
		}
	}
}

// rm removes by name or NAME@digest, refuses a name that names two digests, and deletes the unpacked tree and
// the blobs nothing else uses, leaving other images working.
func TestRemove(t *testing.T) {
	s := openStore(t)
	cache := t.TempDir()
	old := importTree(t, s, makeRootfs(t, shellTree, false, 0, time.Unix(0, 0)), "busybox")
	newer := importTree(t, s, makeRootfs(t, append(shellTree[:2:2], file{"etc/marker", 0o644, "v2\n"}), false, 0, time.Unix(0, 0)), "busybox")
	other := importTree(t, s, makeRootfs(t, toolchain, false, 0, time.Unix(0, 0)), "go")
	for _, img := range []Image{old, newer, other} {
		if _, err := s.Rootfs(t.Context(), img.Digest, cache); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Remove(t.Context(), "busybox", cache); err == nil || !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "names 2 images") {
		t.Fatalf("Remove(busybox) with two digests: %v, want refused as ambiguous", err)
	}
	if _, err := s.Remove(t.Context(), "nothing", cache); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove(nothing): %v, want ErrNotFound", err)
	}
	if got, err := s.Remove(t.Context(), old.Ref(), cache); err != nil || got.Digest != old.Digest {
		t.Fatalf("Remove(%s) = %v, %v", old.Ref(), got, err)
	}
	if _, err := s.Lookup(old.Digest); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup after Remove: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(cache, old.Digest.Encoded())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unpacked tree of a removed image: %v, want it gone", err)
	}
	if got, err := s.Remove(t.Context(), "busybox", cache); err != nil || got.Digest != newer.Digest {
		t.Fatalf("Remove(busybox) = %v, %v; want %s", got, err, newer.Digest)
	}
	// Only go's blobs are left, and go still unpacks.
	m, err := s.readManifest(other.Digest)
	if err != nil {
		t.Fatal(err)
	}
	blobs, _ := filepath.Glob(filepath.Join(s.dir, "blobs", "sha256", "*"))
	if len(blobs) != 3 {
		t.Errorf("blobs left: %v, want go's manifest %s, config %s and layer %s", blobs, other.Digest, m.Config.Digest, m.Layers[0].Digest)
	}
	os.RemoveAll(filepath.Join(cache, other.Digest.Encoded()))
	if _, err := s.Rootfs(t.Context(), other.Digest, cache); err != nil {
		t.Errorf("Rootfs of the image left: %v", err)
	}
}

var _ io.Reader = (*boundedReader)(nil)

// An import whose blobs a concurrent Remove deleted (the same tree was being removed) is not named in the index.
func TestAddToIndexRefusesMissingBlob(t *testing.T) {
	s := openStore(t)
	img := importTree(t, s, makeRootfs(t, shellTree, false, 0, time.Unix(0, 0)), "busybox")
	m, err := s.readManifest(img.Digest)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.blobPath(m.Layers[0].Digest)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	desc := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: img.Digest,
		Annotations: map[string]string{v1.AnnotationRefName: "again"}}
	if err := s.addToIndex(desc); err == nil || !strings.Contains(err.Error(), "removed while being imported") {
		t.Fatalf("addToIndex with a missing layer blob: %v, want refused", err)
	}
}

// memSource serves blobs from memory, manifests and blobs alike.
type memSource map[digest.Digest][]byte

func (m memSource) manifest(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	return m.blob(ctx, d)
}

func (m memSource) blob(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	b, ok := m[d]
	if !ok {
		return nil, errors.New("blob unknown")
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// Whatever manifest or index a source serves, importImage returns an error or a stored image with /bin/sh; it
// never panics and never leaves a scratch tree.
func FuzzImportImageManifest(f *testing.F) {
	ti := newTestImage(f, shellTree, true, runtime.GOARCH)
	f.Add(ti.blobs[ti.top.Digest])
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` +
		string(ti.top.Digest) + `","size":1,"platform":{"os":"linux","architecture":"` + runtime.GOARCH + `"}}]}`))
	f.Add([]byte(`{"layers":[{"digest":"sha256:../../x","size":-1}],"config":{}}`))
	s := openStore(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		src := memSource(maps.Clone(ti.blobs))
		d := digest.FromBytes(raw)
		src[d] = raw
		p, err := s.importImage(context.Background(), src, d, "", "fuzz", "fuzz")
		if err == nil {
			dir, err := s.Rootfs(context.Background(), p.Digest, t.TempDir())
			if err != nil {
				t.Fatalf("stored image does not unpack: %v", err)
			}
			if err := CheckRootfs(dir); err != nil {
				t.Fatalf("stored image: %v", err)
			}
		}
		if left, _ := filepath.Glob(filepath.Join(s.dir, ".unpack-*")); len(left) != 0 {
			t.Fatalf("leftovers: %v", left)
		}
	})
}

// A small gzip layer that expands beyond the bound (a gzip bomb) is refused once the bound is reached.
func TestImportLayoutGzipBomb(t *testing.T) {
	defer func(n int64) { maxUnpackedSize = n }(maxUnpackedSize)
	maxUnpackedSize = 1 << 20
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	tw.WriteHeader(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeReg, Mode: 0o755, Size: 2})
	tw.Write([]byte("sh"))
	tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4 << 20})
	tw.Write(make([]byte, 4<<20))
	tw.Close()
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(tarball.Bytes())
	zw.Close()
	ti := newTestImage(t, shellTree, true, runtime.GOARCH)
	layer := ti.add(v1.MediaTypeImageLayerGzip, z.Bytes())
	m := ti.manifest(t)
	m.Layers = []v1.Descriptor{layer}
	m.Config = ti.addJSON(t, v1.MediaTypeImageConfig, v1.Image{Platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(tarball.Bytes())}}})
	ti.setManifest(t, m)
	s := openStore(t)
	if _, err := s.ImportLayout(t.Context(), ti.layout(t), "bomb"); err == nil || !strings.Contains(err.Error(), "expands to more than 1048576 bytes") {
		t.Fatalf("ImportLayout of a layer expanding to 4 MiB with a 1 MiB bound: %v, want refused", err)
	}
	checkNoImage(t, s)
}

// Pull takes credentials from the Docker config, as crane does; without them a registry that wants them refuses,
// and that is a registry failure, not bad input.
func TestPullCredentialsFromDockerConfig(t *testing.T) {
	host := testRegistry(t, func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == "alice" && p == "s3cret" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
	ti := newTestImage(t, shellTree, true, runtime.GOARCH)
	ref := ti.push(t, host, "private/busybox", remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"}))
	withCreds, anon := t.TempDir(), t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	writeTestFile(t, filepath.Join(withCreds, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`))
	writeTestFile(t, filepath.Join(anon, "config.json"), []byte(`{"auths":{}}`))

	t.Setenv("DOCKER_CONFIG", anon)
	s := openStore(t)
	if _, err := s.Pull(t.Context(), ref, "busybox"); err == nil || errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "401") && !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Fatalf("Pull without credentials: %v, want an authorization failure", err)
	}
	checkNoImage(t, s)
	t.Setenv("DOCKER_CONFIG", withCreds)
	if _, err := s.Pull(t.Context(), ref, "busybox"); err != nil {
		t.Fatalf("Pull with credentials in the Docker config: %v", err)
	}
}

// A layer within the bound whose hard links name one large file many times is refused: the builder stores each
// name as a file of its own, so the repacked layer (and every unpacked root file system) would hold the file
// once per link — a few kilobytes of tar could otherwise fill the disk.
func TestImportLayoutHardLinkBomb(t *testing.T) {
	defer func(n int64) { maxUnpackedSize = n }(maxUnpackedSize)
	maxUnpackedSize = 1 << 20
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	tw.WriteHeader(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeReg, Mode: 0o755, Size: 2})
	tw.Write([]byte("sh"))
	tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 256 << 10})
	tw.Write(make([]byte, 256<<10))
	for i := range 16 {
		tw.WriteHeader(&tar.Header{Name: "link" + strconv.Itoa(i), Typeflag: tar.TypeLink, Linkname: "big"})
	}
	tw.Close()
	if tarball.Len() >= 1<<20 {
		t.Fatalf("test tarball is %d bytes, want it within the bound", tarball.Len())
	}
	ti := newTestImage(t, shellTree, false, runtime.GOARCH)
	layer := ti.add(v1.MediaTypeImageLayer, tarball.Bytes())
	m := ti.manifest(t)
	m.Layers = []v1.Descriptor{layer}
	m.Config = ti.addJSON(t, v1.MediaTypeImageConfig, v1.Image{Platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(tarball.Bytes())}}})
	ti.setManifest(t, m)
	s := openStore(t)
	if _, err := s.ImportLayout(t.Context(), ti.layout(t), "links"); err == nil || !strings.Contains(err.Error(), "more than 1048576 bytes") {
		t.Fatalf("ImportLayout of a layer whose hard links come to 4.25 MiB with a 1 MiB bound: %v, want refused", err)
	}
	checkNoImage(t, s)
}

// A registry that answers a manifest GET with an endless body gets no more than the manifest bound read: the
// pull fails without holding tens of megabytes of it in memory.
func TestPullEndlessManifest(t *testing.T) {
	var written atomic.Int64
	host := testRegistry(t, func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/manifests/") {
			return false
		}
		w.Header().Set("Content-Type", v1.MediaTypeImageManifest)
		if r.Method == http.MethodHead {
			return true
		}
		buf := bytes.Repeat([]byte(" "), 64<<10)
		for {
			n, err := w.Write(buf)
			written.Add(int64(n))
			if err != nil || written.Load() > 200<<20 {
				return true
			}
		}
	})
	ref, err := ParsePullRef(host + "/endless@sha256:" + strings.Repeat("a", 64))
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	if _, err := s.Pull(t.Context(), ref, "endless"); err == nil {
		t.Fatal("Pull of an endless manifest succeeded")
	}
	checkNoImage(t, s)
	// What the client read, plus what the kernel's socket buffers took before it hung up.
	if n := written.Load(); n > 32<<20 {
		t.Errorf("the registry got %d bytes read of an endless manifest, want at most the 4 MiB bound and socket buffers", n)
	}
}
