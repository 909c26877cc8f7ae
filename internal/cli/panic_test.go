package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// A bug that panics inside a command still ends as an error: exit 1, the message on stderr, and with --output
// json exactly one JSON error object on stdout, so a script never sees an empty or half-written stdout.
func TestPanicBecomesError(t *testing.T) {
	root := newRootCmd()
	boom := &cobra.Command{Use: "boom", RunE: func(*cobra.Command, []string) error {
		var s []int
		return fmt.Errorf("unreachable: %d", s[len(s)+1]) // index out of range
	}}
	addOutputFlag(boom)
	root.AddCommand(boom)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), root, []string{"boom", "--output", "json"}, &stdout, &stderr)
	if code != ExitFailed {
		t.Fatalf("exit %d; want %d\nstderr: %s", code, ExitFailed, stderr.String())
	}
	var doc jsonError
	dec := json.NewDecoder(&stdout)
	if err := dec.Decode(&doc); err != nil || dec.More() {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout.String())
	}
	if !strings.Contains(doc.Error, "internal error") || !strings.Contains(doc.Error, "index out of range") || doc.ExitCode != ExitFailed {
		t.Errorf("error object = %+v; want the internal error and exit code 1", doc)
	}
	if !strings.Contains(stderr.String(), "ssf: error: internal error") || !strings.Contains(stderr.String(), "panic_test.go") {
		t.Errorf("stderr = %q; want the error and the stack that shows where", stderr.String())
	}
}
