package main

import (
	"strings"
	"testing"
)

// TestPublishWithoutLoginHints: a push to the embedded registry without credentials (no --insecure-local) is
// refused by the registry (exit 1, nothing tagged), and ssf says how to log in: where it reads credentials and how
// ssf registry serve makes a user. The same publish with the user's credentials then succeeds.
func TestPublishWithoutLoginHints(t *testing.T) {
	p := newProject(t, simpleTask)
	p.write()
	if r := p.build(); r.code != 0 {
		t.Fatalf("build: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	reg := startRegistry(t)
	to := reg.host + "/login/app:v1"
	r := ssfEnv(t, p.tmp, reg.env(false), "publish", p.out, "--to", to)
	if r.code != 1 || !strings.Contains(r.stderr, "authentication required to push") ||
		!strings.Contains(r.stderr, "ssf: hint: the registry wants a login") ||
		!strings.Contains(r.stderr, "`docker login "+reg.host+"`") ||
		!strings.Contains(r.stderr, "ssf registry user add USER") || !strings.Contains(r.stderr, "--insecure-local") {
		t.Fatalf("publish without credentials: exit %d, want 1 with a hint on logging in\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := ssfEnv(t, p.tmp, reg.env(true), "publish", p.out, "--to", to); r.code != 0 {
		t.Fatalf("publish with credentials: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
