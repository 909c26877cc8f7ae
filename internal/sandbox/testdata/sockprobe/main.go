// Command sockprobe reports which socket address families a process may open. It runs inside a task container
// in socket_test.go, which builds it as a static binary.
//
// Each argument is an address family number, or tcp:HOST:PORT to try a TCP connection. One line is printed per
// argument: "FAMILY ok" or "FAMILY errno=N", and "tcp:HOST:PORT ok" or "tcp:HOST:PORT errno=N".
package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	for _, arg := range os.Args[1:] {
		var err error
		if addr, ok := strings.CutPrefix(arg, "tcp:"); ok {
			err = connectTCP(addr)
		} else {
			family, perr := strconv.Atoi(arg)
			if perr != nil {
				fmt.Fprintf(os.Stderr, "sockprobe: bad family %q\n", arg)
				os.Exit(2)
			}
			err = open(family)
		}
		var errno syscall.Errno
		switch {
		case err == nil:
			fmt.Printf("%s ok\n", arg)
		case errors.As(err, &errno):
			fmt.Printf("%s errno=%d\n", arg, int(errno))
		default:
			fmt.Printf("%s error=%v\n", arg, err)
		}
	}
}

// open asks for a socket of the family with a type the family supports, so that any failure comes from the
// sandbox rather than from a nonsensical request.
func open(family int) error {
	typ, proto := syscall.SOCK_DGRAM, 0
	switch family {
	case syscall.AF_UNIX, syscall.AF_INET, syscall.AF_INET6, 40: // AF_VSOCK
		typ = syscall.SOCK_STREAM
	case syscall.AF_ALG:
		typ = syscall.SOCK_SEQPACKET
	case syscall.AF_NETLINK, syscall.AF_PACKET, 44: // AF_XDP
		typ = syscall.SOCK_RAW
	case syscall.AF_KEY:
		typ, proto = syscall.SOCK_RAW, 2 // PF_KEY_V2
	case syscall.AF_TIPC:
		typ = syscall.SOCK_RDM
	case syscall.AF_BLUETOOTH:
		typ, proto = syscall.SOCK_RAW, 1 // BTPROTO_HCI
	}
	fd, err := syscall.Socket(family, typ, proto)
	if err != nil {
		return err
	}
	return syscall.Close(fd)
}

// connectTCP connects with the raw system calls, so the errno is reported as the kernel gave it.
func connectTCP(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		fmt.Fprintf(os.Stderr, "sockprobe: bad IPv4 address %q\n", addr)
		os.Exit(2)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return syscall.Connect(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
}
