package factory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// Defaults of the factory's resource limits (config.yaml).
const (
	DefaultMaxDiskBytes        int64 = 20 << 30 // per task: /workspace, /tmp and /outputs together
	DefaultMaxBuildMemoryBytes int64 = 8 << 30  // per build: all its running tasks together
	DefaultMaxBuildPids        int64 = 4096     // per build: all its running tasks together
)

// Limits are the resource limits in force, resolved from config.yaml.
type Limits struct {
	Disk          int64
	ParallelTasks int
	BuildMemory   int64
	BuildPids     int64
}

func (c Config) limits() Limits {
	return Limits{Disk: c.MaxDiskBytes, ParallelTasks: c.MaxParallelTasks, BuildMemory: c.MaxBuildMemoryBytes, BuildPids: c.MaxBuildPids}
}

// checkLimits fills in the defaults of the resource settings and refuses bad values, among them a task uid
// range that a host account, group or subordinate range uses.
func (c *Config) checkLimits(path string, files idFiles) error {
	bad := func(format string, args ...any) error {
		return &InputError{Err: fmt.Errorf("factory config %q: "+format, append([]any{path}, args...)...)}
	}
	if c.TaskUIDs == "" {
		c.TaskUIDs = uidRange{First: DefaultFirstTaskUID, Count: DefaultTaskUIDs}.String()
	}
	r, err := parseUIDRange(c.TaskUIDs)
	if err != nil {
		return bad("%w", err)
	}
	if err := r.checkFree(files); err != nil {
		return bad("%w", err)
	}
	for _, v := range []struct {
		name string
		val  *int64
		def  int64
		min  int64
	}{
		{"maxDiskBytes", &c.MaxDiskBytes, DefaultMaxDiskBytes, 1 << 20},
		{"maxBuildMemoryBytes", &c.MaxBuildMemoryBytes, DefaultMaxBuildMemoryBytes, 16 << 20},
		{"maxBuildPids", &c.MaxBuildPids, DefaultMaxBuildPids, 16},
	} {
		if *v.val == 0 {
			*v.val = v.def
		}
		if *v.val < v.min {
			return bad("%s is %d; it must be at least %d", v.name, *v.val, v.min)
		}
	}
	if c.MaxParallelTasks == 0 {
		c.MaxParallelTasks = runtime.NumCPU()
	}
	if c.MaxParallelTasks < 1 {
		return bad("maxParallelTasks is %d; it must be at least 1", c.MaxParallelTasks)
	}
	return nil
}

// takeSlot takes one of n task slots shared by every ssf on the host (lock files dir/0 … dir/n-1), waiting until
// one is free or ctx ends; waiting, when not nil, is called once if it has to wait. The kernel drops a slot's lock
// when its holder exits, however it exits.
func takeSlot(ctx context.Context, dir string, n int, waiting func()) (*os.File, error) {
	if err := hostDir(dir); err != nil {
		return nil, err
	}
	files := make([]*os.File, n)
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i := range files {
		f, err := lockFile(filepath.Join(dir, fmt.Sprint(i)), true)
		if err != nil {
			return nil, err
		}
		files[i] = f
	}
	// flock cannot wait for any one of several files, so a waiting task polls; it waits only while all slots are
	// busy, and a slot frees up when a whole task ends, so the delay is small beside a task's duration.
	wait := time.Millisecond
	for {
		for i, f := range files {
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
				files[i] = nil
				return f, nil
			}
		}
		if waiting != nil {
			waiting()
			waiting = nil
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// hostDir creates dir, a directory of hostStateDir, and checks that it and hostStateDir are directories of this
// (root's) user that no one else may write: whoever could create entries there could block every build's uid
// leases and task slots, or plant a symlink that root would follow when it creates a lock file.
func hostDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the host's ssf state directory %s: %w", dir, err)
	}
	dirs := []string{dir}
	if filepath.Dir(dir) == hostStateDir {
		dirs = []string{hostStateDir, dir}
	}
	for _, d := range dirs {
		fi, err := os.Lstat(d)
		if err != nil {
			return fmt.Errorf("checking the host's ssf state directory: %w", err)
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		switch {
		case !fi.IsDir():
			return fmt.Errorf("host state %s is a %s, not a directory: ssf keeps the host's task uid leases and task slots there; remove it (ssf creates it again)", d, typeName(fi.Mode()))
		case st == nil || int(st.Uid) != os.Geteuid():
			return fmt.Errorf("host state directory %s is not owned by uid %d, which runs ssf: whoever owns it could steal or block task uid leases and task slots; remove it (ssf creates it again)", d, os.Geteuid())
		case fi.Mode().Perm()&0o022 != 0:
			return fmt.Errorf("host state directory %s is writable by others (mode %s): they could steal or block task uid leases and task slots; run chmod go-w %s", d, fi.Mode().Perm(), d)
		}
	}
	return nil
}

// lockFile opens the lock file path, creating it when create is set. It never follows a symlink nor blocks on a
// fifo, and refuses anything but a regular file of this user's: hostDir keeps others out of the directory, and
// this keeps a stray entry from pointing root's open at a device or a file elsewhere.
func lockFile(path string, create bool) (*os.File, error) {
	flags := os.O_RDWR | syscall.O_NOFOLLOW | syscall.O_NONBLOCK
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("lock file %s is a symlink: ssf never follows one there; remove it", path)
	} else if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	fi, err := f.Stat()
	if err == nil {
		st, _ := fi.Sys().(*syscall.Stat_t)
		switch {
		case !fi.Mode().IsRegular():
			err = fmt.Errorf("lock file %s is a %s, not a regular file; remove it", path, typeName(fi.Mode()))
		case st == nil || int(st.Uid) != os.Geteuid():
			err = fmt.Errorf("lock file %s is not owned by uid %d, which runs ssf; remove it", path, os.Geteuid())
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func typeName(m os.FileMode) string {
	switch {
	case m&os.ModeSymlink != 0:
		return "symlink"
	case m&os.ModeNamedPipe != 0:
		return "fifo"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	}
	return "special file"
}
