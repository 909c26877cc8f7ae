package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A --key that is a fifo (mode 0600, so the mode check passes) is refused as not a regular file, at once: opening
// it for reading used to wait for a writer for ever, and ssf catches SIGTERM, so only SIGKILL ended it.
func TestPipelineSignKeyFifo(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "ssf.yaml")
	if err := os.WriteFile(file, []byte("version: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(tmp, "key.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"pipeline", "sign", file, "--key", fifo}, {"pipeline", "fingerprint", fifo}} {
		r := ssf(t, tmp, args...)
		if r.code != 2 || !strings.Contains(r.stderr, fifo+" is not a regular file") {
			t.Errorf("ssf %s: exit %d, want 2 naming the fifo as not a regular file\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	if _, err := os.Stat(file + ".sig"); !os.IsNotExist(err) {
		t.Errorf("%s.sig written with no key read: %v", file, err)
	}
}
