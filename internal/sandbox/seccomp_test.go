package sandbox

import (
	"runtime"
	"strings"
	"testing"
)

// TestSeccompRules checks the filter's rules one by one, each with a call whose arguments the kernel would refuse
// with another errno: EPERM from a call that lacks a capability anyway would pass whether or not the rule exists.
func TestSeccompRules(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the probe's raw syscall numbers are for amd64")
	}
	rootfs := busyboxRootfs(t)
	r, err := NewRunc("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Seccomp() {
		t.Skip("runc was built without seccomp")
	}
	buildProbe(t, rootfs, "sysprobe", runtime.GOARCH, "sysprobe")
	ctr := startContainer(t, Config{Rootfs: rootfs})
	const eperm, enosys = "errno=1", "errno=38"
	tests := []probeCase{
		{"mount is denied (the kernel says EFAULT)", "mount", eperm},
		{"ptrace is denied (the kernel says ESRCH)", "ptrace", eperm},
		{"clone3 is ENOSYS (the kernel says EINVAL)", "clone3", enosys},
	}
	// clone may create no namespace: a user namespace would give the step a new set of capabilities.
	for _, ns := range []string{"newuser", "newns", "newpid", "newnet", "newipc", "newuts", "newcgroup", "newtime"} {
		tests = append(tests, probeCase{"clone with CLONE_" + strings.ToUpper(ns) + " is denied (the kernel says EINVAL)", ns, eperm})
	}
	runSockprobe(t, ctr, "/bin/sysprobe", tests)
}
