// Package interoptest finds the external tools the interop tests run (cosign, crane, oras, rekor-cli, ...), for
// the tests of every package that needs one.
//
// # What it must never do
//
// It is for tests only: nothing outside a _test.go file imports it. It never installs or downloads a tool; make
// tools does that, into .tools/.
package interoptest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Tool finds an external tool: $env, then .tools/NAME in the module root (tests run two directories below it),
// then $PATH. Without it the test is skipped, or fails under SSF_REQUIRE_INTEROP=1 (make test installs the tools
// into .tools/).
func Tool(t testing.TB, env, name string) string {
	t.Helper()
	candidates := []string{os.Getenv(env), filepath.Join("..", "..", ".tools", name)}
	if p, err := exec.LookPath(name); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			abs, _ := filepath.Abs(c)
			return abs
		}
	}
	if os.Getenv("SSF_REQUIRE_INTEROP") == "1" {
		t.Fatalf("%s not found (set %s or install it into .tools/ with make tools)", name, env)
	}
	t.Skipf("%s not found (set %s or install it into .tools/ with make tools)", name, env)
	return ""
}
