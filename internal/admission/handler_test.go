package admission_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/admission"
	"github.com/ssf-dev/ssf/internal/policy"
)

// world is a registry with a factory's signed image, an unsigned one and one signed by another factory.
type world struct {
	reg                    *testRegistry
	fac                    *factory
	good, unsigned, others string // by digest
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{reg: newTestRegistry(t), fac: newFactory(t)}
	w.good = pushImage(t, w.reg.host, "team/app", "v1")
	w.fac.sign(t, w.good, nil)
	w.unsigned = pushImage(t, w.reg.host, "team/unsigned", "v1")
	w.others = pushImage(t, w.reg.host, "team/other", "v1")
	newFactory(t).sign(t, w.others, nil)
	w.reg.requests()
	return w
}

func TestValidate(t *testing.T) {
	w := newWorld(t)
	h := newHandler(t, w.fac.trust(t), nil)
	for _, tc := range []struct {
		name      string
		kind      string
		spec      map[string]any
		allowed   bool
		want      []string // in the denial
		wantNot   []string
		uidSuffix string
	}{
		{name: "pod of a factory image", kind: "Pod", spec: podSpec([]string{"app=" + w.good}, nil, nil), allowed: true},
		{name: "pod of an unsigned image", kind: "Pod", spec: podSpec([]string{"app=" + w.unsigned}, nil, nil),
			want: []string{`Pod prod/web`, `container "app" (image "` + w.unsigned + `"): provenance:`, "no provenance bundles"}},
		{name: "pod of another factory's image", kind: "Pod", spec: podSpec([]string{"app=" + w.others}, nil, nil),
			want: []string{`container "app" (image "` + w.others + `"): provenance: no factory provenance verified: bundle sha256:`, "not signed by this key"}},
		{name: "deployment with one bad container of three", kind: "Deployment",
			spec: podSpec([]string{"a=" + w.good, "b=" + w.unsigned, "c=" + w.good}, nil, nil),
			want: []string{`Deployment prod/web`, `container "b" (image "` + w.unsigned + `")`}, wantNot: []string{`container "a"`, `container "c"`}},
		{name: "every failing container is reported", kind: "StatefulSet",
			spec: podSpec([]string{"a=" + w.unsigned, "b=" + w.good}, []string{"init=" + w.others}, nil),
			want: []string{`container "a"`, `container "init"`}, wantNot: []string{`container "b"`}},
		{name: "cronjob with init and ephemeral containers", kind: "CronJob",
			spec:    podSpec([]string{"app=" + w.good}, []string{"init=" + w.good}, []string{"debug=" + w.good}),
			allowed: true},
		{name: "cronjob with a bad ephemeral container", kind: "CronJob",
			spec: podSpec([]string{"app=" + w.good}, []string{"init=" + w.good}, []string{"debug=" + w.unsigned}),
			want: []string{`CronJob prod/web`, `container "debug"`}},
		{name: "job with a bad init container", kind: "Job", spec: podSpec([]string{"app=" + w.good}, []string{"init=" + w.unsigned}, nil),
			want: []string{`container "init"`}},
		{name: "daemonset", kind: "DaemonSet", spec: podSpec([]string{"app=" + w.good}, nil, nil), allowed: true},
		{name: "replicaset", kind: "ReplicaSet", spec: podSpec([]string{"app=" + w.good}, nil, nil), allowed: true},
		{name: "a tag is denied, even one naming a factory image (/mutate pins tags; /validate checks digests)", kind: "Pod",
			spec: podSpec([]string{"app=" + w.reg.host + "/team/app:v1"}, nil, nil),
			want: []string{`container "app" (image "` + w.reg.host + `/team/app:v1"): image: named by tag, not by digest`}, wantNot: []string{"provenance:"}},
		{name: "a tag and a digest: the digest is what the kubelet pulls", kind: "Pod",
			spec: podSpec([]string{"app=" + strings.Replace(w.good, "@", ":whatever@", 1)}, nil, nil), allowed: true},
		{name: "no image", kind: "Pod", spec: podSpec([]string{"app="}, nil, nil), want: []string{`container "app"`, "has no image"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rv, code, body := post(t, h, "/validate/enforce", reviewJSON(t, "CREATE", objectOf(tc.kind, "web", tc.spec)))
			if rv == nil {
				t.Fatalf("status %d: %s", code, body)
			}
			r := rv.Response
			if r.UID != "uid-"+tc.kind+"-web" {
				t.Errorf("uid %q, want the request's", r.UID)
			}
			if r.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v: %s", r.Allowed, tc.allowed, body)
			}
			if tc.allowed {
				if r.Result != nil || len(r.Warnings) > 0 {
					t.Errorf("admitted with %s", body)
				}
				return
			}
			if r.Result == nil || r.Result.Code != http.StatusForbidden {
				t.Fatalf("denial without a 403 status: %s", body)
			}
			for _, s := range tc.want {
				if !strings.Contains(r.Result.Message, s) {
					t.Errorf("denial does not say %q:\n%s", s, r.Result.Message)
				}
			}
			for _, s := range tc.wantNot {
				if strings.Contains(r.Result.Message, s) {
					t.Errorf("denial says %q:\n%s", s, r.Result.Message)
				}
			}
		})
	}
}

