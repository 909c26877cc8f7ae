package oci

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestCanonicalRepository(t *testing.T) {
	for in, want := range map[string]string{
		"REGISTRY.Example.COM/team/app":      "registry.example.com/team/app",
		"registry.example.com.:443/team/app": "registry.example.com/team/app",
		"registry.example.com:5000/team/app": "registry.example.com:5000/team/app",
		"docker.io/library/busybox":          "index.docker.io/library/busybox",
		"registry-1.docker.io/library/x":     "index.docker.io/library/x",
		"busybox":                            "index.docker.io/library/busybox",
		"127.0.0.1:5000/app":                 "127.0.0.1:5000/app",
	} {
		repo, err := name.NewRepository(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := CanonicalRepository(repo); got != want {
			t.Errorf("CanonicalRepository(%q) = %q, want %q", in, got, want)
		}
	}
}
