package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// setSecret runs `ssf secret set NAME` in the shared home with value on stdin (kept exactly).
func setSecret(t *testing.T, name, value string) {
	t.Helper()
	cmd := exec.Command(ssfBin, "secret", "set", "--raw", name)
	cmd.Env = append(os.Environ(), "SSF_HOME="+homeDir)
	cmd.Stdin = strings.NewReader(value)
	if r := runCmd(t, cmd); r.code != 0 {
		t.Fatalf("ssf secret set %s: exit %d\n%s", name, r.code, r.stderr)
	}
	t.Cleanup(func() {
		cmd := exec.Command(ssfBin, "secret", "rm", name)
		cmd.Env = append(os.Environ(), "SSF_HOME="+homeDir)
		cmd.Run()
	})
}

func randomValue(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// filesContaining lists the regular files under root whose bytes contain any of needles.
func filesContaining(t *testing.T, root string, needles ...string) []string {
	t.Helper()
	var hits []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for _, n := range needles {
			if bytes.Contains(data, []byte(n)) {
				hits = append(hits, p)
				break
			}
		}
		return nil
	})
	return hits
}

// A task that lists a secret finds it at /run/secrets/NAME: 0400, its own uid, on a tmpfs, not in its environment;
// a task that does not list it sees nothing there; the value and its base64 forms are redacted from the terminal,
// the stored logs and OUT; the provenance names the secret only; the store holds no clear value.
func TestTaskSecrets(t *testing.T) {
	value := randomValue("tok-")
	multi := randomValue("line-a-") + "\n" + randomValue("line-b-")
	setSecret(t, "E2E_TOKEN", value)
	setSecret(t, "E2E_MULTI", multi)
	b64 := base64.StdEncoding.EncodeToString([]byte(value))
	p := newProject(t, `
    - name: use
      secrets: [E2E_TOKEN, E2E_MULTI]
      steps:
        - name: inspect
          run: |
            stat -c '%a %u %g' /run/secrets/E2E_TOKEN > "$SSF_OUTPUTS/facts"
            id -u >> "$SSF_OUTPUTS/facts"
            awk '$2 == "/run/secrets" {print $3, $4}' /proc/mounts >> "$SSF_OUTPUTS/facts"
            if echo x > /run/secrets/planted 2>/dev/null; then echo WROTE >> "$SSF_OUTPUTS/facts"; fi
            if echo x > /run/secrets/E2E_TOKEN 2>/dev/null; then echo OVERWROTE >> "$SSF_OUTPUTS/facts"; fi
            env > "$SSF_OUTPUTS/env"
        - name: leak
          run: |
            v=$(cat /run/secrets/E2E_TOKEN)
            echo "plain: $v"
            echo "stderr: $v" >&2
            echo "base64: $(base64 /run/secrets/E2E_TOKEN)"
            printf '%s' "$v" | base64 | tr '+/' '-_' | tr -d '=' | sed 's/^/url64: /'
            printf 'split: %s' "${v%??????}"; printf '%s\n' "${v#${v%??????}}"
            echo "multi: $(cat /run/secrets/E2E_MULTI) end"
            printf 'basic: '; printf 'user:%s' "$v" | base64
      outputs: [facts, env]
    - name: other
      steps:
        - name: look
          run: |
            ls -A /run/secrets > "$SSF_OUTPUTS/other"
            awk '$2 == "/run/secrets"' /proc/mounts >> "$SSF_OUTPUTS/other"
            cat /run/secrets/E2E_TOKEN >> "$SSF_OUTPUTS/other" 2>/dev/null || true
      outputs: [other]
`)
	r := p.mustBuild()

	var mode, uid, gid, idu, fstype, opts string
	facts := p.output("facts")
	if n, _ := fmt.Sscan(facts, &mode, &uid, &gid, &idu, &fstype, &opts); n != 6 {
		t.Fatalf("facts = %q", facts)
	}
	if mode != "400" || uid != idu || gid != idu || fstype != "tmpfs" || !strings.Contains(opts, "ro") {
		t.Errorf("/run/secrets/E2E_TOKEN: mode %s, owner %s:%s (task uid %s), mounted %s %s; want 400, the task's uid, a read-only tmpfs", mode, uid, gid, idu, fstype, opts)
	}
	if strings.Contains(facts, "WROTE") || strings.Contains(facts, "OVERWROTE") {
		t.Errorf("the task could write its secrets: %q", facts)
	}
	if env := p.output("env"); strings.Contains(env, value) || strings.Contains(env, "E2E_TOKEN") {
		t.Errorf("the secret reached the environment:\n%s", env)
	}
	if other := p.output("other"); other != "" {
		t.Errorf("a task that lists no secret sees /run/secrets: %q", other)
	}

	needles := []string{value, b64[:len(b64)-4], strings.Split(multi, "\n")[0], strings.Split(multi, "\n")[1]}
	for _, n := range needles {
		if strings.Contains(r.stderr, n) {
			t.Errorf("the terminal shows %q:\n%s", n, r.stderr)
		}
	}
	for _, want := range []string{"[use/leak] plain: ***\n", "[use/leak] stderr: ***\n", "[use/leak] base64: ***\n", "[use/leak] url64: ***\n", "[use/leak] split: ***\n", "[use/leak] multi: *** end\n", "[use/leak] basic: "} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the terminal lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, base64.StdEncoding.EncodeToString([]byte("user:" + value))[8:30]) {
		t.Errorf("the base64 of user:VALUE is shown:\n%s", r.stderr)
	}

	rec := recordOf(t, p)
	logs := ssf(t, p.tmp, "logs", rec.ID, "--task", "use")
	if logs.code != 0 || !strings.Contains(logs.stdout, "[use/leak] plain: ***\n") {
		t.Fatalf("ssf logs (exit %d):\n%s%s", logs.code, logs.stdout, logs.stderr)
	}
	// Nothing the build left anywhere holds the value: OUT (outputs but the env dump, logs, bundles), the history,
	// the store; nor the pipeline's work directory, which is gone.
	os.Remove(filepath.Join(p.out, "env"))
	os.Remove(filepath.Join(p.out, "facts"))
	if hits := filesContaining(t, p.out, needles...); len(hits) != 0 {
		t.Errorf("OUT holds a secret: %v", hits)
	}
	if hits := filesContaining(t, homeDir, needles...); len(hits) != 0 {
		t.Errorf("the factory home holds a secret in the clear: %v", hits)
	}

	internal := p.statement()["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["internalParameters"].(map[string]any)
	tasks := internal["tasks"].(map[string]any)
	if got := fmt.Sprint(tasks["use"].(map[string]any)["secrets"]); got != "[E2E_TOKEN E2E_MULTI]" {
		t.Errorf("internalParameters.tasks.use.secrets = %s", got)
	}
	if s, ok := tasks["other"].(map[string]any)["secrets"]; ok {
		t.Errorf("internalParameters.tasks.other.secrets = %v, want none", s)
	}

	// The tmpfs is gone with the build.
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if bytes.Contains(mounts, []byte(p.tmp)) {
		t.Errorf("a mount under the build's TMPDIR is left:\n%s", mounts)
	}
}

