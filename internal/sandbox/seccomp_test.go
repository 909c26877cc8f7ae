package sandbox

import (
	"fmt"
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
	r, err := NewRunc(testRuntime, t.TempDir())
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
		{"io_setup is ENOSYS (the kernel makes a context)", "io_setup", enosys},
		{"netlink device events are refused (the kernel makes the socket)", "uevent", "errno=93"},
		{"netlink device events with a high bit set are refused too", "uevent-high", "errno=93"},
		{"netlink routes are allowed", "netlink-route", "ok"},
		{"modify_ldt is denied (the kernel reads 0 bytes)", "modify_ldt", eperm},
		{"migrate_pages is denied (the kernel says EINVAL or moves nothing)", "migrate_pages", eperm},
	}
	// clone may create no namespace: a user namespace would give the step a new set of capabilities.
	for _, ns := range []string{"newuser", "newns", "newpid", "newnet", "newipc", "newuts", "newcgroup", "newtime"} {
		tests = append(tests, probeCase{"clone with CLONE_" + strings.ToUpper(ns) + " is denied (the kernel says EINVAL)", ns, eperm})
	}
	runSockprobe(t, ctr, "/bin/sysprobe", tests)
}

// A step holds at most maxPtys pseudo-terminals: the kernel's pty limit is host-wide (kernel.pty.max, 4096 with
// 1024 kept for the host's own devpts), and a step could otherwise take every one that other containers on the
// host may use.
func TestPtysAreBounded(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the probe is built for amd64")
	}
	rootfs := busyboxRootfs(t)
	buildProbe(t, rootfs, "sysprobe", runtime.GOARCH, "sysprobe")
	ctr := startContainer(t, Config{Rootfs: rootfs})
	runSockprobe(t, ctr, "/bin/sysprobe", []probeCase{{"ptys", "ptys", fmt.Sprintf("opened=%d", maxPtys)}})
}
