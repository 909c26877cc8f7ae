package factory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/sandbox"
)

func writeIDFiles(t *testing.T, passwd, group, subuid, subgid string) idFiles {
	t.Helper()
	dir := t.TempDir()
	f := idFiles{passwd: filepath.Join(dir, "passwd"), group: filepath.Join(dir, "group"), subuid: filepath.Join(dir, "subuid"), subgid: filepath.Join(dir, "subgid")}
	for path, content := range map[string]string{f.passwd: passwd, f.group: group, f.subuid: subuid, f.subgid: subgid} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func TestTaskUIDRangeMustNotOverlapHostIDs(t *testing.T) {
	files := writeIDFiles(t,
		"root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nsvc:x:200500:200500::/:/bin/false\n",
		"root:x:0:\nalice:x:1000:\nbuilders:x:300010:\n",
		"alice:100000:65536\n",
		"bob:400000:65536\n")
	tests := []struct {
		taskUIDs string
		want     string // "" means accepted
	}{
		{"500000-500999", ""},
		{"165536-166535", ""}, // just past alice's subordinate uids
		{"200000-200999", `includes account "svc" (id 200500`},
		{"300000-300999", `includes group "builders" (id 300010`},
		{"165000-166000", `overlaps the subordinate range 100000-165535 of "alice"`},
		{"465535-465535", `overlaps the subordinate range 400000-465535 of "bob"`},
		{"0-999", "includes root"},
		{"900-100", "is not a range"},
		{"lots", "is not a range"},
	}
	for _, tt := range tests {
		cfg := Config{TaskUIDs: tt.taskUIDs}
		err := cfg.checkLimits("config.yaml", files)
		if tt.want == "" {
			if err != nil {
				t.Errorf("taskUids %s: %v, want accepted", tt.taskUIDs, err)
			}
			continue
		}
		var ie *InputError
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.As(err, &ie) {
			t.Errorf("taskUids %s: error %v, want an input error containing %q", tt.taskUIDs, err, tt.want)
		}
	}
}

func TestConfigLimitDefaults(t *testing.T) {
	cfg := Config{}
	if err := cfg.checkLimits("config.yaml", writeIDFiles(t, "", "", "", "")); err != nil {
		t.Fatal(err)
	}
	if cfg.MaxDiskBytes != 20<<30 || cfg.MaxParallelTasks < 1 || cfg.MaxBuildMemoryBytes != DefaultMaxBuildMemoryBytes ||
		cfg.MaxBuildPids != DefaultMaxBuildPids || cfg.TaskUIDs != "1879048192-1879049191" {
		t.Errorf("defaults = %+v", cfg)
	}
	for _, bad := range []Config{{MaxDiskBytes: -1}, {MaxParallelTasks: -2}, {MaxBuildPids: 3}, {MaxBuildMemoryBytes: 1000}} {
		if err := bad.checkLimits("config.yaml", writeIDFiles(t, "", "", "", "")); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// Two factory homes on one host lease their task uids from one place, so concurrent builds never share a uid.
func TestTwoHomesLeaseDistinctUIDs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("leasing uids under /run/ssf and creating cgroups needs root")
	}
	cfg := Config{TaskUIDs: "1879100000-1879100001"}
	if err := cfg.checkLimits("config.yaml", writeIDFiles(t, "", "", "", "")); err != nil {
		t.Fatal(err)
	}
	homes := []Home{{Dir: t.TempDir()}, {Dir: t.TempDir()}}
	leases := make([]*taskUID, len(homes))
	errs := make([]error, len(homes))
	var wg sync.WaitGroup
	for i, h := range homes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			leases[i], errs[i] = h.takeUID(cfg)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("home %d: %v", i, err)
		}
		defer leases[i].release()
	}
	if leases[0].id == leases[1].id {
		t.Fatalf("two homes both leased uid %d", leases[0].id)
	}
	// The range is now exhausted host-wide, whichever home asks.
	if _, err := (Home{Dir: t.TempDir()}).takeUID(cfg); err == nil || !strings.Contains(err.Error(), "are in use by running builds on this host") {
		t.Errorf("third lease from a third home: %v, want all uids in use", err)
	}
}

