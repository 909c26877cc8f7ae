package oci_test

import (
	"errors"
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
