package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDemo runs `make demo`'s script with the binary under test: a real Go toolchain builds examples/hello and
// examples/uuid (with a third-party module ssf fetched) inside the sandbox, signed by identity (the default), and
// ssf (and cosign, when present, every check on) verify the results and the SBOMs by identity; one more build of
// hello with --signer key verifies with the key.
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
	want := []string{"[test/run] hi from a hermetic build", "hi from a hermetic build\n",
		// Signed by identity, the default: the provenance by the run, each task's attestation by the task.
		", signed by spiffe://ssf.local/pipeline/hello ", ", signed by spiffe://ssf.local/pipeline/hello/task/build ",
		// and the --signer key build, verified with the key (a verdict with no identity).
		"/keyed/hello sha256:",
		// hello's verification summary under the factory's policy.
		"/hello.vsa.json: PASSED, levels SLSA_BUILD_LEVEL_3 ",
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
