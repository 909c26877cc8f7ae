package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/admission"
	"github.com/ssf-dev/ssf/internal/policy"
	"github.com/ssf-dev/ssf/internal/provenance"
)

// ownDeployPolicy is the default set with ssf.deploy replaced by a rule a platform team might write: nothing from
// one registry. It says nothing about tags.
func ownDeployPolicy(t *testing.T) *policy.Set {
	t.Helper()
	var files []policy.File
	for _, f := range policy.DefaultFiles() {
		if !strings.HasPrefix(f.Name, "deploy") {
			files = append(files, f)
		}
	}
	files = append(files, policy.File{Name: "deploy.rego", Data: []byte(`package ssf.deploy

deny contains msg if {
	startswith(input.artifact.uri, "evil.example.com/")
	msg := "nothing from evil.example.com"
}
`)})
	set, err := policy.Compile(context.Background(), "own", files)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestValidateDeniesATagWhateverThePolicy: /validate verified the digest a tag named when it asked, then admitted
// the tag: the kubelet pulls the tag later, and the registry may serve another image for it by then. Only the
// default policy's "not named by digest" rule stood in the way; a set without it admitted the tag.
func TestValidateDeniesATagWhateverThePolicy(t *testing.T) {
	w := newWorld(t)
	h := newHandler(t, w.fac.trust(t), ownDeployPolicy(t))
	// The digest itself is admitted under this policy.
	if rv, _, body := post(t, h, "/validate/enforce", reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + w.good}, nil, nil)))); rv == nil || !rv.Response.Allowed {
		t.Fatalf("the factory's image by digest was not admitted: %s", body)
	}
	tagged := w.reg.host + "/team/app:v1"
	rv, _, body := post(t, h, "/validate/enforce", reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + tagged}, nil, nil))))
	if rv == nil || rv.Response.Allowed {
		t.Fatalf("a Pod naming %s by tag was admitted: %s", tagged, body)
	}
	if want := `container "app" (image "` + tagged + `"): image: named by tag`; !strings.Contains(rv.Response.Result.Message, want) {
		t.Errorf("denial %q\ndoes not say %q", rv.Response.Result.Message, want)
	}
}

// toRegistry sends every registry request, whatever host it names, to the test registry: the same registry under
// several spellings of its name, as DNS would (case, a trailing dot, :443 for https, Docker Hub's three names).
type toRegistry struct{ host string }

func (t toRegistry) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = "http", t.host, t.host
	resp, err := http.DefaultTransport.RoundTrip(out)
	if resp != nil {
		resp.Request = req // the client reads the scheme the registry answered on from here
	}
	return resp, err
}

// TestPolicyArtifactURIIsOneSpelling: ssf.deploy's input.artifact.uri named the image's registry as the container
// wrote it, so a rule against a registry was passed by writing its host in capitals, with a trailing dot or
// :443, or Docker Hub as registry-1.docker.io: every spelling reaches the same registry and the same bytes.
func TestPolicyArtifactURIIsOneSpelling(t *testing.T) {
	w := newWorld(t)
	var files []policy.File
	for _, f := range policy.DefaultFiles() {
		if !strings.HasPrefix(f.Name, "deploy") {
			files = append(files, f)
		}
	}
	files = append(files, policy.File{Name: "deploy.rego", Data: []byte(`package ssf.deploy

deny contains msg if {
	some banned in ["registry.example.com/", "index.docker.io/"]
	startswith(input.artifact.uri, banned)
	msg := sprintf("banned registry: %s", [input.artifact.uri])
}
`)})
	set, err := policy.Compile(context.Background(), "banned", files)
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, w.fac.trust(t), set, admission.WithTransport(toRegistry{w.reg.host}))
	_, dg, _ := strings.Cut(w.good, "@")
	for _, host := range []string{"registry.example.com", "REGISTRY.Example.COM", "registry.example.com.", "registry.example.com:443",
		"docker.io", "index.docker.io", "registry-1.docker.io"} {
		image := host + "/team/app@" + dg
		rv, _, body := post(t, h, "/validate/enforce", reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + image}, nil, nil))))
		if rv == nil || rv.Response.Allowed {
			t.Errorf("%s was admitted: %s", image, body)
			continue
		}
		if !strings.Contains(rv.Response.Result.Message, "policy ssf.deploy: banned registry: ") {
			t.Errorf("%s: denied, but not by the policy: %s", image, rv.Response.Result.Message)
		}
	}
}

