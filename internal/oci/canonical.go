package oci

import (
	"net"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// CanonicalRepository spells repo one way, REGISTRY/REPO, whatever way it was written: the form policies read
// (ssf.publish's input.target, the input.artifact.uri of ssf.verify and ssf.deploy). A registry's host is what
// differs between spellings of one place: DNS ignores case and a trailing dot, https's port is 443 whether written
// or not, and Docker Hub is docker.io, index.docker.io and registry-1.docker.io at once; the bytes by digest are
// the same under each. A rule against (or for) a registry must not be passed by writing its name otherwise.
func CanonicalRepository(repo name.Repository) string {
	host := strings.ToLower(repo.RegistryStr()) // go-containerregistry spells docker.io index.docker.io already
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = host, ""
	}
	h = strings.TrimSuffix(h, ".")
	if port == "443" && repo.Scheme() == "https" {
		port = ""
	}
	if h == "registry-1.docker.io" || h == "docker.io" {
		h = name.DefaultRegistry
	}
	if port != "" {
		h = net.JoinHostPort(h, port)
	}
	return h + "/" + repo.RepositoryStr()
}
