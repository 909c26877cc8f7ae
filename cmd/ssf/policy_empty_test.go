package main

import (
	"strings"
	"testing"
)

// TestEmptyPolicySaysItAllowsEverything: an empty policy directory (or a mistyped one holding no .rego file) has
// no rules, so every gate allows; the build log says so, so that "admitted" is not taken for "checked".
func TestEmptyPolicySaysItAllowsEverything(t *testing.T) {
	p := newProject(t, simpleTask)
	p.write()
	dir := writePolicy(t, map[string]string{})
	r := p.build("--policy", dir)
	if r.code != 0 {
		t.Fatalf("build under an empty set: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "admitted the build (pipeline unsigned; the set has no rules for ssf.build or ssf.deps, which allow everything)") {
		t.Errorf("the log does not say the set has no rules:\n%s", r.stderr)
	}
}
