package pipeline

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadFifoDoesNotBlock: a fifo where the pipeline file is expected (ssf.yaml planted in an untrusted checkout)
// is refused as empty at once; a plain open would block until a writer came, which none does.
func TestLoadFifoDoesNotBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssf.yaml")
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Load(path); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "empty") {
			t.Fatalf("Load of a fifo: %v, want an empty-file error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Load blocked on a fifo with no writer")
	}
}
