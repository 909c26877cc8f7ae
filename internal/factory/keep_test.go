package factory

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A failed task's directories are a hostile step's files: the kept copy holds planted symlinks as links (never
// their targets), no fifo or device, no setuid bit and nothing writable.
func TestKeepFailedTaskNeverFollowsOrKeepsPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the kept copy is root's; the test checks ownership and needs root")
	}
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	task := t.TempDir()
	for name, data := range map[string]string{
		"workspace/main.go": "package main\n", "workspace/sub/deep/x.txt": "x", "outputs/half-written": "half",
		"tmp/cache/entry": "c", "bundle/config.json": "{}", "inputs/other/file": "not the task's",
	} {
		p := filepath.Join(task, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	symlink(t, secret, filepath.Join(task, "workspace/key"))
	symlink(t, filepath.Dir(secret), filepath.Join(task, "outputs/hostdir"))
	if err := os.WriteFile(filepath.Join(task, "workspace/suid"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(task, "workspace/suid"), 0o6777|os.ModeSetuid|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(task, "tmp/fifo"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mknod(filepath.Join(task, "workspace/null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Fatal(err)
	}

	dest := filepath.Join(t.TempDir(), "workspaces", "build")
	msg, err := keepFailedTask(context.Background(), task, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, dest) || !strings.Contains(msg, "left out 2 fifos, sockets or devices") {
		t.Errorf("message %q does not name %s and the two left out", msg, dest)
	}
	// The links are links, with the step's targets: nothing of the host file was copied.
	for link, target := range map[string]string{"workspace/key": secret, "outputs/hostdir": filepath.Dir(secret)} {
		p := filepath.Join(dest, link)
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("%s: %v, mode %v; want a symlink", link, err, fi.Mode())
		}
		if got, _ := os.Readlink(p); got != target {
			t.Errorf("%s -> %q, want %q", link, got, target)
		}
	}
	for _, gone := range []string{"tmp/fifo", "workspace/null", "bundle", "inputs"} {
		if _, err := os.Lstat(filepath.Join(dest, gone)); !os.IsNotExist(err) {
			t.Errorf("%s was kept (%v)", gone, err)
		}
	}
	if data, err := os.ReadFile(filepath.Join(dest, "workspace/sub/deep/x.txt")); err != nil || string(data) != "x" {
		t.Errorf("workspace/sub/deep/x.txt = %q, %v", data, err)
	}
	err = filepath.Walk(dest, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s is owned by %d:%d, want root", p, st.Uid, st.Gid)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return nil
		}
		if fi.Mode()&0o222 != 0 || fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
			t.Errorf("%s has mode %v: want no write, setuid, setgid or sticky bits", p, fi.Mode())
		}
		if st.Nlink > 1 && !fi.IsDir() {
			t.Errorf("%s has %d links", p, st.Nlink)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dest, "workspace/suid")); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("workspace/suid: %v, %v; want r-xr-xr-x", fi.Mode(), err)
	}
}

func TestKeepFailedTaskIsBounded(t *testing.T) {
	task := t.TempDir()
	for i, name := range []string{"workspace/a", "workspace/b", "workspace/c"} {
		p := filepath.Join(task, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, make([]byte, 100*(i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	defer func(b int64, e int) { maxKeptBytes, maxKeptEntries = b, e }(maxKeptBytes, maxKeptEntries)
	maxKeptBytes = 350
	msg, err := keepFailedTask(context.Background(), task, filepath.Join(t.TempDir(), "k"), nil)
	if err != nil || !strings.Contains(msg, "the copy stopped at 350 bytes of files (at \"workspace/") {
		t.Errorf("bytes bound: %q, %v", msg, err)
	}
	maxKeptBytes, maxKeptEntries = 1<<30, 3
	msg, err = keepFailedTask(context.Background(), task, filepath.Join(t.TempDir(), "k"), nil)
	if err != nil || !strings.Contains(msg, "the copy stopped at 3 entries") {
		t.Errorf("entries bound: %q, %v", msg, err)
	}
}

// A failed step can nest directories deep and fill the bottom with files. Opening each entry by its path from the
// task's directory (os.Root walks it a component at a time, in user space) cost its depth for every entry: 3000
// files at depth 1800 took 27 seconds to keep, a quarter of an hour at the entry bound. Each entry is now opened,
// and copied, relative to its parent directory: the copy must finish well within the deadline.
func TestKeepFailedTaskDeepNestingIsLinear(t *testing.T) {
	task := t.TempDir()
	for _, d := range keptDirs {
		if err := os.Mkdir(filepath.Join(task, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	deep := filepath.Join(task, "workspace", strings.Repeat("a/", 1800))
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	const files = 6000
	for i := range files {
		if err := os.WriteFile(filepath.Join(deep, fmt.Sprint(i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	defer func(d int) { maxKeptDepth = d }(maxKeptDepth)
	maxKeptDepth = 2000
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dest := filepath.Join(t.TempDir(), "k")
	msg, err := keepFailedTask(ctx, task, dest, nil)
	if err != nil || strings.Contains(msg, "stopped") {
		t.Fatalf("keepFailedTask = %q, %v; want every file kept within 20 s", msg, err)
	}
	kept := filepath.Join(dest, "workspace", strings.Repeat("a/", 1800))
	entries, err := os.ReadDir(kept)
	if err != nil || len(entries) != files {
		t.Fatalf("kept %d files at the bottom, %v; want %d", len(entries), err, files)
	}
	if fi, err := os.Lstat(filepath.Join(kept, "0")); err != nil || fi.Mode() != 0o444 {
		t.Fatalf("kept file: %v, %v; want -r--r--r--", fi.Mode(), err)
	}
}

// The copy holds descriptors for each level it is in, and a step can nest directories far deeper than a path can
// name (each created relative to the last): past the control plane's limit of open files, the copy failed with
// "too many open files" and so would the other tasks running beside it. Directories are copied maxKeptDepth
// levels deep; what is below is left out and the message says so.
func TestKeepFailedTaskDepthIsBounded(t *testing.T) {
	task := t.TempDir()
	for _, d := range keptDirs {
		if err := os.Mkdir(filepath.Join(task, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fd, err := unix.Open(filepath.Join(task, "workspace"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	const depth = 12000 // more than twice the descriptors this machine's limit may allow
	for range depth {
		if err := unix.Mkdirat(fd, "a", 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, "a", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
	dest := filepath.Join(t.TempDir(), "k")
	msg, err := keepFailedTask(context.Background(), task, dest, nil)
	want := fmt.Sprintf("left out 1 directories nested deeper than %d levels (first: \"workspace/%s\")", maxKeptDepth, strings.TrimSuffix(strings.Repeat("a/", maxKeptDepth), "/"))
	if err != nil || !strings.Contains(msg, want) {
		t.Fatalf("keepFailedTask = %q, %v; want it to say %q", msg, err, want)
	}
	last := filepath.Join(dest, "workspace", strings.Repeat("a/", maxKeptDepth-1))
	if fi, err := os.Lstat(last); err != nil || !fi.IsDir() {
		t.Fatalf("level %d: %v; want it kept", maxKeptDepth-1, err)
	}
	if _, err := os.Lstat(filepath.Join(last, "a")); !os.IsNotExist(err) {
		t.Fatalf("level %d: %v; want it left out", maxKeptDepth, err)
	}
}

// A step given a secret commonly writes it into its workspace (an .npmrc with the token). The kept copy outlives
// the build in the factory home, where people look and from where they share it: the build's secret values are
// redacted from the kept files and symlink targets as from the logs, and an entry whose name holds one is left out.
func TestKeepFailedTaskRedactsSecrets(t *testing.T) {
	task := t.TempDir()
	for _, d := range keptDirs {
		if err := os.Mkdir(filepath.Join(task, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const token = "npm_s3cr3tT0k3nValue"
	writeFile := func(rel, data string) {
		if err := os.WriteFile(filepath.Join(task, rel), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("workspace/.npmrc", "//registry.npmjs.org/:_authToken="+token+"\n")
	writeFile("tmp/big", strings.Repeat("x", 100000)+token+strings.Repeat("y", 100000))
	writeFile("workspace/"+token, "named")
	if err := os.Symlink("/x/"+token, filepath.Join(task, "outputs", "link")); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "k")
	msg, err := keepFailedTask(context.Background(), task, dest, map[string][]byte{"npm": []byte(token)})
	if err != nil || !strings.Contains(msg, "left out 1 entries whose names hold a secret value") {
		t.Fatalf("keepFailedTask = %q, %v", msg, err)
	}
	if data, err := os.ReadFile(filepath.Join(dest, "workspace/.npmrc")); err != nil || string(data) != "//registry.npmjs.org/:_authToken=***\n" {
		t.Errorf("kept .npmrc = %q, %v; want the token redacted", data, err)
	}
	if data, err := os.ReadFile(filepath.Join(dest, "tmp/big")); err != nil || strings.Contains(string(data), token) || len(data) != 200003 {
		t.Errorf("kept tmp/big: %d bytes, %v; want the token redacted", len(data), err)
	}
	if target, err := os.Readlink(filepath.Join(dest, "outputs/link")); err != nil || target != "/x/***" {
		t.Errorf("kept link -> %q, %v; want the token redacted", target, err)
	}
	if _, err := os.Lstat(filepath.Join(dest, "workspace", token)); !os.IsNotExist(err) {
		t.Errorf("an entry named by the token was kept: %v", err)
	}
}

// The names in the kept copy's message are the step's: one holding a newline printed a line of its own in the
// build's log and hint, such as a forged "[ssf] build succeeded". They are quoted.
func TestKeepFailedTaskQuotesNames(t *testing.T) {
	task := t.TempDir()
	for _, d := range keptDirs {
		if err := os.Mkdir(filepath.Join(task, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	name := "x\n[ssf] build succeeded\x1b[2J"
	if err := syscall.Mkfifo(filepath.Join(task, "workspace", name), 0o644); err != nil {
		t.Fatal(err)
	}
	msg, err := keepFailedTask(context.Background(), task, filepath.Join(t.TempDir(), "k"), nil)
	if err != nil || strings.ContainsAny(msg, "\n\x1b") || !strings.Contains(msg, `(first: "workspace/x\n[ssf] build succeeded\x1b[2J" (p---------))`) {
		t.Fatalf("keepFailedTask = %q, %v; want the name quoted", msg, err)
	}
}
