package oci_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/archive"
	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/provenance"
	ssfregistry "github.com/ssf-dev/ssf/internal/registry"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

var finished = time.Date(2026, 1, 2, 3, 5, 6, 0, time.UTC)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestArtifactManifestDeterministic(t *testing.T) {
	files := []oci.File{
		{Path: "bin/tool", Digest: digest.FromBytes([]byte("tool")), Size: 4},
		{Path: "README", Digest: digest.FromBytes([]byte("readme")), Size: 6},
		{Path: "a", Digest: digest.FromBytes([]byte("a")), Size: 1},
	}
	one, err := oci.ArtifactManifest(files)
	if err != nil {
		t.Fatal(err)
	}
	two, err := oci.ArtifactManifest([]oci.File{files[2], files[0], files[1]})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one, two) {
		t.Fatalf("same files, different manifests:\n%s\n%s", one, two)
	}
	var m struct {
		ArtifactType string
		Config       struct{ MediaType, Digest string }
		Layers       []struct {
			MediaType, Digest string
			Size              int64
			Annotations       map[string]string
		}
		Annotations map[string]string
	}
	if err := json.Unmarshal(one, &m); err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != content.ArtifactType || m.Config.MediaType != ocispec.MediaTypeEmptyJSON || m.Annotations != nil {
		t.Errorf("manifest = %s", one)
	}
	var titles []string
	for _, l := range m.Layers {
		if l.MediaType != content.FileMediaType {
			t.Errorf("layer media type %q", l.MediaType)
		}
		titles = append(titles, l.Annotations[ocispec.AnnotationTitle])
	}
	if want := []string{"README", "a", "bin/tool"}; !reflect.DeepEqual(titles, want) {
		t.Errorf("layer titles %v, want %v (sorted paths)", titles, want)
	}
	// Pinned: these bytes are recorded (by digest) in provenance at build time and rebuilt at publish time; a
	// change here makes every earlier build unpublishable.
	if want := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.ssf.build.v1","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/octet-stream","digest":"sha256:711a6108ba2ce6ca93dd47d6817f2361db10d8ab6eec89460b2dfc2c325efabe","size":6,"annotations":{"org.opencontainers.image.title":"README"}},{"mediaType":"application/octet-stream","digest":"sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb","size":1,"annotations":{"org.opencontainers.image.title":"a"}},{"mediaType":"application/octet-stream","digest":"sha256:7c9bbe5ec9b3fb774e8fa0f54247e93c34ddf8e5d16fe3073420de0ae81a262d","size":4,"annotations":{"org.opencontainers.image.title":"bin/tool"}}]}`; string(one) != want {
		t.Errorf("manifest bytes changed:\n got %s\nwant %s", one, want)
	}

	for _, bad := range [][]oci.File{
		{{Path: "/abs", Digest: digest.FromBytes(nil)}},
		{{Path: "../x", Digest: digest.FromBytes(nil)}},
		{{Path: "a//b", Digest: digest.FromBytes(nil)}},
		{{Path: "a", Digest: "nothex"}},
		{{Path: "a", Digest: digest.FromBytes(nil)}, {Path: "a", Digest: digest.FromBytes(nil)}},
	} {
		if _, err := oci.ArtifactManifest(bad); err == nil {
			t.Errorf("ArtifactManifest(%v) accepted", bad)
		}
	}
}

// fixture is a finished build: an output directory with files and a signed bundle naming them.
type fixture struct {
	dir    string
	files  map[string][]byte
	key    *ecdsa.PrivateKey
	bundle []byte
	subj   []oci.Subject
}

func newFixture(t *testing.T, files map[string][]byte, edit func(*provenance.Build)) *fixture {
	t.Helper()
	return newFixtureWith(t, files, edit, oci.BuildSubjects)
}

