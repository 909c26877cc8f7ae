// Package sandbox is the factory's build environment: it runs each step of a task in a fresh OCI container (runc
// by default, or crun) with no network, a read-only root, an unprivileged user, no capabilities, no_new_privs,
// seccomp, masked /proc and /sys paths, memory and process limits, and bounds on the host-wide kernel resources a
// step could otherwise take from everyone (pseudo-terminals, AIO contexts, and on cgroup v1 TCP buffers); it also
// provides what bounds a task and a build on the host: a size-limited file system for a task's writable paths
// (Disk) and a parent cgroup with a build's total memory and process limits (BuildCgroup), and names the limit a
// failed step hit (LimitError).
//
// # What it must never do
//
// It must never give a container a network interface other than its own loopback, a host path that the caller did
// not list, a capability, or a way back to the factory's state. It must never leave a container, a cgroup or a
// mount behind: every container it creates is killed and deleted, whether the task succeeds, fails, times out or
// is cancelled, and Close removes the task's cgroup and Disk.Close its file system.
//
// The container configuration is generated with the runtime-spec Go types; namespaces, mounts and the containers'
// own cgroups are left to the runtime.
package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Runc runs containers with an OCI runtime that has runc's command line: runc, or crun.
type Runc struct {
	binary string
	root   string // runc --root: where runc keeps container state, kept apart from other runc users

	featuresOnce sync.Once
	seccomp      bool
	version      string

	// ownCgroups: the runtime is told to leave cgroups alone and ssf puts each step in its task's cgroup itself.
	// crun 1.8 (Debian 12) refuses to manage cgroups on a host whose cgroup v2 hierarchy has any controller while
	// v1 is mounted too (a "hybrid" host).
	ownCgroups bool
}

// DefaultStateDir is the runtime's state directory when NewRunc is given none (the factory gives $SSF_HOME/runc).
const DefaultStateDir = "/run/ssf/runc"

// NewRunc finds the runc binary (a path, or a name looked up in $PATH) and checks that it runs.
func NewRunc(binary, stateDir string) (*Runc, error) {
	if binary == "" {
		binary = "runc"
	}
	p, err := exec.LookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("finding container runtime %q: %w (install it with: apt-get install runc)", binary, err)
	}
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating runc state directory: %w", err)
	}
	return &Runc{binary: p, root: stateDir, ownCgroups: filepath.Base(p) == "crun"}, nil
}

// Version returns the first line of `runc --version`.
func (r *Runc) Version() string {
	r.features()
	return r.version
}

// features asks runc once whether it was built with seccomp support, and its version.
func (r *Runc) features() {
	r.featuresOnce.Do(func() {
		versionOut, err := exec.Command(r.binary, "--version").Output()
		if err == nil {
			r.version, _, _ = strings.Cut(string(versionOut), "\n")
		}
		out, err := exec.Command(r.binary, "features").Output()
		if err != nil {
			// crun before 1.9 has no `features` but lists its build options in --version ("+SECCOMP"); an old
			// runc has neither: assume no seccomp rather than fail every build.
			r.seccomp = slices.Contains(strings.Fields(string(versionOut)), "+SECCOMP")
			return
		}
		var f struct {
			Linux struct {
				Seccomp struct {
					Enabled *bool `json:"enabled"`
				} `json:"seccomp"`
			} `json:"linux"`
		}
		if json.Unmarshal(out, &f) == nil && f.Linux.Seccomp.Enabled != nil {
			r.seccomp = *f.Linux.Seccomp.Enabled
		}
	})
}

// Seccomp reports whether containers get the seccomp filter.
func (r *Runc) Seccomp() bool {
	r.features()
	return r.seccomp
}

