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

	"github.com/ssf-dev/ssf/internal/oci"
)

// TestRegistryRedirectToLoopbackRefused: a remote registry (here registry.test, served over TLS) cannot use
// ssf verify as a proxy into the verifying machine's own services by redirecting it to a loopback address.
func TestRegistryRedirectToLoopbackRefused(t *testing.T) {
	var hits atomic.Int32
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1) // a service on the verifier's loopback, e.g. an admin API
	}))
	defer local.Close()
	for _, target := range []string{local.URL, strings.Replace(local.URL, "127.0.0.1", "LocalHost.", 1)} {
		remote := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				return
			}
			http.Redirect(w, r, target+"/internal/admin?from="+r.URL.Path, http.StatusTemporaryRedirect)
		}))
		tr := remote.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // the test's own certificate, for "registry.test"
		addr := remote.Listener.Addr().String()
		tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
			if a == "registry.test:443" {
				a = addr
			}
			return (&net.Dialer{}).DialContext(ctx, network, a)
		}
		_, err := oci.FetchBundles(context.Background(), "registry.test/app@sha256:"+strings.Repeat("a", 64),
			oci.WithTransport(tr), oci.WithKeychain(authn.NewMultiKeychain()))
		remote.Close()
		if err == nil || !strings.Contains(err.Error(), "redirected") {
			t.Errorf("redirect to %s: err = %v, want a refused redirect", target, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the loopback service got %d requests from a remote registry's redirect", n)
	}
}
