package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A user other than root is told first that ssf build needs root, and how to run it, before anything else is
// looked at: here the factory home is not even initialised, and that is not what the message is about.
func TestBuildWithoutRootSaysSoFirst(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run ssf as another uid")
	}
	// Not t.TempDir: its parent is private to root, and the binary must be reachable by the other uid.
	dir, err := os.MkdirTemp("", "ssf-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ssf")
	data, err := os.ReadFile(ssfBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(work, 0o777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "build", "--out", "out")
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SSF_HOME=" + filepath.Join(work, "home"), "TMPDIR=" + work}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	r := runCmd(t, cmd)
	if r.code != 2 {
		t.Fatalf("exit code = %d, want 2\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ssf: error: ssf build needs root: ") ||
		!strings.Contains(lines[0], "uid 65534") ||
		!strings.HasPrefix(lines[1], `ssf: hint: run it with sudo, keeping your PATH: sudo env PATH="$PATH" ssf build ...; `) {
		t.Errorf("stderr is not the root error and its hint:\n%s", r.stderr)
	}
	if entries, _ := os.ReadDir(work); len(entries) != 0 {
		t.Errorf("a refused build left %v in its directory", entries)
	}
}

// A step that fails after a failed name lookup or connection is followed by a hint that tasks have no network
// and how to declare what the build needs instead; a step that fails otherwise gets no such hint.
func TestNetworkFailureHintsAtDependencies(t *testing.T) {
	for _, tc := range []struct{ name, run string }{
		{"wget", "wget -q -O /tmp/page http://example.com/"},
		{"nslookup", "nslookup example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProject(t, `
    - name: fetch
      steps:
        - name: get
          run: `+tc.run+`
      outputs: [a]
`)
			r := p.mustFail(`task "fetch" failed in step "get"`)
			if !strings.Contains(r.stderr, "\nssf: hint: tasks have no network: ") ||
				!strings.Contains(r.stderr, "spec.dependencies") || !strings.Contains(r.stderr, "docs/dependencies.md") {
				t.Errorf("no network hint after the failed step:\n%s", r.stderr)
			}
		})
	}
	t.Run("other failure", func(t *testing.T) {
		p := newProject(t, `
    - name: fetch
      steps:
        - name: get
          run: echo compile error; exit 1
      outputs: [a]
`)
		if r := p.mustFail(`task "fetch" failed in step "get"`); strings.Contains(r.stderr, "hint:") {
			t.Errorf("a hint after a failure that has nothing to do with the network:\n%s", r.stderr)
		}
	})
}

// In a project directory, `ssf build --out OUT` builds ./ssf.yaml on the current directory.
func TestBuildDefaultsToSSFYAMLInTheCurrentDirectory(t *testing.T) {
	p := newProject(t, `
    - name: copy
      steps:
        - name: s
          run: cp README "$SSF_OUTPUTS/readme"
      outputs: [readme]
`)
	p.write()
	data, err := os.ReadFile(p.pipeline)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.src, "ssf.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ssfBin, "build", "--out", "../out")
	cmd.Dir = p.src
	cmd.Env = append(os.Environ(), "SSF_HOME="+homeDir, "TMPDIR="+p.tmp)
	if r := runCmd(t, cmd); r.code != 0 {
		t.Fatalf("build with the defaults: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := p.output("readme"); got != "source file\n" {
		t.Errorf("output = %q, want the source's README", got)
	}
}
