package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ssf-dev/ssf/internal/factory"
)

// recordOf finds the recorded build of p's pipeline file (each test's is unique) through `ssf builds list --output json`.
func recordOf(t *testing.T, p *project) factory.BuildRecord {
	t.Helper()
	r := ssf(t, p.tmp, "builds", "list", "--output", "json")
	if r.code != 0 {
		t.Fatalf("builds list: exit %d\n%s", r.code, r.stderr)
	}
	var doc struct{ Builds []factory.BuildRecord }
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("builds list --output json: %v\n%s", err, r.stdout)
	}
	for _, b := range doc.Builds {
		if b.PipelinePath == p.pipeline {
			return b
		}
	}
	t.Fatalf("no build of %s in `ssf builds list`:\n%s", p.pipeline, r.stdout)
	return factory.BuildRecord{}
}

func TestBuildHistory(t *testing.T) {
	ok := newProject(t, `    - name: make
      steps:
        - {name: greet, run: 'echo hello from make; echo x > /outputs/x'}
      outputs: [x]
`)
	ok.mustBuild()
	good := recordOf(t, ok)
	if good.Status != factory.StatusSucceeded || len(good.Bundles) == 0 || good.SourceURI == "" {
		t.Fatalf("successful build recorded as %+v", good)
	}

	bad := newProject(t, `    - name: check
      steps:
        - {name: first, run: 'echo first step ran'}
        - {name: second, run: 'echo about to fail; exit 7'}
        - {name: third, run: 'echo never'}
      outputs: [x]
`)
	r := bad.mustFail(`step "second"`)
	failed := recordOf(t, bad)
	if !strings.Contains(r.stderr, "ssf logs "+failed.ID[:8]) {
		t.Errorf("a failed build does not say how to see its logs:\n%s", r.stderr)
	}

	// Both appear in the human list, newest first.
	list := ssf(t, bad.tmp, "builds", "list")
	iGood, iBad := strings.Index(list.stdout, good.ID), strings.Index(list.stdout, failed.ID)
	if list.code != 0 || iGood < 0 || iBad < 0 || iBad > iGood {
		t.Fatalf("builds list (exit %d) does not list the failed build before the successful one:\n%s", list.code, list.stdout)
	}

	show := ssf(t, bad.tmp, "builds", "show", failed.ID[:8])
	for _, want := range []string{"status    failed", "step second: exit code 7", "task check: failed, exit code 7", "step first: exit code 0"} {
		if !strings.Contains(show.stdout, want) {
			t.Errorf("builds show does not contain %q:\n%s", want, show.stdout)
		}
	}
	if strings.Contains(show.stdout, "step third") {
		t.Errorf("builds show lists a step that never ran:\n%s", show.stdout)
	}

	logs := ssf(t, bad.tmp, "logs", failed.ID[:8], "--task", "check")
	if logs.code != 0 || !strings.Contains(logs.stdout, "[check/first] first step ran\n") || !strings.Contains(logs.stdout, "[check/second] about to fail\n") {
		t.Fatalf("logs --task (exit %d):\n%s%s", logs.code, logs.stdout, logs.stderr)
	}
	step := ssf(t, bad.tmp, "logs", failed.ID[:8], "--task", "check", "--step", "second")
	if step.code != 0 || step.stdout != "[check/second] about to fail\n" {
		t.Fatalf("logs --step second = exit %d %q; want only that step's line", step.code, step.stdout)
	}

	// The history is the control plane's: 0700, and the log a copy of the task's.
	fi, err := os.Stat(filepath.Join(homeDir, "builds", failed.ID))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("history directory %v, %v; want mode 0700", fi, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"builds", "show", "../../etc"}, "want a build id"},
		{[]string{"builds", "show", "0123456789abcdef"}, "no such build"},
		{[]string{"logs", failed.ID, "--task", "nope"}, `no task "nope"`},
		{[]string{"logs", failed.ID, "--step", "second"}, "needs --task"},
		{[]string{"builds", "prune"}, "--keep N is required"},
		{[]string{"builds", "prune", "--keep", "-1"}, "want 0 or more"},
	} {
		r := ssf(t, bad.tmp, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("ssf %s: exit %d, stderr %q; want exit 2 naming %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}

	prune := ssf(t, bad.tmp, "builds", "prune", "--keep", "1")
	if prune.code != 0 || !strings.Contains(prune.stdout, "removed "+good.ID) {
		t.Fatalf("builds prune --keep 1 (exit %d):\n%s%s", prune.code, prune.stdout, prune.stderr)
	}
	after := ssf(t, bad.tmp, "builds", "list", "--output", "json")
	var doc struct{ Builds []factory.BuildRecord }
	if err := json.Unmarshal([]byte(after.stdout), &doc); err != nil || len(doc.Builds) != 1 || doc.Builds[0].ID != failed.ID {
		t.Fatalf("after prune --keep 1: %v\n%s", err, after.stdout)
	}
}

// An interrupted build (Ctrl-C) is recorded as interrupted, with what its step printed before.
func TestInterruptedBuildIsRecorded(t *testing.T) {
	p, cmd, stderr := startBlockedBuild(t)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if err := cmd.Wait(); err == nil {
		t.Fatal("an interrupted build exited 0")
	}
	rec := recordOf(t, p)
	if rec.Status != factory.StatusInterrupted || len(rec.Tasks) != 1 || rec.Tasks[0].Status != factory.StatusFailed {
		t.Fatalf("interrupted build recorded as %+v", rec)
	}
	logs := ssf(t, p.tmp, "logs", rec.ID, "--task", "wait", "--step", "block")
	if logs.code != 0 || logs.stdout != "[wait/block] started\n" {
		t.Fatalf("logs of the interrupted step: exit %d %q %s", logs.code, logs.stdout, logs.stderr)
	}
}
