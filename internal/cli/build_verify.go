package cli

import (
	"path/filepath"
	"strings"

	"github.com/ssf-dev/ssf/internal/factory"
)

// verifyCommand is the ssf verify command line that checks a finished build's first output against its
// provenance, with the flags that fit how it was signed: the run's identity and the factory's issuer for an
// identity build (the default), the provenance key for a --signer key build. "" when the build published nothing
// (cannot happen: a build must publish one output).
func verifyCommand(res *factory.BuildResult) string {
	if len(res.Outputs) == 0 {
		return ""
	}
	args := []string{"ssf", "verify", filepath.Join(res.Out, filepath.FromSlash(res.Outputs[0].Path)), "--bundle", res.Bundle}
	if res.SignedBy == "" {
		return strings.Join(append(args, "--key", "KEY.pub"), " ") + "   (KEY.pub: ssf keys public > KEY.pub)"
	}
	return strings.Join(append(args, "--certificate-identity", res.SignedBy, "--certificate-oidc-issuer", res.Issuer), " ")
}
