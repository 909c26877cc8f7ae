package sbom_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/deps"
	"github.com/ssf-dev/ssf/internal/sbom"
)

// vendoredBinary builds a Go program whose one dependency, example.com/lib v1.0.0, comes from the source's vendor
// directory (as go build does by default when vendor/ exists): its build info names the module and version but
// records no go.sum hash, and the code compiled in is whatever vendor/ held, never checked against a lock.
func vendoredBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":                        "module example.com/app\n\ngo 1.22\n\nrequire example.com/lib v1.0.0\n",
		"main.go":                       "package main\n\nimport \"example.com/lib\"\n\nfunc main() { println(lib.X) }\n",
		"vendor/modules.txt":            "# example.com/lib v1.0.0\n## explicit\nexample.com/lib\n",
		"vendor/example.com/lib/lib.go": "package lib\n\nconst X = \"changed in vendor/, not what the proxy serves\"\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(dir, "app")
	cmd := exec.Command("go", "build", "-mod=vendor", "-o", exe, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -mod=vendor: %v\n%s", err, out)
	}
	return exe
}

// A module compiled from the source's vendor directory has the path and version of one the control plane
// ingested, but its code was never checked against go.sum: the binary records no hash to compare. The SBOM must
// not call it ingested.
func TestVendoredModuleIsNotIngested(t *testing.T) {
	exe := vendoredBinary(t)
	ingested := []deps.Dependency{{Kind: deps.Gomod, Name: "example.com/lib", Version: "v1.0.0",
		Digest: fakeDigest("lib"), Pin: "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", URL: "https://proxy.example/example.com/lib/@v/v1.0.0.zip"}}
	res, err := sbom.Generate(context.Background(), input("app", exe, fileDigest(t, exe), ingested))
	if err != nil {
		t.Fatal(err)
	}
	if !res.GoBinary {
		t.Fatal("GoBinary is false for a Go binary")
	}
	if len(res.NotIngested) != 1 || !strings.HasPrefix(res.NotIngested[0], "example.com/lib@v1.0.0: ") ||
		!strings.Contains(res.NotIngested[0], "no go.sum hash") {
		t.Errorf("NotIngested = %q, want example.com/lib@v1.0.0 flagged for carrying no go.sum hash", res.NotIngested)
	}
	_, comps := cdxComponents(t, res.CycloneDX)
	if c := comps["example.com/lib@v1.0.0"]; c.props[sbom.PropIngested] != "false" || c.c.Hashes != nil {
		t.Errorf("CycloneDX: the vendored module has %s=%q and hashes %v; want false and none of the ingested zip's",
			sbom.PropIngested, c.props[sbom.PropIngested], c.c.Hashes)
	}
	d := spdxDocument(t, res.SPDX)
	if p := spdxPackage(d, "example.com/lib", "v1.0.0"); p == nil || annotations(p)[sbom.PropIngested] != "false" {
		t.Errorf("SPDX: the vendored module is not flagged")
	}
	rows, err := sbom.Rows(content.SPDXPredicateType, res.SPDX)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Name == "example.com/lib" && r.Ingested != "NO" {
			t.Errorf("ssf sbom's row for the vendored module says INGESTED %q", r.Ingested)
		}
	}
}