// newFixtureWith is newFixture with the OCI subjects computed by subjects, so that a test can sign what a
// factory that did not check an image would have signed.
func newFixtureWith(t *testing.T, files map[string][]byte, edit func(*provenance.Build), subjects func(context.Context, string, []oci.File) ([]oci.Subject, error)) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), files: files}
	var outputs []oci.File
	b := provenance.Build{
		BuilderID: "https://ssf.dev/factory/test", BuilderVersion: map[string]string{"ssf": "test"},
		InvocationID: "run-1", StartedOn: finished.Add(-time.Minute), FinishedOn: finished,
		PipelineName: "p", PipelineDigest: digest.FromBytes([]byte("p")), Params: map[string]string{}, SourceURI: "file:///src",
		Dependencies: []provenance.ResourceDescriptor{{Name: "source", URI: "file:///src", Digest: provenance.Digest{"sha256": sha([]byte("src"))}}},
	}
	for p, data := range files {
		full := filepath.Join(f.dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, oci.File{Path: p, Digest: digest.FromBytes(data), Size: int64(len(data))})
		b.Subjects = append(b.Subjects, provenance.Subject{Name: p, Digest: digest.FromBytes(data)})
	}
	var err error
	if f.subj, err = subjects(context.Background(), f.dir, outputs); err != nil {
		t.Fatal(err)
	}
	for _, s := range f.subj {
		b.Subjects = append(b.Subjects, provenance.Subject{Name: s.Name, Digest: s.Digest})
	}
	if edit != nil {
		edit(&b)
	}
	st, err := provenance.Statement(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if f.bundle, err = sign.NewSigner(f.key).Statement(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) subject(name string) oci.Subject {
	for _, s := range f.subj {
		if s.Name == name {
			return s
		}
	}
	return oci.Subject{}
}

func (f *fixture) verifier() func(context.Context, digest.Digest, []byte) error {
	return func(ctx context.Context, d digest.Digest, b []byte) error {
		_, err := verify.Artifact(ctx, d, b, verify.Options{Trusted: verify.KeyMaterial(&f.key.PublicKey)})
		return err
	}
}

// newRegistry starts a registry on loopback: with the referrers API, ssf's own (which lists a referrer's
// artifactType as image-spec 1.1 says; go-containerregistry's lists the config media type); without it,
// go-containerregistry's in-memory one, where clients use the fallback tag.
func newRegistry(t *testing.T, referrers bool) (string, *requestLog) {
	t.Helper()
	log := &requestLog{}
	var h http.Handler = registry.New(registry.Logger(discardLogger()), registry.WithReferrersSupport(false))
	if referrers {
		r, err := ssfregistry.New(t.TempDir(), ssfregistry.WithInsecureLocalPushUnsafe(), ssfregistry.WithAnonymousPull(true))
		if err != nil {
			t.Fatal(err)
		}
		h = r
	}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r.Method + " " + r.URL.Path)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://"), log
}

