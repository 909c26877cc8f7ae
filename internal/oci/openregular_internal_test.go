package oci

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestOpenRegularRefusesASwapAfterTheChecks replaces a checked regular output, between OpenRegular's checks and
// its open, with a fifo (whose blocking open would hang the control plane until some writer came) and with a
// device (whose bytes are not the output's). Both must be refused as not regular files, without blocking.
func TestOpenRegularRefusesASwapAfterTheChecks(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(path string) error
	}{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"device", func(p string) error {
			if os.Geteuid() != 0 {
				t.Skip("making a device node needs root")
			}
			return syscall.Mknod(p, syscall.S_IFCHR|0o644, 1<<8|3) // /dev/null's numbers
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out.bin")
			if err := os.WriteFile(out, []byte("checked bytes"), 0o644); err != nil {
				t.Fatal(err)
			}
			// A writer of the fifo, should the open block, lets the unfixed open return so the test fails
			// instead of hanging; it is released at the end either way.
			done := make(chan struct{})
			t.Cleanup(func() {
				// Open for reading and writing, a fifo's open never blocks and releases a waiting writer.
				if f, err := os.OpenFile(out, os.O_RDWR|syscall.O_NONBLOCK, 0); err == nil {
					defer f.Close()
				}
				<-done
			})
			old := testHookChecked
			t.Cleanup(func() { testHookChecked = old })
			testHookChecked = func(string) {
				if err := os.Remove(out); err != nil {
					t.Error(err)
				}
				if err := tc.make(out); err != nil {
					t.Error(err)
				}
				go func() {
					defer close(done)
					if tc.name != "fifo" {
						return
					}
					if f, err := os.OpenFile(out, os.O_WRONLY, 0); err == nil {
						f.Close()
					}
				}()
			}
			r, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			f, err := OpenRegular(r, "out.bin")
			if err == nil {
				f.Close()
				t.Fatalf("OpenRegular opened the %s swapped in after its checks", tc.name)
			}
			var oe *OutputError
			if !errors.As(err, &oe) || oe.Err != nil || oe.Mode.IsRegular() {
				t.Fatalf("error %v (%#v), want an *OutputError naming the non-regular mode", err, oe)
			}
			if want := `output "out.bin" is not a regular file`; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
				t.Fatalf("error %q, want it to start %q", err, want)
			}
		})
	}
}
