package factory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ssf build --keep-workspace: when a task fails, its workspace, outputs and tmp are copied out of its task disk
// (which is released when the task ends) into the build's history entry, $SSF_HOME/builds/<id>/workspaces/<task>/,
// for the person debugging it. What is copied is a hostile step's files, so the copy
//
//   - never follows a symlink: a link is kept as a link (a step may plant one to a host file such as the signing
//     key; the kept copy holds the link, never the target);
//   - keeps only regular files, directories and symlinks: fifos, sockets and devices are left out and named;
//   - is read-only and the control plane's: owned by root, no write bits, no setuid, setgid or sticky bits, and
//     files are new inodes (never hard links to anything);
//   - is bounded: at most maxKeptBytes of file contents (by their sizes, so a sparse file counts in full) and
//     maxKeptEntries entries; past either, the rest is left out and the log says so.
//
// ssf builds prune removes it with the rest of the build's entry.
//
// The bounds are variables so that tests can lower them.
var (
	maxKeptBytes   int64 = 1 << 30
	maxKeptEntries       = 100000
)

// keptDirs are the parts of a task's directory that are kept; its bundle (the runtime spec) and inputs (the
// verified outputs of other tasks, read-only to it) are the control plane's and are not.
var keptDirs = []string{"workspace", "outputs", "tmp"}

// keepFailedTask copies a failed task's directories from taskDir into dest (made here) and returns what to tell
// the person: where the copy is and what was left out.
func keepFailedTask(ctx context.Context, taskDir, dest string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		return "", err
	}
	if err := os.Mkdir(dest, 0o700); err != nil {
		return "", err
	}
	root, err := os.OpenRoot(taskDir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	k := &keeper{ctx: ctx, root: root}
	for _, d := range keptDirs {
		if err := k.copy(d, filepath.Join(dest, d)); err != nil {
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
	if len(k.leftOut) > 0 {
		msg += fmt.Sprintf("; left out %d fifos, sockets or devices, which are never kept (first: %s)", len(k.leftOut), k.leftOut[0])
	}
	return msg, nil
}

var errKeptBound = errors.New("the kept copy's bound was reached")

type keeper struct {
	ctx       context.Context
	root      *os.Root
	bytes     int64
	entries   int
	leftOut   []string
	truncated string
}

// copy copies the entry rel of the task's directory to dst, which must not exist, without following anything.
func (k *keeper) copy(rel, dst string) error {
	if err := k.ctx.Err(); err != nil {
		return err
	}
	if k.entries++; k.entries > maxKeptEntries {
		k.truncated = fmt.Sprintf("the copy stopped at %d entries; the rest was left out", maxKeptEntries)
		return errKeptBound
	}
	fi, err := k.root.Lstat(rel)
	if err != nil {
		return err
	}
	switch m := fi.Mode(); {
	case m&fs.ModeSymlink != 0:
		target, err := k.root.Readlink(rel)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case m.IsDir():
		return k.copyDir(rel, dst)
	case m.IsRegular():
		return k.copyFile(rel, dst)
	default:
		k.leftOut = append(k.leftOut, fmt.Sprintf("%s (%s)", rel, m.Type()))
		return nil
	}
}

func (k *keeper) copyDir(rel, dst string) error {
	f, err := k.root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	var copyErr error
	for copyErr == nil {
		batch, err := f.ReadDir(256)
		for _, e := range batch {
			if copyErr = k.copy(rel+"/"+e.Name(), filepath.Join(dst, e.Name())); copyErr != nil {
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
	if err := os.Chmod(dst, 0o555); err != nil && copyErr == nil {
		copyErr = err
	}
	return copyErr
}

func (k *keeper) copyFile(rel, dst string) error {
	// O_NONBLOCK: a fifo swapped in after the Lstat must not block the open; it is refused by its own FileInfo.
	f, err := k.root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		k.leftOut = append(k.leftOut, fmt.Sprintf("%s (%s)", rel, fi.Mode().Type()))
		return nil
	}
	if k.bytes += fi.Size(); k.bytes > maxKeptBytes {
		k.truncated = fmt.Sprintf("the copy stopped at %d bytes of files (at %s); the rest was left out", maxKeptBytes, rel)
		return errKeptBound
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, ctxReader{k.ctx, io.LimitReader(f, fi.Size())})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// Readable, executable as it was, never writable, never setuid, setgid or sticky (Perm drops those bits).
	return os.Chmod(dst, 0o444|fi.Mode().Perm()&0o111)
}

// keepOnFailure is runTask's deferred hook: a task that failed by itself (not cancelled because another failed, or
// by Ctrl-C) has its directories kept when the build asked for it, before its disk is released; the error then
// says where (in its hint, for people and for --output json).
func (b *build) keepOnFailure(ctx context.Context, taskName, taskDir string, err error) error {
	if err == nil || b.keepDir == "" || ctx.Err() != nil {
		return err
	}
	msg, kerr := keepFailedTask(ctx, taskDir, filepath.Join(b.keepDir, taskName))
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
