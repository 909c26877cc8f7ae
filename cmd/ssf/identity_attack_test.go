package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyNamesTheSigner: with --certificate-identity-regexp the verdict names the identity the certificate
// carries, not the expression. Unanchored (as cosign reads it), spiffe://TD/pipeline/test also matches the
// run's tasks: a verifier who meant the run must see that a task signed what it accepted.
func TestVerifyNamesTheSigner(t *testing.T) {
	p := identityProject(t)
	if r := p.build("--signer", "identity"); r.code != 0 {
		t.Fatalf("build failed (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	}
	run := identityTD + "/pipeline/test"
	att := filepath.Join(p.out, "attestations")
	for _, c := range []struct{ bundle, want string }{
		{filepath.Join(att, "compile.task.sigstore.json"), "made by task compile of "},
		{filepath.Join(att, "provenance.sigstore.json"), "built by "},
	} {
		r := ssf(t, p.tmp, "verify", filepath.Join(p.out, "app"), "--bundle", c.bundle,
			"--certificate-identity-regexp", "spiffe://ssf.local/pipeline/test", "--certificate-oidc-issuer-regexp", "ssf")
		if r.code != 0 || !strings.Contains(r.stdout, c.want) {
			t.Fatalf("verify %s: exit %d\n%s%s", c.bundle, r.code, r.stdout, r.stderr)
		}
		signer := run
		if strings.Contains(c.bundle, "compile") {
			signer += "/task/compile"
		}
		if want := ", signed by " + signer + " (issuer " + identityIssuer + ")\n"; !strings.HasSuffix(r.stdout, want) || strings.Contains(r.stdout, "~") {
			t.Errorf("verify %s: the verdict %q does not end with %q (the certificate's identity, not the regexp)", c.bundle, r.stdout, want)
		}
	}
}
