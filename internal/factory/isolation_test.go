package factory

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// isolationOf reports what the spec says, not what the sandbox is meant to do: a spec that shares a network
// namespace, keeps capabilities or a writable root is recorded as such.
func TestIsolationOfReadsTheSpec(t *testing.T) {
	dir := t.TempDir()
	spec := `{"ociVersion":"1.2.0","root":{"path":"/r","readonly":false},
	  "process":{"user":{"uid":5,"gid":6},"cwd":"/","noNewPrivileges":false,
	    "capabilities":{"bounding":["CAP_SYS_ADMIN","CAP_CHOWN"],"effective":["CAP_CHOWN"]}},
	  "linux":{"namespaces":[{"type":"network","path":"/proc/1/ns/net"},{"type":"user"}],
	    "uidMappings":[{"containerID":0,"hostID":200000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":300000,"size":65536}],
	    "resources":{"memory":{"limit":1048576},"pids":{"limit":7}}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	iso, err := isolationOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	iso = withSettings(iso, "crun", "crun version 1.8", 1<<30, 90*time.Second)
	if iso.Network != "shared:/proc/1/ns/net" || iso.ReadOnlyRoot || iso.NoNewPrivileges || iso.HostUID != 200005 ||
		iso.HostGID != 300006 || !slices.Equal(iso.Capabilities, []string{"CAP_CHOWN", "CAP_SYS_ADMIN"}) ||
		iso.SeccompProfile != nil || iso.MemoryBytes != 1<<20 || iso.Pids != 7 || iso.DiskBytes != 1<<30 ||
		iso.TimeoutSeconds != 90 || iso.Runtime != "crun" || iso.RuntimeVersion != "crun version 1.8" {
		t.Errorf("isolationOf = %+v", iso)
	}
	if _, err := isolationOf(t.TempDir()); err == nil {
		t.Error("no config.json: no error")
	}
}
