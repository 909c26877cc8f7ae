package verify_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/verify"
)

// TestReadBundlePipes: a named pipe with no writer (swapped into an attestations directory after it was listed)
// is read as empty at once instead of blocking ssf verify for ever; an anonymous pipe with a writer, as
// --bundle <(...) gives one, is still read whole.
func TestReadBundlePipes(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "provenance.sigstore.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		b, err := verify.ReadBundle(fifo)
		if err == nil && len(b) != 0 {
			err = fmt.Errorf("read %d bytes", len(b))
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ReadBundle(a fifo without a writer): %v", err)
		}
	case <-time.After(30 * time.Second): // a guard only: the read returns at once
		t.Fatal("ReadBundle blocked on a fifo without a writer")
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`)
	go func() {
		for _, c := range want { // byte by byte: the reader waits for data, not only for what is already there
			w.Write([]byte{c})
		}
		w.Close()
	}()
	got, err := verify.ReadBundle(fmt.Sprintf("/proc/self/fd/%d", r.Fd()))
	if err != nil || string(got) != string(want) {
		t.Errorf("ReadBundle(a pipe) = %q, %v; want %q", got, err, want)
	}
}
