package sbom

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// A binary whose build info costs more than the bounds is described as a file, and the SBOM says why: a hostile
// output must not make the control plane read or hold gigabytes.
func TestBuildInfoBounds(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "hello")
	if out, err := exec.Command("go", "build", "-o", exe, "./testdata/hello").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Output: "hello", Digest: digest.FromBytes(b), File: exe, Invocation: "i", Created: time.Unix(1, 0), Tool: "ssf test"}

	res, err := Generate(context.Background(), in)
	if err != nil || !res.GoBinary {
		t.Fatalf("within the bounds: GoBinary %v, error %v", res != nil && res.GoBinary, err)
	}
	for _, tc := range []struct {
		name   string
		set    func()
		reason string
	}{
		{"read budget", func() { readBudget = 4096 }, "reading it took more than 4096 bytes"},
		{"modules", func() { maxModules = 2 }, "more than 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oldBudget, oldModules := readBudget, maxModules
			defer func() { readBudget, maxModules = oldBudget, oldModules }()
			tc.set()
			res, err := Generate(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if res.GoBinary {
				t.Fatal("build info over the bound was used")
			}
			if !strings.Contains(string(res.CycloneDX), `"name":"`+PropGoBuildInfo+`"`) || !strings.Contains(string(res.CycloneDX), tc.reason) {
				t.Errorf("the CycloneDX SBOM does not say why build info was not used (%q):\n%s", tc.reason, res.CycloneDX)
			}
		})
	}
}
