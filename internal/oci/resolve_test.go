package oci_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/ssf-dev/ssf/internal/oci"
)

// A reference must name its registry and its tag or digest: a file name that does not exist is never taken for a
// Docker Hub image.
func TestParseReference(t *testing.T) {
	hex := strings.Repeat("a", 64)
	for _, tt := range []struct {
		in, want string
	}{
		{"127.0.0.1:5000/team/app:v1", "127.0.0.1:5000/team/app:v1"},
		{"localhost/app:v1", "localhost/app:v1"},
		{"ghcr.io/o/app@sha256:" + hex, "ghcr.io/o/app@sha256:" + hex},
		{"app", ""},
		{"app:v1", ""},
		{"dist/app.tar", ""},
		{"team/app:v1", ""},
		{"ghcr.io/o/app:", ""},
		{"ghcr.io/o/App:v1", ""},
	} {
		got, err := oci.ParseReference(tt.in)
		if tt.want == "" {
			if !errors.Is(err, oci.ErrBadReference) {
				t.Errorf("ParseReference(%q) = %v, %v; want ErrBadReference", tt.in, got, err)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseReference(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

// Resolve finds a tag's digest by HEAD, or by a bounded GET from a registry that refuses HEAD; a tag or digest the
// registry lacks is ErrNotFound.
func TestResolve(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, map[string][]byte{"readme": []byte("hi\n")}, nil)
	host, _ := newRegistry(t, true)
	repo, tag, _ := oci.ParseTarget(host + "/team/app:v1")
	pub, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: tag, Verify: f.verifier()})
	if err != nil {
		t.Fatal(err)
	}
	// The same registry behind a proxy that answers every HEAD with 405.
	target, _ := url.Parse("http://" + host)
	proxy := httputil.NewSingleHostReverseProxy(target)
	noHead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/manifests/") {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(noHead.Close)
	for _, h := range []string{host, strings.TrimPrefix(noHead.URL, "http://")} {
		ref, err := oci.ParseReference(h + "/team/app:v1")
		if err != nil {
			t.Fatal(err)
		}
		got, err := oci.Resolve(ctx, ref)
		if want := strings.TrimPrefix(pub.Artifact, host); err != nil || strings.TrimPrefix(got.String(), h) != want {
			t.Errorf("Resolve(%s) = %v, %v; want %s%s", ref, got, err, h, want)
		}
		for _, missing := range []string{h + "/team/app:v2", h + "/team/none:v1", h + "/team/app@sha256:" + strings.Repeat("0", 64)} {
			ref, _ := oci.ParseReference(missing)
			if _, err := oci.Resolve(ctx, ref); !errors.Is(err, oci.ErrNotFound) && !(h != host && strings.Contains(missing, "@")) {
				t.Errorf("Resolve(%s) err = %v, want ErrNotFound", missing, err)
			}
		}
	}
}
