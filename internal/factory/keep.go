package factory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ssf build --keep-workspace: when a task fails, its workspace, outputs and tmp are copied out of its task disk
// (which is released when the task ends) into the build's history entry, $SSF_HOME/builds/<id>/workspaces/<task>/,
// for the person debugging it. What is copied is a hostile step's files, so the copy
//
//   - never follows a symlink: a link is kept as a link (a step may plant one to a host file such as the signing
//     key; the kept copy holds the link, never the target);
//   - keeps only regular files, directories and symlinks: fifos, sockets and devices are left out and named;
//   - holds no secret value of the build: they are redacted from files and symlink targets as from the logs, and
//     an entry whose name holds one is left out;
//   - is read-only and the control plane's: owned by root, no write bits, no setuid, setgid or sticky bits, and
//     files are new inodes (never hard links to anything);
//   - is bounded: at most maxKeptBytes of file contents (by their sizes, so a sparse file counts in full) and
//     maxKeptEntries entries, maxKeptDepth levels of directories; past any, the rest is left out and the log says so.
//
// ssf builds prune removes it with the rest of the build's entry.
//
// The bounds are variables so that tests can lower them.
var (
	maxKeptBytes   int64 = 1 << 30
	maxKeptEntries       = 100000
	// maxKeptDepth bounds how deep directories are copied: the copy holds two descriptors per level (it works
	// relative to each directory), and a step can nest directories as deep as its entries allow, which would take
	// the control plane past its limit of open files, failing the other tasks running beside it.
	maxKeptDepth = 128
)

// keptDirs are the parts of a task's directory that are kept; its bundle (the runtime spec) and inputs (the
// verified outputs of other tasks, read-only to it) are the control plane's and are not.
var keptDirs = []string{"workspace", "outputs", "tmp"}

