package source

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// gitOracle runs git in dir with no global or system configuration (and so no core.excludesFile), for a test's
// expectations; stdin is given to it.
func gitOracle(t *testing.T, dir, stdin string, args ...string) []string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "core.excludesFile=/dev/null"}, args...)...)
	cmd.Env = append(cleanGitEnv(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 && slices.Contains(args, "check-ignore") {
		err = nil // check-ignore: nothing is ignored
	}
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	var lines []string
	for l := range strings.SplitSeq(string(out), "\x00") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines
}

func cleanGitEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	return env
}

// snapshotFilesOf returns the names of the regular files and symlinks of a snapshot.
func snapshotFilesOf(t *testing.T, p string) []string {
	t.Helper()
	hdrs, _ := readSnapshot(t, p)
	var names []string
	for _, h := range hdrs {
		if !strings.HasSuffix(h.Name, "/") {
			names = append(names, h.Name)
		}
	}
	return names
}

// The ignore rules are git's: for each set of patterns, the files a snapshot of a repository without a commit
// holds are the files `git ls-files --others --exclude-standard` lists, the files it leaves out are the ones
// `git check-ignore` calls ignored, and the same patterns in the .ssfignore of a plain folder leave out the same.
func TestIgnoreRulesMatchGit(t *testing.T) {
	tests := []struct {
		name     string
		patterns string
		files    []string
		nested   map[string]string // further .gitignore files (git only: .ssfignore is read at the top only)
	}{{
		name:     "basics",
		patterns: "# build output\n*.log\nnode_modules/\nbin/\n\n",
		files:    []string{"a.log", "src/b.log", "node_modules/x/y.js", "bin/tool", "src/bin/z", "keep.txt", "bin.txt", "logs/a.txt", "web/node_modules/p/i.js"},
	}, {
		name:     "negation",
		patterns: "*.log\n!keep.log\nbuild/\n!build/x\nout/*\n!out/kept\n",
		files:    []string{"a.log", "keep.log", "sub/keep.log", "sub/b.log", "build/x", "build/y", "out/kept", "out/gone", "out/d/e"},
	}, {
		name:     "anchored",
		patterns: "/x\n/sub/y\nz/w\n",
		files:    []string{"x", "sub/x", "sub/y", "y", "z/w", "a/z/w", "xx"},
	}, {
		name:     "directory only",
		patterns: "d/\ncache/\n",
		files:    []string{"d/f", "e/d/f", "e/cache", "cache/c", "top/cache/c"},
	}, {
		name:     "double star",
		patterns: "**/gen\na/**/b\nc/**\n**/x/**/y.txt\nm**n\n",
		files:    []string{"gen/f", "p/gen/f", "a/b", "a/q/b", "a/q/r/b", "c/d/e", "cc", "x/y.txt", "m/x/n/y.txt", "mon", "m/n", "mo/n"},
	}, {
		name:     "classes, escapes and spaces",
		patterns: "[abc].txt\n[!a-c]?.md\n\\#hash\n\\!bang\ntrail\\ \nspace   \n*.[[:digit:]]\n[]x]y\n",
		files:    []string{"a.txt", "d.txt", "zz.md", "ab.md", "#hash", "!bang", "trail ", "trail", "space", "f.1", "f.x", "]y", "xy", "zy"},
	}, {
		name:     "one star per component",
		patterns: "foo/*/bar\n*/sub\nq*z\n",
		files:    []string{"foo/a/bar", "foo/a/b/bar", "x/sub/f", "x/y/sub/f", "qz", "q/z", "qaz"},
	}, {
		name:     "deeper files decide",
		patterns: "*.txt\n",
		files:    []string{"a.txt", "sub/b.txt", "sub/deeper/c.txt", "sub/deeper/d.md"},
		nested:   map[string]string{"sub/.gitignore": "!*.txt\n", "sub/deeper/.gitignore": "*.md\nc.txt\n"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := t.TempDir()
			gitT(t, repo, "init", "-q")
			writeT(t, filepath.Join(repo, ".gitignore"), tt.patterns)
			for _, f := range tt.files {
				writeT(t, filepath.Join(repo, f), "x\n")
			}
			for f, body := range tt.nested {
				writeT(t, filepath.Join(repo, f), body)
			}
			want := gitOracle(t, repo, "", "ls-files", "-z", "--others", "--exclude-standard")
			snapshot := filepath.Join(t.TempDir(), "source.tar")
			if _, err := Take(context.Background(), repo, Protected{Home: t.TempDir()}, snapshot, 0); err != nil {
				t.Fatal(err)
			}
			got := snapshotFilesOf(t, snapshot)
			if !slices.Equal(got, want) {
				t.Errorf("snapshot files = %q\ngit ls-files --others --exclude-standard = %q", got, want)
			}
			wantIgnored := gitOracle(t, repo, strings.Join(tt.files, "\x00")+"\x00", "check-ignore", "-z", "--stdin")
			var gotIgnored []string
			for _, f := range tt.files {
				if !slices.Contains(got, f) {
					gotIgnored = append(gotIgnored, f)
				}
			}
			slices.Sort(gotIgnored)
			if !slices.Equal(gotIgnored, wantIgnored) {
				t.Errorf("left out %q\ngit check-ignore: %q", gotIgnored, wantIgnored)
			}
			if tt.nested != nil {
				return
			}
			plain := t.TempDir()
			writeT(t, filepath.Join(plain, SSFIgnore), tt.patterns)
			for _, f := range tt.files {
				writeT(t, filepath.Join(plain, f), "x\n")
			}
			plainSnap := filepath.Join(t.TempDir(), "source.tar")
			src, err := Take(context.Background(), plain, Protected{Home: t.TempDir()}, plainSnap, 0)
			if err != nil {
				t.Fatal(err)
			}
			wantPlain := slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == ".gitignore" })
			gotPlain := slices.DeleteFunc(snapshotFilesOf(t, plainSnap), func(s string) bool { return s == SSFIgnore })
			if !slices.Equal(gotPlain, wantPlain) {
				t.Errorf("plain folder with .ssfignore: snapshot files = %q, want %q", gotPlain, wantPlain)
			}
			if src.Stats.Git != nil || src.Stats.SSFIgnorePatterns == 0 {
				t.Errorf("plain folder stats = %+v, want no git and the .ssfignore patterns counted", src.Stats)
			}
		})
	}
}

