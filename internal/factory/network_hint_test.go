package factory

import (
	"io"
	"testing"
)

// What common tools print when a task, which has no network, tries to fetch something marks the step's output
// as a network failure (so a failed step gets the hint about spec.dependencies); ordinary output does not.
func TestStepOutputNetworkErrors(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want bool
	}{
		{"go: github.com/x/y@v1.0.0: Get \"https://proxy.golang.org/...\": dial tcp: lookup proxy.golang.org on 127.0.0.1:53: read udp: connection refused\n", true},
		{"curl: (6) Could not resolve host: example.com\n", true},
		{"wget: bad address 'example.com'\n", true},
		{";; connection timed out; no servers could be reached\n", true},
		{"npm ERR! code ENOTFOUND\n", true},
		{"npm ERR! errno EAI_AGAIN\n", true},
		{"fatal: unable to access 'https://github.com/x/y/': Could not resolve host: github.com\n", true},
		{"Err:1 http://deb.debian.org/debian bookworm InRelease\n  Temporary failure resolving 'deb.debian.org'\n", true},
		{"connect: Network is unreachable\n", true},
		{"WARNING: Retrying ... Failed to establish a new connection: [Errno -3] Temporary failure in name resolution\n", true},
		{"partial line without newline: getaddrinfo EAI_AGAIN registry.npmjs.org", true},
		{"main.go:3:1: syntax error: non-declaration statement outside function body\n", false},
		{"--- FAIL: TestHost (0.00s)\n    host_test.go:9: got \"a\", want \"b\"\n", false},
	} {
		var logged int64
		w := (&lineLog{w: io.Discard}).prefixed("[t/s] ", io.Discard, &logged)
		w.Write([]byte(tc.out))
		w.Flush()
		if w.networkError != tc.want {
			t.Errorf("output %q: network error = %v, want %v", tc.out, w.networkError, tc.want)
		}
	}
}
