package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A build's task containers are nested in one parent cgroup that carries the build's total memory and process
// limits, so the limits hold however many tasks run at once. The parent is created next to where runc puts a
// container by default: under the factory's own cgroup (cgroup v1, per controller) or beside it (cgroup v2, where
// a cgroup that holds processes cannot delegate controllers to its children). The container's cgroupsPath is
// relative, so runc resolves it the same way.

const cgroupRoot = "/sys/fs/cgroup"

// BuildCgroup is the parent cgroup of one build's task containers.
type BuildCgroup struct {
	name   string   // relative path, as given to runc under cgroupsPath
	dirs   []string // the directories created, one per controller hierarchy (one on cgroup v2)
	Memory int64    // bytes, all tasks together
	Pids   int64    // processes, all tasks together
	v2     bool
}

// NewBuildCgroup creates (or, left by a killed build, empties and re-creates) the parent cgroup name and sets its
// limits. name must be a single path element unique among running builds on the host (the factory uses the
// build's leased uid).
func NewBuildCgroup(name string, memory, pids int64) (*BuildCgroup, error) {
	if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
		return nil, fmt.Errorf("build cgroup name %q is not a single path element", name)
	}
	g := &BuildCgroup{name: name, Memory: memory, Pids: pids}
	parents, v2, err := cgroupParents()
	if err != nil {
		return nil, err
	}
	g.v2 = v2
	for _, ctrl := range []string{"memory", "pids"} {
		parent, ok := parents[ctrl]
		if !ok {
			return nil, fmt.Errorf("creating build cgroup: the %s cgroup controller is not mounted under %s", ctrl, cgroupRoot)
		}
		dir := filepath.Join(parent, name)
		if !v2 || len(g.dirs) == 0 {
			if err := removeCgroup(dir); err != nil {
				return nil, fmt.Errorf("removing the leftover cgroup %s of an interrupted build: %w", dir, err)
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				return nil, fmt.Errorf("creating build cgroup: %w", err)
			}
			g.dirs = append(g.dirs, dir)
		}
		var file, value string
		switch {
		case ctrl == "memory" && v2:
			file, value = "memory.max", fmt.Sprint(memory)
		case ctrl == "memory":
			file, value = "memory.limit_in_bytes", fmt.Sprint(memory)
		default:
			file, value = "pids.max", fmt.Sprint(pids)
		}
		if v2 {
			// The controllers must be enabled in the parent of dir for dir to have them.
			sub := filepath.Join(filepath.Dir(dir), "cgroup.subtree_control")
			if err := os.WriteFile(sub, []byte("+"+ctrl), 0); err != nil {
				g.Remove()
				return nil, fmt.Errorf("enabling the %s controller in %s: %w", ctrl, sub, err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
			g.Remove()
			return nil, fmt.Errorf("setting %s of build cgroup %s to %s: %w", file, dir, value, err)
		}
		if ctrl == "memory" {
			if err := limitSwap(dir, memory); err != nil {
				g.Remove()
				return nil, err
			}
		}
	}
	if v2 {
		// A cgroup v2 child of this directory needs the controllers enabled here too.
		if err := os.WriteFile(filepath.Join(g.dirs[0], "cgroup.subtree_control"), []byte("+memory +pids"), 0); err != nil {
			g.Remove()
			return nil, fmt.Errorf("enabling memory and pids controllers in %s: %w", g.dirs[0], err)
		}
	}
	return g, nil
}

// limitSwap keeps the cgroup dir, whose memory limit is memory, out of the host's swap: the memory limit alone
// bounds only RAM, and the rest of a step's memory could go to swap, which the whole host shares (v1: memory plus
// swap may reach only the memory limit; v2: no swap). A host without swap accounting has no such file, and no
// limit is set.
func limitSwap(dir string, memory int64) error {
	file, value := "memory.memsw.limit_in_bytes", fmt.Sprint(memory)
	if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil {
		file, value = "memory.swap.max", "0"
	}
	err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("setting %s of cgroup %s to %s: %w", file, dir, value, err)
	}
	return nil
}

// swapLimitable reports whether the host's memory cgroups can limit swap (swap accounting is on).
func swapLimitable() bool {
	parents, _, err := cgroupParents()
	if err != nil || parents["memory"] == "" {
		return false
	}
	for _, file := range []string{"memory.memsw.limit_in_bytes", "memory.swap.max"} {
		if _, err := os.Stat(filepath.Join(parents["memory"], file)); err == nil {
			return true
		}
	}
	return false
}

// BuildCgroups lists the names of the build cgroups on the host (in any controller hierarchy), running or left
// by a killed build.
func BuildCgroups() []string {
	parents, _, err := cgroupParents()
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var names []string
	for _, p := range parents {
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), "ssf-build-") && !seen[e.Name()] {
				seen[e.Name()] = true
				names = append(names, e.Name())
			}
		}
	}
	return names
}

