package factory

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/ssf-dev/ssf/internal/sandbox"
)

// Each running build's steps run as a host uid (and gid) of their own, so concurrent builds share no per-user
// kernel resources (inotify instances, pipe buffers, process counts) and cannot signal each other's processes.
// A uid is taken by locking /run/ssf/uids/<uid>, one directory for the whole host, so two factory homes never hand
// out the same uid; the kernel drops the lock when the build's process ends, however it ends, so a killed build
// never keeps its uid.
//
// The default range lies in the part of the uid space that systemd leaves unused (0x70000000 and up): below it are
// the accounts, the dynamic users, and the subordinate ranges that adduser hands out from 100000 in steps of 65536.
const (
	DefaultFirstTaskUID = 0x70000000
	DefaultTaskUIDs     = 1000
)

// hostStateDir holds what ssf shares between all factory homes on the host: uid leases and task slots.
var hostStateDir = "/run/ssf"

// idFiles are the files checked for accounts and subordinate ranges that a task uid range must not overlap.
type idFiles struct{ passwd, group, subuid, subgid string }

var systemIDFiles = idFiles{passwd: "/etc/passwd", group: "/etc/group", subuid: "/etc/subuid", subgid: "/etc/subgid"}

// uidRange is the configured range of task uids, [First, First+Count).
type uidRange struct{ First, Count int }

func (r uidRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.First+r.Count-1) }

// parseUIDRange reads "FIRST-LAST".
func parseUIDRange(s string) (uidRange, error) {
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	last, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 32)
	if !ok || err1 != nil || err2 != nil || last < first {
		return uidRange{}, fmt.Errorf("taskUids %q is not a range FIRST-LAST of uids (for example %d-%d)", s, DefaultFirstTaskUID, DefaultFirstTaskUID+DefaultTaskUIDs-1)
	}
	if first == 0 || last >= 1<<32-2 {
		return uidRange{}, fmt.Errorf("taskUids %q includes root or the reserved uid 4294967295/4294967294", s)
	}
	return uidRange{First: int(first), Count: int(last-first) + 1}, nil
}

