// Command tcpprobe measures how much TCP send-buffer memory a step can hold: it connects N loopback TCP pairs,
// fills each sender's buffer (non-blocking writes until EAGAIN) and never reads, then prints "queued=MiB". It runs
// inside a task container in limits_test.go, which builds it as a static binary.
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

func main() {
	n, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "usage: tcpprobe CONNECTIONS")
		os.Exit(2)
	}
	l, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	check(err)
	check(syscall.Bind(l, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	check(syscall.Listen(l, n))
	addr, err := syscall.Getsockname(l)
	check(err)
	buf := make([]byte, 1<<20)
	total := 0
	for range n {
		c, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		check(err)
		check(syscall.Connect(c, addr))
		_, _, err = syscall.Accept(l) // kept open and never read
		check(err)
		check(syscall.SetNonblock(c, true))
		for {
			w, err := syscall.Write(c, buf)
			if w > 0 {
				total += w
			}
			if err != nil || w <= 0 {
				break
			}
		}
	}
	fmt.Printf("queued=%d\n", total>>20)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcpprobe:", err)
		os.Exit(1)
	}
}
