package oci_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/ssf-dev/ssf/internal/oci"
)

// TestPublishReferrerRedirectToLoopbackRefused: the requests ssf makes itself for referrers (the manifest HEAD
// and PUT, the referrers API probe, the fallback index) keep the transport's redirect policy: a remote registry
// cannot redirect them to a service on the publisher's loopback, and no tag is pushed.
func TestPublishReferrerRedirectToLoopbackRefused(t *testing.T) {
	var hits atomic.Int32
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer local.Close()
	f := sbomFixture(t, 1)
	art := string(f.subject(oci.ArtifactSubject).Digest)
	for _, which := range []string{"/manifests/sha256:", "/referrers/", "/manifests/sha256-"} {
		t.Run(which, func(t *testing.T) {
			var tagPut atomic.Bool
			var redirects atomic.Int32
			h := registry.New(registry.Logger(discardLogger()), registry.WithReferrersSupport(false))
			remote := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/manifests/v1") && r.Method == http.MethodPut {
					tagPut.Store(true)
				}
				if strings.Contains(r.URL.Path, which) && (which == "/referrers/" || !strings.HasSuffix(r.URL.Path, art)) {
					redirects.Add(1)
					http.Redirect(w, r, local.URL+"/internal"+r.URL.Path, http.StatusTemporaryRedirect)
					return
				}
				h.ServeHTTP(w, r)
			}))
			defer remote.Close()
			tr := remote.Client().Transport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
			addr := remote.Listener.Addr().String()
			tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
				if a == "registry.test:443" {
					a = addr
				}
				return (&net.Dialer{}).DialContext(ctx, network, a)
			}
			repo, err := name.NewRepository("registry.test/app")
			if err != nil {
				t.Fatal(err)
			}
			_, err = oci.Publish(context.Background(), oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: "v1",
				Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()},
				oci.WithTransport(tr), oci.WithKeychain(authn.NewMultiKeychain()))
			if err == nil || !strings.Contains(err.Error(), "redirected") {
				t.Errorf("err = %v, want a refused redirect", err)
			}
			// Three referrers (the provenance, two SBOMs) go at once; none is retried.
			if n := redirects.Load(); n == 0 || n > 3 {
				t.Errorf("%d redirected requests, want one per referrer at most: a refused redirect would be refused again, it is not retried", n)
			}
			if tagPut.Load() {
				t.Errorf("the tag was pushed")
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the loopback service got %d requests from a remote registry's redirect", n)
	}
}
