// Package sandbox is the factory's build environment: it runs a task's steps inside a fresh OCI container
// (runc by default) with no network, a read-only root, an unprivileged user, no capabilities, no_new_privs,
// seccomp, masked /proc paths, and memory and process limits.
//
// # What it must never do
//
// It must never give a container a network interface other than its own loopback, a host path that the caller did
// not list, a capability, or a way back to the factory's state. It must never leave a container behind: every
// container it creates is killed and deleted, whether the task succeeds, fails, times out or is cancelled.
//
// The container configuration is generated with the runtime-spec Go types; namespaces, mounts and cgroups are
// left to runc.
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
	"strings"
	"sync"
	"time"
)

// Runc runs containers with the runc binary.
type Runc struct {
	binary string
	root   string // runc --root: where runc keeps container state, kept apart from other runc users

	featuresOnce sync.Once
	seccomp      bool
	version      string
}

// DefaultStateDir is where runc keeps the state of ssf's containers.
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
	return &Runc{binary: p, root: stateDir}, nil
}

// Version returns the first line of `runc --version`.
func (r *Runc) Version() string {
	r.features()
	return r.version
}

// features asks runc once whether it was built with seccomp support, and its version.
func (r *Runc) features() {
	r.featuresOnce.Do(func() {
		if out, err := exec.Command(r.binary, "--version").Output(); err == nil {
			r.version, _, _ = strings.Cut(string(out), "\n")
		}
		out, err := exec.Command(r.binary, "features").Output()
		if err != nil {
			return // an old runc without `features`: assume no seccomp rather than fail every build
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

// Container is a running task container. Its init process only waits; steps run in it with Exec.
type Container struct {
	r    *Runc
	id   string
	hold *os.File // write end of the init's stdin: the init exits when it is closed
	cfg  Config   // with its limits resolved
}

// Start creates and starts a container. bundleDir must be an empty directory that the caller removes later;
// runc's config.json is written there. The caller must Close the container.
func (r *Runc) Start(ctx context.Context, bundleDir string, c Config) (*Container, error) {
	// The init process blocks reading a pipe that only we hold, so the container lives exactly as long as we want.
	if !r.Seccomp() {
		return nil, fmt.Errorf("%s (%s) reports no seccomp support: ssf does not run build steps without its seccomp filter; install a runc built with libseccomp (Debian's runc is)", r.binary, r.Version())
	}
	spec, err := ociSpec(c, []string{"/bin/sh", "-c", "read -r _"}, true)
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bundleDir, "config.json"), data, 0o600); err != nil {
		return nil, fmt.Errorf("writing container config: %w", err)
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer stdinR.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		stdinW.Close()
		return nil, err
	}
	defer devnull.Close()

	// The container's init inherits runc create's stdio, so all three must be files (a pipe that os/exec copies
	// from would keep Run waiting for as long as the container lives), and none may be a host file the step could
	// write to through /proc/1/fd: runc's own errors go to a log file it opens itself.
	ctr := &Container{r: r, id: c.ID, hold: stdinW, cfg: c}
	ctr.cfg.Memory, ctr.cfg.Pids = *spec.Linux.Resources.Memory.Limit, *spec.Linux.Resources.Pids.Limit
	logPath := filepath.Join(bundleDir, "runc-create.log")
	create := exec.CommandContext(ctx, r.binary, "--root", r.root, "--log", logPath, "create", "--bundle", bundleDir, c.ID)
	create.Stdin, create.Stdout, create.Stderr = stdinR, devnull, devnull
	if err := create.Run(); err != nil {
		ctr.Close()
		msg, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("creating container %s: %w: %s", c.ID, err, strings.TrimSpace(string(msg)))
	}
	if err := r.run(ctx, "start", c.ID); err != nil {
		ctr.Close()
		return nil, fmt.Errorf("starting container %s: %w", c.ID, err)
	}
	return ctr, nil
}

// ID returns the container's ID.
func (c *Container) ID() string { return c.id }

// ErrKilled is returned by Exec when the container was killed because ctx ended (timeout or cancellation).
var ErrKilled = errors.New("container killed")

// Exec runs args in the container as its configured user, with its environment and working directory, and
// streams the process's combined stdout and stderr to out. It returns the exit code. When ctx ends first, the
// whole container is killed and the error wraps ErrKilled and ctx's error.
func (c *Container) Exec(ctx context.Context, args []string, out io.Writer) (int, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	cmdArgs := append([]string{"--root", c.r.root, "exec", c.id}, args...)
	cmd := exec.CommandContext(ctx, c.r.binary, cmdArgs...)
	cmd.Stdout, cmd.Stderr = pw, pw
	// Killing `runc exec` would not stop the process it started; killing the container stops everything in it.
	cmd.Cancel = func() error { return c.kill() }
	cmd.WaitDelay = 10 * time.Second
	oomBefore := c.oomKills()
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
	// runc exec returns only when the step's output pipe is closed, so a background process that keeps it open
	// holds the step until it exits or the task's timeout kills the container.
	waitErr := cmd.Wait()
	copyErr := <-copied
	if ctx.Err() != nil {
		return -1, fmt.Errorf("%w: %w", ErrKilled, context.Cause(ctx))
	}
	var exitErr *exec.ExitError
	switch {
	case errors.As(waitErr, &exitErr):
		if err := c.limitHit(oomBefore); err != nil {
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

// Close kills and deletes the container. It is safe to call more than once and does not depend on any context,
// so cleanup still happens after a cancellation.
func (c *Container) Close() error {
	if c.hold != nil {
		c.hold.Close()
		c.hold = nil
	}
	// `delete --force` kills whatever still runs, then removes runc's state and the container's cgroups.
	return c.r.Delete(context.Background(), c.id)
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

func (r *Runc) run(ctx context.Context, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, r.binary, append([]string{"--root", r.root}, args...)...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("runc %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
