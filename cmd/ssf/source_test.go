package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// listTask writes the list of the workspace's files (what the task was given) as its output.
const listTask = `
    - name: list
      steps:
        - name: ls
          run: find . -type f -o -type l | sort > "$SSF_OUTPUTS/files"
      outputs: [files]
`

// gitIn runs git in dir for a test's setup.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// sourceDoc is the source of `ssf build --output json`.
type sourceDoc struct {
	URI               string            `json:"uri"`
	Digest            map[string]string `json:"digest"`
	Files             int               `json:"files"`
	Bytes             int64             `json:"bytes"`
	Ignored           int               `json:"ignored"`
	SSFIgnorePatterns int               `json:"ssfignorePatterns"`
	Git               *struct {
		Commit    string `json:"commit"`
		Path      string `json:"path"`
		Clean     bool   `json:"clean"`
		Modified  int    `json:"modified"`
		Deleted   int    `json:"deleted"`
		Untracked int    `json:"untracked"`
	} `json:"git"`
}

// A dirty checkout: the task gets the tracked files at their work-tree content and the untracked files that are
// not ignored, never node_modules/, bin/ or *.log; the build says so in one line before tasks run, and the JSON
// output and the history record carry the counts.
func TestBuildSourceIsWhatGitWouldCommit(t *testing.T) {
	p := newProject(t, listTask)
	p.files[".gitignore"] = "node_modules/\nbin/\n*.log\n"
	p.files["main.go"] = "package main\n"
	p.write()
	gitIn(t, p.src, "init", "-q")
	gitIn(t, p.src, "add", ".")
	gitIn(t, p.src, "commit", "-q", "-m", "source")
	commit := gitIn(t, p.src, "rev-parse", "HEAD")
	p.files["main.go"] = "package main // edited\n"
	p.files["notes.txt"] = "untracked\n"
	p.files["debug.log"] = "ignored\n"
	for _, f := range []string{"node_modules/left-pad/index.js", "bin/app"} {
		if err := os.MkdirAll(filepath.Join(p.src, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.src, f), []byte("ignored\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.write()
	r := ssf(t, p.tmp, "build", "-f", p.pipeline, "--source", p.src, "--out", p.out, "--output", "json")
	if r.code != 0 {
		t.Fatalf("build: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got, want := p.output("files"), "./.gitignore\n./README\n./main.go\n./notes.txt\n"; got != want {
		t.Errorf("the task saw %q, want %q", got, want)
	}
	want := "source: 4 files, 70 bytes, commit " + commit[:7] + ", dirty: 1 modified, 1 untracked"
	if i := strings.Index(r.stderr, want); i < 0 {
		t.Errorf("the build did not print %q:\n%s", want, r.stderr)
	} else if j := strings.Index(r.stderr, "task list started"); j < i {
		t.Errorf("the source line does not come before the task starts:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, `left out 3 ignored path(s)`) || !strings.Contains(r.stderr, `"node_modules/"`) {
		t.Errorf("the build does not name the ignored paths:\n%s", r.stderr)
	}
	var b struct {
		InvocationID string    `json:"invocationId"`
		Source       sourceDoc `json:"source"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil {
		t.Fatalf("build --output json: %v\n%s", err, r.stdout)
	}
	s := b.Source
	if s.Files != 4 || s.Bytes != 70 || s.Ignored != 3 || s.Git == nil || s.Git.Commit != commit || s.Git.Clean ||
		s.Git.Modified != 1 || s.Git.Untracked != 1 || s.Git.Deleted != 0 || s.Digest["gitCommit"] != "" || s.URI != "file://"+p.src {
		t.Errorf("source = %+v (git %+v), want 4 files, 70 bytes, 3 ignored, commit %s dirty with 1 modified and 1 untracked, recorded by tree digest", s, s.Git, commit)
	}
	rec, err := os.ReadFile(filepath.Join(homeDir, "builds", b.InvocationID, "build.json"))
	if err != nil {
		t.Fatalf("reading the history record: %v", err)
	}
	var h struct {
		SourceStats sourceDoc `json:"sourceStats"`
	}
	if err := json.Unmarshal(rec, &h); err != nil || h.SourceStats.Files != 4 || h.SourceStats.Git == nil || h.SourceStats.Git.Untracked != 1 {
		t.Errorf("history record's sourceStats = %+v (%v):\n%s", h.SourceStats, err, rec)
	}
}

// A --source that is a clean subfolder of a repository is recorded by the commit and the path.
func TestBuildSourceSubfolderOfRepository(t *testing.T) {
	p := newProject(t, listTask)
	p.files["README"] = "top\n"
	p.write()
	sub := filepath.Join(p.src, "app", "web")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "index.html"), []byte("<p>hi</p>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn(t, p.src, "init", "-q")
	gitIn(t, p.src, "add", ".")
	gitIn(t, p.src, "commit", "-q", "-m", "source")
	commit := gitIn(t, p.src, "rev-parse", "HEAD")
	r := ssf(t, p.tmp, "build", "-f", p.pipeline, "--source", sub, "--out", p.out)
	if r.code != 0 {
		t.Fatalf("build: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := p.output("files"); got != "./index.html\n" {
		t.Errorf("the task saw %q, want the subfolder's files only", got)
	}
	if want := "source: 1 files, 10 bytes, commit " + commit[:7] + " at app/web (clean)"; !strings.Contains(r.stderr, want) {
		t.Errorf("the build did not print %q:\n%s", want, r.stderr)
	}
	deps := p.statement()["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["resolvedDependencies"].([]any)
	src := deps[0].(map[string]any)
	if got, want := src["uri"], "git+file://"+p.src+"@"+commit+"#app/web"; got != want {
		t.Errorf("source uri = %v, want %s", got, want)
	}
	if got := src["digest"].(map[string]any)["gitCommit"]; got != commit {
		t.Errorf("source digest = %v, want gitCommit %s", src["digest"], commit)
	}
	if ann, _ := src["annotations"].(map[string]any); ann["subdirectory"] != "app/web" {
		t.Errorf("source annotations = %v, want subdirectory app/web", src["annotations"])
	}
}