func TestWarnModeAdmitsWithWarnings(t *testing.T) {
	w := newWorld(t)
	h := newHandler(t, w.fac.trust(t), nil)
	obj := objectOf("Deployment", "web", podSpec([]string{"a=" + w.good, "b=" + w.unsigned, "c=" + w.others}, nil, nil))
	rv, code, body := post(t, h, "/validate/warn", reviewJSON(t, "CREATE", obj))
	if rv == nil {
		t.Fatalf("status %d: %s", code, body)
	}
	r := rv.Response
	if !r.Allowed || r.Result != nil {
		t.Fatalf("warn mode denied: %s", body)
	}
	if len(r.Warnings) != 2 || !strings.Contains(r.Warnings[0], `container "b"`) || !strings.Contains(r.Warnings[1], `container "c"`) {
		t.Fatalf("warnings %q, want one for b and one for c", r.Warnings)
	}
	for _, wn := range r.Warnings {
		if !strings.Contains(wn, "warn mode") {
			t.Errorf("warning %q does not say it was not enforced", wn)
		}
	}
	// The same review in enforce mode is denied: the mode, not the images, made the difference.
	if rv, _, body := post(t, h, "/validate", reviewJSON(t, "CREATE", obj)); rv == nil || rv.Response.Allowed {
		t.Fatalf("without a mode (enforce) it was not denied: %s", body)
	}
}

func TestPolicyDenialIsShown(t *testing.T) {
	w := newWorld(t)
	set, err := policy.Compile(context.Background(), "test", append(policy.DefaultFiles(), policy.File{Name: "extra.rego", Data: []byte(`package ssf.deploy

deny contains msg if {
	input.admission.container == "sidecar"
	input.admission.namespace == "prod"
	msg := sprintf("no sidecars in %s (%s)", [input.admission.namespace, input.artifact.digest])
}
`)}))
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, w.fac.trust(t), set)
	obj := objectOf("Pod", "web", podSpec([]string{"app=" + w.good, "sidecar=" + w.good}, nil, nil))
	rv, _, body := post(t, h, "/validate", reviewJSON(t, "CREATE", obj))
	if rv == nil || rv.Response.Allowed {
		t.Fatalf("not denied: %s", body)
	}
	_, dg, _ := strings.Cut(w.good, "@")
	msg := rv.Response.Result.Message
	if want := `container "sidecar" (image "` + w.good + `"): policy ssf.deploy: no sidecars in prod (` + dg + `)`; !strings.Contains(msg, want) {
		t.Errorf("denial %q\ndoes not say %q", msg, want)
	}
	if strings.Contains(msg, `container "app"`) {
		t.Errorf("the policy reads input.admission per container, yet app was denied: %s", msg)
	}
}