func TestPublish(t *testing.T) {
	for _, referrers := range []bool{true, false} {
		label := map[bool]string{true: "referrers API", false: "fallback tag"}[referrers]
		t.Run(label, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, map[string][]byte{"hello": []byte("hello\n"), "bin/tool": []byte("#!/bin/sh\n"), "same": []byte("hello\n")}, nil)
			host, log := newRegistry(t, referrers)
			repo, tag, err := oci.ParseTarget(host + "/team/app:v1")
			if err != nil {
				t.Fatal(err)
			}
			pub, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: tag, Verify: f.verifier()})
			if err != nil {
				t.Fatal(err)
			}
			art := f.subject(oci.ArtifactSubject)
			if want := host + "/team/app@" + string(art.Digest); pub.Artifact != want {
				t.Fatalf("published %s, want %s (the digest in the provenance)", pub.Artifact, want)
			}

			// The tag and the digest both serve the exact manifest, and each layer is a file, byte for byte.
			for _, ref := range []string{pub.Artifact, host + "/team/app:v1"} {
				r, _ := name.ParseReference(ref)
				d, err := remote.Get(r)
				if err != nil {
					t.Fatal(err)
				}
				if sha(d.Manifest) != art.Digest.Encoded() {
					t.Errorf("%s serves a manifest of sha256:%s", ref, sha(d.Manifest))
				}
			}
			img, err := remote.Image(mustRef(t, pub.Artifact))
			if err != nil {
				t.Fatal(err)
			}
			m, _ := img.Manifest()
			if len(m.Layers) != 3 {
				t.Fatalf("%d layers, want 3", len(m.Layers))
			}
			for _, l := range m.Layers {
				p := l.Annotations[ocispec.AnnotationTitle]
				layer, err := remote.Layer(mustRef(t, host+"/team/app@"+l.Digest.String()).(name.Digest))
				if err != nil {
					t.Fatal(err)
				}
				rc, _ := layer.Compressed()
				got, _ := io.ReadAll(rc)
				rc.Close()
				if !bytes.Equal(got, f.files[p]) {
					t.Errorf("layer %q = %q, want %q", p, got, f.files[p])
				}
			}

			// The bundle referrer, exactly as cosign reads it.
			idx, err := remote.Referrers(mustRef(t, pub.Artifact).(name.Digest))
			if err != nil {
				t.Fatal(err)
			}
			im, _ := idx.IndexManifest()
			// (go-containerregistry's registry reports the config media type as artifactType: only the fallback
			// index, which ggcr's client writes, can be checked for it.)
			if len(im.Manifests) != 1 || (!referrers && im.Manifests[0].ArtifactType != content.BundleMediaType) {
				t.Fatalf("referrers = %+v", im.Manifests)
			}
			rd, err := remote.Get(mustRef(t, host+"/team/app@"+im.Manifests[0].Digest.String()))
			if err != nil {
				t.Fatal(err)
			}
			var rm map[string]any
			if err := json.Unmarshal(rd.Manifest, &rm); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{
				"schemaVersion": 2.0,
				"mediaType":     "application/vnd.oci.image.manifest.v1+json",
				"artifactType":  "application/vnd.dev.sigstore.bundle.v0.3+json",
				"config":        map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2.0},
				"layers":        []any{map[string]any{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "digest": "sha256:" + sha(f.bundle), "size": float64(len(f.bundle))}},
				"subject":       map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": string(art.Digest), "size": float64(art.Size)},
				"annotations": map[string]any{
					"dev.sigstore.bundle.content":       "dsse-envelope",
					"dev.sigstore.bundle.predicateType": "https://slsa.dev/provenance/v1",
					"org.opencontainers.image.created":  "2026-01-02T03:05:06Z",
				},
			}
			if !reflect.DeepEqual(rm, want) {
				t.Errorf("referrer manifest:\n%s\nwant:\n%v", rd.Manifest, want)
			}
			fallback := host + "/team/app:sha256-" + art.Digest.Encoded()
			_, ferr := remote.Get(mustRef(t, fallback))
			if referrers != (ferr != nil) {
				t.Errorf("fallback tag %s: err = %v with referrers API %v", fallback, ferr, referrers)
			}

			att, err := oci.FetchBundles(ctx, pub.Artifact)
			if err != nil {
				t.Fatal(err)
			}
			if len(att.Bundles) != 1 || !bytes.Equal(att.Bundles[0], f.bundle) {
				t.Fatalf("fetched %d bundles", len(att.Bundles))
			}
			if _, err := verify.Artifact(ctx, art.Digest, att.Bundles[0], verify.Options{Trusted: verify.KeyMaterial(&f.key.PublicKey)}); err != nil {
				t.Errorf("the fetched bundle does not verify for the artifact: %v", err)
			}

			// Publishing again changes nothing and is idempotent.
			before := log.count("PUT")
			pub2, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: tag, Verify: f.verifier()})
			if err != nil {
				t.Fatal(err)
			}
			if pub2.Artifact != pub.Artifact || !reflect.DeepEqual(pub2.Referrers, pub.Referrers) {
				t.Errorf("second publish: %+v, first %+v", pub2, pub)
			}
			if n := log.count("PUT") - before; n > 1 { // only the tag may be re-put
				t.Errorf("second publish wrote %d manifests or blobs again", n)
			}
		})
	}
}