// Container is a task's container. Each step runs as the init of its own `runc run` of the task's config: one
// runtime call per step (a long-lived container with `runc exec` took four per task), and a step's processes,
// background ones included, end with it. Steps share the task's mounts, so files in /workspace, /tmp and
// /outputs carry over from step to step; the task's cgroup, which holds the steps' cgroups, lives as long as the
// Container, so the OOM kills of a step can still be read after runc has removed the step's own cgroup.
type Container struct {
	r      *Runc
	id     string
	bundle string
	spec   *specs.Spec
	cfg    Config // with its limits resolved
	task   *taskCgroup
	steps  int
	closed bool
}

// Start prepares a task container: it checks the runtime, writes nothing that runs yet, and creates the task's
// cgroup. bundleDir must be an empty directory that the caller removes later; config.json is written there for
// each step. The caller must Close the container.
func (r *Runc) Start(ctx context.Context, bundleDir string, c Config) (*Container, error) {
	if !r.Seccomp() {
		return nil, fmt.Errorf("%s (%s) reports no seccomp support: ssf does not run build steps without its seccomp filter; install a runtime built with libseccomp (Debian's runc and crun are)", r.binary, r.Version())
	}
	spec, err := ociSpec(c, []string{"/bin/sh"}, true)
	if err != nil {
		return nil, err
	}
	task, err := newTaskCgroup(c.CgroupParent, c.ID)
	if err != nil {
		return nil, err
	}
	memory := *spec.Linux.Resources.Memory.Limit
	if swapLimitable() {
		// Memory plus swap may reach only the memory limit: the step's memory stays out of the host's swap.
		spec.Linux.Resources.Memory.Swap = &memory
	}
	if r.ownCgroups {
		if err := task.limitSteps(memory, *spec.Linux.Resources.Pids.Limit); err != nil {
			task.remove()
			return nil, err
		}
	}
	// The step's cgroup goes in the task's, which NewBuildCgroup's parent holds.
	spec.Linux.CgroupsPath = task.name + "/step"
	ctr := &Container{r: r, id: c.ID, bundle: bundleDir, spec: spec, cfg: c, task: task}
	ctr.cfg.Memory, ctr.cfg.Pids = memory, *spec.Linux.Resources.Pids.Limit
	// Written now too, so the task's isolation can be read from the bundle before any step (Exec sets the args).
	if err := ctr.writeConfig(); err != nil {
		task.remove()
		return nil, err
	}
	return ctr, nil
}

func (c *Container) writeConfig() error {
	data, err := json.Marshal(c.spec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), data, 0o600); err != nil {
		return fmt.Errorf("writing container config: %w", err)
	}
	return nil
}

// ID returns the container's ID.
func (c *Container) ID() string { return c.id }

// ErrKilled is returned by Exec when the container was killed because ctx ended (timeout or cancellation).
var ErrKilled = errors.New("container killed")

