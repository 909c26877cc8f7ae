package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/cobra"
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

// A broken pipe that is not stdout's (a registry or a sandbox closing a connection mid-write) is an error like
// any other: it is reported on stderr, not swallowed.
func TestBrokenPipeElsewhereIsReported(t *testing.T) {
	root := &cobra.Command{Use: "ssf", SilenceErrors: true, SilenceUsage: true,
		RunE: func(*cobra.Command, []string) error {
			return fmt.Errorf("pushing to the registry: write tcp 127.0.0.1:1->127.0.0.1:2: %w", syscall.EPIPE)
		}}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), root, nil, &stdout, &stderr)
	if code == ExitOK || !strings.Contains(stderr.String(), "pushing to the registry") {
		t.Errorf("exit %d, stderr %q; want the broken connection reported", code, stderr.String())
	}
}