// updateReview is an UPDATE review of obj whose stored object was old.
func updateReview(t *testing.T, old, obj map[string]any) []byte {
	t.Helper()
	var rv map[string]any
	if err := json.Unmarshal(reviewJSON(t, "UPDATE", obj), &rv); err != nil {
		t.Fatal(err)
	}
	rv["request"].(map[string]any)["oldObject"] = old
	b, err := json.Marshal(rv)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUpdateKeepingTheImagesStartsNothing: an UPDATE that keeps every container's image (a label, a finalizer
// removed, a Job controller's bookkeeping) starts nothing new, yet it was verified again: once the trust rotated,
// or while the registry was away, such an UPDATE of a running Pod was denied (a Job's Pods kept their tracking
// finalizer, a deletion hung), and /mutate rewrote a tag the old Pod ran into a digest, which restarts the
// container. A container whose name and image the stored object had is not checked again; a changed image is.
func TestUpdateKeepingTheImagesStartsNothing(t *testing.T) {
	w := newWorld(t)
	h := newHandler(t, w.fac.trust(t), nil)
	old := objectOf("Pod", "web", podSpec([]string{"app=" + w.good}, nil, nil))
	if rv, _, body := post(t, h, "/validate/enforce", reviewJSON(t, "CREATE", old)); rv == nil || !rv.Response.Allowed {
		t.Fatalf("the Pod was not admitted: %s", body)
	}
	h.SetTrust(newFactory(t).trust(t)) // the factory's key rotated: the running image no longer verifies
	relabelled := objectOf("Pod", "web", podSpec([]string{"app=" + w.good}, nil, nil))
	relabelled["metadata"].(map[string]any)["labels"] = map[string]any{"audited": "yes"}
	if rv, _, body := post(t, h, "/validate/enforce", updateReview(t, old, relabelled)); rv == nil || !rv.Response.Allowed {
		t.Errorf("an UPDATE changing only a label was denied: %s", body)
	}
	// A changed image, or a container the stored object did not have, is checked.
	for what, spec := range map[string]map[string]any{
		"a changed image": podSpec([]string{"app=" + w.unsigned}, nil, nil),
		"a new container": podSpec([]string{"app=" + w.good}, nil, []string{"debug=" + w.good}),
		"a renamed one":   podSpec([]string{"debug=" + w.good}, nil, nil),
	} {
		rv, _, body := post(t, h, "/validate/enforce", updateReview(t, old, objectOf("Pod", "web", spec)))
		if rv == nil || rv.Response.Allowed || !strings.Contains(rv.Response.Result.Message, "provenance") {
			t.Errorf("an UPDATE with %s was not denied for its provenance: %s", what, body)
		}
	}
	// /mutate leaves the tag a stored Pod runs alone (changing it restarts the container) and pins a new one.
	tagged := w.reg.host + "/team/app:v1"
	oldTagged := objectOf("Pod", "web", podSpec([]string{"app=" + tagged}, nil, nil))
	newTagged := objectOf("Pod", "web", podSpec([]string{"app=" + tagged}, nil, []string{"debug=" + tagged}))
	rv, _, body := post(t, newHandler(t, w.fac.trust(t), nil), "/mutate/enforce", updateReview(t, oldTagged, newTagged))
	if rv == nil || !rv.Response.Allowed {
		t.Fatalf("mutate: %s", body)
	}
	if p := string(rv.Response.Patch); strings.Contains(p, "/spec/containers/0/image") || !strings.Contains(p, "/spec/ephemeralContainers/0/image") {
		t.Errorf("mutate patched %s: want only the new ephemeral container's tag pinned", p)
	}
}

// TestSlowRegistryDenies: a registry that accepts the connection and then answers nothing, or drips its answer a
// byte at a time, must cost a review its --request-timeout and a denial, not an admission, nor the API server's
// own timeout (with failurePolicy Fail that denies too, but says only that the call failed). Held: a regression
// test.
func TestSlowRegistryDenies(t *testing.T) {
	w := newWorld(t)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/v2/") {
			rw.WriteHeader(http.StatusOK)
			return
		}
		rw.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		rw.WriteHeader(http.StatusOK)
		for { // a byte now and then: progress, never an end
			if _, err := rw.Write([]byte(" ")); err != nil {
				return
			}
			rw.(http.Flusher).Flush()
			select {
			case <-release:
				return
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(func() { close(release); slow.Close() })
	host := strings.TrimPrefix(slow.URL, "http://")
	_, dg, _ := strings.Cut(w.good, "@")
	h := newHandler(t, w.fac.trust(t), nil, admission.WithRequestTimeout(500*time.Millisecond))
	for path, image := range map[string]string{"/validate/enforce": host + "/team/app@" + dg, "/mutate/enforce": host + "/team/app:v1"} {
		start := time.Now()
		rv, _, body := post(t, h, path, reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + image}, nil, nil))))
		took := time.Since(start)
		if rv == nil || rv.Response.Allowed {
			t.Errorf("%s of %s on a registry that never finishes: %s", path, image, body)
			continue
		}
		if !strings.Contains(rv.Response.Result.Message, `container "app" (image "`+image+`")`) {
			t.Errorf("%s: the denial does not name the container: %s", path, rv.Response.Result.Message)
		}
		t.Logf("%s: %s in %s", path, rv.Response.Result.Message, took)
		if took > 5*time.Second {
			t.Errorf("%s took %s, with a request timeout of 500ms", path, took)
		}
	}
}

