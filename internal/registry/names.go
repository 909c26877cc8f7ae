package registry

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"regexp"
	"strings"
)

// The spec's grammar (distribution-spec v1.1, "Pulling manifests").
var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// maxNameLen bounds a repository name; the spec lets registries limit it, and many clients assume 255.
const maxNameLen = 255

func validName(name string) bool {
	return len(name) <= maxNameLen && nameRE.MatchString(name)
}

func validTag(tag string) bool { return tagRE.MatchString(tag) }

// digest is a parsed, validated content digest of one of the supported algorithms.
type digest struct {
	alg string // "sha256" or "sha512"
	hex string // lower-case hex of the algorithm's full length
}

func (d digest) String() string { return d.alg + ":" + d.hex }

func (d digest) newHash() hash.Hash {
	if d.alg == "sha512" {
		return sha512.New()
	}
	return sha256.New()
}

// parseDigest accepts only "sha256:<64 hex>" and "sha512:<128 hex>" in lower case: anything else could not
// name a stored file and must never reach a path.
func parseDigest(s string) (digest, error) {
	alg, enc, ok := strings.Cut(s, ":")
	if !ok {
		return digest{}, fmt.Errorf("digest %q has no algorithm", s)
	}
	var n int
	switch alg {
	case "sha256":
		n = 64
	case "sha512":
		n = 128
	default:
		return digest{}, fmt.Errorf("digest %q: unsupported algorithm %q (sha256 and sha512 are)", s, alg)
	}
	if len(enc) != n {
		return digest{}, fmt.Errorf("digest %q: want %d hex digits, got %d", s, n, len(enc))
	}
	for _, c := range enc {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return digest{}, fmt.Errorf("digest %q: not lower-case hex", s)
		}
	}
	return digest{alg: alg, hex: enc}, nil
}

// digestOf returns the digest of b under the algorithm alg.
func digestOf(alg string, b []byte) digest {
	d := digest{alg: alg}
	h := d.newHash()
	h.Write(b)
	d.hex = fmt.Sprintf("%x", h.Sum(nil))
	return d
}