// keepFailedTask copies a failed task's directories from taskDir into dest (made here) and returns what to tell
// the person: where the copy is and what was left out.
//
// secrets are the build's secret values: a step that was given one may have written it into its files (an
// .npmrc with the token), and the copy outlives the build, so the values are redacted from the kept files and
// symlink targets as from the logs, and an entry whose name holds one is left out.
func keepFailedTask(ctx context.Context, taskDir, dest string, secrets map[string][]byte) (string, error) {
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		return "", err
	}
	if err := os.Mkdir(dest, 0o700); err != nil {
		return "", err
	}
	top, err := os.OpenFile(taskDir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer top.Close()
	out, err := os.OpenFile(dest, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer out.Close()
	// Compiled once: the patterns cost time in the size of the values, and every entry's name is redacted.
	k := &keeper{ctx: ctx, rd: compileRedaction(secrets)}
	for _, d := range keptDirs {
		if err := k.copy(top, d, d, fs.ModeDir, out); err != nil {
			if errors.Is(err, errKeptBound) {
				break
			}
			return "", fmt.Errorf("keeping %s of the failed task: %w", d, err)
		}
	}
	if err := os.Chmod(dest, 0o555); err != nil {
		return "", err
	}
	msg := fmt.Sprintf("its workspace, outputs and tmp were kept, read-only, in %s (symlinks kept as links, never followed)", dest)
	if k.truncated != "" {
		msg += "; " + k.truncated
	}
	if k.secretNames > 0 {
		msg += fmt.Sprintf("; left out %d entries whose names hold a secret value (secret values are redacted from the kept files too)", k.secretNames)
	}
	if len(k.tooDeep) > 0 {
		msg += fmt.Sprintf("; left out %d directories nested deeper than %d levels (first: %q)", len(k.tooDeep), maxKeptDepth, k.tooDeep[0])
	}
	if len(k.leftOut) > 0 {
		msg += fmt.Sprintf("; left out %d fifos, sockets or devices, which are never kept (first: %s)", len(k.leftOut), k.leftOut[0])
	}
	return msg, nil
}

var errKeptBound = errors.New("the kept copy's bound was reached")

type keeper struct {
	ctx       context.Context
	rd        *redaction // the build's secret values, redacted from the copy (secrets.go); nil: none
	bytes     int64
	entries   int
	leftOut   []string
	truncated string
	tooDeep   []string // directories at maxKeptDepth whose contents were left out
	// secretNames counts the entries left out because their names hold a secret value.
	secretNames int
}

// redact returns s with the build's secret values replaced, as the logs have them.
func (k *keeper) redact(s string) string {
	if k.rd == nil {
		return s
	}
	return string(k.rd.bytes([]byte(s)))
}

// Every entry is opened relative to its parent directory's descriptor, one name at a time with O_NOFOLLOW, never
// by its path from the task's directory: resolving each path again component by component (as os.Root does, in
// user space) costs its depth for every entry, and a step nesting 1800 directories made 3000 files take 27 seconds
// to keep, so the bound of entries would hold the failed build for a quarter of an hour.

// copy copies the entry name of the open directory parent (rel from the task's directory, of type typ as the
// directory listed it) to the same name in the open directory dst, where it must not exist, without following
// anything. The copy is made relative to dst too, so its cost does not grow with the depth either.
//
// rel is the step's choice of names: every message quotes it (%q), so a name holding a newline or a terminal
// escape cannot print a line of its own, such as a forged "[ssf] build succeeded".
func (k *keeper) copy(parent *os.File, name, rel string, typ fs.FileMode, dst *os.File) error {
	if err := k.ctx.Err(); err != nil {
		return err
	}
	if k.entries++; k.entries > maxKeptEntries {
		k.truncated = fmt.Sprintf("the copy stopped at %d entries; the rest was left out", maxKeptEntries)
		return errKeptBound
	}
	if k.redact(name) != name {
		k.secretNames++
		return nil
	}
	switch {
	case typ&fs.ModeSymlink != 0:
		target, err := readlinkAt(parent, name)
		if err != nil {
			return fmt.Errorf("%q: %w", rel, err)
		}
		target = k.redact(target)
		return withFd(dst, func(dfd int) error { return unix.Symlinkat(target, dfd, name) })
	case typ.IsDir():
		return k.copyDir(parent, name, rel, dst)
	case typ.IsRegular():
		return k.copyFile(parent, name, rel, dst)
	default:
		k.leftOut = append(k.leftOut, fmt.Sprintf("%q (%s)", rel, typ.Type()))
		return nil
	}
}

func (k *keeper) copyDir(parent *os.File, name, rel string, dstParent *os.File) error {
	if strings.Count(rel, "/") >= maxKeptDepth {
		k.tooDeep = append(k.tooDeep, rel)
		return nil
	}
	f, err := openAt(parent, name, syscall.O_NOFOLLOW|syscall.O_DIRECTORY) // outputs.go
	if err != nil {
		return fmt.Errorf("%q: %w", rel, err)
	}
	defer f.Close()
	if err := withFd(dstParent, func(dfd int) error { return unix.Mkdirat(dfd, name, 0o700) }); err != nil {
		return err
	}
	dst, err := openAt(dstParent, name, syscall.O_NOFOLLOW|syscall.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer dst.Close()
	var copyErr error
	for copyErr == nil {
		batch, err := f.ReadDir(256)
		for _, e := range batch {
			if copyErr = k.copy(f, e.Name(), rel+"/"+e.Name(), e.Type(), dst); copyErr != nil {
				break
			}
		}
		if errors.Is(err, io.EOF) || err == nil && len(batch) == 0 {
			break
		}
		if err != nil && copyErr == nil {
			copyErr = err
		}
	}
	// Read-only once its entries are in: the bound still leaves what was copied read-only.
	if err := dst.Chmod(0o555); err != nil && copyErr == nil {
		copyErr = err
	}
	return copyErr
}

func (k *keeper) copyFile(parent *os.File, name, rel string, dst *os.File) error {
	// O_NONBLOCK: a fifo swapped in after the listing must not block the open; it is refused by its own FileInfo.
	f, err := openAt(parent, name, syscall.O_NOFOLLOW|syscall.O_NONBLOCK)
	if err != nil {
		return fmt.Errorf("%q: %w", rel, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		k.leftOut = append(k.leftOut, fmt.Sprintf("%q (%s)", rel, fi.Mode().Type()))
		return nil
	}
	if k.bytes += fi.Size(); k.bytes > maxKeptBytes {
		k.truncated = fmt.Sprintf("the copy stopped at %d bytes of files (at %q); the rest was left out", maxKeptBytes, rel)
		return errKeptBound
	}
	fd := -1
	if err := withFd(dst, func(dfd int) (err error) {
		fd, err = unix.Openat(dfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	}); err != nil {
		return err
	}
	out := os.NewFile(uintptr(fd), rel)
	w := k.rd.writer(out) // out itself when there are no secrets
	_, err = io.Copy(w, ctxReader{k.ctx, io.LimitReader(f, fi.Size())})
	if r, ok := w.(*redactor); ok && err == nil {
		err = r.Flush()
	}
	if err == nil {
		// Readable, executable as it was, never writable, never setuid, setgid or sticky (Perm drops those bits).
		err = out.Chmod(0o444 | fi.Mode().Perm()&0o111)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// withFd calls fn with the descriptor of the open directory d.
func withFd(d *os.File, fn func(fd int) error) error {
	raw, err := d.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := raw.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// readlinkAt reads the symlink name in the directory d.
func readlinkAt(d *os.File, name string) (string, error) {
	raw, err := d.SyscallConn()
	if err != nil {
		return "", err
	}
	buf := make([]byte, 4096)
	n := 0
	var rerr error
	if err := raw.Control(func(dfd uintptr) { n, rerr = unix.Readlinkat(int(dfd), name, buf) }); err != nil {
		return "", err
	}
	if rerr != nil {
		return "", rerr
	}
	return string(buf[:n]), nil
}

// keepOnFailure is runTask's deferred hook: a task that failed by itself (not cancelled because another failed, or
// by Ctrl-C) has its directories kept when the build asked for it, before its disk is released; the error then
// says where (in its hint, for people and for --output json).
func (b *build) keepOnFailure(ctx context.Context, taskName, taskDir string, err error) error {
	if err == nil || b.keepDir == "" || ctx.Err() != nil {
		return err
	}
	msg, kerr := keepFailedTask(ctx, taskDir, filepath.Join(b.keepDir, taskName), b.secrets)
	if kerr != nil {
		b.log.printf("task %s failed; keeping its workspace failed: %v", taskName, kerr)
		return err
	}
	b.log.printf("task %s failed; %s", taskName, msg)
	b.rec.keptWorkspace(taskName, filepath.Join(b.keepDir, taskName))
	if te := (*TaskError)(nil); errors.As(err, &te) {
		te.Kept = filepath.Join(b.keepDir, taskName)
		if te.Hint != "" {
			te.Hint += "; "
		}
		te.Hint += "task " + taskName + ": " + msg
	}
	return err
}

// keptWorkspace records where a failed task's directories were kept, for ssf builds show.
func (r *recorder) keptWorkspace(task, dir string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.task(task).Workspace = dir
	r.checkpoint()
}
