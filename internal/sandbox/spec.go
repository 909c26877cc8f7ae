package sandbox

import (
	"fmt"
	"path"
	"runtime"
	"slices"
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Mount is a host directory made visible inside the container.
type Mount struct {
	Source      string // host path
	Destination string // absolute path inside the container
	ReadOnly    bool
}

// Config describes one task container. Everything not in it is fixed by the sandbox: no network, no
// capabilities, read-only root, no_new_privs, masked /proc paths and seccomp.
type Config struct {
	ID       string   // unique container ID
	Rootfs   string   // unpacked builder image; mounted read-only
	Mounts   []Mount  // extra bind mounts (workspace, outputs, inputs, tmp)
	Env      []string // KEY=VALUE, complete: nothing is inherited from the host
	Cwd      string
	UID, GID uint32
	Memory   int64 // bytes; 0 means DefaultMemory
	Pids     int64 // max processes; 0 means DefaultPids
	Hostname string
	// CgroupParent is a BuildCgroup's Name: the container's cgroup is created in it, under the build's total
	// memory and process limits. Empty: runc's default place.
	CgroupParent string
	// Disk, when set, is the task's size-limited file system holding its writable mounts; a step that fails
	// while it is full is reported as having hit the disk limit.
	Disk *Disk
}

// Limits applied when a Config leaves them unset.
const (
	DefaultMemory int64 = 4 << 30
	DefaultPids   int64 = 1024
)

// The /proc and /sys paths hidden from the container: the list runc's own default spec masks, and the power
// meters Docker and containerd mask too (/sys/devices/virtual/powercap: Intel RAPL energy counters, a side
// channel on the host's other work, CVE-2020-8694: kernels without its fix show them to anyone), and the host's
// virtual block devices (/sys/devices/virtual/block, which /sys/block and /sys/class/block point into): every
// loop device's backing_file named the disk image, and so the work directory and task name, of each task
// running on the host. A path the host lacks is skipped by the runtime.
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi", "/sys/devices/virtual/powercap",
		"/sys/devices/virtual/block",
	}
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// maxTCPBuffers bounds the TCP buffer memory of a task's step on cgroup v1, where socket memory is not part of
// the memory limit: the kernel's TCP memory (net.ipv4.tcp_mem) is shared by the whole host, and one step's unread
// loopback connections held 186 MiB of it outside every limit. A build has no network; its loopback traffic
// (test servers) keeps little in flight. cgroup v2 counts socket memory in the memory limit.
const maxTCPBuffers int64 = 64 << 20

// maxPtys bounds the pseudo-terminals a step may hold. The kernel's limit (kernel.pty.max) is host-wide: without
// a bound of its own, one step took all 3,071 that the host's containers share.
const maxPtys = 64

// deniedSyscalls fail with EPERM. The container runs with no capabilities, so most of these fail anyway; the
// filter is a second wall for kernel surfaces that have been used to escape containers (keyrings, BPF,
// io_uring, user namespaces, new mount APIs, ptrace). Some need no capability at all and are denied because a
// build has no use for them: modify_ldt (16-bit segments, the subject of several kernel memory-safety bugs) and
// the NUMA calls (mbind, migrate_pages, move_pages, set_mempolicy, get_mempolicy).
var deniedSyscalls = []string{
	"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module", "fanotify_init",
	"finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "get_mempolicy", "init_module",
	"io_uring_enter", "io_uring_register", "io_uring_setup", "ioperm", "iopl", "kcmp", "kexec_file_load",
	"kexec_load", "keyctl", "lookup_dcookie", "mbind", "migrate_pages", "modify_ldt", "mount", "mount_setattr", "move_mount", "move_pages",
	"name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open", "personality",
	"pivot_root", "process_vm_readv", "process_vm_writev", "ptrace", "query_module", "quotactl", "quotactl_fd",
	"reboot", "request_key", "set_mempolicy", "setns", "settimeofday", "stime", "swapoff", "swapon", "syslog",
	"umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vhangup",
}

// ociSpec turns a Config into the runtime-spec document runc reads. args is the container's init process.
func ociSpec(c Config, args []string, seccomp bool) (*specs.Spec, error) {
	if !path.IsAbs(c.Cwd) {
		return nil, fmt.Errorf("container cwd %q is not absolute", c.Cwd)
	}
	memory, pids := c.Memory, c.Pids
	if memory == 0 {
		memory = DefaultMemory
	}
	if pids == 0 {
		pids = DefaultPids
	}
	umask := uint32(0o022)
	s := &specs.Spec{
		// runc 1.1 (Debian 12) implements runtime-spec 1.0.2; nothing below needs a later version.
		Version:  "1.0.2",
		Root:     &specs.Root{Path: c.Rootfs, Readonly: true},
		Hostname: c.Hostname,
		Process: &specs.Process{
			Args:            args,
			Env:             c.Env,
			Cwd:             c.Cwd,
			User:            specs.User{UID: c.UID, GID: c.GID, Umask: &umask},
			Capabilities:    &specs.LinuxCapabilities{}, // every set empty
			NoNewPrivileges: true,
			// Limits not listed here are inherited from ssf, so the two that would let a step take the CPUs
			// from the host (real-time scheduling, a nice value below 0) are pinned to none whoever started ssf.
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 4096},
				{Type: "RLIMIT_CORE", Hard: 0, Soft: 0},
				{Type: "RLIMIT_RTPRIO", Hard: 0, Soft: 0},
				{Type: "RLIMIT_NICE", Hard: 0, Soft: 0},
			},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", fmt.Sprintf("max=%d", maxPtys)}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			// A new network namespace holds only its own loopback: no route to the host or anything else.
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				Memory:  &specs.LinuxMemory{Limit: &memory},
				Pids:    &specs.LinuxPids{Limit: &pids},
			},
			MaskedPaths:   maskedPaths,
			ReadonlyPaths: readonlyPaths,
		},
	}
	mounts := append([]Mount(nil), c.Mounts...)
	// Parents before children, so /inputs is mounted before /inputs/build.
	sort.SliceStable(mounts, func(i, j int) bool { return mounts[i].Destination < mounts[j].Destination })
	for _, m := range mounts {
		if !path.IsAbs(m.Destination) || path.Clean(m.Destination) != m.Destination {
			return nil, fmt.Errorf("mount destination %q is not a clean absolute path", m.Destination)
		}
		opts := []string{"rbind", "nosuid", "nodev"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: opts})
	}
	if seccomp {
		s.Linux.Seccomp = seccompProfile()
	}
	return s, nil
}