func TestMutate(t *testing.T) {
	w := newWorld(t)
	h := newHandler(t, w.fac.trust(t), nil)
	_, dg, _ := strings.Cut(w.good, "@")
	tagged := w.reg.host + "/team/app:v1"
	byDigest := w.reg.host + "/team/app@" + dg
	for _, tc := range []struct {
		kind  string
		spec  map[string]any
		patch []map[string]string
	}{
		{"Pod", podSpec([]string{"app=" + tagged, "pinned=" + w.unsigned}, []string{"init=" + tagged}, []string{"debug=" + tagged}), []map[string]string{
			{"op": "replace", "path": "/spec/containers/0/image", "value": byDigest},
			{"op": "replace", "path": "/spec/initContainers/0/image", "value": byDigest},
			{"op": "replace", "path": "/spec/ephemeralContainers/0/image", "value": byDigest},
		}},
		{"Deployment", podSpec([]string{"a=" + w.good, "b=" + tagged}, nil, nil), []map[string]string{
			{"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": byDigest},
		}},
		{"CronJob", podSpec([]string{"app=" + tagged}, nil, nil), []map[string]string{
			{"op": "replace", "path": "/spec/jobTemplate/spec/template/spec/containers/0/image", "value": byDigest},
		}},
		{"StatefulSet", podSpec([]string{"app=" + w.good}, nil, nil), nil},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			rv, code, body := post(t, h, "/mutate/enforce", reviewJSON(t, "CREATE", objectOf(tc.kind, "web", tc.spec)))
			if rv == nil {
				t.Fatalf("status %d: %s", code, body)
			}
			r := rv.Response
			if !r.Allowed {
				t.Fatalf("denied: %s", body)
			}
			if tc.patch == nil {
				if r.Patch != nil || r.PatchType != nil {
					t.Fatalf("patched images already by digest: %s", body)
				}
				return
			}
			if r.PatchType == nil || *r.PatchType != "JSONPatch" {
				t.Fatalf("patchType: %s", body)
			}
			var got []map[string]string
			if err := json.Unmarshal(r.Patch, &got); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.patch) {
				t.Errorf("patch %v\nwant  %v", got, tc.patch)
			}
			// On the wire the patch is base64, as the API server reads a []byte.
			var wire struct{ Response struct{ Patch string } }
			json.Unmarshal([]byte(body), &wire)
			if dec, err := base64.StdEncoding.DecodeString(wire.Response.Patch); err != nil || !json.Valid(dec) {
				t.Errorf("patch on the wire is not base64 of JSON: %q", wire.Response.Patch)
			}
		})
	}

	// A tag the registry does not have: enforce denies naming it, warn admits unpatched with a warning.
	obj := objectOf("Pod", "web", podSpec([]string{"app=" + w.reg.host + "/team/app:nope"}, nil, nil))
	rv, _, body := post(t, h, "/mutate", reviewJSON(t, "CREATE", obj))
	if rv == nil || rv.Response.Allowed || !strings.Contains(rv.Response.Result.Message, `container "app" (image "`+w.reg.host+`/team/app:nope"): resolving the tag`) {
		t.Errorf("unresolvable tag in enforce mode: %s", body)
	}
	rv, _, body = post(t, h, "/mutate/warn", reviewJSON(t, "CREATE", obj))
	if rv == nil || !rv.Response.Allowed || rv.Response.Patch != nil || len(rv.Response.Warnings) != 1 {
		t.Errorf("unresolvable tag in warn mode: %s", body)
	}
}

func TestWithDigestKeepsTheRepositoryAsWritten(t *testing.T) {
	// withDigest is internal; what it does shows in the patch for the usual spellings.
	w := newWorld(t)
	h := newHandler(t, w.fac.trust(t), nil)
	_, dg, _ := strings.Cut(w.good, "@")
	rv, _, body := post(t, h, "/mutate", reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + w.reg.host + "/team/app:v1@" + dg}, nil, nil))))
	if rv == nil || !rv.Response.Allowed || rv.Response.Patch != nil {
		t.Errorf("an image with a tag and a digest is pinned already, yet: %s", body)
	}
}