func TestTrimTrailingSpaces(t *testing.T) {
	for in, want := range map[string]string{"a  ": "a", `a\ `: `a\ `, `a\  `: `a\ `, "a\t": "a\t", `a\`: `a\`, "   ": "", `\`: `\`} {
		if got := trimTrailingSpaces(in); got != want {
			t.Errorf("trimTrailingSpaces(%q) = %q, want %q", in, got, want)
		}
	}
}

// A pattern made to backtrack costs little: each (pattern, name) position is tried once.
func TestGlobMatchIsNotExponential(t *testing.T) {
	glob := strings.Repeat("*a", 40) + "b"
	name := strings.Repeat("a", 2000)
	if globMatch(glob, name, true) || globMatch(glob, name, false) {
		t.Fatal("matched")
	}
}

// Ignore files are the repository's, so anyone's: parsing and matching never panic, and matching stays cheap.
func FuzzIgnore(f *testing.F) {
	f.Add([]byte("*.log\n!keep.log\n/build/\n**/gen\na/**/b\n[!a-c]?\\#x\ntrail\\ \n"), "a/b/keep.log", true)
	f.Add([]byte("[[:alpha:]\n[a-\n\\\n"), "x", false)
	f.Fuzz(func(t *testing.T, data []byte, rel string, isDir bool) {
		l := parseIgnore(data, "", ".gitignore")
		rules := ignoreRules{}.with(&l)
		rules.ignored(rel, isDir)
		for _, p := range l.patterns {
			globMatch(p.glob, rel, true)
			globMatch(p.glob, rel, false)
		}
	})
}

func BenchmarkIgnored(b *testing.B) {
	l := parseIgnore([]byte("node_modules/\nbin/\n*.log\n*.tmp\n/dist\n**/gen/**\nbuild\n!keep.log\n*.o\n.cache/\n"), "", ".gitignore")
	rules := ignoreRules{}.with(&l)
	paths := []string{"src/internal/source/select.go", "web/node_modules", "a/b/c/d/trace.log", "docs/readme.md", "x/gen/y.go"}
	for b.Loop() {
		for _, p := range paths {
			rules.ignored(p, false)
		}
	}
}
