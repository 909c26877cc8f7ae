package main

// End-to-end tests of outputs as people declare them: directories (DIR/), internal outputs ({path, internal:
// true}), tasks without outputs; and of ssf build --keep-workspace.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
)

func sha256Of(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// subjects maps each subject name of the build's provenance to its sha256.
func (p *project) subjects() map[string]string {
	p.t.Helper()
	got := map[string]string{}
	for _, s := range p.statement()["subject"].([]any) {
		m := s.(map[string]any)
		got[m["name"].(string)] = m["digest"].(map[string]any)["sha256"].(string)
	}
	return got
}

// taskRecord is internalParameters.tasks[name] of the build's provenance.
func (p *project) taskRecord(name string) map[string]any {
	p.t.Helper()
	internal := p.statement()["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["internalParameters"].(map[string]any)
	var tasks map[string]any
	switch v := internal["tasks"].(type) {
	case map[string]any:
		tasks = v
	case string: // a JSON value carried as a string
		if err := json.Unmarshal([]byte(v), &tasks); err != nil {
			p.t.Fatal(err)
		}
	}
	rec, ok := tasks[name].(map[string]any)
	if !ok {
		p.t.Fatalf("internalParameters.tasks has no %q: %v", name, internal["tasks"])
	}
	return rec
}

// A directory output publishes every regular file under it, at any depth, as a subject of its own with its
// digest, copied to OUT with its SBOMs; it verifies and publishes like a file output.
func TestDirectoryOutputs(t *testing.T) {
	p := newProject(t, `
    - name: web
      steps:
        - name: bundle
          run: |
            mkdir -p "$SSF_OUTPUTS/dist/css/deep/er" "$SSF_OUTPUTS/dist/empty"
            printf 'app' > "$SSF_OUTPUTS/dist/app.js"
            printf 'css' > "$SSF_OUTPUTS/dist/css/site.css"
            printf 'deep' > "$SSF_OUTPUTS/dist/css/deep/er/x.txt"
            printf 'bin' > "$SSF_OUTPUTS/tool"
      outputs: [dist/, tool]
`)
	p.mustBuild()
	want := map[string]string{"dist/app.js": "app", "dist/css/site.css": "css", "dist/css/deep/er/x.txt": "deep", "tool": "bin"}
	subjects := p.subjects()
	for name, data := range want {
		if subjects[name] != sha256Of(data) {
			t.Errorf("subject %s = %q, want sha256 %s", name, subjects[name], sha256Of(data))
		}
		if got := p.output(name); got != data {
			t.Errorf("OUT/%s = %q, want %q", name, got, data)
		}
		for _, suffix := range []string{".spdx.sigstore.json", ".cdx.sigstore.json"} {
			if _, err := os.Stat(filepath.Join(p.out, "attestations", name+suffix)); err != nil {
				t.Errorf("SBOM of %s: %v", name, err)
			}
		}
	}
	if len(subjects) != len(want)+1 { // and oci://artifact
		t.Errorf("subjects = %v, want the %d files and the artifact", subjects, len(want))
	}
	bundle := filepath.Join(p.out, "attestations", "provenance.sigstore.json")
	if r := ssf(t, p.tmp, append([]string{"verify", filepath.Join(p.out, "dist/css/deep/er/x.txt"), "--bundle", bundle}, asRun...)...); r.code != 0 {
		t.Errorf("verify dist/css/deep/er/x.txt: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := ssf(t, p.tmp, "sbom", filepath.Join(p.out, "dist/app.js")); r.code != 0 {
		t.Errorf("sbom dist/app.js: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// Whatever a step plants in a declared directory that is not a regular file or a directory fails the task and is
// named; a link is never followed.
func TestDirectoryOutputRefusesLinksAndSpecialFiles(t *testing.T) {
	for _, tc := range []struct{ name, run, want string }{
		{"symlink to a host file", `mkdir -p "$SSF_OUTPUTS/dist/sub"; echo ok > "$SSF_OUTPUTS/dist/a"; ln -s /etc/passwd "$SSF_OUTPUTS/dist/sub/passwd"`,
			`output "dist/": "dist/sub/passwd" is a symlink`},
		{"symlink to a directory", `mkdir -p "$SSF_OUTPUTS/dist"; echo ok > "$SSF_OUTPUTS/dist/a"; ln -s / "$SSF_OUTPUTS/dist/root"`,
			`"dist/root" is a symlink`},
		{"fifo", `mkdir -p "$SSF_OUTPUTS/dist"; echo ok > "$SSF_OUTPUTS/dist/a"; mkfifo "$SSF_OUTPUTS/dist/fifo"`,
			`"dist/fifo" is not a regular file`},
		{"directory is a symlink", `mkdir -p "$SSF_OUTPUTS/real"; echo ok > "$SSF_OUTPUTS/real/a"; ln -s real "$SSF_OUTPUTS/dist"`,
			`output "dist/" is or passes through a symlink`},
		{"missing directory", `true`, `output "dist/" was not created`},
		{"empty directory", `mkdir -p "$SSF_OUTPUTS/dist/only/dirs"`, `output "dist/" holds no regular file`},
		{"too many files", `mkdir -p "$SSF_OUTPUTS/dist"; cd "$SSF_OUTPUTS/dist"; i=0; while [ $i -le 10000 ]; do : > f$i; i=$((i+1)); done`,
			`output "dist/" holds more than 10000 entries`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProject(t, `
    - name: web
      steps:
        - name: plant
          run: '`+tc.run+`'
      outputs: [dist/]
`)
			p.mustFail(`task "web" failed`, tc.want)
		})
	}
}

// A test task declares no outputs; internal outputs reach the tasks that need them and are recorded, with their
// digests, as what those tasks read, but are neither subjects, nor in OUT, nor given SBOMs, nor published.
func TestInternalOutputsAndTestTasks(t *testing.T) {
	p := newProject(t, `
    - name: compile
      steps:
        - name: cc
          run: |
            mkdir -p "$SSF_OUTPUTS/obj/sub"
            printf 'object a' > "$SSF_OUTPUTS/obj/a.o"
            printf 'object b' > "$SSF_OUTPUTS/obj/sub/b.o"
            printf 'header' > "$SSF_OUTPUTS/api.h"
      outputs: [{path: obj/, internal: true}, {path: api.h, internal: true}]
    - name: link
      needs: [compile]
      steps:
        - name: ld
          run: cat /inputs/compile/obj/a.o /inputs/compile/obj/sub/b.o /inputs/compile/api.h > "$SSF_OUTPUTS/app"
      outputs: [app]
    - name: test
      needs: [link]
      steps:
        - name: check
          run: test "$(cat /inputs/link/app)" = "object aobject bheader"
`)
	p.mustBuild()
	if got := p.output("app"); got != "object aobject bheader" {
		t.Errorf("app = %q", got)
	}
	subjects := p.subjects()
	if len(subjects) != 2 || subjects["app"] != sha256Of("object aobject bheader") {
		t.Errorf("subjects = %v, want app and the artifact only", subjects)
	}
	for _, gone := range []string{"obj", "api.h", "attestations/obj", "attestations/api.h.spdx.sigstore.json"} {
		if _, err := os.Lstat(filepath.Join(p.out, gone)); !os.IsNotExist(err) {
			t.Errorf("OUT/%s exists (%v): internal outputs are not published", gone, err)
		}
	}
	inputs := func(task string) []string {
		var got []string
		for _, in := range p.taskRecord(task)["inputs"].([]any) {
			m := in.(map[string]any)
			got = append(got, m["task"].(string)+"/"+m["path"].(string)+" "+m["digest"].(map[string]any)["sha256"].(string)+" "+strings.TrimSpace(strings.Repeat("internal", boolInt(m["internal"] == true))))
		}
		sort.Strings(got)
		return got
	}
	wantLink := []string{
		"compile/api.h " + sha256Of("header") + " internal",
		"compile/obj/a.o " + sha256Of("object a") + " internal",
		"compile/obj/sub/b.o " + sha256Of("object b") + " internal",
	}
	if got := inputs("link"); strings.Join(got, "\n") != strings.Join(wantLink, "\n") {
		t.Errorf("internalParameters.tasks.link.inputs =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantLink, "\n"))
	}
	if got := inputs("test"); len(got) != 1 || got[0] != "link/app "+sha256Of("object aobject bheader")+" " {
		t.Errorf("internalParameters.tasks.test.inputs = %q", got)
	}
	if _, ok := p.taskRecord("compile")["inputs"]; ok {
		t.Errorf("compile needs nothing but records inputs")
	}

	// Published: the files artifact holds app only.
	oras := interopTool(t, "SSF_ORAS", "oras")
	host := distributionRegistry(t)
	r := ssf(t, p.tmp, "publish", p.out, "--to", host+"/outputs/internal:v1")
	if r.code != 0 {
		t.Fatalf("publish: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	dest := t.TempDir()
	cmd := exec.Command(oras, "pull", "--plain-http", "-o", dest, lastLine(r.stdout))
	cmd.Env = append(os.Environ(), "HOME="+p.dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oras pull: %v\n%s", err, out)
	}
	var pulled []string
	filepath.Walk(dest, func(path string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			rel, _ := filepath.Rel(dest, path)
			pulled = append(pulled, rel)
		}
		return nil
	})
	if strings.Join(pulled, " ") != "app" {
		t.Errorf("the published artifact holds %v, want app only", pulled)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A pipeline that publishes nothing is refused before anything runs, at the file and line.
func TestPipelineThatPublishesNothingIsRefused(t *testing.T) {
	p := newProject(t, `
    - name: test
      steps: [{name: s, run: 'true'}]
      outputs: [{path: report.txt, internal: true}]
`)
	r := p.build()
	if r.code != 2 || !strings.Contains(r.stderr, p.pipeline+":8: spec.tasks: no task declares a published output") {
		t.Fatalf("exit %d, want 2 naming %s:8\n%s", r.code, p.pipeline, r.stderr)
	}
}

// --keep-workspace keeps a failed task's files for debugging, read-only and the control plane's: a symlink the
// step planted to a host file is kept as a link (the host file's bytes are never copied), fifos are left out,
// setuid bits dropped. The path is printed and in --output json's hint; ssf builds prune removes it.
func TestKeepWorkspace(t *testing.T) {
	home := limitedHome(t, "")
	key := filepath.Join(home, "keys", "provenance.key")
	p := newProject(t, `
    - name: build
      steps:
        - name: fail
          run: |
            echo "half-built" > notes.txt
            ln -s `+key+` stolen-key
            ln -s / "$SSF_OUTPUTS/host-root"
            printf 'partial' > "$SSF_OUTPUTS/app"
            cp /bin/busybox /tmp/suid && chmod 4755 /tmp/suid
            mkfifo /tmp/fifo
            exit 3
      outputs: [app]
`)
	p.write()
	r := ssfEnv(t, p.tmp, []string{"SSF_HOME=" + home}, "build", "-f", p.pipeline, "--source", p.src, "--out", p.out,
		"--keep-workspace", "--output", "json")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	m := regexp.MustCompile(`kept, read-only, in (\S+) \(`).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("stderr does not say where the workspace was kept:\n%s", r.stderr)
	}
	kept := m[1]
	if !strings.HasPrefix(kept, filepath.Join(home, "builds")+"/") || !strings.HasSuffix(kept, "/workspaces/build") {
		t.Errorf("kept in %s, want $SSF_HOME/builds/<id>/workspaces/build", kept)
	}
	var j struct {
		Error     string `json:"error"`
		Hint      string `json:"hint"`
		ExitCode  int    `json:"exitCode"`
		Workspace string `json:"workspace"`
	}
	decodeOne(t, r.stdout, &j)
	if !strings.Contains(j.Hint, kept) || j.Workspace != kept || j.ExitCode != 1 {
		t.Errorf("--output json %+v does not name %s in hint and workspace", j, kept)
	}
	if got, err := os.ReadFile(filepath.Join(kept, "workspace/notes.txt")); err != nil || string(got) != "half-built\n" {
		t.Errorf("workspace/notes.txt = %q, %v", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(kept, "outputs/app")); err != nil || string(got) != "partial" {
		t.Errorf("outputs/app = %q, %v", got, err)
	}
	for link, target := range map[string]string{"workspace/stolen-key": key, "outputs/host-root": "/"} {
		fi, err := os.Lstat(filepath.Join(kept, link))
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s: %v (mode %v), want the planted symlink kept as a link", link, err, fi.Mode())
			continue
		}
		if got, _ := os.Readlink(filepath.Join(kept, link)); got != target {
			t.Errorf("%s -> %q, want %q", link, got, target)
		}
	}
	if _, err := os.Lstat(filepath.Join(kept, "tmp/fifo")); !os.IsNotExist(err) {
		t.Errorf("tmp/fifo was kept (%v)", err)
	}
	filepath.Walk(kept, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Error(err)
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 0 {
			t.Errorf("%s belongs to uid %d, want root", path, st.Uid)
		}
		if fi.Mode()&os.ModeSymlink == 0 && (fi.Mode()&0o222 != 0 || fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0) {
			t.Errorf("%s has mode %v: want read-only, no setuid or setgid", path, fi.Mode())
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(kept, "tmp/suid")); err != nil {
		t.Errorf("tmp/suid not kept: %v", err)
	}

	// Without the flag nothing is kept.
	p2 := newProject(t, "    - {name: build, steps: [{name: fail, run: 'echo x > y; exit 3'}], outputs: [app]}\n")
	if r := p2.buildIn(home); r.code != 1 || strings.Contains(r.stderr, "kept, read-only") {
		t.Errorf("without --keep-workspace: exit %d\n%s", r.code, r.stderr)
	}

	id := filepath.Base(filepath.Dir(filepath.Dir(kept)))
	if show := ssfEnv(t, p.tmp, []string{"SSF_HOME=" + home}, "builds", "show", id); show.code != 0 ||
		!strings.Contains(show.stdout, "  workspace "+kept+" (kept by --keep-workspace, read-only)") {
		t.Errorf("builds show %s (exit %d) does not name the kept workspace:\n%s%s", id, show.code, show.stdout, show.stderr)
	}
	prune := ssfEnv(t, p.tmp, []string{"SSF_HOME=" + home}, "builds", "prune", "--keep", "0")
	if prune.code != 0 {
		t.Fatalf("builds prune: exit %d\n%s%s", prune.code, prune.stdout, prune.stderr)
	}
	if _, err := os.Lstat(kept); !os.IsNotExist(err) {
		t.Errorf("builds prune left %s (%v)", kept, err)
	}
	if _, err := os.Stat(key); err != nil {
		t.Errorf("the factory key is gone after prune: %v", err)
	}
}

// sigstore-go (and so cosign and ssf verify) refuses a statement of more than 1024 subjects: a build that would
// publish more files fails before anything is signed, instead of signing provenance nobody can verify.
func TestTooManyPublishedFilesFailBeforeSigning(t *testing.T) {
	p := newProject(t, `
    - name: web
      steps:
        - name: gen
          run: 'mkdir -p "$SSF_OUTPUTS/dist"; cd "$SSF_OUTPUTS/dist"; i=0; while [ $i -lt 1100 ]; do echo $i > c$i.js; i=$((i+1)); done'
      outputs: [dist/]
`)
	r := p.mustFail("the build publishes 1100 output files (1101 provenance subjects with its OCI artifact and images), more than the 1024 subjects verifiers")
	if strings.Contains(r.stderr, "signed provenance") {
		t.Errorf("something was signed:\n%s", r.stderr)
	}
}