// TestImageSpellings: spellings of an image that go-containerregistry and the kubelet's reference parser
// (distribution/reference) might read differently. Each is either admitted as the digest the kubelet pulls, or
// denied naming the container: an upper-case digest (neither parses it), another algorithm, white space, a
// zero-width space, a user in the host, an upper-case repository, provenance of another image attached to this
// one. Held: a regression test.
func TestImageSpellings(t *testing.T) {
	w := newWorld(t)
	repo, dg, _ := strings.Cut(w.good, "@")
	hex := strings.TrimPrefix(dg, "sha256:")
	victim := pushImage(t, w.reg.host, "team/victim", "v1")
	w.fac.sign(t, victim, func(b *provenance.Build) { // a lying registry: the good image's provenance, attached here
		b.Subjects = []provenance.Subject{{Name: repo, Digest: digest.Digest(dg)}}
	})
	h := newHandler(t, w.fac.trust(t), nil)
	for _, tc := range []struct {
		image   string
		allowed bool
		want    string
	}{
		{image: repo + ":whatever@" + dg, allowed: true}, // the kubelet pulls the digest and ignores the tag
		{image: victim, want: "provenance: no factory provenance verified"},
		{image: repo + "@sha256:" + strings.ToUpper(hex), want: "image: not an image reference"},
		{image: repo + "@sha512:" + hex + hex, want: "provenance: not a registry reference"},
		{image: " " + w.good, want: "image: not an image reference"},
		{image: w.good + "\u200b", want: "image: not an image reference"},
		{image: "user@" + w.good, want: "image: not an image reference"},
		{image: strings.Replace(w.good, "/team/", "/Team/", 1), want: "image: not an image reference"},
	} {
		rv, _, body := post(t, h, "/validate/enforce", reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + tc.image}, nil, nil))))
		if rv == nil || rv.Response.Allowed != tc.allowed {
			t.Errorf("%q: %s", tc.image, body)
			continue
		}
		if !tc.allowed && !strings.Contains(rv.Response.Result.Message, `container "app" (image `) || !tc.allowed && !strings.Contains(rv.Response.Result.Message, tc.want) {
			t.Errorf("%q: the denial does not name the container and say %q: %s", tc.image, tc.want, rv.Response.Result.Message)
		}
	}
}

