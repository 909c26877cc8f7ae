package sandbox

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// buildSockprobe compiles testdata/sockprobe as a static binary for goarch and puts it in the rootfs as
// /bin/name. It returns the host path of the binary.
func buildSockprobe(t *testing.T, rootfs, goarch, name string) string {
	t.Helper()
	return buildProbe(t, rootfs, "sockprobe", goarch, name)
}

// buildProbe compiles testdata/probe as a static binary for goarch and puts it in the rootfs as /bin/name.
func buildProbe(t *testing.T, rootfs, probe, goarch, name string) string {
	t.Helper()
	goBin, err := exec.LookPath("go") // go test puts its own GOROOT/bin first in PATH
	if err != nil {
		t.Skip("go not in PATH: cannot build the socket probe")
	}
	out := filepath.Join(t.TempDir(), name)
	build := exec.Command(goBin, "build", "-o", out, "./testdata/"+probe)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s for %s: %v\n%s", probe, goarch, err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", name), data, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

type probeCase struct {
	name string
	arg  string // sockprobe argument: a family number or tcp:HOST:PORT
	want string // what sockprobe prints after the argument
}

// runSockprobe runs the probe once with every case's argument and checks its output line by line.
func runSockprobe(t *testing.T, ctr *Container, probe string, tests []probeCase) {
	t.Helper()
	args := []string{probe}
	for _, tt := range tests {
		args = append(args, tt.arg)
	}
	var out bytes.Buffer
	code, err := ctr.Exec(context.Background(), args, &out)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("%s exit code = %d, output:\n%s", probe, code, out.String())
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != len(tests) {
		t.Fatalf("%s printed %d lines, want %d:\n%s", probe, len(got), len(tests), out.String())
	}
	for i, tt := range tests {
		if want := tt.arg + " " + tt.want; got[i] != want {
			t.Errorf("%s: got %q, want %q", tt.name, got[i], want)
		}
	}
}

// TestSocketFamilies checks that a step can open sockets only in the families it needs. The network namespace
// does not confine the others: AF_VSOCK shares the host's port space and reaches the hypervisor, and the rest are
// kernel attack surface a build has no use for.
func TestSocketFamilies(t *testing.T) {
	rootfs := busyboxRootfs(t)
	r, err := NewRunc(testRuntime, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Seccomp() {
		t.Skip("runc was built without seccomp")
	}
	buildSockprobe(t, rootfs, runtime.GOARCH, "sockprobe")
	var probe386 string
	if runtime.GOARCH == "amd64" {
		probe386 = buildSockprobe(t, rootfs, "386", "sockprobe386")
	}

	// A host listener on loopback: the container's own loopback must not reach it.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	refused := []probeCase{
		{"AF_VSOCK", "40", "errno=97"},
		{"AF_ALG", "38", "errno=97"},
		{"AF_PACKET", "17", "errno=97"},
		{"AF_KEY", "15", "errno=97"},
		{"AF_TIPC", "30", "errno=97"},
		{"AF_XDP", "44", "errno=97"},
		{"AF_BLUETOOTH", "31", "errno=97"},
		{"AF_UNSPEC", "0", "errno=97"},
		{"family above AF_MAX", "4096", "errno=97"},
	}
	ctr := startContainer(t, Config{Rootfs: rootfs})

	t.Run("native", func(t *testing.T) {
		tests := append([]probeCase{
			{"AF_UNIX", "1", "ok"},
			{"AF_INET", "2", "ok"},
			{"AF_INET6", "10", "ok"},
			{"AF_NETLINK", "16", "ok"},
			// The kernel reads the family as an int and drops the upper half of the register; seccomp compares
			// all 64 bits, so the filter must not let the high bits smuggle AF_VSOCK past it.
			{"AF_VSOCK with high bits set", strconv.FormatUint(1<<32|40, 10), "errno=97"},
			{"TCP to a host port on 127.0.0.1", "tcp:" + ln.Addr().String(), "errno=111"}, // ECONNREFUSED
		}, refused...)
		runSockprobe(t, ctr, "/bin/sockprobe", tests)
	})

	// A 32-bit x86 process can also reach socket through socketcall, which passes the family in memory where
	// seccomp cannot look. libseccomp applies the socket rules to socketcall(SYS_SOCKET) too, and since it cannot
	// read the family there the call is refused for every family: fail closed. Go's 386 port uses socketcall.
	t.Run("i386 socketcall", func(t *testing.T) {
		if probe386 == "" {
			t.Skip("only on amd64")
		}
		if err := exec.Command(probe386).Run(); err != nil {
			t.Skipf("the kernel cannot run 32-bit x86 programs: %v", err)
		}
		runSockprobe(t, ctr, "/bin/sockprobe386", refused)
	})
}
