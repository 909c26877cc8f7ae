package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
)

// Isolation is how the sandbox confined one task container: facts the control plane set, not claims a step made,
// for the provenance to record (so that a verifier or a policy can require them).
type Isolation struct {
	Network          string // "none": a network namespace with only its own loopback
	ReadOnlyRoot     bool
	UID, GID         uint32 // host ids the steps ran as
	Capabilities     string // "none": every capability set empty, the bounding set included
	NoNewPrivileges  bool
	Seccomp          string // "sha256:HEX" of the seccomp profile given to the runtime, as JSON
	MemoryBytes      int64  // the task's memory limit
	Pids             int64  // the task's process limit
	DiskBytes        int64  // the task's disk (its writable paths together); 0 when it had none
	BuildMemoryBytes int64  // the build's total memory limit, 0 when not nested in a BuildCgroup
	BuildPids        int64  // the build's total process limit, 0 when not nested in a BuildCgroup
	Runtime          string // the runtime binary's name, e.g. "runc"
	RuntimeVersion   string // the first line of its --version
}

// Isolation describes the container that Start makes for c; g is the build cgroup c is nested in, or nil.
func (r *Runc) Isolation(c Config, g *BuildCgroup) (Isolation, error) {
	if c.Cwd == "" {
		c.Cwd = "/"
	}
	spec, err := ociSpec(c, []string{"/bin/sh"}, r.Seccomp())
	if err != nil {
		return Isolation{}, err
	}
	iso := Isolation{
		Network: "none", ReadOnlyRoot: spec.Root.Readonly, UID: c.UID, GID: c.GID, Capabilities: "none",
		NoNewPrivileges: spec.Process.NoNewPrivileges,
		MemoryBytes:     *spec.Linux.Resources.Memory.Limit, Pids: *spec.Linux.Resources.Pids.Limit,
		Runtime: filepath.Base(r.binary), RuntimeVersion: r.Version(),
	}
	if c.Disk != nil {
		iso.DiskBytes = c.Disk.Limit
	}
	if g != nil {
		iso.BuildMemoryBytes, iso.BuildPids = g.Memory, g.Pids
	}
	if spec.Linux.Seccomp != nil {
		data, err := json.Marshal(spec.Linux.Seccomp)
		if err != nil {
			return Isolation{}, err
		}
		sum := sha256.Sum256(data)
		iso.Seccomp = "sha256:" + hex.EncodeToString(sum[:])
	}
	return iso, nil
}

// Map is the isolation as string key/values, the form provenance internalParameters take. Keys are stable.
func (i Isolation) Map() map[string]string {
	m := map[string]string{
		"network": i.Network, "readOnlyRoot": strconv.FormatBool(i.ReadOnlyRoot),
		"uid": fmt.Sprint(i.UID), "gid": fmt.Sprint(i.GID), "capabilities": i.Capabilities,
		"noNewPrivileges": strconv.FormatBool(i.NoNewPrivileges), "seccomp": i.Seccomp,
		"memoryBytes": fmt.Sprint(i.MemoryBytes), "pids": fmt.Sprint(i.Pids), "diskBytes": fmt.Sprint(i.DiskBytes),
		"buildMemoryBytes": fmt.Sprint(i.BuildMemoryBytes), "buildPids": fmt.Sprint(i.BuildPids),
		"runtime": i.Runtime, "runtimeVersion": i.RuntimeVersion,
	}
	return m
}
