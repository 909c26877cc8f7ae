package source

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// takeT snapshots dir and fails the test unless Take returns within a minute (a hostile repository must never
// make it hang; the bound only turns a hang into a failure).
func takeT(t *testing.T, dir string) (*Snapshot, string) {
	t.Helper()
	snapshot := filepath.Join(t.TempDir(), "source.tar")
	type result struct {
		src *Snapshot
		err error
	}
	done := make(chan result, 1)
	go func() {
		src, err := Take(context.Background(), dir, Protected{Home: t.TempDir()}, snapshot, 0)
		done <- result{src, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Take: %v", r.err)
		}
		return r.src, snapshot
	case <-time.After(time.Minute):
		t.Fatal("Take hangs")
	}
	return nil, ""
}

// A checkout contributes what git would commit: the tracked files at their work-tree content (a tracked file in
// an ignored directory too), untracked files that are not ignored, never ignored ones (node_modules/, bin/,
// *.log), .git or a nested repository; the tree is recorded by digest with the dirty counts.
func TestCheckoutContributesWhatGitWouldCommit(t *testing.T) {
	repo := t.TempDir()
	gitT(t, repo, "init", "-q")
	writeT(t, filepath.Join(repo, ".gitignore"), "node_modules/\nbin/\n*.log\n")
	writeT(t, filepath.Join(repo, "main.go"), "package main\n")
	writeT(t, filepath.Join(repo, "util.go"), "package main\n")
	writeT(t, filepath.Join(repo, "gone.go"), "package main\n")
	writeT(t, filepath.Join(repo, "bin", "tracked.sh"), "#!/bin/sh\n")
	gitT(t, repo, "add", ".")
	gitT(t, repo, "add", "-f", "bin/tracked.sh")
	gitT(t, repo, "commit", "-q", "-m", "c")
	head := gitT(t, repo, "rev-parse", "HEAD")

	writeT(t, filepath.Join(repo, "main.go"), "package main // edited\n")
	if err := os.Remove(filepath.Join(repo, "gone.go")); err != nil {
		t.Fatal(err)
	}
	writeT(t, filepath.Join(repo, "new.go"), "package main\n")
	writeT(t, filepath.Join(repo, "node_modules", "left-pad", "index.js"), "module.exports = 1\n")
	writeT(t, filepath.Join(repo, "bin", "app"), "ELF\n")
	writeT(t, filepath.Join(repo, "debug.log"), "log\n")
	writeT(t, filepath.Join(repo, "sub", "trace.log"), "log\n")
	writeT(t, filepath.Join(repo, "empty-of-kept", "x.log"), "log\n") // a directory holding only ignored files
	gitT(t, filepath.Join(repo), "init", "-q", filepath.Join(repo, "vendored"))
	writeT(t, filepath.Join(repo, "vendored", "lib.go"), "package lib\n")

	src, snapshot := takeT(t, repo)
	if got, want := snapshotEntries(t, snapshot), []string{".gitignore", "bin/", "bin/tracked.sh", "main.go", "new.go", "util.go"}; !slices.Equal(got, want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
	hdrs, _ := readSnapshot(t, snapshot)
	for _, h := range hdrs {
		if h.Name == "main.go" && h.Size != int64(len("package main // edited\n")) {
			t.Errorf("main.go has %d bytes, want the work tree's", h.Size)
		}
	}
	if src.Commit != "" || !strings.Contains(src.GitMismatch, `file "main.go" differs from commit `+head[:7]) {
		t.Errorf("commit %q, mismatch %q: want the tree digest and main.go named", src.Commit, src.GitMismatch)
	}
	g := src.Stats.Git
	if g == nil || g.Commit != head || g.Clean || g.Modified != 1 || g.Deleted != 1 || g.Untracked != 1 {
		t.Fatalf("git stats = %+v, want commit %s, 1 modified, 1 deleted, 1 untracked", g, head)
	}
	if src.Stats.Files != 5 || src.Stats.Ignored != 5 {
		t.Errorf("stats = %+v, want 5 files and 5 ignored paths", src.Stats)
	}
	if want := "source: 5 files, 84 bytes, commit " + head[:7] + ", dirty: 1 modified, 1 deleted, 1 untracked"; src.Summary() != want {
		t.Errorf("summary = %q\nwant      %q", src.Summary(), want)
	}
	left := strings.Join(src.LeftOut, "\n")
	for _, want := range []string{`left out 5 ignored path(s)`, `"bin/app"`, `"node_modules/"`, `"debug.log"`, `nested git repository`, `"vendored/"`} {
		if !strings.Contains(left, want) {
			t.Errorf("leftOut = %q, want %q", src.LeftOut, want)
		}
	}
	if d := src.Descriptor(); d.URI != "file://"+repo || d.Digest["gitCommit"] != "" {
		t.Errorf("descriptor = %+v, want the tree digest", d)
	}
}

// The one line the build prints, for each kind of source.
func TestSummary(t *testing.T) {
	repo := t.TempDir()
	sourceRepo(t, repo)
	head := gitT(t, repo, "rev-parse", "HEAD")
	src, _ := takeT(t, repo)
	if want := "source: 5 files, 46 bytes, commit " + head[:7] + " (clean)"; src.Summary() != want {
		t.Errorf("summary = %q, want %q", src.Summary(), want)
	}
	sub, _ := takeT(t, filepath.Join(repo, "src"))
	if want := "source: 1 files, 13 bytes, commit " + head[:7] + " at src (clean)"; sub.Summary() != want {
		t.Errorf("summary = %q, want %q", sub.Summary(), want)
	}
	plain := t.TempDir()
	writeT(t, filepath.Join(plain, SSFIgnore), "# comment\n*.o\n!keep.o\n")
	writeT(t, filepath.Join(plain, "a.c"), strings.Repeat("x", 1500))
	writeT(t, filepath.Join(plain, "a.o"), "obj")
	p, _ := takeT(t, plain)
	if want := "source: 2 files, 1.5 kB, not a git work tree (.ssfignore: 2 patterns)"; p.Summary() != want {
		t.Errorf("summary = %q, want %q", p.Summary(), want)
	}
	empty := t.TempDir()
	gitT(t, empty, "init", "-q")
	writeT(t, filepath.Join(empty, "a"), "a\n")
	e, _ := takeT(t, empty)
	if want := "source: 1 files, 2 bytes, git work tree without a commit"; e.Summary() != want {
		t.Errorf("summary = %q, want %q", e.Summary(), want)
	}
	for n, want := range map[int64]string{0: "0 bytes", 999: "999 bytes", 1000: "1.0 kB", 1_234_567: "1.2 MB", 999_960: "1.0 MB", 5 << 30: "5.4 GB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// A hostile repository's configuration starts nothing and cannot make the snapshot hang, even with untracked
// files to decide about. Each setup first shows that porcelain git does run (or block on) the payload.
func TestHostileRepositoryRunsNothing(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, repo, markers string)
		// wantUntracked is the untracked files the snapshot must hold.
		wantUntracked []string
		wantLeftOut   string
	}{{
		name: "fsmonitor hook",
		setup: func(t *testing.T, repo, markers string) {
			gitT(t, repo, "config", "core.fsmonitor", "touch "+filepath.Join(markers, "fsmonitor")+"; echo")
			proveMarker(t, markers, "fsmonitor", func() { gitTry(repo, "status") })
		},
		wantUntracked: []string{"notes.txt"},
	}, {
		name: "clean filter on every path",
		setup: func(t *testing.T, repo, markers string) {
			writeT(t, filepath.Join(repo, ".git", "info", "attributes"), "* filter=evil\n")
			gitT(t, repo, "config", "filter.evil.clean", "touch "+filepath.Join(markers, "clean")+"; cat")
			proveMarker(t, markers, "clean", func() { gitTry(repo, "hash-object", "notes.txt") })
		},
		wantUntracked: []string{"notes.txt"},
	}, {
		name: "core.excludesFile is a fifo",
		setup: func(t *testing.T, repo, markers string) {
			fifo := filepath.Join(markers, "excludes")
			if err := syscall.Mkfifo(fifo, 0o644); err != nil {
				t.Fatal(err)
			}
			gitT(t, repo, "config", "core.excludesFile", fifo)
			// Porcelain git opens it and blocks until a writer opens it too: here the test is that writer.
			cmd := exec.Command("git", "-C", repo, "ls-files", "--others", "--exclude-standard")
			var out strings.Builder
			cmd.Stdout = &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // returns once git has opened the fifo to read it
			if err != nil {
				t.Fatal(err)
			}
			w.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatalf("setup: git ls-files: %v", err)
			}
			os.Remove(fifo)
			if err := syscall.Mkfifo(fifo, 0o644); err != nil { // a fresh fifo, with no writer this time
				t.Fatal(err)
			}
		},
		wantUntracked: []string{"notes.txt"},
	}, {
		name: ".gitignore and info/exclude are fifos",
		setup: func(t *testing.T, repo, _ string) {
			fifos := []string{filepath.Join(repo, ".git", "info", "exclude"), filepath.Join(repo, "src", ".gitignore")}
			for _, p := range fifos {
				os.MkdirAll(filepath.Dir(p), 0o755)
				os.Remove(p)
				if err := syscall.Mkfifo(p, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// Even git ls-files with every setting that could help blocks on each: no option stops git opening
			// an ignore file it finds in the work tree. Here the test is the writer that lets it go on.
			cmd := exec.Command("git", "-C", repo, "-c", "core.fsmonitor=false", "-c", "core.untrackedCache=false",
				"-c", "core.excludesFile=/dev/null", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
			cmd.Env = append(cleanGitEnv(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			for _, p := range fifos {
				w, err := os.OpenFile(p, os.O_WRONLY, 0) // returns once git has opened the fifo to read it
				if err != nil {
					t.Fatal(err)
				}
				w.Close()
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("setup: git ls-files: %v", err)
			}
		},
		wantUntracked: []string{"notes.txt"},
		wantLeftOut:   `did not read 2 ignore file(s)`,
	}, {
		name: "untracked cache that hides a file",
		setup: func(t *testing.T, repo, _ string) {
			for _, kv := range [][2]string{{"core.untrackedCache", "true"}, {"core.trustctime", "false"}, {"core.checkStat", "minimal"}} {
				gitT(t, repo, "config", kv[0], kv[1])
			}
			gitT(t, repo, "update-index", "--untracked-cache")
			// An old mtime, so that git does not take the directory for racily clean and read it anyway.
			old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
			if err := os.Chtimes(repo, old, old); err != nil {
				t.Fatal(err)
			}
			gitT(t, repo, "status", "--porcelain") // fills the cache
			writeT(t, filepath.Join(repo, "sneaked.txt"), "not in the cache\n")
			if err := os.Chtimes(repo, old, old); err != nil {
				t.Fatal(err)
			}
			if out := gitT(t, repo, "status", "--porcelain"); strings.Contains(out, "sneaked.txt") {
				t.Fatalf("setup: git status is not fooled by the untracked cache:\n%s", out)
			}
		},
		wantUntracked: []string{"notes.txt", "sneaked.txt"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, markers := t.TempDir(), t.TempDir()
			sourceRepo(t, repo)
			writeT(t, filepath.Join(repo, "notes.txt"), "untracked\n")
			tt.setup(t, repo, markers)

			src, snapshot := takeT(t, repo)
			if left, _ := os.ReadDir(markers); slices.ContainsFunc(left, func(e os.DirEntry) bool { return e.Type().IsRegular() }) {
				t.Errorf("git ran a command from the repository: %s exists", left[0].Name())
			}
			files := snapshotFilesOf(t, snapshot)
			for _, u := range tt.wantUntracked {
				if !slices.Contains(files, u) {
					t.Errorf("snapshot files = %q, want %s", files, u)
				}
			}
			if slices.Contains(files, "debug.log") {
				t.Errorf("snapshot files = %q: the ignored debug.log is there", files)
			}
			if g := src.Stats.Git; g == nil || g.Untracked != len(tt.wantUntracked) {
				t.Errorf("git stats = %+v, want %d untracked", g, len(tt.wantUntracked))
			}
			if tt.wantLeftOut != "" && !slices.ContainsFunc(src.LeftOut, func(s string) bool { return strings.Contains(s, tt.wantLeftOut) }) {
				t.Errorf("leftOut = %q, want %q", src.LeftOut, tt.wantLeftOut)
			}
		})
	}
}

// A repository whose configuration includes a fifo blocks every git command at startup; the command is killed
// after gitTimeout, and the source is taken as a plain directory, saying why.
func TestGitBlockedByConfigFifoIsBounded(t *testing.T) {
	repo := t.TempDir()
	sourceRepo(t, repo)
	fifo := filepath.Join(t.TempDir(), "config")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	gitT(t, repo, "config", "include.path", fifo)
	// Porcelain git opens the fifo at startup and blocks until a writer comes: here the test is one.
	cmd := exec.Command("git", "-C", repo, "rev-parse", "--show-toplevel")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // returns once git has opened the fifo to read it
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("setup: git rev-parse: %v", err)
	}

	defer func(d time.Duration) { gitTimeout = d }(gitTimeout)
	gitTimeout = 2 * time.Second
	src, snapshot := takeT(t, repo)
	if !strings.Contains(src.GitMismatch, "did not finish in time") || src.Commit != "" || src.Stats.Git != nil {
		t.Errorf("mismatch %q, commit %q, git stats %+v: want a plain directory, saying git did not finish", src.GitMismatch, src.Commit, src.Stats.Git)
	}
	if got := snapshotFilesOf(t, snapshot); slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, ".git/") }) || !slices.Contains(got, "README") {
		t.Errorf("snapshot files = %q, want the directory without .git", got)
	}
}

// A repository above the source is taken only if it passes the guard's rules: not in the factory home, and no
// mount point between its top and the source.
func TestRepositoryAboveMustPassTheGuard(t *testing.T) {
	t.Run("in the factory home", func(t *testing.T) {
		home := t.TempDir()
		repo := filepath.Join(home, "repo")
		os.MkdirAll(repo, 0o755)
		sourceRepo(t, repo)
		src, err := Take(context.Background(), filepath.Join(repo, "src"), Protected{Home: home}, filepath.Join(t.TempDir(), "s.tar"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if src.Commit != "" || src.Stats.Git != nil || !strings.Contains(src.GitMismatch, "is in the factory home") {
			t.Errorf("commit %q, git %+v, mismatch %q: want a plain directory, saying the repository is in the factory home", src.Commit, src.Stats.Git, src.GitMismatch)
		}
	})
	t.Run("beneath a mount point", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("bind mounts need root")
		}
		repo, other := t.TempDir(), t.TempDir()
		sourceRepo(t, repo)
		writeT(t, filepath.Join(other, "sub", "main.go"), "package main\n")
		mnt := filepath.Join(repo, "mnt")
		os.MkdirAll(mnt, 0o755)
		if err := syscall.Mount(other, mnt, "", syscall.MS_BIND, ""); err != nil {
			t.Skipf("bind mount: %v", err)
		}
		t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
		src, _ := takeT(t, filepath.Join(mnt, "sub"))
		if src.Stats.Git != nil || !strings.Contains(src.GitMismatch, "beneath the mount point") {
			t.Errorf("git %+v, mismatch %q: want a plain directory, saying a mount point lies between", src.Stats.Git, src.GitMismatch)
		}
	})
}