// A build naming a secret that is not set, or whose stored file does not authenticate under its name, stops
// before any task runs.
func TestTaskSecretMissingOrTampered(t *testing.T) {
	p := newProject(t, `
    - name: deploy
      secrets: [E2E_NEVER_SET]
      steps:
        - {name: s, run: 'echo ran > $SSF_OUTPUTS/x'}
      outputs: [x]
`)
	r := p.build()
	if r.code != 2 || !strings.Contains(r.stderr, `task "deploy" needs secret "E2E_NEVER_SET"`) ||
		!strings.Contains(r.stderr, "ssf secret set E2E_NEVER_SET") || strings.Contains(r.stderr, "started") {
		t.Fatalf("exit %d, want 2 naming the task, the secret and the fix, before any task:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(p.out); !os.IsNotExist(err) {
		t.Errorf("OUT exists after a refused build")
	}

	// Another secret's file renamed into place.
	setSecret(t, "E2E_REAL", randomValue("real-"))
	setSecret(t, "E2E_RENAMED", randomValue("renamed-"))
	dir := filepath.Join(homeDir, "secrets")
	data, err := os.ReadFile(filepath.Join(dir, "E2E_REAL.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "E2E_RENAMED.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	p.tasks = strings.ReplaceAll(p.tasks, "E2E_NEVER_SET", "E2E_RENAMED")
	r = p.build()
	if r.code != 1 || !strings.Contains(r.stderr, `secret "E2E_RENAMED"`) || !strings.Contains(r.stderr, "does not authenticate") ||
		strings.Contains(r.stderr, "started") {
		t.Fatalf("renamed store file: exit %d, want 1 refusing it before any task:\n%s", r.code, r.stderr)
	}
}

// treeOf lists every path under root with its mode, to compare before and after a build.
func treeOf(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %s\n", strings.TrimPrefix(p, root), fi.Mode())
		return nil
	})
	return b.String()
}

// The control plane's credential for a dependency server reaches the fetch and never a task: a task that dumps its
// environment and every file it can read under its mounts finds no trace of it. The builder's cached root file
// system is not written by the mounts of /deps and /run/secrets (the runtime would create missing mount points in
// it).
func TestFetchCredentialNeverReachesATask(t *testing.T) {
	token := randomValue("fetch-tok-")
	body := []byte("private dependency\n")
	var got atomicString
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	home := limitedHome(t, "credentials:\n  - {host: '"+host+"', secret: E2E_FETCH}\n")
	set := func(name, value string) {
		cmd := exec.Command(ssfBin, "secret", "set", name)
		cmd.Env = append(os.Environ(), "SSF_HOME="+home)
		cmd.Stdin = strings.NewReader(value)
		if r := runCmd(t, cmd); r.code != 0 {
			t.Fatalf("ssf secret set: exit %d\n%s", r.code, r.stderr)
		}
	}
	p := newProject(t, `
    - name: look
      secrets: [E2E_TASK]
      steps:
        - name: dump
          run: |
            env > "$SSF_OUTPUTS/seen"
            ls -laR /deps /run /workspace /tmp >> "$SSF_OUTPUTS/seen" 2>&1
            find /deps /run /workspace /tmp /inputs /etc -type f 2>/dev/null | while read -r f; do cat "$f"; done >> "$SSF_OUTPUTS/seen" 2>&1
      outputs: [seen]
`)
	p.deps = fmt.Sprintf("    - {type: file, url: '%s/dep.txt', sha256: %s, dest: dep.txt}\n", srv.URL, sha256Hex(body))

	// Not set yet: the build says which entry of config.yaml needs which secret (exit 2), before any task.
	set("E2E_TASK", randomValue("task-"))
	r := p.buildIn(home)
	if r.code != 2 || !strings.Contains(r.stderr, "credentials[0]: secret \"E2E_FETCH\"") || !strings.Contains(r.stderr, "ssf secret set E2E_FETCH") ||
		strings.Contains(r.stderr, "started") {
		t.Fatalf("credential secret not set: exit %d\n%s", r.code, r.stderr)
	}
	set("E2E_FETCH", token)

	// A build with neither dependencies nor secrets unpacks the builder; the one with both must leave it as it is.
	plain := newProject(t, "    - {name: a, steps: [{name: s, run: 'echo > $SSF_OUTPUTS/x'}], outputs: [x]}\n")
	if r := plain.buildIn(home); r.code != 0 {
		t.Fatalf("plain build: exit %d\n%s", r.code, r.stderr)
	}
	rootfsCache := filepath.Join(home, "cache", "rootfs")
	before := treeOf(t, rootfsCache)
	r = p.buildIn(home)
	if r.code != 0 {
		t.Fatalf("build: exit %d\n%s", r.code, r.stderr)
	}
	if got.Load() != "Bearer "+token {
		t.Errorf("the dependency server got Authorization %q", got.Load())
	}
	seen := p.output("seen")
	if !strings.Contains(seen, "private dependency") || !strings.Contains(seen, "E2E_TASK") {
		t.Fatalf("the task did not see its dependency and secret:\n%s", seen)
	}
	if strings.Contains(seen, token) || strings.Contains(seen, "E2E_FETCH") {
		t.Errorf("the fetch credential reached the task:\n%s", seen)
	}
	if hits := filesContaining(t, p.out, token); len(hits) != 0 {
		t.Errorf("OUT holds the fetch credential: %v", hits)
	}
	if strings.Contains(r.stderr, token) {
		t.Errorf("the terminal shows the fetch credential")
	}
	if after := treeOf(t, rootfsCache); after != before {
		t.Errorf("the build changed the cached root file system:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

type atomicString struct{ v atomic.Value }

func (a *atomicString) Store(s string) { a.v.Store(s) }
func (a *atomicString) Load() string {
	s, _ := a.v.Load().(string)
	return s
}

// A step given a secret names an output file after it: the error refusing that output, which quotes the name,
// reaches neither the terminal, nor --output json, nor the build history, nor `ssf builds show`, in the clear.
func TestSecretInAnErrorIsRedacted(t *testing.T) {
	value := randomValue("errtok-")
	setSecret(t, "E2E_ERRTOK", value)
	p := newProject(t, `
    - name: leak
      secrets: [E2E_ERRTOK]
      steps:
        - name: name-an-output-after-it
          run: |
            mkdir "$SSF_OUTPUTS/d"
            echo > "$SSF_OUTPUTS/d/ok"
            ln -s /etc/passwd "$SSF_OUTPUTS/d/$(cat /run/secrets/E2E_ERRTOK)"
      outputs: [d/]
`)
	r := p.build("--output", "json", "--keep-workspace")
	if r.code != 1 || !strings.Contains(r.stderr, `"d/***" is a symlink`) || !strings.Contains(r.stdout, `d/***`) {
		t.Fatalf("exit %d, want 1 and the output's name redacted:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stderr+r.stdout, value) {
		t.Errorf("the secret reached the terminal or the JSON error:\n%s\n%s", r.stdout, r.stderr)
	}
	rec := recordOf(t, p)
	if !strings.Contains(rec.Error, `"d/***" is a symlink`) {
		t.Errorf("the history's error = %q", rec.Error)
	}
	show := ssf(t, p.tmp, "builds", "show", rec.ID, "--output", "json")
	if show.code != 0 || strings.Contains(show.stdout+show.stderr, value) {
		t.Errorf("ssf builds show (exit %d) shows the secret:\n%s%s", show.code, show.stdout, show.stderr)
	}
	// The kept workspace holds the link (the task's own disk, kept as the step left it); nothing else of the
	// history names the value.
	recDir := filepath.Join(homeDir, "builds", rec.ID)
	hits := filesContaining(t, recDir, value)
	for _, h := range hits {
		if !strings.HasPrefix(h, filepath.Join(recDir, "workspaces")+"/") {
			t.Errorf("the build history holds the secret in %s", h)
		}
	}
}

// `ssf secret` in a home that is not a factory says so (exit 2) and creates nothing; a bad value says what a good
// one is (exit 2).
func TestSecretCommandBadInput(t *testing.T) {
	none := filepath.Join(t.TempDir(), "not-a-factory")
	run := func(home, stdin string, args ...string) result {
		cmd := exec.Command(ssfBin, args...)
		cmd.Env = append(os.Environ(), "SSF_HOME="+home)
		cmd.Stdin = strings.NewReader(stdin)
		return runCmd(t, cmd)
	}
	for _, args := range [][]string{{"secret", "list"}, {"secret", "rm", "A"}, {"secret", "set", "A"}} {
		r := run(none, "a-value", args...)
		if r.code != 2 || !strings.Contains(r.stderr, "not initialised") || !strings.Contains(r.stderr, "ssf init") {
			t.Errorf("ssf %s in no factory: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	if _, err := os.Stat(none); !os.IsNotExist(err) {
		t.Errorf("a command made %s", none)
	}
	r := run(homeDir, "", "secret", "set", "E2E_ARGV", "argv-value-1234")
	if r.code != 2 || strings.Contains(r.stderr, "argv-value-1234") || !strings.Contains(r.stderr, "never from the command line") {
		t.Errorf("value as an argument: exit %d\n%s", r.code, r.stderr)
	}
	r = run(homeDir, "abc\n", "secret", "set", "E2E_SHORT")
	if r.code != 2 || !strings.Contains(r.stderr, `secret "E2E_SHORT": the secret's value is 3 bytes, shorter than 4`) ||
		!strings.Contains(r.stderr, "ssf: hint: the value is read from stdin") {
		t.Errorf("short value: exit %d\n%s", r.code, r.stderr)
	}
}

// A build killed outright while a task holds a secret leaves that task's tmpfs mounted; the next build from the
// home unmounts it with the rest of the killed build's leftovers.
func TestKilledBuildsSecretsAreUnmounted(t *testing.T) {
	setSecret(t, "E2E_KILLED", randomValue("killed-"))
	p := newProject(t, `
    - name: wait
      secrets: [E2E_KILLED]
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
	secretMounts := func() []string {
		data, _ := os.ReadFile("/proc/self/mountinfo")
		var out []string
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], p.tmp+"/") && strings.HasSuffix(f[4], "/secrets") {
				out = append(out, f[4])
			}
		}
		return out
	}
	if len(secretMounts()) != 1 {
		t.Fatalf("the running task's secrets are not one tmpfs under its TMPDIR: %v", secretMounts())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if len(secretMounts()) != 1 {
		t.Fatalf("the killed build left no secrets tmpfs: the test proves nothing")
	}

	next := newProject(t, simpleTask)
	if r := next.mustBuild(); !strings.Contains(r.stderr, "removed the leftovers of interrupted build") {
		t.Errorf("the next build did not report the cleanup:\n%s", r.stderr)
	}
	if left := secretMounts(); len(left) != 0 {
		t.Errorf("the killed build's secrets are still mounted: %v", left)
	}
	if entries, _ := os.ReadDir(p.tmp); len(entries) != 0 {
		t.Errorf("the killed build's temporary files are still there: %v", entries)
	}
}

// A malformed credentials entry fails every build at admission (exit 2), not only one with dependencies to fetch,
// and a token put where a host or a secret's name belongs is not quoted back.
func TestMalformedCredentialRefusedAtAdmission(t *testing.T) {
	for entry, want := range map[string]string{
		`{host: "https://ci:SEKRIT-1@proxy.corp.example", secret: E2E_X}`: "credentials[0]: host holds user information",
		`{host: proxy.corp.example, secret: "SEKRIT-2/value=="}`:          "credentials[0]: secret is not a secret's name",
		`{host: proxy.corp.example, secret: A}`:                           "", // well formed, unused without dependencies
	} {
		home := limitedHome(t, "credentials:\n  - "+entry+"\n")
		p := newProject(t, simpleTask)
		r := p.buildIn(home)
		if want == "" {
			if r.code != 0 {
				t.Errorf("%s: exit %d\n%s", entry, r.code, r.stderr)
			}
			continue
		}
		if r.code != 2 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "SEKRIT") || strings.Contains(r.stderr, "started") {
			t.Errorf("%s: exit %d, want 2 with %q and no token:\n%s", entry, r.code, want, r.stderr)
		}
	}
}
