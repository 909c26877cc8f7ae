package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// busyboxRootfs makes a minimal root filesystem from Debian's busybox-static, with the mount points a task needs.
func busyboxRootfs(t testing.TB) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (apt-get install busybox-static; make test installs it)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not installed (apt-get install runc; make test installs it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("the runc sandbox needs root")
	}
	root := t.TempDir()
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "workspace", "outputs", "inputs", "scratch"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Writable by anyone, so only the read-only mount can stop a write there.
	if err := os.Chmod(filepath.Join(root, "scratch"), 0o1777); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func startContainer(t *testing.T, c Config) *Container {
	t.Helper()
	r, err := NewRunc(testRuntime, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == "" {
		c.ID = "ssf-test-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	}
	if c.Cwd == "" {
		c.Cwd = "/"
	}
	if c.UID == 0 {
		c.UID, c.GID = 65532, 65532
	}
	c.Env = append(c.Env, "PATH=/bin")
	ctr, err := r.Start(context.Background(), t.TempDir(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ctr.Close(); err != nil {
			t.Errorf("closing container: %v", err)
		}
	})
	return ctr
}

func execSh(t *testing.T, ctx context.Context, c *Container, script string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code, err := c.Exec(ctx, []string{"/bin/sh", "-c", script}, &out)
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	return code, out.String()
}

func TestContainerConfinement(t *testing.T) {
	rootfs := busyboxRootfs(t)
	ws := t.TempDir()
	if err := os.Chown(ws, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	ctr := startContainer(t, Config{Rootfs: rootfs, Mounts: []Mount{{Source: ws, Destination: "/workspace"}}, Cwd: "/workspace"})
	ctx := context.Background()

	tests := []struct {
		name     string
		script   string
		wantCode int
		want     string
	}{
		{"runs as the unprivileged user", "id -u; id -g", 0, "65532\n65532\n"},
		{"has no capabilities", "grep -E '^Cap(Eff|Prm|Bnd|Amb)' /proc/self/status | awk '{print $2}' | sort -u", 0, "0000000000000000\n"},
		{"has no_new_privs", "grep NoNewPrivs /proc/self/status | awk '{print $2}'", 0, "1\n"},
		{"root filesystem is read-only", "touch /scratch/x 2>&1", 1, "touch: /scratch/x: Read-only file system\n"},
		{"cannot mount", "mkdir -p /tmp/m 2>/dev/null; mount -t tmpfs none /workspace 2>/dev/null", 1, ""},
		{"cannot create a user namespace", "unshare -U true 2>/dev/null", 1, ""},
		{"sees only loopback", "ls /sys/class/net", 0, "lo\n"},
		{"kcore is masked", "test -s /proc/kcore", 1, ""},
		{"workspace is writable", "echo hi > /workspace/f && cat /workspace/f", 0, "hi\n"},
		{"exit code is reported", "exit 7", 7, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := execSh(t, ctx, ctr, tt.script)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (output %q)", code, tt.wantCode, out)
			}
			if tt.want != "" && out != tt.want {
				t.Errorf("output = %q, want %q", out, tt.want)
			}
		})
	}
}

func TestExecTimeoutKillsContainer(t *testing.T) {
	ctr := startContainer(t, Config{Rootfs: busyboxRootfs(t)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := ctr.Exec(ctx, []string{"/bin/sh", "-c", "sleep 300"}, new(bytes.Buffer))
	if !errors.Is(err, ErrKilled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Exec error = %v, want ErrKilled wrapping DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Exec returned %v after the deadline", d)
	}
}

func TestCloseRemovesContainer(t *testing.T) {
	state := t.TempDir()
	r, err := NewRunc(testRuntime, state)
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := r.Start(context.Background(), t.TempDir(), Config{ID: "ssf-test-close", Rootfs: busyboxRootfs(t), Cwd: "/", UID: 65532, GID: 65532})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ctr.task.dirs[0]); err != nil {
		t.Fatalf("task cgroup missing after Start: %v", err)
	}
	// A step killed by its deadline leaves its container to Close.
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	go func() {
		for {
			if _, err := os.Stat(filepath.Join(state, "ssf-test-close")); err == nil {
				cancel()
				return
			}
			runtime.Gosched()
		}
	}()
	if _, err := ctr.Exec(ctx, []string{"/bin/sh", "-c", "sleep 300"}, &out); !errors.Is(err, ErrKilled) {
		t.Fatalf("Exec = %v, want ErrKilled", err)
	}
	dirs := append([]string(nil), ctr.task.dirs...)
	if err := ctr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(state, "ssf-test-close")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("container state still present after Close: %v", err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("task cgroup %s still present after Close: %v", d, err)
		}
	}
	if err := ctr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestLimits(t *testing.T) {
	rootfs := busyboxRootfs(t)
	t.Run("pids", func(t *testing.T) {
		ctr := startContainer(t, Config{Rootfs: rootfs, Pids: 20})
		spawn := func(n int) (int, string) {
			return execSh(t, context.Background(), ctr, fmt.Sprintf(
				`i=0; while [ $i -lt %d ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); done; echo spawned`, n))
		}
		if code, out := spawn(5); code != 0 || out != "spawned\n" {
			t.Fatalf("5 processes under a limit of 20: exit %d, output %q", code, out)
		}
		if code, out := spawn(40); code == 0 || !strings.Contains(out, "can't fork") {
			t.Errorf("40 more processes under a limit of 20: exit %d, output %q", code, out)
		}
	})
	t.Run("memory", func(t *testing.T) {
		ctr := startContainer(t, Config{Rootfs: rootfs, Memory: 32 << 20})
		var out bytes.Buffer
		code, err := ctr.Exec(context.Background(), []string{"/bin/sh", "-c", `x=$(head -c 200000000 /dev/zero | tr '\0' a); echo survived ${#x}`}, &out)
		if code == 0 || strings.Contains(out.String(), "survived") || err == nil {
			t.Errorf("holding 200 MB under a 32 MiB limit: exit %d, error %v, output %q", code, err, out.String())
		}
	})
}

// testRuntime is the OCI runtime the tests use: runc, or another (crun) named by SSF_TEST_RUNTIME.
var testRuntime = os.Getenv("SSF_TEST_RUNTIME")

// A step's background processes end with the step, even one that keeps the step's output open: each step is its
// container's init, and the kernel kills the rest of the container when the init exits.
func TestBackgroundProcessEndsWithItsStep(t *testing.T) {
	ctr := startContainer(t, Config{Rootfs: busyboxRootfs(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	code, err := ctr.Exec(ctx, []string{"/bin/sh", "-c", "sleep 300 & echo started"}, &out)
	if err != nil || code != 0 || out.String() != "started\n" {
		t.Fatalf("exit %d, error %v, output %q; want the step to end while its background sleep holds its output", code, err, out.String())
	}
}

// The spec hides what runc's default spec hides, and the host's power meters.
func TestMaskedPaths(t *testing.T) {
	s, err := ociSpec(Config{Cwd: "/"}, []string{"/bin/sh"}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap"} {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("%s is not masked", p)
		}
	}
}

// A step can never raise its scheduling priority, whatever limits ssf itself was started with: RLIMIT_RTPRIO and
// RLIMIT_NICE are set, not inherited.
func TestNoRealtimeOrNegativeNice(t *testing.T) {
	s, err := ociSpec(Config{Cwd: "/"}, []string{"/bin/sh"}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"RLIMIT_RTPRIO", "RLIMIT_NICE"} {
		i := slices.IndexFunc(s.Process.Rlimits, func(r specs.POSIXRlimit) bool { return r.Type == want })
		if i < 0 || s.Process.Rlimits[i].Hard != 0 || s.Process.Rlimits[i].Soft != 0 {
			t.Errorf("%s is not set to 0 (inherited from ssf)", want)
		}
	}
}
