package cli

import (
	"bytes"
	"context"
	"syscall"
	"testing"
)

// closedPipe is stdout whose reader has gone away, as in `ssf builds list | head -1`.
type closedPipe struct{}

func (closedPipe) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// A reader that stops reading is not an error to report: nothing is printed, and the exit status is not success.
func TestBrokenPipeIsQuiet(t *testing.T) {
	var stderr bytes.Buffer
	code := Main(context.Background(), []string{"version"}, closedPipe{}, &stderr)
	if code != ExitFailed || stderr.Len() != 0 {
		t.Errorf("exit %d, stderr %q; want exit %d and nothing on stderr", code, stderr.String(), ExitFailed)
	}
}
