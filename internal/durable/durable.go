// Package durable writes files so that a crash (power loss, kill -9, a kernel panic) leaves either the old state
// or the whole new one, never a name that points at missing or partial data.
//
// The rule every function follows: write the data, fsync the file, make the name (link or rename), then fsync the
// directory that holds the name, and only then return. ext4 and xfs with their default options keep a rename
// ordered after the data it names only when the data was synced first; a directory entry is durable only once its
// directory was synced.
//
// # What it must never do
//
// It must never return success before the data and the name are on stable storage, never replace a file that
// [WriteNew] or [LinkNew] was asked to create, and never leave a temporary file behind on an error it returns.
package durable

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// syncFile is (*os.File).Sync; the package's tests replace it to check what is synced, and in which order.
var syncFile = (*os.File).Sync

// WriteNew creates path with data and mode. It fails with an error wrapping fs.ErrExist if path exists, and never
// replaces it, even when another process creates path at the same moment: the data goes to a temporary file beside
// path, which is synced and then hard-linked to path (link(2), unlike rename(2), does not replace).
func WriteNew(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := copyTemp(dir, filepath.Base(path), bytes.NewReader(data), mode)
	if err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	defer os.Remove(tmp) // after the link, this removes only the temporary name
	if err := link(tmp, path); err != nil {
		return err
	}
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("removing temporary file %q: %w", tmp, err)
	}
	return SyncDir(dir)
}

// LinkNew makes the finished file from visible also as path, never replacing a file there: from is synced, then
// hard-linked to path, then path's directory is synced. It fails with an error wrapping fs.ErrExist if path
// exists. from keeps its name; the caller removes it. Use it to publish a file written in place (by a stream, not
// from a byte slice) under a name that, once made, never changes, such as content named by its digest. When from
// is on another file system than path (EXDEV), its bytes are copied to a synced temporary file beside path,
// which is linked instead: path then shares no inode with from.
func LinkNew(from, path string) error {
	f, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("publishing %q as %q: %w", from, path, err)
	}
	defer f.Close()
	if err := Sync(f); err != nil {
		return err
	}
	err = link(from, path)
	if !errors.Is(err, syscall.EXDEV) {
		if err != nil {
			return err
		}
		return SyncDir(filepath.Dir(path))
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("publishing %q as %q: %w", from, path, err)
	}
	tmp, err := copyTemp(filepath.Dir(path), filepath.Base(path), f, fi.Mode().Perm())
	if err != nil {
		return fmt.Errorf("publishing %q as %q across file systems: %w", from, path, err)
	}
	defer os.Remove(tmp) // after the link, this removes only the temporary name
	if err := link(tmp, path); err != nil {
		return err
	}
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("removing temporary file %q: %w", tmp, err)
	}
	return SyncDir(filepath.Dir(path))
}

// copyTemp copies r to a new temporary file in dir, with mode whatever the umask, synced and closed, and returns
// its path.
func copyTemp(dir, base string, r io.Reader, mode fs.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-"+base+"-*")
	if err != nil {
		return "", err
	}
	err = func() error {
		if err := f.Chmod(mode); err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			return err
		}
		return syncFile(f)
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// link hard-links the synced file tmp to path; the caller syncs path's directory.
func link(tmp, path string) error {
	if err := os.Link(tmp, path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			err = le.Err
		}
		return fmt.Errorf("creating %q: %w", path, err)
	}
	return nil
}

// Remove removes the file path and syncs its directory, so that after a crash the name stays gone. It fails
// with an error wrapping fs.ErrNotExist if there is no such file.
func Remove(path string) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing %q: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// MkdirAll creates the directory dir with perm, and any missing parents, like os.MkdirAll, and syncs the parent
// of every directory it creates, so that a file later made durable in dir is not lost with dir's own name. A
// directory that already exists is taken as durable: its creator syncs it before its own MkdirAll returns. (A
// caller racing that creator can return first; journaling file systems such as ext4 and xfs still commit the
// creation with the caller's next fsync, as their journals commit in order.)
func MkdirAll(dir string, perm fs.FileMode) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("creating directory %q: %w", dir, syscall.ENOTDIR)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("creating directory %q: %w", dir, err)
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, perm); err != nil {
		// Another caller created it in between: sync the parent too rather than rely on that caller's timing.
		if fi, serr := os.Stat(dir); serr != nil || !fi.IsDir() {
			return fmt.Errorf("creating directory %q: %w", dir, err)
		}
	}
	return SyncDir(parent)
}

// Replace writes data to path with mode, replacing any file there in one rename: readers see the old file or the
// new one, never a mix, and after a crash path holds one of them.
func Replace(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := copyTemp(dir, filepath.Base(path), bytes.NewReader(data), mode)
	if err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replacing %q: %w", path, err)
	}
	return SyncDir(dir)
}

// Sync flushes an open file's data and metadata to stable storage.
func Sync(f *os.File) error {
	if err := syncFile(f); err != nil {
		return fmt.Errorf("syncing %q: %w", f.Name(), err)
	}
	return nil
}

// SyncDir flushes the directory dir, making the names created, renamed or removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %q: %w", dir, err)
	}
	defer d.Close()
	if err := syncFile(d); err != nil {
		return fmt.Errorf("syncing directory %q: %w", dir, err)
	}
	return nil
}

// SyncTree flushes every regular file and directory beneath root, and root itself: each file before the directory
// that holds it, each directory after everything in it. Symlinks are not followed (their names are made durable by
// their directory). Call it before renaming a staged tree into place, so the rename never publishes a name whose
// data is not yet stored.
func SyncTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs = append(dirs, p)
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			err = syncFile(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("syncing %q: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("syncing the tree %q: %w", root, err)
	}
	// WalkDir lists a directory before its contents; deepest first means children before parents.
	slices.Reverse(dirs)
	for _, d := range dirs {
		if err := SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// PublishDir makes the finished directory staging visible as to, which must not exist (or be an empty directory,
// which is replaced): the whole tree is synced, renamed in one step, and the parent of to synced. After a crash to
// is absent or holds the whole tree.
func PublishDir(staging, to string) error {
	if err := SyncTree(staging); err != nil {
		return err
	}
	if err := os.Remove(to); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replacing empty %q: %w", to, err)
	}
	if err := os.Rename(staging, to); err != nil {
		return fmt.Errorf("moving %q to %q: %w", staging, to, err)
	}
	return SyncDir(filepath.Dir(to))
}