// checkFree refuses a range that holds an account or group, or overlaps a subordinate uid or gid range: a host
// account in the range could reach a running build's outputs (through /proc/PID/root) before they are hashed.
func (r uidRange) checkFree(files idFiles) error {
	in := func(id uint64) bool { return id >= uint64(r.First) && id < uint64(r.First+r.Count) }
	for _, db := range []struct{ path, what string }{{files.passwd, "account"}, {files.group, "group"}} {
		err := scanLines(db.path, func(line string) error {
			f := strings.Split(line, ":")
			if len(f) < 3 {
				return nil
			}
			if id, err := strconv.ParseUint(f[2], 10, 32); err == nil && in(id) {
				return fmt.Errorf("taskUids %s in config.yaml includes %s %q (id %d in %s): a host %s in the range could reach running builds; choose a range no account, group or subordinate range uses", r, db.what, f[0], id, db.path, db.what)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, db := range []string{files.subuid, files.subgid} {
		err := scanLines(db, func(line string) error {
			f := strings.Split(line, ":")
			if len(f) != 3 {
				return nil
			}
			start, err1 := strconv.ParseUint(f[1], 10, 32)
			n, err2 := strconv.ParseUint(f[2], 10, 32)
			if err1 != nil || err2 != nil || n == 0 {
				return nil
			}
			if start < uint64(r.First+r.Count) && uint64(r.First) < start+n {
				return fmt.Errorf("taskUids %s in config.yaml overlaps the subordinate range %d-%d of %q in %s: that user's containers could run as a task's uid; choose a range no account, group or subordinate range uses", r, start, start+n-1, f[0], db)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// scanLines calls fn for each non-comment line of path; a missing file has no lines.
func scanLines(path string, fn func(string) error) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("reading %s to check taskUids: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// taskUID is a uid held for one build, with the build's parent cgroup and the factory's limits.
type taskUID struct {
	id     int
	f      *os.File
	limits Limits
	cgroup *sandbox.BuildCgroup
	// notify, when set, receives the build's progress messages (a task waiting for a slot).
	notify func(format string, args ...any)
}

// takeUID locks the first free uid of the configured range, host-wide, and creates the build's parent cgroup.
func (h Home) takeUID(cfg Config) (*taskUID, error) {
	r, err := parseUIDRange(cfg.TaskUIDs)
	if err != nil {
		return nil, err
	}
	// First the processes of builds killed outright go (with their cgroups), so their uids count as free below.
	sweepBuildCgroups(filepath.Join(hostStateDir, "uids"))
	u, err := leaseUID(filepath.Join(hostStateDir, "uids"), r)
	if err != nil {
		return nil, err
	}
	u.limits = cfg.limits()
	u.cgroup, err = sandbox.NewBuildCgroup(fmt.Sprintf("ssf-build-%d", u.id), u.limits.BuildMemory, u.limits.BuildPids)
	if err != nil {
		u.f.Close()
		return nil, err
	}
	return u, nil
}

// sweepBuildCgroups removes the cgroups of builds that were killed outright, ending whatever they left running:
// those whose uid lease is free, and those whose lease only a step's runtime still holds (it inherits the lease,
// see sandbox.Disk.Hold) because the ssf that took it is gone.
func sweepBuildCgroups(leases string) {
	for _, name := range sandbox.BuildCgroups() {
		id, ok := strings.CutPrefix(name, "ssf-build-")
		if !ok {
			continue
		}
		f, err := lockFile(filepath.Join(leases, id), false)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil || !lockerAlive(f) {
			sandbox.RemoveBuildCgroup(name)
		}
		f.Close()
	}
}

// devMajor and devMinor split a Linux device number (the kernel's new_encode_dev).
func devMajor(dev uint64) uint64 { return (dev>>8)&0xfff | (dev>>32)&^0xfff }
func devMinor(dev uint64) uint64 { return dev&0xff | (dev>>12)&^0xff }

// lockerAlive reports whether the process that took the flock lock on f still runs. The kernel keeps a lock as
// long as any process holds the open file, and /proc/locks names the process that took it; a pid that no longer
// exists (or 0: one outside this pid namespace that is gone) means only inheritors hold it. When in doubt (no entry
// found, the pid reused), the holder counts as alive.
func lockerAlive(f *os.File) bool {
	var st syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &st) != nil {
		return true
	}
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(data), "\n") {
		// 1: FLOCK  ADVISORY  WRITE 6160 fe:00:802860 0 EOF
		fields := strings.Fields(line)
		if len(fields) < 6 || fields[1] != "FLOCK" {
			continue
		}
		dev := strings.Split(fields[5], ":")
		if len(dev) != 3 {
			continue
		}
		major, err1 := strconv.ParseUint(dev[0], 16, 32)
		minor, err2 := strconv.ParseUint(dev[1], 16, 32)
		inode, err3 := strconv.ParseUint(dev[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || inode != st.Ino || major != devMajor(st.Dev) || minor != devMinor(st.Dev) {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil {
			return true
		}
		if pid <= 0 {
			return false
		}
		_, err = os.Stat("/proc/" + fields[4])
		return err == nil
	}
	return true
}

func leaseUID(dir string, r uidRange) (*taskUID, error) {
	if err := hostDir(dir); err != nil {
		return nil, err
	}
	var busy []string // uids that a process outside any lease runs as
	for id := r.First; id < r.First+r.Count; id++ {
		f, err := lockFile(filepath.Join(dir, fmt.Sprint(id)), true)
		if err != nil {
			return nil, fmt.Errorf("leasing task uid %d: %w", id, err)
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			// A free lease is not enough: a process may run as the uid without one (an account the id files do
			// not list, such as a directory service's; another container engine's; a killed build's step that
			// outlived its cgroup's sweep), and it would share the task's identity.
			if pid := processAs(id); pid != 0 {
				busy = append(busy, fmt.Sprintf("%d (process %d)", id, pid))
				f.Close()
				continue
			}
			return &taskUID{id: id, f: f}, nil
		}
		f.Close()
	}
	if len(busy) > 0 {
		return nil, fmt.Errorf("all %d task uids (%s, taskUids in config.yaml) are in use: by running builds on this host, and by processes without a lease: uid %s; choose a range no one else uses", r.Count, r, strings.Join(busy, ", "))
	}
	return nil, fmt.Errorf("all %d task uids (%s, taskUids in config.yaml) are in use by running builds on this host", r.Count, r)
}

// processAs returns a process on the host whose real, effective, saved or file-system uid is uid, 0 when there is
// none. Processes in other pid namespaces are seen too: /proc here is the host's.
func processAs(uid int) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	want := strconv.Itoa(uid)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// The owner of /proc/PID is the process's effective uid: one stat per process finds the usual case; the
		// status file settles the other uids of those that changed identity.
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) == nil && int(st.Uid) == uid {
			return pid
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if ids, ok := strings.CutPrefix(line, "Uid:"); ok {
				if slices.Contains(strings.Fields(ids), want) {
					return pid
				}
				break
			}
		}
	}
	return 0
}

// release removes the build's cgroup (its containers are gone by now) and frees the uid.
func (u *taskUID) release() {
	if u.cgroup != nil {
		u.cgroup.Remove()
	}
	u.f.Close()
}

// taskSlot is what one running task holds: a host-wide task slot and its size-limited disk.
type taskSlot struct {
	slot   *os.File
	disk   *sandbox.Disk
	memory int64
	pids   int64
	cgroup string
}

// startTask waits for one of the host's maxParallelTasks slots, then mounts the task's disk on dir (created here).
func (u *taskUID) startTask(ctx context.Context, dir string) (*taskSlot, error) {
	n := u.limits.ParallelTasks
	slot, err := takeSlot(ctx, filepath.Join(hostStateDir, "tasks"), n, func() {
		// Said once, so a wait on a busy host (or on a slot whose holder is stopped) is not mistaken for a hang.
		if u.notify != nil {
			u.notify("task %s waits for a task slot: all %d (maxParallelTasks in config.yaml, host-wide under %s) are held by tasks running on this host", filepath.Base(dir), n, filepath.Join(hostStateDir, "tasks"))
		}
	})
	if err != nil {
		return nil, err
	}
	s := &taskSlot{slot: slot, memory: min(sandbox.DefaultMemory, u.limits.BuildMemory), pids: min(sandbox.DefaultPids, u.limits.BuildPids), cgroup: u.cgroup.Name()}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.release()
		return nil, err
	}
	s.disk, err = sandbox.MountDisk(ctx, dir, dir+".disk", u.limits.Disk)
	if err != nil {
		s.release()
		return nil, err
	}
	// Each step's runtime holds the slot and the uid too: a step that outlives a control plane killed outright
	// keeps both until it ends (its build's sweep ends it), instead of running beside a new task in its slot or
	// as a new build's uid.
	s.disk.Hold = []*os.File{slot, u.f}
	return s, nil
}

// release unmounts the task's disk and frees its slot; the task's container must be gone.
func (s *taskSlot) release() {
	if s.disk != nil {
		s.disk.Close()
	}
	s.slot.Close()
}