// Exec runs args in a fresh container of the task's config, as its configured user, with its environment and
// working directory, and streams the process's combined stdout and stderr to out. It returns the exit code. When
// ctx ends first, the container is killed and the error wraps ErrKilled and ctx's error.
func (c *Container) Exec(ctx context.Context, args []string, out io.Writer) (int, error) {
	if c.closed {
		return -1, fmt.Errorf("container %s is closed", c.id)
	}
	c.steps++
	c.spec.Process.Args = args
	if err := c.writeConfig(); err != nil {
		return -1, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		pr.Close()
		pw.Close()
		return -1, err
	}
	defer devnull.Close()
	// Without a terminal, runc hands its own stdio to the step: the step writes straight into our pipe, and
	// runc's own errors go to a log file it opens itself.
	logPath := filepath.Join(c.bundle, "runtime.log")
	runArgs := []string{"--root", c.r.root, "--log", logPath, "run", "--bundle", c.bundle, c.id}
	cmd := exec.CommandContext(ctx, c.r.binary, runArgs...)
	if c.r.ownCgroups {
		// The runtime and so the step start inside the task's step cgroup: a shell joins it, then becomes the
		// runtime, so no process of the step is ever outside it.
		procs := c.task.stepProcs()
		script := ""
		for i := range procs {
			script += fmt.Sprintf(`echo $$ > "$%d" && `, i+1)
		}
		script += fmt.Sprintf(`shift %d && exec "$@"`, len(procs))
		args := append([]string{"-c", script, "sh"}, procs...)
		args = append(append(args, c.r.binary, "--cgroup-manager=disabled"), runArgs...)
		cmd = exec.CommandContext(ctx, "/bin/sh", args...)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, pw, pw
	if c.cfg.Disk != nil {
		cmd.ExtraFiles = c.cfg.Disk.Hold // the runtime closes them in the container
	}
	// Killing `runc run` would not stop the container; killing the container ends runc run.
	cmd.Cancel = func() error { return c.kill() }
	cmd.WaitDelay = 10 * time.Second
	if err := c.task.prepareStep(); err != nil {
		pr.Close()
		pw.Close()
		return -1, err
	}
	c.task.resetPeak()
	before := memoryCounts{c.task.oomKills(), buildMemoryFailures(c.cfg.CgroupParent)}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return -1, fmt.Errorf("running step in container %s: %w", c.id, err)
	}
	pw.Close()
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(out, pr)
		pr.Close()
		copied <- err
	}()
	waitErr := cmd.Wait()
	copyErr := <-copied
	if ctx.Err() != nil {
		return -1, fmt.Errorf("%w: %w", ErrKilled, context.Cause(ctx))
	}
	var exitErr *exec.ExitError
	switch {
	case errors.As(waitErr, &exitErr):
		if msg, _ := os.ReadFile(logPath); exitErr.ExitCode() == 1 && runtimeFailed(msg) {
			return -1, fmt.Errorf("running step in container %s: %s: %s", c.id, filepath.Base(c.r.binary), lastLogLine(msg))
		}
		if err := c.limitHit(before, exitErr.ExitCode()); err != nil {
			return exitErr.ExitCode(), err
		}
		return exitErr.ExitCode(), nil
	case waitErr != nil:
		return -1, fmt.Errorf("running step in container %s: %w", c.id, waitErr)
	case copyErr != nil:
		return -1, fmt.Errorf("reading step output: %w", copyErr)
	}
	return 0, nil
}

// Close removes whatever is left of the task's containers and its cgroup. It is safe to call more than once and
// does not depend on any context, so cleanup still happens after a cancellation.
func (c *Container) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	var err error
	// runc run removes a step's container when the step ends; only a killed or failed run leaves one behind.
	if c.steps > 0 {
		if _, serr := os.Stat(filepath.Join(c.r.root, c.id)); serr == nil {
			err = c.r.Delete(context.Background(), c.id)
		}
	}
	return errors.Join(err, c.task.remove())
}

// List returns the IDs of the containers in this runtime's state directory.
func (r *Runc) List(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, r.binary, "--root", r.root, "list", "-q").Output()
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	return strings.Fields(string(out)), nil
}

// Delete kills and removes the container id, for containers whose Container value is gone (their ssf died).
func (r *Runc) Delete(ctx context.Context, id string) error {
	err := r.run(ctx, "delete", "--force", id)
	if err != nil && strings.Contains(err.Error(), "does not exist") {
		return nil
	}
	return err
}

func (c *Container) kill() error {
	return c.r.run(context.Background(), "kill", c.id, "KILL")
}

// runtimeFailed tells a runtime's own failure from a step that exited 1: runc logs levels and only its errors
// count; crun logs nothing but errors.
func runtimeFailed(log []byte) bool {
	if bytes.Contains(log, []byte("level=")) {
		return bytes.Contains(log, []byte("level=error")) || bytes.Contains(log, []byte("level=fatal"))
	}
	return len(bytes.TrimSpace(log)) > 0
}

func lastLogLine(log []byte) string {
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	return lines[len(lines)-1]
}

func (r *Runc) run(ctx context.Context, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, r.binary, append([]string{"--root", r.root}, args...)...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("runc %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
