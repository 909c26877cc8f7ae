package registry_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/ssf-dev/ssf/internal/registry"
)

// A registry is an http.Handler: serve it, or mount it under /v2/ in a larger server.
func ExampleNew() {
	dir, err := os.MkdirTemp("", "registry")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	reg, err := registry.New(dir, registry.WithUsersFile(dir+"/users"), registry.WithAnonymousPull(true))
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/v2/")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println("pull:", resp.Status)

	resp, err = http.Post(srv.URL+"/v2/app/blobs/uploads/", "application/octet-stream", nil)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println("push without credentials:", resp.Status, resp.Header.Get("WWW-Authenticate"))
	// Output:
	// pull: 200 OK
	// push without credentials: 401 Unauthorized Basic realm="ssf"
}
