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

// oomKills is the number of OOM kills so far in the container's memory cgroup, the baseline against which
// limitHit tells whether a step was killed.
func (c *Container) oomKills() int64 {
	n, _ := oomKilled(memoryCgroup(c.cfg.CgroupParent, c.id))
	return n
}

// limitHit tells why a step that exited non-zero failed, when the cause was a limit: the OOM killer in the
// container's (or its build's) memory cgroup since the step started (oomBefore kills), or a full task disk.
func (c *Container) limitHit(oomBefore int64) error {
	if dir := memoryCgroup(c.cfg.CgroupParent, c.id); dir != "" {
		if kills, own := oomKilled(dir); kills > oomBefore {
			build := buildMemoryLimit(c.cfg.CgroupParent)
			if c.cfg.CgroupParent == "" || own && c.cfg.Memory < build {
				return &LimitError{Resource: "memory", Limit: c.cfg.Memory, Scope: "its task's"}
			}
			return &LimitError{Resource: "memory", Limit: build, Setting: "maxBuildMemoryBytes", Scope: "its build's total"}
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