func TestPublishRefuses(t *testing.T) {
	ctx := context.Background()
	files := map[string][]byte{"hello": []byte("hello\n"), "other": []byte("other\n")}
	tests := []struct {
		name  string
		edit  func(*provenance.Build)
		after func(f *fixture)
		want  string
	}{
		{name: "output changed after the build", after: func(f *fixture) {
			os.WriteFile(filepath.Join(f.dir, "hello"), []byte("HELLO\n"), 0o644)
		}, want: `output "hello" has sha256:`},
		{name: "output missing", after: func(f *fixture) { os.Remove(filepath.Join(f.dir, "other")) }, want: "other"},
		{name: "output replaced by a symlink", after: func(f *fixture) {
			os.Remove(filepath.Join(f.dir, "other"))
			os.Symlink("hello", filepath.Join(f.dir, "other"))
		}, want: "symlink"},
		{name: "no artifact subject", edit: func(b *provenance.Build) {
			b.Subjects = b.Subjects[:2]
		}, want: `no "oci://artifact" subject`},
		{name: "artifact subject of other files", edit: func(b *provenance.Build) {
			for i := range b.Subjects {
				if b.Subjects[i].Name == oci.ArtifactSubject {
					b.Subjects[i].Digest = digest.FromBytes([]byte("another manifest"))
				}
			}
		}, want: "the artifact manifest of the outputs is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, files, tt.edit)
			if tt.after != nil {
				tt.after(f)
			}
			host, log := newRegistry(t, true)
			repo, _, _ := oci.ParseTarget(host + "/x/y")
			_, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Verify: f.verifier()})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Publish err = %v, want one containing %q", err, tt.want)
			}
			if tt.name != "output missing" && tt.name != "output replaced by a symlink" && !errors.Is(err, oci.ErrMismatch) {
				t.Errorf("err = %v, want ErrMismatch", err)
			}
			if n := log.count(""); n != 0 {
				t.Errorf("a refused publish made %d requests to the registry", n)
			}
		})
	}

	t.Run("bundle signed by another key", func(t *testing.T) {
		f := newFixture(t, files, nil)
		other := newFixture(t, files, nil)
		host, log := newRegistry(t, true)
		repo, _, _ := oci.ParseTarget(host + "/x/y")
		_, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Verify: other.verifier()})
		if !errors.Is(err, verify.ErrVerification) {
			t.Fatalf("err = %v, want a verification failure", err)
		}
		if n := log.count(""); n != 0 {
			t.Errorf("a refused publish made %d requests", n)
		}
	})
}

