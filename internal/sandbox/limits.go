package sandbox

import "fmt"

// LimitError is a step that failed because its task reached a resource limit the sandbox set: the kernel killed
// it for memory, or its disk was full. Exec returns it with the step's exit code, so the message names the cause
// instead of only "Killed" or "exit code 137".
type LimitError struct {
	Resource string // "memory" or "disk"
	Limit    int64  // bytes
	Setting  string // the factory config.yaml setting behind the limit, "" when it is fixed
	Scope    string // what the limit covers
}

func (e *LimitError) Error() string {
	msg := fmt.Sprintf("the step hit %s %s limit of %d bytes (%s)", e.Scope, e.Resource, e.Limit, humanBytes(e.Limit))
	if e.Resource == "memory" {
		msg += " and was killed by the kernel's OOM killer"
	}
	if e.Setting != "" {
		msg += fmt.Sprintf("; the limit is %s in the factory's config.yaml", e.Setting)
	}
	return msg
}

// memoryCounts are a task's memory event counters before a step, to tell what happened during it.
type memoryCounts struct{ oomKills, buildFailures int64 }

// limitHit tells why a step that exited with code failed, when the cause was a limit: its task's or its build's
// memory limit (cgroup v2 counts the OOM kill in the task's cgroup; on v1 the task's peak usage or the build's
// failed charges show which limit was reached), or a full task disk.
func (c *Container) limitHit(before memoryCounts, code int) error {
	killed := c.task.oomKills() > before.oomKills
	// The peak stops short of the limit by at most a charge batch (64 pages) that did not fit.
	taskHit := c.task.peak() >= c.cfg.Memory-256<<10
	buildHit := c.cfg.CgroupParent != "" && buildMemoryFailures(c.cfg.CgroupParent) > before.buildFailures
	if killed || taskHit || buildHit {
		// A limit alone does not fail a step (the kernel first reclaims cache); the OOM killer's SIGKILL (exit
		// 137) or the kernel's own count of OOM kills says it did.
		if killed || code == 137 {
			if buildHit {
				return &LimitError{Resource: "memory", Limit: buildMemoryLimit(c.cfg.CgroupParent), Setting: "maxBuildMemoryBytes", Scope: "its build's total"}
			}
			e := &LimitError{Resource: "memory", Limit: c.cfg.Memory, Scope: "its task's"}
			if c.cfg.CgroupParent != "" && c.cfg.Memory >= buildMemoryLimit(c.cfg.CgroupParent) {
				e.Setting = "maxBuildMemoryBytes" // the task's limit is the build's
			}
			return e
		}
	}
	if c.cfg.Disk != nil && c.cfg.Disk.Full() {
		return &LimitError{Resource: "disk", Limit: c.cfg.Disk.Limit, Setting: "maxDiskBytes", Scope: "its task's (/workspace, /tmp and /outputs together)"}
	}
	return nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
