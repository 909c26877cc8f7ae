package content

import (
	_ "crypto/sha256" // go-digest hashes with crypto.SHA256, which is linked only when imported
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Parse reads s as a digest as OCI and ssf write them: "sha256:" and 64 lower-case hex digits.
func Parse(s string) (digest.Digest, error) {
	h, ok := strings.CutPrefix(s, string(digest.SHA256)+":")
	if !ok || !isHex64(h) || strings.ToLower(h) != h {
		return "", fmt.Errorf("digest %q: want sha256:<64 lower-case hex digits>", s)
	}
	return digest.Digest(s), nil
}

// ParseFold reads s as a digest a person typed: "sha256:" and 64 hex digits of either case. The digest returned
// is lower case.
func ParseFold(s string) (digest.Digest, error) {
	h, ok := strings.CutPrefix(s, string(digest.SHA256)+":")
	if !ok || !isHex64(h) {
		return "", fmt.Errorf("digest %q: want sha256:<64 hex digits>", s)
	}
	return digest.NewDigestFromEncoded(digest.SHA256, strings.ToLower(h)), nil
}

// FromHex reads h as the bare hex of a sha256 digest, as in an in-toto digest set: 64 hex digits of either case.
// The digest returned is lower case.
func FromHex(h string) (digest.Digest, error) {
	if !isHex64(h) {
		return "", fmt.Errorf("%q is not a sha256 hex digest (64 hex digits)", h)
	}
	return digest.NewDigestFromEncoded(digest.SHA256, strings.ToLower(h)), nil
}

func isHex64(h string) bool {
	return len(h) == 64 && strings.Trim(h, "0123456789abcdefABCDEF") == ""
}