// RemoveBuildCgroup removes the build cgroup name, killing anything left in it; the caller must know its build has
// ended.
func RemoveBuildCgroup(name string) error {
	if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
		return fmt.Errorf("build cgroup name %q is not a single path element", name)
	}
	parents, _, err := cgroupParents()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range parents {
		errs = append(errs, removeCgroup(filepath.Join(p, name)))
	}
	return errors.Join(errs...)
}

// Name is the relative cgroup path under which a container's cgroup goes (Config.CgroupParent).
func (g *BuildCgroup) Name() string { return g.name }

// Remove deletes the cgroup, killing anything still in it (a build removes it after its containers are gone).
func (g *BuildCgroup) Remove() error {
	var errs []error
	for _, d := range g.dirs {
		errs = append(errs, removeCgroup(d))
	}
	return errors.Join(errs...)
}

// removeCgroup removes dir and every cgroup below it, killing their processes first. A missing dir is not an
// error.
func removeCgroup(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroup(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	// A process being killed stays in the cgroup until it has exited, so rmdir may briefly fail with EBUSY.
	var lastErr error
	for range 100 {
		killCgroup(dir)
		lastErr = syscall.Rmdir(dir)
		if lastErr == nil || errors.Is(lastErr, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(lastErr, syscall.EBUSY) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("removing cgroup %s: %w", dir, lastErr)
}

func killCgroup(dir string) {
	data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// cgroupParents returns, per controller, the directory in which runc creates a container whose cgroupsPath is
// relative: this process's own cgroup on v1, its parent on v2 (runc 1.1 resolves relative paths the same way).
func cgroupParents() (map[string]string, bool, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	v1 := map[string]string{}
	var unified string
	hasUnified := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			unified, hasUnified = parts[2], true
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			v1[ctrl] = parts[2]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, false, err
	}
	out := map[string]string{}
	if len(v1["memory"]) > 0 || len(v1["pids"]) > 0 {
		for _, ctrl := range []string{"memory", "pids"} {
			if p, ok := v1[ctrl]; ok {
				out[ctrl] = filepath.Join(cgroupRoot, ctrl, p)
			}
		}
		return out, false, nil
	}
	if !hasUnified {
		return nil, false, errors.New("finding this process's cgroup: /proc/self/cgroup names neither cgroup v1 memory/pids controllers nor cgroup v2")
	}
	dir := filepath.Join(cgroupRoot, filepath.Dir(unified))
	ctrls, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, true, fmt.Errorf("reading the cgroup v2 controllers of %s: %w", dir, err)
	}
	for _, c := range strings.Fields(string(ctrls)) {
		if c == "memory" || c == "pids" {
			out[c] = dir
		}
	}
	return out, true, nil
}

// taskCgroup holds the cgroups of one task's step containers, under its build's cgroup (or where runc puts a
// container by default). It outlives each step, so the task's OOM kills can be counted after runc has removed
// the step's own cgroup.
type taskCgroup struct {
	name   string // relative path: the build cgroup's name, then the container ID
	memory string // the memory controller's directory, "" when unknown
	dirs   []string
}

// newTaskCgroup creates the task's cgroup, in which each step's container gets its own.
func newTaskCgroup(parent, id string) (*taskCgroup, error) {
	if id == "" || strings.Contains(id, "/") || id == "." || id == ".." {
		return nil, fmt.Errorf("container ID %q is not a single path element", id)
	}
	name := id
	if parent != "" {
		name = parent + "/" + id
	}
	t := &taskCgroup{name: name}
	parents, v2, err := cgroupParents()
	if err != nil {
		return nil, err
	}
	for _, ctrl := range []string{"memory", "pids"} {
		p, ok := parents[ctrl]
		if !ok {
			continue
		}
		dir := filepath.Join(p, name)
		if ctrl == "memory" {
			t.memory = dir
		}
		if v2 && len(t.dirs) > 0 {
			continue
		}
		if err := removeCgroup(dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating task cgroup: %w", err)
		}
		t.dirs = append(t.dirs, dir)
		if v2 {
			if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +pids"), 0); err != nil {
				t.remove()
				return nil, fmt.Errorf("enabling memory and pids controllers in %s: %w", dir, err)
			}
		}
	}
	return t, nil
}

// resetPeak restarts the task's peak memory count (v1 memory.max_usage_in_bytes, v2 memory.peak; kernels before
// 6.12 cannot reset memory.peak, where the peak then spans the task's earlier steps too).
func (t *taskCgroup) resetPeak() {
	if t.memory == "" {
		return
	}
	if os.WriteFile(filepath.Join(t.memory, "memory.max_usage_in_bytes"), []byte("0"), 0) != nil {
		os.WriteFile(filepath.Join(t.memory, "memory.peak"), []byte("reset"), 0)
	}
}

// peak is the most memory the task's cgroup has held since resetPeak, -1 when unknown. On cgroup v1 the kernel
// counts an OOM kill only in the cgroup of the killed process, which runc removes with the step's container; the
// task's peak, which includes its steps', shows whether the step reached its limit.
func (t *taskCgroup) peak() int64 {
	for _, file := range []string{"memory.max_usage_in_bytes", "memory.peak"} {
		if data, err := os.ReadFile(filepath.Join(t.memory, file)); t.memory != "" && err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// limitSteps sets the task's memory and process limits on its cgroup and creates the "step" cgroup its steps
// join, for a runtime that does not manage cgroups (cgroup v2 allows processes only in leaves).
func (t *taskCgroup) limitSteps(memory, pids int64) error {
	for _, dir := range t.dirs {
		files := map[string]string{}
		switch {
		case strings.Contains(dir, "/memory/"):
			files["memory.limit_in_bytes"] = fmt.Sprint(memory)
		case strings.Contains(dir, "/pids/"):
			files["pids.max"] = fmt.Sprint(pids)
		default: // cgroup v2
			files["memory.max"] = fmt.Sprint(memory)
			files["pids.max"] = fmt.Sprint(pids)
		}
		for file, value := range files {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
				return fmt.Errorf("setting %s of task cgroup %s: %w", file, dir, err)
			}
		}
		if !strings.Contains(dir, "/pids/") {
			if err := limitSwap(dir, memory); err != nil {
				return err
			}
		}
		if err := os.Mkdir(filepath.Join(dir, "step"), 0o755); err != nil {
			return fmt.Errorf("creating step cgroup: %w", err)
		}
	}
	return nil
}

// prepareStep creates, on cgroup v1, the memory cgroup the next step's runtime puts the step in, with its TCP
// buffer limit: the runtime ignores one in the spec, and v1 counts a socket's buffers only when its own cgroup has
// a TCP limit (memory.kmem.tcp.limit_in_bytes; the runtime keeps a cgroup that exists and removes it after the
// step). cgroup v2 needs nothing: socket memory is part of memory.max.
func (t *taskCgroup) prepareStep() error {
	if t.memory == "" || !strings.Contains(t.memory, "/memory/") {
		return nil
	}
	dir := filepath.Join(t.memory, "step")
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating step cgroup: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.kmem.tcp.limit_in_bytes"), []byte(fmt.Sprint(maxTCPBuffers)), 0); err != nil {
		return fmt.Errorf("limiting the TCP buffers of step cgroup %s: %w", dir, err)
	}
	return nil
}

// stepProcs are the cgroup.procs files a step's runtime joins (limitSteps).
func (t *taskCgroup) stepProcs() []string {
	var procs []string
	for _, dir := range t.dirs {
		procs = append(procs, filepath.Join(dir, "step", "cgroup.procs"))
	}
	return procs
}

func (t *taskCgroup) oomKills() int64 {
	n, _ := oomKilled(t.memory)
	return n
}

func (t *taskCgroup) remove() error {
	var errs []error
	for _, d := range t.dirs {
		errs = append(errs, removeCgroup(d))
	}
	t.dirs = nil
	return errors.Join(errs...)
}

// buildMemoryDir is the memory cgroup directory of the build cgroup parent, "" when unknown.
func buildMemoryDir(parent string) string {
	parents, _, err := cgroupParents()
	if err != nil || parents["memory"] == "" || parent == "" {
		return ""
	}
	return filepath.Join(parents["memory"], parent)
}

// buildMemoryLimit reads the memory limit of the build cgroup parent, -1 when unknown.
func buildMemoryLimit(parent string) int64 {
	dir := buildMemoryDir(parent)
	for _, file := range []string{"memory.limit_in_bytes", "memory.max"} {
		if data, err := os.ReadFile(filepath.Join(dir, file)); dir != "" && err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// buildMemoryFailures counts the times the build cgroup parent refused memory at its limit (v1 memory.failcnt,
// v2 memory.events max), -1 when unknown.
func buildMemoryFailures(parent string) int64 { return memoryFailures(buildMemoryDir(parent)) }

func memoryFailures(dir string) int64 {
	if dir == "" {
		return -1
	}
	if data, err := os.ReadFile(filepath.Join(dir, "memory.failcnt")); err == nil {
		n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		return n
	}
	if data, err := os.ReadFile(filepath.Join(dir, "memory.events")); err == nil {
		return cgroupStat(string(data), "max")
	}
	return -1
}

// oomKilled returns how many processes of the cgroup dir (and its descendants) the kernel's OOM killer has killed
// (v1 memory.oom_control and v2 memory.events both count oom_kill), and whether dir itself has hit its limit.
func oomKilled(dir string) (kills int64, ownLimit bool) {
	if dir == "" {
		return 0, false
	}
	for _, file := range []string{"memory.oom_control", "memory.events"} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			continue
		}
		kills = max(kills, cgroupStat(string(data), "oom_kill"))
		if file == "memory.events" {
			ownLimit = cgroupStat(string(data), "max") > 0
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, "memory.failcnt")); err == nil {
		n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		ownLimit = n > 0
	}
	return kills, ownLimit
}

func cgroupStat(data, key string) int64 {
	for _, line := range strings.Split(data, "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
