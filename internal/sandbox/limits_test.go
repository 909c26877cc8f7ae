package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A step that writes past its task's disk limit fails with ENOSPC inside the container, Exec says it hit the
// limit, and the host's disk holds no more than the limit.
func TestDiskLimit(t *testing.T) {
	rootfs := busyboxRootfs(t)
	dir := filepath.Join(t.TempDir(), "task")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const limit = 8 << 20
	disk, err := MountDisk(context.Background(), dir, dir+".disk", limit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	ws := filepath.Join(dir, "workspace")
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(ws, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	ctr := startContainer(t, Config{Rootfs: rootfs, Mounts: []Mount{{Source: ws, Destination: "/workspace"}}, Cwd: "/workspace", Disk: disk})
	var out bytes.Buffer
	code, err := ctr.Exec(context.Background(), []string{"/bin/sh", "-c", "dd if=/dev/zero of=big bs=1M count=64"}, &out)
	var le *LimitError
	if code == 0 || !errors.As(err, &le) || le.Resource != "disk" ||
		!strings.Contains(err.Error(), "disk limit of 8388608 bytes (8.0 MiB)") || !strings.Contains(err.Error(), "maxDiskBytes") {
		t.Fatalf("writing 64 MB under an 8 MiB disk: exit %d, error %v, output %q; want a disk LimitError naming maxDiskBytes and the limit", code, err, out.String())
	}
	if !strings.Contains(out.String(), "No space left on device") {
		t.Errorf("step output %q, want ENOSPC", out.String())
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir+".disk", &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > limit {
		t.Errorf("the task disk takes %d bytes of the host's disk, more than its %d byte limit", used, limit)
	}
	ctr.Close()
	if err := disk.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + ".disk"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("disk image left after Close: %v", err)
	}
	if mounted(t, dir) {
		t.Errorf("%s still mounted after Close", dir)
	}
}

func mounted(t *testing.T, dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

func TestUnmountUnder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	work := t.TempDir()
	var dirs []string
	for _, n := range []string{"a", "b c"} {
		d := filepath.Join(work, "tasks", n)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := MountDisk(context.Background(), d, d+".disk", 1<<20); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	if err := UnmountUnder(work); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if mounted(t, d) {
			t.Errorf("%s still mounted", d)
		}
	}
}

// A step killed by the OOM killer is reported as having hit its memory limit, with the limit.
func TestMemoryLimitIsNamed(t *testing.T) {
	ctr := startContainer(t, Config{Rootfs: busyboxRootfs(t), Memory: 32 << 20})
	var out bytes.Buffer
	code, err := ctr.Exec(context.Background(), []string{"/bin/sh", "-c", `x=$(head -c 200000000 /dev/zero | tr '\0' a); echo survived ${#x}`}, &out)
	var le *LimitError
	if code == 0 || !errors.As(err, &le) || le.Resource != "memory" || !strings.Contains(err.Error(), "memory limit of 33554432 bytes (32.0 MiB)") {
		t.Fatalf("holding 200 MB under a 32 MiB limit: exit %d, error %v, output %q; want a memory LimitError with the limit", code, err, out.String())
	}
	// A step that fails on its own is not blamed on a limit.
	if code, err := ctr.Exec(context.Background(), []string{"/bin/sh", "-c", "exit 3"}, &out); code != 3 || err != nil {
		t.Errorf("exit 3 after an OOM kill: code %d, error %v", code, err)
	}
}

// The build's parent cgroup carries its limits, and they bound all of its tasks together: a fork bomb in two
// containers gets no more processes than maxBuildPids, though each container alone may have more.
func TestBuildCgroupBoundsAllTasks(t *testing.T) {
	rootfs := busyboxRootfs(t)
	g, err := NewBuildCgroup("ssf-test-build-cgroup", 64<<20, 30)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
	})
	parents, _, err := cgroupParents()
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"memory/memory.limit_in_bytes": "67108864", "pids/pids.max": "30"} {
		ctrl, name, _ := strings.Cut(file, "/")
		data, err := os.ReadFile(filepath.Join(parents[ctrl], g.Name(), name))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(data)); got != want {
			t.Errorf("%s = %s, want %s", file, got, want)
		}
	}
	// Two tasks' steps run at once: the first starts 20 processes and holds them until the second, which tries
	// 40, has counted its own; they meet at a FIFO in a directory both containers mount.
	shared := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(shared, "done"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(shared, "done"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	mounts := []Mount{{Source: shared, Destination: "/shared"}}
	// Only shell builtins run after the fork bomb: a command that needed a fork could fail once the build's
	// processes are used up.
	spawn := func(name string, n int, then string) string {
		return fmt.Sprintf(`(i=0; while [ $i -lt %d ]; do sleep 60 >/dev/null 2>&1 & i=$((i+1)); echo $i > /shared/%s; done) || true; read -r n < /shared/%s; echo $n; %s`, n, name, name, then)
	}
	first := startContainer(t, Config{ID: "ssf-test-bomb-0", Rootfs: rootfs, CgroupParent: g.Name(), Pids: 100, Mounts: mounts})
	second := startContainer(t, Config{ID: "ssf-test-bomb-1", Rootfs: rootfs, CgroupParent: g.Name(), Pids: 100, Mounts: mounts})
	outs := make([]bytes.Buffer, 2)
	done := make(chan error, 1)
	go func() {
		_, err := first.Exec(context.Background(), []string{"/bin/sh", "-c", spawn("a", 20, "read -r _ < /shared/done")}, &outs[0])
		done <- err
	}()
	// The second starts once the first's processes are there: it waits for the first's count file to say 20.
	code, err := second.Exec(context.Background(), []string{"/bin/sh", "-c",
		`until [ "$(cat /shared/a 2>/dev/null)" = 20 ]; do :; done; ` + spawn("b", 40, "echo > /shared/done")}, &outs[1])
	if err != nil || code != 0 {
		t.Fatalf("second container: exit %d, error %v, output %q", code, err, outs[1].String())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	spawned := 0
	for i := range outs {
		n, _ := strconv.Atoi(strings.TrimSpace(strings.Split(outs[i].String(), "\n")[0]))
		spawned += n
	}
	if spawned >= 30 || spawned < 20 {
		t.Errorf("two containers in a build cgroup with pids.max 30 started %d processes (outputs %q, %q)", spawned, outs[0].String(), outs[1].String())
	}
}

// A step that fills its task's disk to the last block and inode cannot stop the control plane writing the next
// step's config.json beside it (the bundle lives on the task disk): the next step runs and meets the full disk
// itself.
func TestFullDiskLeavesRoomForTheRuntime(t *testing.T) {
	rootfs := busyboxRootfs(t)
	dir := filepath.Join(t.TempDir(), "task")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk, err := MountDisk(context.Background(), dir, dir+".disk", 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	ws, bundle := filepath.Join(dir, "workspace"), filepath.Join(dir, "bundle")
	for _, d := range []string{ws, bundle} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(ws, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	r, err := NewRunc(testRuntime, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := r.Start(context.Background(), bundle, Config{ID: "ssf-test-full-disk", Rootfs: rootfs, Env: []string{"PATH=/bin"},
		Mounts: []Mount{{Source: ws, Destination: "/workspace"}}, Cwd: "/workspace", UID: 65532, GID: 65532, Disk: disk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctr.Close() })
	var out bytes.Buffer
	fill := `(cat /dev/zero > big) 2>/dev/null; i=0; while echo > f$i 2>/dev/null; do i=$((i+1)); done; (dd if=/dev/zero of=last bs=1) 2>/dev/null; df . | tail -1`
	if code, err := ctr.Exec(context.Background(), []string{"/bin/sh", "-c", fill + "; true"}, &out); code != 0 || err != nil {
		t.Fatalf("filling the disk: exit %d, %v\n%s", code, err, out.String())
	}
	if f := strings.Fields(out.String()); len(f) < 4 || f[3] != "0" {
		t.Fatalf("the step did not fill the disk: df says %q", out.String())
	}
	out.Reset()
	// A long script makes config.json grow past the blocks it had.
	next := "echo next step ran; : " + strings.Repeat("x", 64<<10)
	code, err := ctr.Exec(context.Background(), []string{"/bin/sh", "-c", next}, &out)
	if code != 0 || err != nil || out.String() != "next step ran\n" {
		t.Fatalf("the step after a full disk: exit %d, error %v, output %q; want it to run", code, err, out.String())
	}
}

// The task's lease files are held by each step's runtime process for as long as the step runs, so a step that
// outlives its control plane (killed outright) keeps its slot and uid; the step itself gets none of them.
func TestStepRuntimeHoldsTheTaskLeases(t *testing.T) {
	rootfs := busyboxRootfs(t)
	dir := filepath.Join(t.TempDir(), "task")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk, err := MountDisk(context.Background(), dir, dir+".disk", 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	ws := filepath.Join(dir, "workspace")
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	gate := filepath.Join(ws, "gate")
	if err := syscall.Mkfifo(gate, 0o666); err != nil {
		t.Fatal(err)
	}
	lockPath := filepath.Join(t.TempDir(), "slot")
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	disk.Hold = []*os.File{lock}
	ctr := startContainer(t, Config{Rootfs: rootfs, Mounts: []Mount{{Source: ws, Destination: "/workspace"}}, Cwd: "/workspace", Disk: disk})
	pr, pw := io.Pipe()
	done := make(chan string, 1)
	go func() {
		var rest bytes.Buffer
		code, err := ctr.Exec(context.Background(), []string{"/bin/sh", "-c", "ls /proc/self/fd; echo up; cat gate"}, io.MultiWriter(pw, &rest))
		pw.Close()
		done <- fmt.Sprintf("exit %d, error %v, output %q", code, err, rest.String())
	}()
	fds, err := bufio.NewReader(pr).ReadString('u')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	// The control plane's own descriptor goes, as when it is killed.
	lock.Close()
	other, err := os.OpenFile(lockPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		t.Error("the lease was free while its step ran")
	}
	if got := strings.Join(strings.Fields(fds), " "); got != "0 1 2 3 u" {
		t.Errorf("the step's descriptors are %q, want only 0, 1, 2 and ls's own 3", got)
	}
	f, err := os.OpenFile(gate, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := <-done; !strings.HasPrefix(got, "exit 0, error <nil>") {
		t.Fatalf("step: %s", got)
	}
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Errorf("the lease is still held after its step ended: %v", err)
	}
}

// TCP buffers a step holds count against a limit of its task: cgroup v1 leaves socket memory out of the memory
// limit unless the step's cgroup has a TCP limit, and the kernel's TCP memory (net.ipv4.tcp_mem) is shared by the
// whole host, so a step's unread loopback connections (186 MiB from 50 of them) could starve every other
// connection on the host. cgroup v2 counts socket memory in the memory limit.
func TestTCPBuffersAreBounded(t *testing.T) {
	rootfs := busyboxRootfs(t)
	parents, v2, err := cgroupParents()
	if err != nil || v2 || parents["memory"] == "" {
		t.Skip("the TCP buffer limit is for cgroup v1's memory controller")
	}
	buildProbe(t, rootfs, "tcpprobe", runtime.GOARCH, "tcpprobe")
	ctr := startContainer(t, Config{Rootfs: rootfs})
	var out bytes.Buffer
	code, err := ctr.Exec(context.Background(), []string{"/bin/tcpprobe", "60"}, &out)
	if code != 0 || err != nil {
		t.Fatalf("tcpprobe: exit %d, %v\n%s", code, err, out.String())
	}
	queued, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(out.String()), "queued="))
	if err != nil {
		t.Fatalf("tcpprobe printed %q", out.String())
	}
	// Each socket keeps a few pages whatever the pressure; 60 of them add well under 16 MiB to the limit.
	if limit := int(maxTCPBuffers >> 20); queued > limit+16 {
		t.Errorf("a step queued %d MiB of TCP buffers, past its %d MiB limit", queued, limit)
	}
}

// A step cannot read which disk images back the host's loop devices: each task disk's backing_file names its
// build's work directory and the task, so a step could watch which other builds run on the host.
func TestLoopDevicesAreHidden(t *testing.T) {
	rootfs := busyboxRootfs(t)
	dir := filepath.Join(t.TempDir(), "secret-task-name")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk, err := MountDisk(context.Background(), dir, dir+".disk", 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	ctr := startContainer(t, Config{Rootfs: rootfs})
	var out bytes.Buffer
	script := `cat /sys/block/*/loop/backing_file /sys/class/block/*/loop/backing_file /sys/devices/virtual/block/*/loop/backing_file 2>/dev/null; true`
	if code, err := ctr.Exec(context.Background(), []string{"/bin/sh", "-c", script}, &out); code != 0 || err != nil {
		t.Fatalf("exit %d, %v", code, err)
	}
	if strings.Contains(out.String(), "secret-task-name") {
		t.Errorf("a step read the host path of another task's disk image:\n%s", out.String())
	}
}

// A build's and a step's memory limits cover swap too: the memory limit alone bounds only RAM, and the rest could
// go to the host's swap, which every process on the host shares.
func TestMemoryLimitsCoverSwap(t *testing.T) {
	rootfs := busyboxRootfs(t)
	if !swapLimitable() {
		t.Skip("this host's memory cgroups do not account swap")
	}
	g, err := NewBuildCgroup("ssf-test-build-swap", 64<<20, 30)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Remove() })
	parents, v2, err := cgroupParents()
	if err != nil {
		t.Fatal(err)
	}
	file, want := "memory.memsw.limit_in_bytes", "67108864"
	if v2 {
		file, want = "memory.swap.max", "0"
	}
	data, err := os.ReadFile(filepath.Join(parents["memory"], g.Name(), file))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(data)); got != want {
		t.Errorf("build cgroup %s = %s, want %s", file, got, want)
	}
	ctr := startContainer(t, Config{Rootfs: rootfs, Memory: 32 << 20, CgroupParent: g.Name()})
	var out bytes.Buffer
	// The step reads nothing of its cgroup; runc applies the spec, so the spec is what decides.
	if code, err := ctr.Exec(context.Background(), []string{"/bin/true"}, &out); code != 0 || err != nil {
		t.Fatalf("exit %d, %v: %s", code, err, out.String())
	}
	if m := ctr.spec.Linux.Resources.Memory; m.Swap == nil || *m.Swap != *m.Limit {
		t.Errorf("the step's memory+swap limit is %v, want its memory limit %d", m.Swap, *m.Limit)
	}
}