// TestLargeReviewsAreReadAFewAtATime: reading and decoding a review costs about four times its size in memory
// (30 MiB for one of 8 MiB, measured), and nothing bounded how many were read at once: thirty concurrent reviews
// of 8 MiB took the webhook to 930 MiB, past the 256 MiB its Deployment allows, and an out-of-memory kill fails
// every opted-in namespace closed. Now a review over 64 KiB waits for a slot, until its request times out (503:
// under failurePolicy Fail, a denial), while small reviews (every ordinary Pod) are not held up.
func TestLargeReviewsAreReadAFewAtATime(t *testing.T) {
	w := newWorld(t)
	h := newHandler(t, w.fac.trust(t), nil, admission.WithLargeReviews(1))
	obj := objectOf("Pod", "big", podSpec([]string{"app=" + w.good}, nil, nil))
	obj["metadata"].(map[string]any)["annotations"] = map[string]any{"note": strings.Repeat("x", 100<<10)}
	big := reviewJSON(t, "CREATE", obj)

	// The first large review holds the one slot while its body arrives.
	pr, pw := io.Pipe()
	first := httptest.NewRequest(http.MethodPost, "/validate/enforce", pr)
	first.ContentLength = int64(len(big))
	firstRec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { h.ServeHTTP(firstRec, first); close(done) }()
	if _, err := pw.Write(big[:1]); err != nil { // returns once the handler has read it: it holds the slot
		t.Fatal(err)
	}

	// A second one finds no slot before its request ends.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	second := httptest.NewRequest(http.MethodPost, "/validate/enforce", bytes.NewReader(big)).WithContext(ctx)
	secondRec := httptest.NewRecorder()
	h.ServeHTTP(secondRec, second)
	if secondRec.Code != http.StatusServiceUnavailable || !strings.Contains(secondRec.Body.String(), "too many large admission reviews") {
		t.Errorf("a second large review while the slot is taken: %d %s, want 503", secondRec.Code, secondRec.Body.String())
	}

	// A small review goes ahead.
	if rv, _, body := post(t, h, "/validate/enforce", reviewJSON(t, "CREATE", objectOf("Pod", "small", podSpec([]string{"app=" + w.good}, nil, nil)))); rv == nil || !rv.Response.Allowed {
		t.Errorf("a small review while a large one is read: %s", body)
	}

	// The first is decided once its body is in.
	if _, err := pw.Write(big[1:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	<-done
	var rv admission.Review
	if err := json.Unmarshal(firstRec.Body.Bytes(), &rv); err != nil || rv.Response == nil || !rv.Response.Allowed {
		t.Errorf("the large review: %d %s", firstRec.Code, firstRec.Body.String())
	}
}

// TestImageVolumesAreImages: an image volume (spec.volumes[].image.reference) mounts an OCI image's files into
// the Pod's containers, so a verified image's shell or interpreter runs what an unverified image holds. The
// webhook looked at containers only and admitted any image volume. Now each is pinned by /mutate and verified by
// /validate like a container's image, named "image volume NAME" in a denial and "volume:NAME" to ssf.deploy.
func TestImageVolumesAreImages(t *testing.T) {
	w := newWorld(t)
	withVolume := func(ref string) map[string]any {
		spec := podSpec([]string{"app=" + w.good}, nil, nil)
		spec["volumes"] = []any{map[string]any{"name": "cfg", "emptyDir": map[string]any{}}, map[string]any{"name": "tools", "image": map[string]any{"reference": ref}}}
		return objectOf("Deployment", "web", spec)
	}
	h := newHandler(t, w.fac.trust(t), nil)
	rv, _, body := post(t, h, "/validate/enforce", reviewJSON(t, "CREATE", withVolume(w.unsigned)))
	if rv == nil || rv.Response.Allowed {
		t.Fatalf("a Deployment mounting the unsigned image %s was admitted: %s", w.unsigned, body)
	}
	if want := `image volume "tools" (image "` + w.unsigned + `"): provenance:`; !strings.Contains(rv.Response.Result.Message, want) {
		t.Errorf("denial %q\ndoes not say %q", rv.Response.Result.Message, want)
	}
	rv, _, body = post(t, h, "/mutate/enforce", reviewJSON(t, "CREATE", withVolume(w.reg.host+"/team/app:v1")))
	if rv == nil || !rv.Response.Allowed || !strings.Contains(string(rv.Response.Patch), `{"op":"replace","path":"/spec/template/spec/volumes/1/image/reference","value":"`+w.good+`"}`) {
		t.Errorf("mutate of an image volume by tag: %s (patch %s)", body, rv.Response.Patch)
	}
	var files []policy.File
	for _, f := range policy.DefaultFiles() {
		if !strings.HasPrefix(f.Name, "deploy") {
			files = append(files, f)
		}
	}
	files = append(files, policy.File{Name: "deploy.rego", Data: []byte(`package ssf.deploy

deny contains msg if {
	startswith(input.admission.container, "volume:")
	msg := sprintf("no image volumes (%s)", [input.admission.container])
}
`)})
	set, err := policy.Compile(context.Background(), "novolumes", files)
	if err != nil {
		t.Fatal(err)
	}
	rv, _, body = post(t, newHandler(t, w.fac.trust(t), set), "/validate/enforce", reviewJSON(t, "CREATE", withVolume(w.good)))
	if rv == nil || rv.Response.Allowed || !strings.Contains(rv.Response.Result.Message, `image volume "tools" (image "`+w.good+`"): policy ssf.deploy: no image volumes (volume:tools)`) {
		t.Errorf("ssf.deploy did not see the image volume as volume:tools: %s", body)
	}
}