func TestCacheMakesNoRegistryRequest(t *testing.T) {
	w := newWorld(t)
	h := newHandler(t, w.fac.trust(t), nil)
	review := reviewJSON(t, "CREATE", objectOf("Deployment", "web", podSpec([]string{"a=" + w.good, "b=" + w.unsigned}, nil, nil)))
	first, _, body := post(t, h, "/validate", review)
	if first == nil || first.Response.Allowed {
		t.Fatalf("first review: %s", body)
	}
	reqs := w.reg.requests()
	if n := count(reqs, "/referrers/"); n != 2 {
		t.Fatalf("first review listed referrers %d times, want once per image (2): %q", n, reqs)
	}
	// Another uncached image of the same registry: its referrers listing, its bundle's manifest and blob, and no
	// version check (GET /v2/): the registry's answer to it is reused.
	if rv, _, body := post(t, h, "/validate", reviewJSON(t, "CREATE", objectOf("Pod", "third", podSpec([]string{"x=" + w.others}, nil, nil)))); rv == nil || rv.Response.Allowed {
		t.Fatalf("another factory's image: %s", body)
	}
	if reqs := w.reg.requests(); len(reqs) != 3 || slices.Contains(reqs, "GET /v2/") {
		t.Errorf("an uncached image made %d registry requests, want 3 (referrers, manifest, blob): %q", len(reqs), reqs)
	}
	second, _, body2 := post(t, h, "/validate", review)
	if reqs := w.reg.requests(); len(reqs) != 0 {
		t.Errorf("second review of the same digests made %d registry requests: %q", len(reqs), reqs)
	}
	if second == nil || second.Response.Result.Message != first.Response.Result.Message {
		t.Errorf("cached verdict differs:\n%s\n%s", body, body2)
	}
	// Another Pod using the good image is decided from the cache too, with its own admission fields.
	if rv, _, body := post(t, h, "/validate", reviewJSON(t, "CREATE", objectOf("Pod", "other", podSpec([]string{"x=" + w.good}, nil, nil)))); rv == nil || !rv.Response.Allowed {
		t.Errorf("cached good image denied: %s", body)
	}
	if reqs := w.reg.requests(); len(reqs) != 0 {
		t.Errorf("a review of a cached digest made %d registry requests: %q", len(reqs), reqs)
	}

	// A new trust is a new key: nothing verified with the old one is reused. Under another factory's key the good
	// image is denied, after fetching its bundles again.
	h.SetTrust(newFactory(t).trust(t))
	rv, _, body := post(t, h, "/validate", reviewJSON(t, "CREATE", objectOf("Pod", "other", podSpec([]string{"x=" + w.good}, nil, nil))))
	if rv == nil || rv.Response.Allowed {
		t.Fatalf("after the trust changed, the cached verdict admitted: %s", body)
	}
	if n := count(w.reg.requests(), "/referrers/"); n != 1 {
		t.Errorf("after the trust changed, referrers were listed %d times, want 1", n)
	}
}

func TestConcurrentReviewsShareOneFetch(t *testing.T) {
	w := newWorld(t)
	h := newHandler(t, w.fac.trust(t), nil)
	review := reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + w.good}, nil, nil)))
	var wg sync.WaitGroup
	var bad sync.Map
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rv, _, body := post(t, h, "/validate", review); rv == nil || !rv.Response.Allowed {
				bad.Store(i, body)
			}
		}()
	}
	wg.Wait()
	bad.Range(func(k, v any) bool { t.Errorf("review %v: %v", k, v); return true })
	if n := count(w.reg.requests(), "/referrers/"); n != 1 {
		t.Errorf("32 concurrent reviews of one uncached image listed its referrers %d times, want 1", n)
	}
}