// With maxParallelTasks slots, a further task waits until one is free and stops waiting when its build ends.
func TestTaskSlotsWait(t *testing.T) {
	dir := t.TempDir()
	held, err := takeSlot(context.Background(), dir, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	got := make(chan error, 1)
	go func() {
		f, err := takeSlot(ctx, dir, 1, nil)
		if f != nil {
			f.Close()
		}
		got <- err
	}()
	cause := errors.New("build cancelled")
	cancel(cause)
	if err := <-got; !errors.Is(err, cause) {
		t.Errorf("waiting for a busy slot: %v, want the build's cancellation", err)
	}
	held.Close()
	f, err := takeSlot(context.Background(), dir, 1, nil)
	if err != nil {
		t.Fatalf("slot not free after its holder released it: %v", err)
	}
	f.Close()
}

// A build killed outright leaves its cgroup; the next build removes it once the uid's lease is free.
func TestStaleBuildCgroupIsRemoved(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	cfg := Config{TaskUIDs: "1879200000-1879200001"}
	if err := cfg.checkLimits("config.yaml", writeIDFiles(t, "", "", "", "")); err != nil {
		t.Fatal(err)
	}
	home := Home{Dir: t.TempDir()}
	killed, err := home.takeUID(cfg)
	if err != nil {
		t.Fatal(err)
	}
	name := killed.cgroup.Name()
	killed.f.Close() // the lock goes as when the process dies, and nothing removes the cgroup
	if !slices.Contains(sandbox.BuildCgroups(), name) {
		t.Fatalf("build cgroup %s not there", name)
	}
	// The next build leases another uid: the sweep, not the reuse of the uid, must remove the cgroup.
	next, err := home.takeUID(Config{TaskUIDs: "1879200001-1879200001", MaxBuildMemoryBytes: 1 << 30, MaxBuildPids: 100})
	if err != nil {
		t.Fatal(err)
	}
	next.release()
	if slices.Contains(sandbox.BuildCgroups(), name) {
		t.Errorf("the killed build's cgroup %s is still there", name)
	}
}

// Entries under the host's state directory that ssf did not create are refused, never followed: a symlink planted
// as a uid lease or task slot would have root create (and lock) any file it names, and a directory others may
// write lets them steal or block every build's leases.
func TestHostStateRefusesPlantedEntries(t *testing.T) {
	saved := hostStateDir
	hostStateDir = t.TempDir()
	defer func() { hostStateDir = saved }()
	leases, slots := filepath.Join(hostStateDir, "uids"), filepath.Join(hostStateDir, "tasks")
	for _, d := range []string{leases, slots} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	target := filepath.Join(t.TempDir(), "nologin") // where a symlink would have root create a file
	if err := os.Symlink(target, filepath.Join(leases, "1879300000")); err != nil {
		t.Fatal(err)
	}
	u, err := leaseUID(leases, uidRange{First: 1879300000, Count: 2})
	if u != nil {
		u.f.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Errorf("leasing with a symlink planted as a lease: %v, want it refused", err)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Errorf("ssf created %s through the planted symlink", target)
	}
	if err := syscall.Mkfifo(filepath.Join(slots, "0"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f, err := takeSlot(context.Background(), slots, 1, nil); err == nil || !strings.Contains(err.Error(), "is a fifo") {
		if f != nil {
			f.Close()
		}
		t.Errorf("a fifo planted as a task slot: %v, want it refused", err)
	}
	os.Remove(filepath.Join(slots, "0"))
	if err := os.Chmod(slots, 0o777); err != nil {
		t.Fatal(err)
	}
	if f, err := takeSlot(context.Background(), slots, 1, nil); err == nil || !strings.Contains(err.Error(), "writable by others") {
		if f != nil {
			f.Close()
		}
		t.Errorf("a task slot directory anyone may write: %v, want it refused", err)
	}
	if os.Geteuid() != 0 {
		return // only root can hand the directory to another user
	}
	if err := os.Chown(leases, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if u, err := leaseUID(leases, uidRange{First: 1879300001, Count: 1}); err == nil || !strings.Contains(err.Error(), "is not owned by uid 0") {
		if u != nil {
			u.f.Close()
		}
		t.Errorf("a lease directory of another user: %v, want it refused", err)
	}
}

// A uid that a process runs as is never leased, lease or not: an account no id file lists (a directory
// service's), another container engine's process or a killed build's leftover step would share the task's
// identity, and could reach its files through /proc/PID/root.
func TestUIDOfARunningProcessIsNotLeased(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("starting a process as another uid needs root")
	}
	saved := hostStateDir
	hostStateDir = t.TempDir()
	defer func() { hostStateDir = saved }()
	const first = 1879400000
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: first, Gid: first}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	leases := filepath.Join(hostStateDir, "uids")
	u, err := leaseUID(leases, uidRange{First: first, Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	u.f.Close()
	if u.id != first+1 {
		t.Errorf("leased uid %d, which process %d runs as; want %d", u.id, cmd.Process.Pid, first+1)
	}
	_, err = leaseUID(leases, uidRange{First: first, Count: 1})
	if want := fmt.Sprintf("uid %d (process %d)", first, cmd.Process.Pid); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("leasing only the uid of a running process: %v, want an error naming %q", err, want)
	}
}

// A task that has to wait for a slot says so once, naming the setting, so a wait on a busy host (or a slot held
// by a stopped process) does not look like a hang.
func TestTaskWaitingForASlotSaysSo(t *testing.T) {
	saved := hostStateDir
	hostStateDir = t.TempDir()
	defer func() { hostStateDir = saved }()
	held, err := takeSlot(context.Background(), filepath.Join(hostStateDir, "tasks"), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	said := make(chan string, 2)
	u := &taskUID{limits: Limits{ParallelTasks: 1}, notify: func(format string, args ...any) { said <- fmt.Sprintf(format, args...) }}
	ctx, cancel := context.WithCancelCause(context.Background())
	got := make(chan error, 1)
	go func() {
		_, err := u.startTask(ctx, filepath.Join(t.TempDir(), "compile"))
		got <- err
	}()
	var msg string
	select {
	case msg = <-said:
	case <-time.After(10 * time.Second): // a bound on failure, not a synchronisation
		t.Fatal("a task waited 10 s for a task slot without saying so")
	}
	cause := errors.New("build cancelled")
	cancel(cause)
	if err := <-got; !errors.Is(err, cause) {
		t.Errorf("waiting for a slot: %v, want the build's cancellation", err)
	}
	if want := "task compile waits for a task slot: all 1 (maxParallelTasks in config.yaml"; !strings.HasPrefix(msg, want) {
		t.Errorf("message %q, want it to start %q", msg, want)
	}
	if len(said) != 0 {
		t.Errorf("said more than once: %q", <-said)
	}
}

// A build killed outright leaves steps running whose runtime still holds the build's uid lease (so nothing else
// takes the uid while they run). The next build on the host sees that the ssf which took the lease is gone and
// removes the killed build's cgroup, ending those steps, which frees the lease.
func TestOrphanedStepsOfAKilledBuildAreEnded(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock (util-linux) not installed")
	}
	saved := hostStateDir
	hostStateDir = t.TempDir()
	defer func() { hostStateDir = saved }()
	const id = 1879500000
	leases := filepath.Join(hostStateDir, "uids")
	if err := hostDir(leases); err != nil {
		t.Fatal(err)
	}
	g, err := sandbox.NewBuildCgroup(fmt.Sprintf("ssf-build-%d", id), 64<<20, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Remove()
	// The "ssf" (a shell) takes the lease, starts a "step" that inherits it in the build's cgroup, and dies.
	procs := buildCgroupProcs(t, g.Name())
	// The shell puts the step into the build's cgroup before it prints the pid, so the sweep below cannot run before
	// the step is there (it would find the cgroup empty and the test would prove nothing).
	script := `exec 9<>"$1" && flock -x 9 && shift && { sleep 60 >/dev/null 2>&1 & pid=$!; for f; do echo $pid > "$f"; done; echo $pid; }`
	ssfCmd := exec.Command("sh", append([]string{"-c", script, "sh", filepath.Join(leases, fmt.Sprint(id))}, procs...)...)
	out, err := ssfCmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	step, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("step pid %q", out)
	}
	defer syscall.Kill(step, syscall.SIGKILL)
	f, err := lockFile(filepath.Join(leases, fmt.Sprint(id)), false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
		t.Fatal("the orphaned step does not hold the lease")
	}
	sweepBuildCgroups(leases)
	if slices.Contains(sandbox.BuildCgroups(), g.Name()) {
		t.Fatalf("the killed build's cgroup %s is still there, and its step runs on", g.Name())
	}
	// The step was killed, so the lease is free: flock waits for it to go. A step that was not killed would hold
	// it for its whole minute, far past the bound.
	locked := make(chan error, 1)
	go func() { locked <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-locked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the killed build's step still holds its uid lease: the sweep did not end it")
	}
}

// buildCgroupProcs lists the cgroup.procs files of the build cgroup name, one per controller hierarchy.
func buildCgroupProcs(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var procs []string
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, ctrl := range []string{"memory", "pids"} {
			if slices.Contains(strings.Split(parts[1], ","), ctrl) {
				procs = append(procs, filepath.Join("/sys/fs/cgroup", ctrl, parts[2], name, "cgroup.procs"))
			}
		}
	}
	if len(procs) == 0 {
		t.Skip("this test knows only cgroup v1 memory and pids hierarchies")
	}
	return procs
}
