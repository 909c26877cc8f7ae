package factory

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ssf-dev/ssf/internal/provenance"
)

// maxSpec bounds what is read of a runtime spec.
const maxSpec = 4 << 20

// isolationOf describes how a task was isolated, from the runtime spec (config.json) that the control plane wrote
// into the task's bundle directory and handed to the OCI runtime: the exact document the runtime applied, which no
// step can reach (the bundle directory is not mounted into the container). It is read after the task's steps ran
// and before its container is closed. Reading it back, rather than
// restating what the sandbox is meant to do, means the provenance says what was set for this container.
//
// The runtime's name and version, the disk limit and the timeout are the control plane's own settings.
func isolationOf(bundleDir string) (provenance.TaskIsolation, error) {
	var iso provenance.TaskIsolation
	data, err := os.ReadFile(filepath.Join(bundleDir, "config.json"))
	if err != nil {
		return iso, fmt.Errorf("reading the task's runtime spec: %w", err)
	}
	if len(data) > maxSpec {
		return iso, fmt.Errorf("reading the task's runtime spec: larger than %d bytes", maxSpec)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return iso, fmt.Errorf("reading the task's runtime spec: %w", err)
	}
	if spec.Root == nil || spec.Process == nil || spec.Linux == nil {
		return iso, fmt.Errorf("reading the task's runtime spec: no root, process or linux section")
	}
	iso.ReadOnlyRoot = spec.Root.Readonly
	iso.NoNewPrivileges = spec.Process.NoNewPrivileges
	iso.HostUID, iso.HostGID = spec.Process.User.UID, spec.Process.User.GID
	iso.Network = "host"
	for _, ns := range spec.Linux.Namespaces {
		switch {
		case ns.Type == specs.NetworkNamespace && ns.Path == "":
			iso.Network = "none" // a new namespace: only its own loopback
		case ns.Type == specs.NetworkNamespace:
			iso.Network = "shared:" + ns.Path
		case ns.Type == specs.UserNamespace:
			// Mapped ids: the host ids are the mapping's, which this record does not describe yet.
			if hostID, ok := mapID(spec.Linux.UIDMappings, spec.Process.User.UID); ok {
				iso.HostUID = hostID
			}
			if hostID, ok := mapID(spec.Linux.GIDMappings, spec.Process.User.GID); ok {
				iso.HostGID = hostID
			}
		}
	}
	iso.Capabilities = []string{}
	if c := spec.Process.Capabilities; c != nil {
		for _, set := range [][]string{c.Bounding, c.Effective, c.Inheritable, c.Permitted, c.Ambient} {
			iso.Capabilities = append(iso.Capabilities, set...)
		}
		slices.Sort(iso.Capabilities)
		iso.Capabilities = slices.Compact(iso.Capabilities)
	}
	if spec.Linux.Seccomp != nil {
		profile, err := json.Marshal(spec.Linux.Seccomp)
		if err != nil {
			return iso, err
		}
		iso.SeccompProfile = provenance.DigestSet(digest.FromBytes(profile))
	}
	if r := spec.Linux.Resources; r != nil {
		if r.Memory != nil && r.Memory.Limit != nil {
			iso.MemoryBytes = *r.Memory.Limit
		}
		if r.Pids != nil && r.Pids.Limit != nil {
			iso.Pids = *r.Pids.Limit
		}
	}
	return iso, nil
}

// mapID maps a container id to its host id through an id mapping.
func mapID(mappings []specs.LinuxIDMapping, id uint32) (uint32, bool) {
	for _, m := range mappings {
		if id >= m.ContainerID && id-m.ContainerID < m.Size {
			return m.HostID + id - m.ContainerID, true
		}
	}
	return 0, false
}

// withSettings adds the control plane's own settings for a task to what its runtime spec says.
func withSettings(iso provenance.TaskIsolation, runtimeName, runtimeVersion string, disk int64, timeout time.Duration) provenance.TaskIsolation {
	iso.Runtime, iso.RuntimeVersion = runtimeName, runtimeVersion
	iso.DiskBytes = disk
	iso.TimeoutSeconds = int64(timeout / time.Second)
	return iso
}
