package factory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/pipeline"
)

// outputsDir writes files (path -> content) under a new $SSF_OUTPUTS and returns it.
func outputsDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(h[:])
}

func TestDirectoryOutputCollectsEveryFile(t *testing.T) {
	dir := outputsDir(t, map[string]string{
		"dist/app.js": "app", "dist/css/site.css": "css", "dist/css/deep/x/y.txt": "y", "obj/a.o": "obj", "bin": "bin",
	})
	if err := os.Mkdir(filepath.Join(dir, "dist", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	task := &pipeline.Task{Name: "build", Outputs: []pipeline.Output{
		{Path: "dist", Dir: true}, {Path: "obj", Dir: true, Internal: true}, {Path: "bin"},
	}}
	dest := filepath.Join(t.TempDir(), "verified")
	outs, err := collectOutputs(context.Background(), task, dir, dest, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		path, data string
		internal   bool
	}{
		{"dist/app.js", "app", false}, {"dist/css/deep/x/y.txt", "y", false}, {"dist/css/site.css", "css", false},
		{"obj/a.o", "obj", true}, {"bin", "bin", false},
	}
	if len(outs) != len(want) {
		t.Fatalf("collected %+v, want %d outputs", outs, len(want))
	}
	for i, w := range want {
		o := outs[i]
		if o.Path != w.path || string(o.Digest) != sha(w.data) || o.Size != int64(len(w.data)) || o.Internal != w.internal || o.Task != "build" {
			t.Errorf("output %d = %+v, want %s %s internal=%v", i, o, w.path, sha(w.data), w.internal)
		}
		got, err := os.ReadFile(filepath.Join(dest, filepath.FromSlash(w.path)))
		if err != nil || string(got) != w.data {
			t.Errorf("copy of %s = %q, %v", w.path, got, err)
		}
	}
	if pub := published(outs); len(pub) != 4 || pub[3].Path != "bin" {
		t.Errorf("published = %+v, want all but obj/a.o", pub)
	}
}

// Everything a step can plant in a declared directory that is not a regular file or a directory fails the task,
// named: nothing is followed, opened or skipped silently.
func TestDirectoryOutputRefusals(t *testing.T) {
	dist := []pipeline.Output{{Path: "dist", Dir: true}}
	for _, tc := range []struct {
		name    string
		outputs []pipeline.Output
		plant   func(t *testing.T, dir string)
		want    string
	}{
		{"symlink to a host file", dist, func(t *testing.T, dir string) {
			symlink(t, "/etc/passwd", filepath.Join(dir, "dist/sub/passwd"))
		}, `output "dist/": "dist/sub/passwd" is a symlink`},
		{"symlink to a directory", dist, func(t *testing.T, dir string) {
			symlink(t, "/etc", filepath.Join(dir, "dist/etc"))
		}, `output "dist/": "dist/etc" is a symlink`},
		{"dangling symlink", dist, func(t *testing.T, dir string) {
			symlink(t, "nowhere", filepath.Join(dir, "dist/x"))
		}, `"dist/x" is a symlink`},
		{"the directory is a symlink", []pipeline.Output{{Path: "link", Dir: true}}, func(t *testing.T, dir string) {
			symlink(t, "dist", filepath.Join(dir, "link"))
		}, `output "link/" is or passes through a symlink (link)`},
		{"a parent is a symlink", []pipeline.Output{{Path: "l/dist", Dir: true}}, func(t *testing.T, dir string) {
			symlink(t, ".", filepath.Join(dir, "l"))
		}, `output "l/dist/" is or passes through a symlink (l)`},
		{"fifo", dist, func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "dist/sub/fifo"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, `"dist/sub/fifo" is not a regular file (p---------)`},
		{"socket", dist, func(t *testing.T, dir string) {
			fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer syscall.Close(fd)
			if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: filepath.Join(dir, "dist/sock")}); err != nil {
				t.Fatal(err)
			}
		}, `"dist/sock" is not a regular file (S---------)`},
		{"missing directory", []pipeline.Output{{Path: "gone", Dir: true}}, nil,
			`output "gone/" was not created (the task must create the directory $SSF_OUTPUTS/gone/)`},
		{"a file, not a directory", []pipeline.Output{{Path: "dist/sub/a", Dir: true}}, nil,
			`output "dist/sub/a/" is declared as a directory but is not one (a regular file)`},
		{"empty directory", []pipeline.Output{{Path: "empty", Dir: true}}, func(t *testing.T, dir string) {
			if err := os.MkdirAll(filepath.Join(dir, "empty/only/dirs"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, `output "empty/" holds no regular file`},
		{"invisible character in a name", dist, func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "dist/evil\u202Etxt.exe"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, `contains U+202E, an invisible or reordering character`},
		{"control character in a name", dist, func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "dist/a\nb"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, `contains a control character`},
		{"past the size bound", dist, func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "dist/big"), make([]byte, 2000), 0o644); err != nil {
				t.Fatal(err)
			}
		}, `"dist/big" takes the task's outputs past 1024 bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := outputsDir(t, map[string]string{"dist/sub/a": "a"})
			if tc.plant != nil {
				tc.plant(t, dir)
			}
			task := &pipeline.Task{Name: "build", Outputs: tc.outputs}
			outs, err := collectOutputs(context.Background(), task, dir, filepath.Join(t.TempDir(), "v"), 1024)
			var te *TaskError
			if !errors.As(err, &te) || te.Task != "build" || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("collectOutputs = %+v, %v; want a failure of task build containing %q", outs, err, tc.want)
			}
		})
	}
}

// A step can make millions of empty files in seconds: the walk stops at MaxOutputEntries, over all of a task's
// directory outputs.
func TestDirectoryOutputEntryBound(t *testing.T) {
	dir := outputsDir(t, map[string]string{"b/x": "x"})
	if err := os.Mkdir(filepath.Join(dir, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range MaxOutputEntries {
		f, err := os.Create(filepath.Join(dir, "a", fmt.Sprintf("f%05d", i)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	task := &pipeline.Task{Name: "build", Outputs: []pipeline.Output{{Path: "a", Dir: true}}}
	outs, err := collectOutputs(context.Background(), task, dir, filepath.Join(t.TempDir(), "v"), 1<<30)
	if err != nil || len(outs) != MaxOutputEntries {
		t.Fatalf("exactly %d files: %d outputs, %v", MaxOutputEntries, len(outs), err)
	}
	task.Outputs = append(task.Outputs, pipeline.Output{Path: "b", Dir: true})
	_, err = collectOutputs(context.Background(), task, dir, filepath.Join(t.TempDir(), "v"), 1<<30)
	if err == nil || !strings.Contains(err.Error(), `output "b/" holds more than 10000 entries`) {
		t.Fatalf("one more entry in another directory output: %v", err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestSubjectCountBound(t *testing.T) {
	if err := checkSubjectCount(1023, MaxSubjects); err != nil {
		t.Errorf("1024 subjects: %v", err)
	}
	if err := checkSubjectCount(1024, MaxSubjects+1); err == nil || !strings.Contains(err.Error(), "more than the 1024 subjects") {
		t.Errorf("1025 subjects: %v", err)
	}
}

// A step can nest directories as deep as an output path may be long (4096 bytes) and put files at the bottom.
// Resolving each file's path again from the outputs root, one component at a time, cost the square of the depth:
// 20 files at depth 1500 took 36 seconds, so a full directory output would hold the build for hours (the task's
// timeout no longer runs then). The walk opens each name relative to its parent, holding a descriptor per level,
// so it goes at most MaxOutputDepth levels deep: deeper fails the task, at once.
func TestDirectoryOutputDeepNesting(t *testing.T) {
	for _, tc := range []struct {
		depth int
		want  string // "": every file collected
	}{
		{MaxOutputDepth, ""},
		{1500, fmt.Sprintf("is nested more than %d directories deep in the output", MaxOutputDepth)},
	} {
		dir := t.TempDir()
		deep := filepath.Join(dir, "d", strings.Repeat("a/", tc.depth))
		if err := os.MkdirAll(deep, 0o755); err != nil {
			t.Fatal(err)
		}
		const files = 50
		for i := range files {
			if err := os.WriteFile(filepath.Join(deep, fmt.Sprint(i)), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		task := &pipeline.Task{Name: "build", Outputs: []pipeline.Output{{Path: "d", Dir: true}}}
		outs, err := collectOutputs(ctx, task, dir, filepath.Join(t.TempDir(), "v"), 1<<20)
		cancel()
		if tc.want != "" {
			var te *TaskError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("depth %d: %v; want a task failure (within 20 s) saying %q", tc.depth, err, tc.want)
			}
			continue
		}
		if err != nil || len(outs) != files {
			t.Fatalf("depth %d: %d outputs, %v; want %d", tc.depth, len(outs), err, files)
		}
		if want := "d/" + strings.Repeat("a/", tc.depth) + "0"; outs[0].Path != want || string(outs[0].Digest) != sha("x") {
			t.Fatalf("first output %q %s; want %q with the digest of its bytes", outs[0].Path, outs[0].Digest, want)
		}
	}
}

// Two published names that one case-insensitive or normalizing file system (macOS, Windows) holds as one file:
// whoever pulls the outputs there gets under one name the bytes the statement gives for the other.
func TestPublishedNamesMustNotFoldTogether(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"dist/App.js", "dist/app.js"},
		{"dist/caf\u00e9.txt", "dist/cafe\u0301.txt"}, // é composed, and e with a combining acute accent
		{"DIST/x", "dist/x"},
	} {
		outs := []Output{{File: oci.File{Path: tc.a}, Task: "build"}, {File: oci.File{Path: tc.b}, Task: "build"}}
		err := checkSBOMNames(outs)
		var te *TaskError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "differ only in case or Unicode normalization") {
			t.Errorf("%q and %q: %v; want a task failure", tc.a, tc.b, err)
		}
	}
	if err := checkSBOMNames([]Output{{File: oci.File{Path: "dist/a.js"}}, {File: oci.File{Path: "dist/b.js"}}}); err != nil {
		t.Errorf("distinct names: %v", err)
	}
}
