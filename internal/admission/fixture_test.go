package admission_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/admission"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/policy"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/registry"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

// testRegistry is ssf's embedded registry on loopback, counting the requests that reach it.
type testRegistry struct {
	host string
	mu   sync.Mutex
	reqs []string // "METHOD PATH"
}

func newTestRegistry(t testing.TB) *testRegistry {
	t.Helper()
	r, err := registry.New(t.TempDir(), registry.WithInsecureLocalPushUnsafe(), registry.WithAnonymousPull(true))
	if err != nil {
		t.Fatal(err)
	}
	tr := &testRegistry{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tr.mu.Lock()
		tr.reqs = append(tr.reqs, req.Method+" "+req.URL.Path)
		tr.mu.Unlock()
		r.ServeHTTP(w, req)
	}))
	t.Cleanup(s.Close)
	tr.host = strings.TrimPrefix(s.URL, "http://")
	return tr
}

// requests returns the requests made since the last call, and forgets them.
func (r *testRegistry) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reqs
	r.reqs = nil
	return out
}

// factory signs provenance with its key, as ssf build does, and publishes images with it as ssf publish does.
type factory struct {
	key *ecdsa.PrivateKey
}

func newFactory(t testing.TB) *factory {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &factory{key: k}
}

func (f *factory) trust(t testing.TB) *admission.Trust {
	t.Helper()
	pemKey, err := sign.PublicKeyPEM(&f.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := admission.NewTrust(pemKey, nil, verify.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// pushImage pushes a new random image to host/repo:tag and returns it by digest.
func pushImage(t testing.TB, host, repo, tag string) string {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return host + "/" + repo + "@" + d.String()
}

// sign attaches to the image (REGISTRY/REPO@sha256:HEX) a Sigstore bundle of SLSA provenance naming it, signed by
// the factory's key, as a referrer in the layout ssf publish writes.
func (f *factory) sign(t testing.TB, image string, edit func(*provenance.Build)) {
	t.Helper()
	ref, err := name.NewDigest(image, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.Digest(ref.DigestStr())
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	b := provenance.Build{
		BuilderID: "https://ssf.dev/factory/test", BuilderVersion: map[string]string{"ssf": "test"},
		InvocationID: "run-1", StartedOn: now.Add(-time.Minute), FinishedOn: now,
		PipelineName: "app", PipelineDigest: digest.FromBytes([]byte("ssf.yaml")), Params: map[string]string{}, SourceURI: "file:///src",
		Dependencies: []provenance.ResourceDescriptor{{Name: "source", URI: "file:///src", Digest: provenance.Digest{"sha256": digest.FromBytes([]byte("src")).Encoded()}}},
		Subjects:     []provenance.Subject{{Name: ref.Context().Name(), Digest: d}},
	}
	if edit != nil {
		edit(&b)
	}
	st, err := provenance.Statement(b)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := sign.NewSigner(f.key).Statement(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	attach(t, ref, bundle)
}

// attach pushes bundle as a referrer of ref.
func attach(t testing.TB, ref name.Digest, bundle []byte) {
	t.Helper()
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, err := oci.ReferrerManifest(oci.Descriptor{MediaType: string(desc.MediaType), Digest: digest.Digest(desc.Digest.String()), Size: desc.Size},
		bundle, provenance.PredicateType, time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	repo := ref.Context()
	for _, blob := range [][]byte{[]byte("{}"), bundle} {
		if err := remote.WriteLayer(repo, static.NewLayer(blob, types.MediaType("application/octet-stream"))); err != nil {
			t.Fatal(err)
		}
	}
	mref := repo.Digest(digest.FromBytes(m).String())
	if err := remote.Put(mref, rawManifest{raw: m, mt: types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

var _ remote.Taggable = rawManifest{}
var _ = v1.Hash{}

func defaultPolicy(t testing.TB) *policy.Set {
	t.Helper()
	s, err := policy.Compile(context.Background(), "default", policy.DefaultFiles())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newHandler(t testing.TB, trust *admission.Trust, set *policy.Set, opts ...admission.Option) *admission.Handler {
	t.Helper()
	if set == nil {
		set = defaultPolicy(t)
	}
	h, err := admission.New(trust, set, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// podJSON is a Pod with the given containers (name=image pairs), initContainers and ephemeralContainers.
func podSpec(containers, inits, ephemerals []string) map[string]any {
	list := func(pairs []string) []map[string]any {
		var out []map[string]any
		for _, p := range pairs {
			n, img, _ := strings.Cut(p, "=")
			out = append(out, map[string]any{"name": n, "image": img})
		}
		return out
	}
	spec := map[string]any{"containers": list(containers)}
	if inits != nil {
		spec["initContainers"] = list(inits)
	}
	if ephemerals != nil {
		spec["ephemeralContainers"] = list(ephemerals)
	}
	return spec
}

// objectOf wraps a pod spec into an object of kind: a Pod, or a workload with a pod template.
func objectOf(kind, objName string, spec map[string]any) map[string]any {
	meta := map[string]any{"name": objName, "namespace": "prod"}
	template := map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": objName}}, "spec": spec}
	o := map[string]any{"metadata": meta}
	switch kind {
	case "Pod":
		o["apiVersion"], o["spec"] = "v1", spec
	case "CronJob":
		o["apiVersion"] = "batch/v1"
		o["spec"] = map[string]any{"schedule": "@daily", "jobTemplate": map[string]any{"spec": map[string]any{"template": template}}}
	case "Job":
		o["apiVersion"], o["spec"] = "batch/v1", map[string]any{"template": template}
	default:
		o["apiVersion"], o["spec"] = "apps/v1", map[string]any{"selector": map[string]any{}, "template": template}
	}
	o["kind"] = kind
	return o
}

var groups = map[string]string{"Pod": "", "Deployment": "apps", "StatefulSet": "apps", "DaemonSet": "apps", "ReplicaSet": "apps", "Job": "batch", "CronJob": "batch"}

// reviewJSON is an AdmissionReview v1 request for obj, as the API server sends it.
func reviewJSON(t testing.TB, op string, obj map[string]any) []byte {
	t.Helper()
	kind := obj["kind"].(string)
	meta := obj["metadata"].(map[string]any)
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	resource := strings.ToLower(kind) + "s"
	rv := map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid":         fmt.Sprintf("uid-%s-%s", kind, meta["name"]),
			"kind":        map[string]any{"group": groups[kind], "version": "v1", "kind": kind},
			"resource":    map[string]any{"group": groups[kind], "version": "v1", "resource": resource},
			"requestKind": map[string]any{"group": groups[kind], "version": "v1", "kind": kind},
			"name":        meta["name"], "namespace": "prod", "operation": op,
			"userInfo": map[string]any{"username": "alice"},
			"object":   json.RawMessage(raw), "oldObject": nil, "dryRun": false,
			"options": map[string]any{"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
		},
	}
	b, err := json.Marshal(rv)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post sends body to the handler's path and returns the decoded answer.
func post(t testing.TB, h http.Handler, path string, body []byte) (*admission.Review, int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		return nil, w.Code, w.Body.String()
	}
	var rv admission.Review
	if err := json.Unmarshal(w.Body.Bytes(), &rv); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, w.Body.String())
	}
	if rv.APIVersion != admission.APIVersion || rv.Kind != admission.ReviewKind || rv.Response == nil {
		t.Fatalf("answer is not an AdmissionReview v1 response: %s", w.Body.String())
	}
	return &rv, w.Code, w.Body.String()
}
