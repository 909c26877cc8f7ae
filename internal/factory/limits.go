package factory

import (
	"context"
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
	TaskUIDs      string
	Disk          int64
	ParallelTasks int
	BuildMemory   int64
	BuildPids     int64
}

func (c Config) limits() Limits {
	return Limits{TaskUIDs: c.TaskUIDs, Disk: c.MaxDiskBytes, ParallelTasks: c.MaxParallelTasks, BuildMemory: c.MaxBuildMemoryBytes, BuildPids: c.MaxBuildPids}
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
// one is free or ctx ends. The kernel drops a slot's lock when its holder exits, however it exits.
func takeSlot(ctx context.Context, dir string, n int) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the host's task slot directory: %w", err)
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
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(i)), os.O_CREATE|os.O_RDWR, 0o600)
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
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}