func TestPublishImage(t *testing.T) {
	ctx := context.Background()
	// An OCI image layout tarball, as a build would write it.
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, "application/vnd.oci.image.manifest.v1+json")
	img = mutate.ConfigMediaType(img, "application/vnd.oci.image.config.v1+json")
	layoutDir := t.TempDir()
	lp, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	if _, err := archive.WriteTree(ctx, &tarball, layoutDir, nil); err != nil {
		t.Fatal(err)
	}
	imgDigest, _ := img.Digest()
	d, err := oci.ImageInTar(ctx, bytes.NewReader(tarball.Bytes()), int64(tarball.Len()))
	if err != nil || string(d.Digest) != imgDigest.String() {
		t.Fatalf("ImageInTar = %+v, %v; want %s", d, err, imgDigest)
	}
	if _, err := oci.ImageInTar(ctx, strings.NewReader("just a file\n"), 12); !errors.Is(err, oci.ErrNotImage) {
		t.Errorf("ImageInTar(text) err = %v", err)
	}

	f := newFixture(t, map[string][]byte{"image.tar": tarball.Bytes(), "notes": []byte("n\n")}, nil)
	if s := f.subject(oci.ImageSubjectPrefix + "image.tar"); string(s.Digest) != imgDigest.String() {
		t.Fatalf("subjects %+v lack the image %s", f.subj, imgDigest)
	}
	host, _ := newRegistry(t, false)
	repo, _, _ := oci.ParseTarget(host + "/app")
	pub, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Verify: f.verifier()})
	if err != nil {
		t.Fatal(err)
	}
	ref := pub.Images["image.tar"]
	if ref != host+"/app@"+imgDigest.String() {
		t.Fatalf("images = %v", pub.Images)
	}
	got, err := remote.Image(mustRef(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	if err := validateLayers(got); err != nil {
		t.Error(err)
	}
	att, err := oci.FetchBundles(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify.Artifact(ctx, digest.Digest(imgDigest.String()), att.Bundles[0], verify.Options{Trusted: verify.KeyMaterial(&f.key.PublicKey)}); err != nil {
		t.Errorf("the image's bundle does not verify for it: %v", err)
	}
}

func validateLayers(img v1.Image) error {
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc) // ggcr checks the digest at EOF
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func TestFetchBundlesNone(t *testing.T) {
	f := newFixture(t, map[string][]byte{"a": []byte("a")}, nil)
	host, _ := newRegistry(t, true)
	repo, _, _ := oci.ParseTarget(host + "/r")
	pub, err := oci.Publish(context.Background(), oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, WithoutVerificationUnsafe: true})
	if err != nil {
		t.Fatal(err)
	}
	other := strings.Replace(pub.Artifact, "@sha256:", "@sha256:0", 1)[:len(pub.Artifact)]
	if _, err := oci.FetchBundles(context.Background(), other); !errors.Is(err, oci.ErrNoBundles) {
		t.Errorf("FetchBundles(%s) err = %v, want ErrNoBundles", other, err)
	}
	if _, err := oci.FetchBundles(context.Background(), host+"/r:latest"); err == nil {
		t.Error("FetchBundles accepted a tag")
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct{ in, repo, tag string }{
		{"127.0.0.1:5000/team/app", "127.0.0.1:5000/team/app", ""},
		{"127.0.0.1:5000/team/app:v1", "127.0.0.1:5000/team/app", "v1"},
		{"registry.example.com/app:1.2.3", "registry.example.com/app", "1.2.3"},
		{"127.0.0.1:5000/app@sha256:" + strings.Repeat("a", 64), "", ""},
		{"Not A Ref", "", ""},
	}
	for _, tt := range tests {
		repo, tag, err := oci.ParseTarget(tt.in)
		if tt.repo == "" {
			if err == nil {
				t.Errorf("ParseTarget(%q) accepted", tt.in)
			}
			continue
		}
		if err != nil || repo.String() != tt.repo || tag != tt.tag {
			t.Errorf("ParseTarget(%q) = %s, %q, %v; want %s, %q", tt.in, repo, tag, err, tt.repo, tt.tag)
		}
	}
}

// Plain HTTP is for loopback registries only: ggcr would also fall back to it for private addresses.
func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := oci.FetchBundles(ctx, "10.255.255.1:5000/r@sha256:"+strings.Repeat("a", 64),
		oci.WithTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Scheme == "https" {
				return nil, errors.New("no TLS here")
			}
			t.Errorf("plain HTTP request reached the transport: %s", r.URL)
			return nil, errors.New("unexpected")
		})))
	if err == nil || !strings.Contains(err.Error(), "refusing plain HTTP") {
		t.Errorf("err = %v, want a refusal of plain HTTP", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// requestLog records the requests a test registry served.
type requestLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *requestLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, s)
}

// count returns how many requests began with prefix.
func (l *requestLog) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.reqs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// ImageInTar reads build outputs, which are untrusted bytes.
func FuzzImageInTar(f *testing.F) {
	f.Add([]byte("not a tar"))
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, body := range map[string]string{
		"oci-layout": `{"imageLayoutVersion":"1.0.0"}`,
		"index.json": `{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","size":3}]}`,
	} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := oci.ImageInTar(context.Background(), bytes.NewReader(data), int64(len(data)))
		if err == nil && (d == nil || !strings.HasPrefix(string(d.Digest), "sha256:") || d.Size <= 0) {
			t.Errorf("ImageInTar accepted %+v", d)
		}
	})
}
