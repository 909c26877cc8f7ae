package main

// End-to-end tests of the built ssf binary, run the way a user runs it: real runc containers from a busybox
// builder image, a real factory home, real files. The isolation tests are hostile: each step tries to do what the
// trust model in DESIGN.md forbids and the test asserts that it could not.

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	ssfBin  string // the binary under test
	homeDir string // a factory home shared by the tests
	builder string // NAME@sha256:… of the busybox builder in homeDir
	setup   string // why the environment cannot run these tests, if it cannot
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ssf-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ssfBin = filepath.Join(dir, "ssf")
	if out, err := exec.Command("go", "build", "-o", ssfBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building ssf: %v\n%s", err, out)
		return 1
	}
	homeDir = filepath.Join(dir, "home")
	switch {
	case os.Geteuid() != 0:
		setup = "the runc sandbox needs root"
	case !onPath("runc"):
		setup = "runc is not installed (make test installs it)"
	case !onPath("busybox"):
		setup = "busybox is not installed (make test installs busybox-static)"
	}
	if setup == "" {
		if builder, err = importBusybox(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

func onPath(name string) bool { _, err := exec.LookPath(name); return err == nil }

// importBusybox initialises homeDir and imports a builder image holding only busybox-static.
func importBusybox(dir string) (string, error) {
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		return "", err
	}
	// Writable by anyone, so only the read-only root mount can stop a step writing there.
	if err := os.Mkdir(filepath.Join(rootfs, "scratch"), 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(filepath.Join(rootfs, "scratch"), 0o1777); err != nil {
		return "", err
	}
	bb, _ := exec.LookPath("busybox")
	data, err := os.ReadFile(bb)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		return "", err
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return "", err
	}
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" {
			if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
				return "", err
			}
		}
	}
	env := append(os.Environ(), "SSF_HOME="+homeDir)
	for _, args := range [][]string{{"init"}, {"builder", "import", rootfs, "--name", "busybox"}} {
		cmd := exec.Command(ssfBin, args...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("ssf %s: %w", strings.Join(args, " "), err)
		}
		if args[0] == "builder" {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			return lines[len(lines)-1], nil
		}
	}
	return "", nil
}

type result struct {
	stdout, stderr string
	code           int
}

// ssf runs the binary with the shared home and a per-test TMPDIR (so the tests can check it is left empty).
func ssf(t *testing.T, tmp string, args ...string) result {
	t.Helper()
	return ssfEnv(t, tmp, nil, args...)
}

func needSandbox(t *testing.T) {
	t.Helper()
	if setup != "" {
		if os.Getenv("SSF_REQUIRE_INTEROP") == "1" {
			t.Fatalf("cannot run the sandbox tests: %s", setup)
		}
		t.Skip(setup)
	}
}

// project is a source directory and a pipeline for one test.
type project struct {
	t               *testing.T
	dir, src, tmp   string
	pipeline, out   string
	params          []string
	files           map[string]string
	tasks, paramDef string
	deps            string // spec.dependencies entries, if any
}

func newProject(t *testing.T, tasks string) *project {
	needSandbox(t)
	dir := t.TempDir()
	p := &project{t: t, dir: dir, src: filepath.Join(dir, "src"), tmp: filepath.Join(dir, "tmp"),
		pipeline: filepath.Join(dir, "ssf.yaml"), out: filepath.Join(dir, "out"), tasks: tasks,
		files: map[string]string{"README": "source file\n"}}
	return p
}

