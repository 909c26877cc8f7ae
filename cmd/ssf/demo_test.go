package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDemo runs `make demo`'s script with the binary under test: a real Go toolchain builds examples/hello and
// examples/uuid (with a third-party module ssf fetched) inside the sandbox, and ssf (and cosign, when present)
// verify the results and the SBOMs.
func TestDemo(t *testing.T) {
	needSandbox(t)
	if testing.Short() {
		t.Skip("the demo compiles Go's standard library inside a container; skipped with -short")
	}
	cmd := exec.Command("../../scripts/demo.sh")
	cmd.Env = append(os.Environ(), "SSF="+ssfBin, "TMPDIR="+t.TempDir())
	if c := os.Getenv("SSF_COSIGN"); c != "" {
		cmd.Env = append(cmd.Env, "COSIGN="+c)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	want := []string{"[test/run] hi from a hermetic build", "verified: ", "hi from a hermetic build\n",
		// examples/uuid: its module fetched, checked, compiled in offline, run, and listed in its SBOM.
		"dependencies: 1 Go module, each checked", "[run/run] name    ", "github.com/google/uuid", "v1.6.0"}
	if os.Getenv("SSF_COSIGN") != "" {
		want = append(want, "Verified OK")
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("demo output lacks %q:\n%s", w, out)
		}
	}
}