func TestFailsClosed(t *testing.T) {
	w := newWorld(t)
	h := newHandler(t, w.fac.trust(t), nil, admission.WithCache(10, 0, 0))
	review := reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + w.good}, nil, nil)))
	if rv, _, body := post(t, h, "/validate", review); rv == nil || !rv.Response.Allowed {
		t.Fatalf("before: %s", body)
	}
	// A registry that does not answer: denied, naming the image.
	dead := strings.Replace(w.good, w.reg.host, "127.0.0.1:1", 1)
	rv, _, body := post(t, h, "/validate", reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + dead}, nil, nil))))
	if rv == nil || rv.Response.Allowed || !strings.Contains(rv.Response.Result.Message, dead) {
		t.Errorf("unreachable registry: %s", body)
	}
	// Reviews it cannot read, and an unknown mode, are HTTP errors (failurePolicy Fail denies).
	for _, tc := range []struct{ path, body string }{
		{"/validate", `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"1","operation":"CREATE","object":{}}}`},
		{"/validate", `not json`},
		{"/mutate", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`},
		{"/validate/off", string(review)},
	} {
		if rv, code, _ := post(t, h, tc.path, []byte(tc.body)); rv != nil || code != http.StatusBadRequest {
			t.Errorf("%s %.60s: status %d, want 400", tc.path, tc.body, code)
		}
	}
	// A kind the webhook does not decide is denied, not admitted.
	obj := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x"}}
	groups["ConfigMap"] = ""
	rv, _, body = post(t, h, "/validate", reviewJSON(t, "CREATE", obj))
	if rv == nil || rv.Response.Allowed || !strings.Contains(rv.Response.Result.Message, "not one the webhook decides") {
		t.Errorf("unknown kind: %s", body)
	}
	// A policy that fails to evaluate denies.
	set, err := policy.Compile(context.Background(), "broken", []policy.File{{Name: "deploy.rego", Data: []byte("package ssf.deploy\n\ndeny contains msg if {\n\tmsg := input.admission.container\n\tto_number(msg) > 0\n}\n")}})
	if err != nil {
		t.Fatal(err)
	}
	h.SetPolicy(set)
	rv, _, body = post(t, h, "/validate", review)
	if rv == nil || rv.Response.Allowed || !strings.Contains(rv.Response.Result.Message, "policy ssf.deploy") {
		t.Errorf("policy error: %s", body)
	}
}

func TestDeleteIsAdmitted(t *testing.T) {
	w := newWorld(t)
	h := newHandler(t, w.fac.trust(t), nil)
	body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"d","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"DELETE","namespace":"prod","name":"x"}}`)
	rv, _, out := post(t, h, "/validate", body)
	if rv == nil || !rv.Response.Allowed || rv.Response.UID != "d" {
		t.Errorf("delete: %s", out)
	}
}

func count(reqs []string, sub string) int {
	return len(slices.DeleteFunc(slices.Clone(reqs), func(s string) bool { return !strings.Contains(s, sub) }))
}

func TestDenialEscapesWhatARegistrySaid(t *testing.T) {
	// A registry whose answers carry a status line that would clear a terminal and print a verdict.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(r)
					if err != nil {
						return
					}
					status := "500 \x1b[2J\x1b[Hverified"
					if req.URL.Path == "/v2/" {
						status = "200 OK"
					}
					fmt.Fprintf(c, "HTTP/1.1 %s\r\nContent-Length: 0\r\n\r\n", status)
				}
			}()
		}
	}()
	h := newHandler(t, newFactory(t).trust(t), nil)
	img := ln.Addr().String() + "/team/app@sha256:" + strings.Repeat("a", 64)
	rv, _, body := post(t, h, "/validate", reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + img}, nil, nil))))
	if rv == nil || rv.Response.Allowed {
		t.Fatalf("a registry that fails admitted: %s", body)
	}
	if msg := rv.Response.Result.Message; strings.ContainsRune(msg, 0x1b) || !strings.Contains(msg, `\u001b[2J`) {
		t.Errorf("the denial does not escape the registry's status line: %q", msg)
	}
}

// A failed verification is cached for the negative TTL only: with one of an hour the image stays denied after it
// is signed; with none, the next review sees the new bundle.
func TestNegativeResultsAreCachedBriefly(t *testing.T) {
	for _, neg := range []time.Duration{time.Hour, 0} {
		w := newWorld(t)
		h := newHandler(t, w.fac.trust(t), nil, admission.WithCache(10, time.Hour, neg))
		review := reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + w.unsigned}, nil, nil)))
		if rv, _, body := post(t, h, "/validate", review); rv == nil || rv.Response.Allowed {
			t.Fatalf("unsigned image admitted: %s", body)
		}
		w.fac.sign(t, w.unsigned, nil)
		rv, _, body := post(t, h, "/validate", review)
		if rv == nil || rv.Response.Allowed != (neg == 0) {
			t.Errorf("negative TTL %s: after signing, allowed = %v, want %v: %s", neg, rv != nil && rv.Response.Allowed, neg == 0, body)
		}
	}
}