func (p *project) write() {
	p.t.Helper()
	for _, d := range []string{p.src, p.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			p.t.Fatal(err)
		}
	}
	for name, content := range p.files {
		if err := os.WriteFile(filepath.Join(p.src, name), []byte(content), 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
	y := "apiVersion: ssf.dev/v1alpha1\nkind: Pipeline\nmetadata: {name: test}\nspec:\n  builder: {image: " + builder + "}\n"
	if p.paramDef != "" {
		y += "  params:\n" + p.paramDef
	}
	if p.deps != "" {
		y += "  dependencies:\n" + p.deps
	}
	y += "  tasks:\n" + p.tasks
	if err := os.WriteFile(p.pipeline, []byte(y), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

func (p *project) build(extra ...string) result {
	p.t.Helper()
	p.write()
	args := []string{"build", "-f", p.pipeline, "--source", p.src, "--out", p.out}
	for _, kv := range p.params {
		args = append(args, "--param", kv)
	}
	return ssf(p.t, p.tmp, append(args, extra...)...)
}

// mustBuild builds (with extra arguments, such as --signer key) and fails the test unless the build succeeded and
// cleaned up after itself.
func (p *project) mustBuild(extra ...string) result {
	p.t.Helper()
	r := p.build(extra...)
	if r.code != 0 {
		p.t.Fatalf("build failed (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	}
	p.assertClean()
	return r
}

// mustFail builds and fails the test unless the build failed with exit status 1, naming want, with nothing in
// --out, no container left and no temporary directory left.
func (p *project) mustFail(want ...string) result {
	p.t.Helper()
	r := p.build()
	if r.code != 1 {
		p.t.Fatalf("exit code = %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			p.t.Errorf("stderr does not contain %q:\n%s", w, r.stderr)
		}
	}
	if _, err := os.Stat(p.out); !os.IsNotExist(err) {
		p.t.Errorf("a failed build left %s behind (stat: %v)", p.out, err)
	}
	p.assertClean()
	return r
}

func (p *project) assertClean() {
	p.t.Helper()
	if entries, _ := os.ReadDir(p.tmp); len(entries) != 0 {
		p.t.Errorf("build left temporary files: %v", entries)
	}
	if entries, _ := os.ReadDir(p.dir); len(entries) > 0 {
		for _, e := range entries {
			if strings.Contains(e.Name(), ".partial-") {
				p.t.Errorf("build left a staging directory: %s", e.Name())
			}
		}
	}
	if left := containers(p.t); len(left) != 0 {
		p.t.Errorf("containers left behind: %v", left)
	}
	if runs, _ := os.ReadDir(filepath.Join(homeDir, "runs")); len(runs) != 0 {
		p.t.Errorf("build records left behind in $SSF_HOME/runs: %v", runs)
	}
}

// containers lists the containers runc still knows in the factory's state directory.
func containers(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("runc", "--root", filepath.Join(homeDir, "runc"), "list", "-q").Output()
	if err != nil {
		t.Fatalf("runc list: %v", err)
	}
	return strings.Fields(string(out))
}

func (p *project) output(name string) string {
	p.t.Helper()
	data, err := os.ReadFile(filepath.Join(p.out, name))
	if err != nil {
		p.t.Fatalf("reading output: %v", err)
	}
	return string(data)
}

// statement returns the provenance statement inside the build's bundle.
func (p *project) statement() map[string]any {
	p.t.Helper()
	var b struct {
		DSSE struct {
			Payload string `json:"payload"`
		} `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal([]byte(p.output("attestations/provenance.sigstore.json")), &b); err != nil {
		p.t.Fatal(err)
	}
	payload, err := base64.StdEncoding.DecodeString(b.DSSE.Payload)
	if err != nil {
		p.t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(payload, &st); err != nil {
		p.t.Fatal(err)
	}
	return st
}

func TestStepCannotReachHostLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	p := newProject(t, `
    - name: net
      steps:
        - name: connect
          run: |
            if echo hi | nc -w 3 127.0.0.1 "$SSF_PARAM_PORT"; then echo CONNECTED > "$SSF_OUTPUTS/result"; exit 0; fi
            if wget -q -T 3 -O /dev/null "http://127.0.0.1:$SSF_PARAM_PORT/"; then echo CONNECTED > "$SSF_OUTPUTS/result"; exit 0; fi
            ls /sys/class/net > "$SSF_OUTPUTS/result"
      outputs: [result]
`)
	p.paramDef = "    - {name: port, pattern: '^[0-9]+$'}\n"
	p.params = []string{"port=" + port}
	p.mustBuild()
	if got := p.output("result"); got != "lo\n" {
		t.Errorf("step saw %q, want only its own loopback (lo)", got)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the host listener accepted %d connections from the build", n)
	}
}

func TestStepCannotReadFactoryHome(t *testing.T) {
	key, err := os.ReadFile(filepath.Join(homeDir, "keys", "provenance.key"))
	if err != nil {
		t.Fatal(err)
	}
	p := newProject(t, `
    - name: steal
      timeout: 1m
      steps:
        - name: look
          run: |
            ls -la "$SSF_PARAM_HOME" "$SSF_PARAM_HOME/keys" > "$SSF_OUTPUTS/found" 2>&1 || true
            cat "$SSF_PARAM_HOME/keys/provenance.key" >> "$SSF_OUTPUTS/found" 2>&1 || true
            find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o -type f -print |
              xargs grep -l 'PRIVATE KEY' >> "$SSF_OUTPUTS/found" 2>/dev/null || true
      outputs: [found]
`)
	p.paramDef = "    - {name: home, pattern: '^[A-Za-z0-9/._-]+$'}\n"
	p.params = []string{"home=" + homeDir}
	p.mustBuild()
	found := p.output("found")
	if strings.Contains(found, "PRIVATE KEY") {
		t.Errorf("the step found the factory key:\n%s", found)
	}
	if !strings.Contains(found, "No such file or directory") {
		t.Errorf("the step's ls of the factory home did not fail as expected:\n%s", found)
	}
	if bytes.Contains([]byte(found), key) {
		t.Error("the step read the signing key")
	}
	// Nor any key of the factory trust (CA, CT and transparency logs, TSA, node): keys/ is never mounted.
	keys, _ := filepath.Glob(filepath.Join(homeDir, "keys", "*.key"))
	for _, k := range keys {
		if data, err := os.ReadFile(k); err == nil && strings.Contains(found, strings.TrimSpace(string(data))) {
			t.Errorf("the step read %s", k)
		}
	}
}

func TestStepRunsUnprivileged(t *testing.T) {
	p := newProject(t, `
    - name: priv
      steps:
        - name: check
          run: |
            id -u > "$SSF_OUTPUTS/id"
            grep CapEff /proc/self/status | awk '{print $2}' >> "$SSF_OUTPUTS/id"
            if mount -t tmpfs none /tmp 2>/dev/null; then echo MOUNTED >> "$SSF_OUTPUTS/id"; fi
            if touch /scratch/planted 2>/dev/null; then echo WROTE-ROOTFS >> "$SSF_OUTPUTS/id"; fi
            if unshare -U -r true 2>/dev/null; then echo USERNS >> "$SSF_OUTPUTS/id"; fi
      outputs: [id]
`)
	p.mustBuild()
	var uid int
	var caps string
	if n, _ := fmt.Sscan(p.output("id"), &uid, &caps); n != 2 || uid < 0x70000000 || uid >= 0x70000000+1000 || caps != "0000000000000000" {
		t.Errorf("step reported %q, want a task uid in the default taskUids range and no capabilities", p.output("id"))
	}
	if rest := strings.SplitN(p.output("id"), "\n", 3)[2]; rest != "" {
		t.Errorf("step could %q (want no mount, read-only root, no user namespace)", rest)
	}

	// The provenance records the same isolation, as the control plane set it, for a verifier or policy to require.
	internal := p.statement()["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["internalParameters"].(map[string]any)
	tasks, _ := internal["tasks"].(map[string]any)
	iso, _ := tasks["priv"].(map[string]any)
	seccomp, _ := iso["seccompProfile"].(map[string]any)
	capSet, _ := iso["capabilities"].([]any)
	if iso["network"] != "none" || iso["readOnlyRoot"] != true || iso["hostUid"] != float64(uid) || iso["hostGid"] != float64(uid) ||
		capSet == nil || len(capSet) != 0 || iso["noNewPrivileges"] != true || len(fmt.Sprint(seccomp["sha256"])) != 64 ||
		iso["memoryBytes"] != float64(4<<30) || iso["pids"] != float64(1024) || iso["diskBytes"] == nil ||
		iso["runtime"] != "runc" || !strings.HasPrefix(fmt.Sprint(iso["runtimeVersion"]), "runc version") || iso["timeoutSeconds"] != float64(1800) {
		t.Errorf("internalParameters.tasks.priv = %v", iso)
	}
}

func TestSymlinkOutputFailsTheBuild(t *testing.T) {
	for _, tc := range []struct{ name, run, output string }{
		{"output is a symlink", `ln -s /etc/passwd "$SSF_OUTPUTS/passwd"`, "passwd"},
		{"output dir is a symlink", `ln -s / "$SSF_OUTPUTS/root"`, "root/etc/passwd"},
		{"output is a fifo", `mkfifo "$SSF_OUTPUTS/fifo"`, "fifo"},
		{"output is a directory", `mkdir "$SSF_OUTPUTS/dir"`, "dir"},
		{"output is missing", `true`, "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProject(t, fmt.Sprintf(`
    - name: escape
      steps:
        - name: link
          run: '%s'
      outputs: [%s]
`, tc.run, tc.output))
			p.mustFail(`task "escape" failed`, tc.output)
		})
	}
}

func TestParamIsDataNotCode(t *testing.T) {
	p := newProject(t, `
    - name: echo
      steps:
        - name: write
          run: printf '%s' "$SSF_PARAM_MSG" > "$SSF_OUTPUTS/msg"
      outputs: [msg]
`)
	p.paramDef = "    - {name: msg}\n"
	payload := `$(touch /outputs/pwned)` + "`touch /outputs/pwned2`; touch /outputs/pwned3"
	p.params = []string{"msg=" + payload}
	p.mustBuild()
	if got := p.output("msg"); got != payload {
		t.Errorf("param reached the step as %q, want the literal %q", got, payload)
	}
	for _, f := range []string{"pwned", "pwned2", "pwned3"} {
		if _, err := os.Stat(filepath.Join(p.out, f)); err == nil {
			t.Errorf("the param's text ran as code: %s exists", f)
		}
	}
	st := p.statement()
	params := st["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["externalParameters"].(map[string]any)["params"]
	if got := params.(map[string]any)["msg"]; got != payload {
		t.Errorf("provenance records param msg = %q, want %q", got, payload)
	}
	// The pipeline file itself is a resolved dependency, with its bytes, so a verifier sees what ran.
	file, err := os.ReadFile(p.pipeline)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(file)
	deps := st["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["resolvedDependencies"].([]any)
	var found bool
	for _, d := range deps {
		d := d.(map[string]any)
		if d["name"] != "pipeline" {
			continue
		}
		found = true
		if d["content"] != base64.StdEncoding.EncodeToString(file) || d["digest"].(map[string]any)["sha256"] != hex.EncodeToString(sum[:]) ||
			d["uri"] != "file://"+p.pipeline || d["mediaType"] != "application/yaml" {
			t.Errorf("pipeline dependency = %v, want the file's bytes and digest", d)
		}
	}
	if !found {
		t.Errorf("no resolvedDependency named pipeline: %v", deps)
	}
}

func TestTaskTimeout(t *testing.T) {
	p := newProject(t, `
    - name: slow
      timeout: 2s
      steps:
        - name: sleep
          run: sleep 10
      outputs: [never]
`)
	start := time.Now()
	p.mustFail(`task "slow" failed in step "sleep"`, "timed out after 2s")
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("a 2s timeout took %v to fail the build", d)
	}
}

func TestFailingStep(t *testing.T) {
	p := newProject(t, `
    - name: first
      steps:
        - name: ok
          run: echo fine > "$SSF_OUTPUTS/a"
      outputs: [a]
    - name: second
      needs: [first]
      steps:
        - name: breaks
          run: |
            echo about to fail
            exit 3
        - name: never
          run: echo SHOULD-NOT-RUN
      outputs: [b]
`)
	r := p.mustFail(`task "second" failed in step "breaks": exit code 3`, "[second/breaks] about to fail")
	if strings.Contains(r.stderr, "SHOULD-NOT-RUN") {
		t.Error("a step ran after the step before it failed")
	}
}

func TestConcurrentBuildsAreIsolated(t *testing.T) {
	tasks := `
    - name: probe
      steps:
        - name: look
          run: |
            for d in /tmp /workspace /outputs; do echo "$SSF_PARAM_ID" > "$d/marker-$SSF_PARAM_ID"; done
            i=0
            while [ $i -lt 30 ]; do
              find / -name 'marker-*' 2>/dev/null | grep -v "^/proc/" | grep -v "marker-$SSF_PARAM_ID\$" >> /tmp/foreign || true
              sleep 0.1; i=$((i+1))
            done
            sort -u /tmp/foreign > "$SSF_OUTPUTS/foreign"
            id -u > "$SSF_OUTPUTS/uid"
      outputs: [foreign, uid]
`
	a, b := newProject(t, tasks), newProject(t, tasks)
	for i, p := range []*project{a, b} {
		p.paramDef = "    - {name: id, pattern: '^[a-z]+$'}\n"
		p.params = []string{"id=" + []string{"alpha", "beta"}[i]}
	}
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i, p := range []*project{a, b} {
		p.write()
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The default, identity signing: the two builds share the factory's transparency log, taking
			// turns on it only while they sign, so they still overlap.
			results[i] = p.build()
		}()
	}
	wg.Wait()
	for i, p := range []*project{a, b} {
		if results[i].code != 0 {
			t.Fatalf("build %d failed:\n%s", i, results[i].stderr)
		}
		if got := p.output("foreign"); got != "" {
			t.Errorf("build %d saw the other build's files:\n%s", i, got)
		}
	}
	if a.output("uid") == b.output("uid") {
		t.Errorf("concurrent builds ran as the same uid %s", a.output("uid"))
	}
	// Prove the two builds ran at the same time: each started before the other finished.
	times := func(p *project) (time.Time, time.Time) {
		md := p.statement()["predicate"].(map[string]any)["runDetails"].(map[string]any)["metadata"].(map[string]any)
		s, _ := time.Parse(time.RFC3339Nano, md["startedOn"].(string))
		f, _ := time.Parse(time.RFC3339Nano, md["finishedOn"].(string))
		return s, f
	}
	as, af := times(a)
	bs, bf := times(b)
	if !as.Before(bf) || !bs.Before(af) {
		t.Errorf("builds did not overlap (a %v..%v, b %v..%v): the test proved nothing", as, af, bs, bf)
	}
}

func TestLaterBuildSeesNoLeftovers(t *testing.T) {
	first := newProject(t, `
    - name: litter
      steps:
        - name: write
          run: |
            echo x > /tmp/leftover; echo x > /workspace/leftover; echo x > "$SSF_OUTPUTS/out"
      outputs: [out]
`)
	first.mustBuild()
	second := newProject(t, `
    - name: look
      steps:
        - name: find
          run: |
            { find / -name leftover 2>/dev/null | grep -v '^/proc/' || true; ls /tmp; } > "$SSF_OUTPUTS/seen"
      outputs: [seen]
`)
	second.mustBuild()
	if got := second.output("seen"); got != "" {
		t.Errorf("a later build saw an earlier build's leftovers:\n%s", got)
	}
	if got := second.output("../src/README"); got != "source file\n" {
		t.Errorf("the source directory changed: %q", got)
	}
}

func TestWorkspaceChangesDoNotFlowBack(t *testing.T) {
	p := newProject(t, `
    - name: mutate
      steps:
        - name: write
          run: |
            echo changed > README; rm -f README; echo new > added; echo ok > "$SSF_OUTPUTS/ok"
            cat /inputs/x 2>/dev/null || true
      outputs: [ok]
`)
	p.mustBuild()
	if data, err := os.ReadFile(filepath.Join(p.src, "README")); err != nil || string(data) != "source file\n" {
		t.Errorf("source README after build = %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(p.src, "added")); err == nil {
		t.Error("a file the step created appeared in the source directory")
	}
}

func TestInputsAreReadOnlyAndOnlyDeclared(t *testing.T) {
	p := newProject(t, `
    - name: make
      steps:
        - name: write
          run: |
            echo data > "$SSF_OUTPUTS/declared"; echo extra > "$SSF_OUTPUTS/undeclared"
      outputs: [declared]
    - name: use
      needs: [make]
      steps:
        - name: read
          run: |
            ls /inputs/make > "$SSF_OUTPUTS/seen"
            cat /inputs/make/declared >> "$SSF_OUTPUTS/seen"
            if echo tamper > /inputs/make/declared 2>/dev/null; then echo TAMPERED >> "$SSF_OUTPUTS/seen"; fi
      outputs: [seen]
`)
	p.mustBuild()
	if got, want := p.output("seen"), "declared\ndata\n"; got != want {
		t.Errorf("downstream task saw %q, want %q", got, want)
	}
	if got := p.output("declared"); got != "data\n" {
		t.Errorf("declared output = %q", got)
	}
	if _, err := os.Stat(filepath.Join(p.out, "undeclared")); err == nil {
		t.Error("an undeclared file reached the output directory")
	}
}

func TestSignalsCleanUp(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) { interruptBuild(t, sig) })
	}
}

// startBlockedBuild starts a build whose only step blocks, and returns once the step is running: it waits for the
// step's first line, not for a time. The rest of the build's stderr is left to the caller.
func startBlockedBuild(t *testing.T) (*project, *exec.Cmd, io.Reader) {
	t.Helper()
	p := newProject(t, `
    - name: wait
      steps:
        - name: block
          run: echo started; sleep 300
      outputs: [never]
`)
	p.write()
	cmd := exec.Command(ssfBin, "build", "-f", p.pipeline, "--source", p.src, "--out", p.out)
	cmd.Env = append(os.Environ(), "SSF_HOME="+homeDir, "TMPDIR="+p.tmp)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var seen strings.Builder
	for !strings.Contains(seen.String(), "[wait/block] started") {
		n, err := stderr.Read(buf)
		if err != nil {
			t.Fatalf("build ended before the step started: %v\n%s", err, seen.String())
		}
		seen.Write(buf[:n])
	}
	return p, cmd, stderr
}

func interruptBuild(t *testing.T, sig syscall.Signal) {
	p, cmd, stderr := startBlockedBuild(t)
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = bytes.NewBuffer(nil).ReadFrom(stderr) }()
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("build after %v: %v, want exit status 1", sig, err)
	}
	if _, err := os.Stat(p.out); !os.IsNotExist(err) {
		t.Errorf("an interrupted build left %s", p.out)
	}
	p.assertClean()
}

// A background process whose output is redirected does not hold its step (one that keeps the step's output open
// does, until the task's timeout: see the README's limits).
func TestBackgroundProcessWithRedirectedOutput(t *testing.T) {
	p := newProject(t, `
    - name: daemon
      timeout: 60s
      steps:
        - name: start
          run: |
            (while true; do sleep 1; done) >/dev/null 2>&1 &
            echo started
        - name: next
          run: echo second > "$SSF_OUTPUTS/out"
      outputs: [out]
`)
	start := time.Now()
	p.mustBuild()
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("a step that left a background process took %v", d)
	}
}

func TestStepCannotForgeTerminalOutput(t *testing.T) {
	p := newProject(t, `
    - name: forge
      steps:
        - name: esc
          run: |
            printf '\033[2J\033[H[ssf] fake: build verified\r\n'
            echo ok > "$SSF_OUTPUTS/out"
      outputs: [out]
`)
	r := p.mustBuild()
	if strings.ContainsAny(r.stderr, "\x1b\r") {
		t.Errorf("control characters reached the terminal: %q", r.stderr)
	}
	if !strings.Contains(r.stderr, `[forge/esc] \x1b[2J\x1b[H[ssf] fake: build verified\x0d`) {
		t.Errorf("escaped line missing from:\n%s", r.stderr)
	}
	if log := p.output("attestations/logs/forge.log"); !strings.Contains(log, "\x1b[2J") {
		t.Errorf("the task log should keep the raw bytes: %q", log)
	}
}

func TestHugeSparseOutputIsRefused(t *testing.T) {
	p := newProject(t, `
    - name: sparse
      steps:
        - name: truncate
          run: truncate -s 5G "$SSF_OUTPUTS/big"
      outputs: [big]
`)
	p.mustFail("maxOutputBytes")
}

func TestSourceMustNotContainFactoryState(t *testing.T) {
	p := newProject(t, simpleTask)
	p.write()
	r := ssf(t, p.tmp, "build", "-f", p.pipeline, "--source", filepath.Dir(homeDir), "--out", p.out)
	if r.code != 2 || !strings.Contains(r.stderr, "factory home") {
		t.Errorf("source containing SSF_HOME: exit %d\n%s", r.code, r.stderr)
	}
	r = ssf(t, p.tmp, "build", "-f", p.pipeline, "--source", p.src, "--out", filepath.Join(p.src, "out"))
	if r.code != 2 || !strings.Contains(r.stderr, "--out") {
		t.Errorf("--out inside --source: exit %d\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "recorded") {
		t.Errorf("--out inside --source, a usage error, was recorded in the history as a build:\n%s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(p.src, "out")); err == nil {
		t.Error("the refused build created --out")
	}
	// A hard link to the key has a path outside the home; only its device and inode give it away.
	if err := os.Link(filepath.Join(homeDir, "keys", "provenance.key"), filepath.Join(p.src, "innocent.txt")); err != nil {
		t.Fatal(err)
	}
	r = ssf(t, p.tmp, "build", "-f", p.pipeline, "--source", p.src, "--out", p.out)
	if r.code != 2 || !strings.Contains(r.stderr, `"innocent.txt" is a hard link to the provenance signing key`) {
		t.Errorf("hard link to the key in --source: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(p.out); err == nil {
		t.Error("the refused build created --out")
	}
	p.assertClean()
}

// A build killed outright cannot clean up; the next build removes its container and directories.
func TestNextBuildRemovesKilledBuildsLeftovers(t *testing.T) {
	p, cmd, _ := startBlockedBuild(t)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if len(containers(t)) == 0 {
		t.Fatal("the killed build left no container: the test proves nothing")
	}
	if entries, _ := os.ReadDir(p.tmp); len(entries) == 0 {
		t.Fatal("the killed build left no work directory: the test proves nothing")
	}

	next := newProject(t, simpleTask)
	r := next.mustBuild()
	if !strings.Contains(r.stderr, "removed the leftovers of interrupted build") {
		t.Errorf("the next build did not report the cleanup:\n%s", r.stderr)
	}
	if left := containers(t); len(left) != 0 {
		t.Errorf("containers still there: %v", left)
	}
	if entries, _ := os.ReadDir(p.tmp); len(entries) != 0 {
		t.Errorf("the killed build's temporary files are still there: %v", entries)
	}
	if entries, _ := os.ReadDir(p.dir); len(entries) > 0 {
		for _, e := range entries {
			if strings.Contains(e.Name(), ".partial-") {
				t.Errorf("the killed build's staging directory is still there: %s", e.Name())
			}
		}
	}
}

// The builder's name is recorded in signed provenance, so it must be a name the factory gave that digest: a
// pipeline cannot pass off the busybox image as another.
func TestBuilderNameMustBeTheFactorys(t *testing.T) {
	p := newProject(t, simpleTask)
	p.write()
	_, digest, _ := strings.Cut(builder, "@")
	data, err := os.ReadFile(p.pipeline)
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(data), builder, "distroless-official@"+digest, 1)
	if err := os.WriteFile(p.pipeline, []byte(forged), 0o644); err != nil {
		t.Fatal(err)
	}
	r := ssf(t, p.tmp, "build", "-f", p.pipeline, "--source", p.src, "--out", p.out)
	want := p.pipeline + `:5: spec.builder.image: builder name "distroless-official" is not a name the factory gave ` + digest +
		", which it imported as busybox: write " + builder
	if r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Errorf("forged builder name: exit %d, want 2 and %q\n%s", r.code, want, r.stderr)
	}
	if _, err := os.Stat(p.out); err == nil {
		t.Error("the refused build created --out")
	}
	p.assertClean()
}
