package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestNodeProjectInstallsOffline builds examples/web in a builder made from this machine's Node.js
// (examples/builder/mknoderootfs.sh): the control plane fetches the packages package-lock.json pins, and `npm ci`
// installs them in the task with no network and no flags; the provenance and the SBOM list them.
func TestNodeProjectInstallsOffline(t *testing.T) {
	needSandbox(t)
	if !onPath("node") || !onPath("npm") {
		if os.Getenv("SSF_REQUIRE_INTEROP") == "1" {
			t.Fatal("node and npm are not installed (make test installs them)")
		}
		t.Skip("node and npm are not installed")
	}
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if out, err := exec.Command("../../examples/builder/mknoderootfs.sh", rootfs).CombinedOutput(); err != nil {
		t.Fatalf("mknoderootfs.sh: %v\n%s", err, out)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	r := ssf(t, tmp, "builder", "import", rootfs, "--name", "node-builder")
	if r.code != 0 {
		t.Fatalf("builder import: exit %d\n%s", r.code, r.stderr)
	}
	ref := lastLine(r.stdout)
	pipeline, err := os.ReadFile("../../examples/web/ssf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pinned := regexp.MustCompile(`node-builder@sha256:[0-9a-f]{64}`).ReplaceAllString(string(pipeline), ref)
	p := &project{t: t, dir: dir, tmp: tmp, pipeline: filepath.Join(dir, "ssf.yaml"), out: filepath.Join(dir, "out")}
	if err := os.WriteFile(p.pipeline, []byte(pinned), 0o644); err != nil {
		t.Fatal(err)
	}
	r = ssf(t, tmp, "build", "-f", p.pipeline, "--source", "../../examples/web", "--out", p.out)
	if r.code != 0 {
		t.Fatalf("build: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p.assertClean()
	if got := p.output("out.txt"); !strings.Contains(got, "<li>1: odd</li>") || !strings.Contains(got, "&lt;script&gt;") {
		t.Errorf("out.txt = %q", got)
	}
	for _, purl := range []string{"pkg:npm/%40sindresorhus/is@4.6.0", "pkg:npm/escape-html@1.0.3", "pkg:npm/is-odd@3.0.1", "pkg:npm/is-number@6.0.0"} {
		if len(p.resolved(purl)) != 1 {
			t.Errorf("no resolvedDependency %s", purl)
		}
	}
	r = ssf(t, tmp, "sbom", filepath.Join(p.out, "out.txt"))
	if r.code != 0 || !strings.Contains(r.stdout, "is-odd") || !strings.Contains(r.stdout, "3.0.1") {
		t.Errorf("ssf sbom: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
