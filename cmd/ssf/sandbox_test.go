package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// These end-to-end tests check the host resource limits a factory sets (config.yaml) and sandbox controls that a
// step must not be able to undo: each fails when its control is removed.

// limitedHome copies the shared factory home (key, config, builder) into a new one whose config.yaml has extra
// settings, and returns its path.
func limitedHome(t *testing.T, config string) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "home")
	if out, err := exec.Command("cp", "-a", homeDir, home).CombinedOutput(); err != nil {
		t.Fatalf("copying the factory home: %v\n%s", err, out)
	}
	for _, d := range []string{"runs", "runc"} {
		os.RemoveAll(filepath.Join(home, d))
	}
	f, err := os.OpenFile(filepath.Join(home, "config.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(config); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return home
}

// buildIn builds the project with the factory home home.
func (p *project) buildIn(home string) result {
	p.t.Helper()
	p.write()
	return ssfEnv(p.t, p.tmp, []string{"SSF_HOME=" + home}, "build", "-f", p.pipeline, "--source", p.src, "--out", p.out)
}

// assertNoMounts fails the test if anything is still mounted under dir.
func assertNoMounts(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			t.Errorf("left mounted: %s", f[4])
		}
	}
}

// A step that writes past maxDiskBytes fails with a message naming the limit, and the host's disk (TMPDIR) never
// held more than the limit.
func TestStepCannotWritePastMaxDiskBytes(t *testing.T) {
	p := newProject(t, `
    - name: fill
      steps:
        - name: write
          run: dd if=/dev/zero of=/tmp/big bs=1M count=200
      outputs: [never]
`)
	home := limitedHome(t, "maxDiskBytes: 16777216\n")
	r := p.buildIn(home)
	if r.code != 1 || !strings.Contains(r.stderr, "disk limit of 16777216 bytes (16.0 MiB)") || !strings.Contains(r.stderr, "maxDiskBytes") {
		t.Fatalf("exit %d, want 1 and a message naming maxDiskBytes and its limit:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "No space left on device") {
		t.Errorf("the step's own error is missing:\n%s", r.stderr)
	}
	if entries, _ := os.ReadDir(p.tmp); len(entries) != 0 {
		t.Errorf("the build left files in TMPDIR: %v", entries)
	}
	assertNoMounts(t, p.tmp)
}

// The task's writable paths together, not each one, are bounded.
func TestMaxDiskBytesBoundsAllWritablePaths(t *testing.T) {
	p := newProject(t, `
    - name: fill
      steps:
        - name: write
          run: |
            dd if=/dev/zero of=/workspace/a bs=1M count=6
            dd if=/dev/zero of=/tmp/b bs=1M count=6
            dd if=/dev/zero of="$SSF_OUTPUTS/c" bs=1M count=6
      outputs: [c]
`)
	r := p.buildIn(limitedHome(t, "maxDiskBytes: 16777216\n"))
	if r.code != 1 || !strings.Contains(r.stderr, "maxDiskBytes") {
		t.Fatalf("18 MB over three paths under a 16 MiB limit: exit %d\n%s", r.code, r.stderr)
	}
}

// With maxParallelTasks 1, two independent tasks run one after the other: each records when it started and ended
// (from the kernel's uptime clock, which the container shares), and the two intervals must not overlap.
func TestMaxParallelTasks(t *testing.T) {
	step := `
      steps:
        - name: work
          run: |
            cut -d' ' -f1 /proc/uptime > "$SSF_OUTPUTS/$SSF_TASK.start"
            i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done
            cut -d' ' -f1 /proc/uptime > "$SSF_OUTPUTS/$SSF_TASK.end"
`
	p := newProject(t, `
    - name: one`+step+`      outputs: [one.start, one.end]
    - name: two`+step+`      outputs: [two.start, two.end]
`)
	r := p.buildIn(limitedHome(t, "maxParallelTasks: 1\n"))
	if r.code != 0 {
		t.Fatalf("build failed (exit %d):\n%s", r.code, r.stderr)
	}
	at := func(name string) float64 {
		v, err := strconv.ParseFloat(strings.TrimSpace(p.output(name)), 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	s1, e1, s2, e2 := at("one.start"), at("one.end"), at("two.start"), at("two.end")
	if e1 <= s1 || e2 <= s2 {
		t.Fatalf("a task's interval is empty (%v-%v, %v-%v): the step is too short for the clock", s1, e1, s2, e2)
	}
	if s2 < e1 && s1 < e2 {
		t.Errorf("with maxParallelTasks 1, tasks ran at the same time: one %v-%v, two %v-%v", s1, e1, s2, e2)
	}
}

// maxBuildPids bounds a build's processes below the per-task limit; maxBuildMemoryBytes its memory, and a step
// killed for memory says so with the limit.
func TestBuildLimits(t *testing.T) {
	p := newProject(t, `
    - name: bomb
      steps:
        - name: fork
          run: |
            # The subshell records each process it starts; a refused fork ends it.
            (i=0; while [ $i -lt 100 ]; do sleep 60 >/dev/null 2>&1 & i=$((i+1)); echo $i > "$SSF_OUTPUTS/n"; done) || true
      outputs: [n]
`)
	home := limitedHome(t, "maxBuildPids: 40\nmaxBuildMemoryBytes: 67108864\n")
	if r := p.buildIn(home); r.code != 0 {
		t.Fatalf("build failed (exit %d):\n%s", r.code, r.stderr)
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(p.output("n"))); n >= 40 {
		t.Errorf("a task started %d processes under maxBuildPids 40", n)
	}

	m := newProject(t, `
    - name: hog
      steps:
        - name: eat
          run: x=$(head -c 300000000 /dev/zero | tr '\0' a); echo ${#x}
      outputs: [never]
`)
	r := m.buildIn(home)
	if r.code != 1 || !strings.Contains(r.stderr, "memory limit of 67108864 bytes (64.0 MiB)") || !strings.Contains(r.stderr, "maxBuildMemoryBytes") {
		t.Errorf("a step holding 300 MB under maxBuildMemoryBytes 64 MiB: exit %d, want 1 and a message naming the limit:\n%s", r.code, r.stderr)
	}
}

// A task uid range that a host account uses is refused before anything runs.
func TestTaskUIDRangeOverlappingAnAccountIsRefused(t *testing.T) {
	p := newProject(t, simpleTask)
	r := p.buildIn(limitedHome(t, "taskUids: 65000-65534\n"))
	if r.code != 2 || !strings.Contains(r.stderr, "taskUids 65000-65534 in config.yaml includes") {
		t.Errorf("exit %d, want 2 and a message about taskUids:\n%s", r.code, r.stderr)
	}
}

// /inputs/<task> is mounted read-only: a write fails with EROFS, not only with a permission error (the files
// belong to root, so a read-write mount would also refuse, with EACCES, and hide the missing control).
func TestInputsAreMountedReadOnly(t *testing.T) {
	p := newProject(t, `
    - name: make
      steps:
        - name: write
          run: echo data > "$SSF_OUTPUTS/declared"
      outputs: [declared]
    - name: use
      needs: [make]
      steps:
        - name: probe
          run: |
            (echo x > /inputs/make/declared) 2> "$SSF_OUTPUTS/overwrite" || true
            (touch /inputs/make/new) 2> "$SSF_OUTPUTS/create" || true
      outputs: [overwrite, create]
`)
	p.mustBuild()
	for _, name := range []string{"overwrite", "create"} {
		if got := p.output(name); !strings.Contains(got, "Read-only file system") {
			t.Errorf("%s in /inputs/make: %q, want a read-only file system error", name, got)
		}
	}
}

// The capability bounding set is empty end to end: even a setuid-root program (no_new_privs aside) could not get a
// capability back, and the step's own view agrees.
func TestNoCapabilitiesInAnySet(t *testing.T) {
	p := newProject(t, `
    - name: caps
      steps:
        - name: read
          run: grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status > "$SSF_OUTPUTS/caps"
      outputs: [caps]
`)
	p.mustBuild()
	got := p.output("caps")
	for _, set := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if !strings.Contains(got, set+":\t0000000000000000\n") {
			t.Errorf("%s is not empty:\n%s", set, got)
		}
	}
}

// The per-task log cap holds: a step that prints more than 64 MiB leaves a log of at most that, with a note.
func TestTaskLogIsCapped(t *testing.T) {
	p := newProject(t, `
    - name: chatty
      steps:
        - name: print
          run: yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c 80000000; echo > "$SSF_OUTPUTS/done"
      outputs: [done]
`)
	p.mustBuild()
	fi, err := os.Stat(filepath.Join(p.out, "attestations/logs/chatty.log"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 64<<20+4096 {
		t.Errorf("task log is %d bytes, over the 64 MiB cap", fi.Size())
	}
	data, err := os.ReadFile(filepath.Join(p.out, "attestations/logs/chatty.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data[max(0, len(data)-4096):]), fmt.Sprintf("log truncated at %d bytes", 64<<20)) {
		t.Error("the capped log does not say it was truncated")
	}
}
