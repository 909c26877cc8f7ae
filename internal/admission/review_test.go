package admission_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ssf-dev/ssf/internal/admission"
)

func TestDecodeReview(t *testing.T) {
	good := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"prod","object":{"metadata":{"name":"web"},"spec":{"containers":[{"name":"app","image":"r.local/app:v1"}]}},"newField":1}}`
	rv, err := admission.DecodeReview(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if rv.Request.UID != "705ab4f5" || rv.Request.Namespace != "prod" || rv.Request.Kind.Kind != "Pod" {
		t.Errorf("decoded %+v", rv.Request)
	}
	name, cs, err := admission.Containers(rv.Request.Kind, rv.Request.Object)
	if err != nil || name != "web" || len(cs) != 1 || cs[0] != (admission.Container{Name: "app", Image: "r.local/app:v1", Path: "/spec/containers/0/image"}) {
		t.Errorf("containers %q %+v %v", name, cs, err)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"v1beta1", strings.Replace(good, `admission.k8s.io/v1"`, `admission.k8s.io/v1beta1"`, 1), "apiVersion"},
		{"another kind", strings.Replace(good, `"kind":"AdmissionReview"`, `"kind":"Review"`, 1), "kind"},
		{"no request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, "no request"},
		{"no uid", strings.Replace(good, `"uid":"705ab4f5"`, `"uid":""`, 1), "uid"},
		{"long uid", strings.Replace(good, `"uid":"705ab4f5"`, `"uid":"`+strings.Repeat("a", 300)+`"`, 1), "uid"},
		{"no object", strings.Replace(good, `"object":`, `"obj":`, 1), "request.object"},
		{"null object", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","operation":"UPDATE","object":null}}`, "request.object"},
		{"bad operation", strings.Replace(good, `"CREATE"`, `"PATCH"`, 1), "operation"},
		{"two values", good + good, "more than one"},
		{"not JSON", `{"apiVersion":`, "decoding"},
		{"too large", `{"apiVersion":"admission.k8s.io/v1","x":"` + strings.Repeat("a", admission.MaxReviewBytes) + `"}`, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := admission.DecodeReview(strings.NewReader(tc.body))
			if !errors.Is(err, admission.ErrBadReview) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrBadReview saying %q", err, tc.want)
			}
		})
	}
}

func TestContainersRefusesWhatItCannotRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind admission.GroupVersionKind
		obj  string
		want string
	}{
		{"unknown kind", admission.GroupVersionKind{Group: "", Version: "v1", Kind: "Secret"}, `{}`, "not one the webhook decides"},
		{"deployment in the wrong group", admission.GroupVersionKind{Group: "extensions", Version: "v1beta1", Kind: "Deployment"}, `{}`, "not one the webhook decides"},
		{"no template", admission.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, `{"metadata":{"name":"d"},"spec":{}}`, "no pod spec"},
		{"containers not a list", admission.GroupVersionKind{Version: "v1", Kind: "Pod"}, `{"spec":{"containers":{}}}`, "no pod spec"},
		{"too many", admission.GroupVersionKind{Version: "v1", Kind: "Pod"}, `{"spec":{"containers":[` + strings.Repeat(`{"name":"a","image":"b"},`, admission.MaxContainers) + `{}]}}`, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := admission.Containers(tc.kind, []byte(tc.obj))
			if !errors.Is(err, admission.ErrBadReview) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrBadReview saying %q", err, tc.want)
			}
		})
	}
}

// FuzzAdmissionReview feeds the decoder and the container reader anything: they must never panic, and what
// they accept must hold what they promise (a uid, containers with paths under the kind's pod spec).
func FuzzAdmissionReview(f *testing.F) {
	for _, kind := range []string{"Pod", "Deployment", "CronJob", "Job"} {
		spec := podSpec([]string{"a=r.local/a:v1", "b=r.local/b@sha256:" + strings.Repeat("a", 64)}, []string{"i=x"}, []string{"e=y"})
		f.Add(reviewJSON(f, "CREATE", objectOf(kind, "web", spec)))
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","operation":"CREATE","kind":{"kind":"Pod","version":"v1"},"object":{"spec":{"containers":[{"image":null}],"initContainers":null}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","operation":"DELETE"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rv, err := admission.DecodeReview(bytes.NewReader(body))
		if err != nil {
			if rv != nil || !errors.Is(err, admission.ErrBadReview) && !strings.Contains(err.Error(), "reading") {
				t.Fatalf("error %v with review %v", err, rv)
			}
			return
		}
		if rv.Request == nil || rv.Request.UID == "" {
			t.Fatalf("accepted a review without a request uid: %q", body)
		}
		_, cs, err := admission.Containers(rv.Request.Kind, rv.Request.Object)
		if err != nil {
			return
		}
		for _, c := range cs {
			if !strings.HasPrefix(c.Path, "/spec/") || !strings.HasSuffix(c.Path, "/image") {
				t.Fatalf("container path %q", c.Path)
			}
		}
		if _, err := json.Marshal(rv); err != nil {
			t.Fatal(err)
		}
	})
}