func seccompProfile() *specs.LinuxSeccomp {
	eperm := uint(1)
	var arches []specs.Arch
	switch runtime.GOARCH {
	case "amd64":
		arches = []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	case "arm64":
		arches = []specs.Arch{specs.ArchAARCH64, specs.ArchARM}
	}
	enosys := uint(38)
	rules := []specs.LinuxSyscall{
		{Names: deniedSyscalls, Action: specs.ActErrno, ErrnoRet: &eperm},
		// clone3 passes its flags in memory, where seccomp cannot look; ENOSYS makes libc fall back to clone.
		{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
		// Linux AIO contexts count against one host-wide limit (fs.aio-max-nr): a step took all 65,536 events,
		// so every other process on the host that uses AIO (databases, VMs) failed while it ran. ENOSYS, as on
		// a kernel built without AIO, which its users handle (glibc's POSIX AIO does not use it).
		{Names: []string{"io_setup"}, Action: specs.ActErrno, ErrnoRet: &enosys},
	}
	// clone may not create namespaces (a user namespace would hand the step a fresh set of capabilities).
	for _, flag := range namespaceFlags {
		rules = append(rules, specs.LinuxSyscall{
			Names: []string{"clone"}, Action: specs.ActErrno, ErrnoRet: &eperm,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: flag, ValueTwo: flag, Op: specs.OpMaskedEqual}},
		})
	}
	rules = append(rules, socketFamilyRules()...)
	// A netlink socket sees only the container's network namespace, except for the kernel's device events
	// (NETLINK_KOBJECT_UEVENT), which the kernel sends into every network namespace: a step heard each task disk
	// of every build on the host come and go. EPROTONOSUPPORT, as for a netlink protocol the kernel lacks; the two
	// conditions are on different arguments, which runc ANDs. The protocol is an int: only its low 32 bits are
	// compared, as the kernel reads only those (15 with a higher bit set got through a 64-bit comparison). The
	// family needs no mask: socketFamilyRules refuses any value above 16.
	eprotonosupport := uint(93)
	rules = append(rules, specs.LinuxSyscall{
		Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: &eprotonosupport,
		Args: []specs.LinuxSeccompArg{{Index: 0, Value: 16, Op: specs.OpEqualTo}, {Index: 2, Value: 0xffffffff, ValueTwo: 15, Op: specs.OpMaskedEqual}},
	})
	return &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: arches, Syscalls: rules}
}

// namespaceFlags are CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
// CLONE_NEWNET and CLONE_NEWTIME.
var namespaceFlags = []uint64{0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080}

// allowedSocketFamilies are the address families a step may open sockets in: AF_UNIX, AF_INET, AF_INET6, and
// AF_NETLINK, which tools use to list interfaces and which sees only the container's network namespace. The
// namespace does not confine the others: AF_VSOCK shares the host's port space and reaches the hypervisor and
// its guest agents, and AF_PACKET, AF_ALG, AF_KEY, AF_TIPC, AF_XDP and the rest are kernel code a build has no
// use for.
var allowedSocketFamilies = []uint64{1, 2, 10, 16}

// socketFamilyRules make socket and socketpair fail with EAFNOSUPPORT, as for a family the kernel lacks, unless
// the family is allowed. The filter allows by default, so "not allowed" is spelled as one rule per family below
// the largest allowed one and one rule for every family above it. Each rule tests the family once: runc turns
// two conditions on the same argument into two rules that are ORed, so a range cannot be a single rule. The
// family is an int but seccomp compares all 64 bits of the register; a value with any upper bit set is above the
// largest family and is refused, so the kernel's truncation cannot smuggle a family in. On x86, libseccomp also
// applies these rules to the 32-bit socketcall(SYS_SOCKET), whose family is in memory where seccomp cannot look;
// there the call is refused for every family, so 32-bit programs that use socketcall (i386 glibc, Go's 386 port)
// cannot open sockets at all. That fails closed, which is the side to fail on.
func socketFamilyRules() []specs.LinuxSyscall {
	eafnosupport := uint(97)
	deny := func(op specs.LinuxSeccompOperator, family uint64) specs.LinuxSyscall {
		return specs.LinuxSyscall{
			Names: []string{"socket", "socketpair"}, Action: specs.ActErrno, ErrnoRet: &eafnosupport,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: family, Op: op}},
		}
	}
	highest := slices.Max(allowedSocketFamilies)
	var rules []specs.LinuxSyscall
	for family := range highest {
		if !slices.Contains(allowedSocketFamilies, family) {
			rules = append(rules, deny(specs.OpEqualTo, family))
		}
	}
	return append(rules, deny(specs.OpGreaterThan, highest))
}
