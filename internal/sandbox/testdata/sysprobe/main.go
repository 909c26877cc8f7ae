// Command sysprobe makes system calls that the sandbox's seccomp filter refuses, with arguments the kernel itself
// would reject with a different errno, so its output tells the filter's EPERM (or ENOSYS) apart from the kernel's
// own answer: a probe that only saw EPERM could not tell whether the filter or the missing capability refused.
// It runs inside a task container in seccomp_test.go, which builds it as a static binary.
//
// Each argument names a probe; one line is printed per argument: "NAME ok" or "NAME errno=N" ("ptys opened=N" for
// the pseudo-terminal count).
package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// Clone flags, from linux/sched.h.
const (
	cloneThread = 0x00010000
	cloneFS     = 0x00000200
)

var namespaces = map[string]uintptr{
	"newns": 0x00020000, "newcgroup": 0x02000000, "newuts": 0x04000000, "newipc": 0x08000000,
	"newuser": 0x10000000, "newpid": 0x20000000, "newnet": 0x40000000, "newtime": 0x00000080,
}

func main() {
	for _, arg := range os.Args[1:] {
		if arg == "ptys" {
			// Not a system call: how many pseudo-terminals the step can hold at once.
			n := 0
			for ; n < 4096; n++ {
				if _, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0); err != nil {
					break
				}
			}
			fmt.Printf("ptys opened=%d\n", n)
			continue
		}
		var errno syscall.Errno
		switch arg {
		case "mount":
			// An unreadable file system type: EFAULT from the kernel, before any permission check.
			_, _, errno = syscall.RawSyscall6(syscall.SYS_MOUNT, 1, 1, 1, 0, 0, 0)
		case "ptrace":
			// A process that does not exist: ESRCH from the kernel.
			_, _, errno = syscall.RawSyscall6(syscall.SYS_PTRACE, syscall.PTRACE_PEEKDATA, 0x7ffffff0, 0, 0, 0, 0)
		case "modify_ldt":
			// Reading zero bytes of the LDT: the kernel answers 0 (success).
			_, _, errno = syscall.RawSyscall(syscall.SYS_MODIFY_LDT, 0, 0, 0)
		case "migrate_pages":
			// No node masks for this process: the kernel answers 0 (no page moved) or EINVAL.
			_, _, errno = syscall.RawSyscall6(syscall.SYS_MIGRATE_PAGES, 0, 0, 0, 0, 0, 0)
		case "io_setup":
			// One event: the kernel answers 0 (and the context is destroyed again).
			var ctx uint64
			_, _, errno = syscall.RawSyscall(syscall.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&ctx)), 0)
			if errno == 0 {
				syscall.RawSyscall(syscall.SYS_IO_DESTROY, uintptr(ctx), 0, 0)
			}
		case "uevent", "netlink-route":
			// A netlink socket for the kernel's device events, or for routes: the kernel makes either.
			protocol := 15
			if arg == "netlink-route" {
				protocol = 0
			}
			if fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM, protocol); err != nil {
				errno = err.(syscall.Errno)
			} else {
				syscall.Close(fd)
			}
		case "uevent-high":
			// The same protocol with a bit set above the 32 the kernel reads: a filter that compared all 64 bits
			// would let it through.
			fd, _, e := syscall.RawSyscall(syscall.SYS_SOCKET, syscall.AF_NETLINK, syscall.SOCK_DGRAM, 1<<32|15)
			if errno = e; e == 0 {
				syscall.Close(int(fd))
			}
		case "clone3":
			// A zero-sized argument: EINVAL from the kernel.
			_, _, errno = syscall.RawSyscall(435, 0, 0, 0)
		default:
			flag, ok := namespaces[arg]
			if !ok {
				fmt.Fprintf(os.Stderr, "sysprobe: unknown probe %q\n", arg)
				os.Exit(2)
			}
			// CLONE_THREAD without CLONE_SIGHAND is invalid: EINVAL from the kernel before it looks at the
			// namespace flags, so no process is ever created.
			_, _, errno = syscall.RawSyscall6(syscall.SYS_CLONE, flag|cloneThread, 0, 0, 0, 0, 0)
		}
		if errno == 0 {
			fmt.Printf("%s ok\n", arg)
		} else {
			fmt.Printf("%s errno=%d\n", arg, int(errno))
		}
	}
}
