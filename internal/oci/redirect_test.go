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

// TestRegistryUploadLocationToLoopbackRefused: a remote registry answers the start of a blob upload with a
// Location on the publisher's loopback; ssf publish must not PATCH or PUT the build's bytes there.
// (go-containerregistry refuses such a Location itself; this keeps it so across upgrades.)
func TestRegistryUploadLocationToLoopbackRefused(t *testing.T) {
	var hits atomic.Int32
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1) // e.g. a key-value store's PUT API on the publisher's machine
		w.WriteHeader(http.StatusAccepted)
	}))
	defer local.Close()
	remote := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
		case r.Method == http.MethodHead:
			http.NotFound(w, r)
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
			w.Header().Set("Location", local.URL+"/v1/kv/secret")
			w.WriteHeader(http.StatusAccepted)
		default:
			http.NotFound(w, r)
		}
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
	f := newFixture(t, map[string][]byte{"app": []byte("the build's bytes")}, nil)
	repo, err := name.NewRepository("registry.test/app")
	if err != nil {
		t.Fatal(err)
	}
	_, err = oci.Publish(context.Background(), oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Verify: f.verifier()},
		oci.WithTransport(tr), oci.WithKeychain(authn.NewMultiKeychain()))
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("err = %v, want a refused upload location", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the loopback service got %d requests from a remote registry's upload location", n)
	}
}

// TestRegistryRedirectToZonedLinkLocalRefused: an IPv6 address written with its zone (https://[fe80::1%25eth0]/)
// or an IPv4 address with a trailing dot is still link-local or loopback; a remote registry's redirect there
// must be refused before ssf dials it.
func TestRegistryRedirectToZonedLinkLocalRefused(t *testing.T) {
	for _, target := range []string{"https://[fe80::a9fe:a9fe%25lo]/latest/meta-data", "https://[::1%25lo]:8443/admin",
		"https://169.254.169.254./latest/meta-data"} {
		remote := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				return
			}
			http.Redirect(w, r, target, http.StatusTemporaryRedirect)
		}))
		tr := remote.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		addr := remote.Listener.Addr().String()
		var dialled atomic.Value
		tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
			if a == "registry.test:443" {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}
			dialled.Store(a)
			return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError("test: not dialled")}
		}
		_, err := oci.FetchBundles(context.Background(), "registry.test/app@sha256:"+strings.Repeat("a", 64),
			oci.WithTransport(tr), oci.WithKeychain(authn.NewMultiKeychain()))
		remote.Close()
		if a := dialled.Load(); a != nil {
			t.Errorf("redirect to %s: ssf dialled %v", target, a)
		}
		if err == nil || !strings.Contains(err.Error(), "redirected") {
			t.Errorf("redirect to %s: err = %v, want a refused redirect", target, err)
		}
	}
}
