// Package cli holds ssf's cobra commands: flag parsing, messages for people, and exit codes. It holds no business
// logic; each command calls into the component packages. It must never print a secret, and never exit 0 when a
// check or build failed.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"syscall"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/factory"
	"github.com/ssf-dev/ssf/internal/pipeline"
)

// Exit statuses.
const (
	ExitOK     = 0
	ExitFailed = 1 // a build or a check failed
	ExitUsage  = 2 // bad input or usage
)

// usageError marks errors caused by how ssf was called.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return &usageError{fmt.Errorf(format, args...)} }

// Main runs ssf with args (without the program name) and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	silenceKlog()
	return run(ctx, newRootCmd(), args, stdout, stderr)
}

// run executes root with args, and reports a failure as Main promises: on stderr, as JSON on stdout when asked.
func run(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	// Only a write to stdout that found its reader gone ends quietly: any other broken pipe (a registry or a
	// sandbox closing a connection) is an error to report.
	out := &pipeWatch{w: stdout}
	stdout = out
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := execute(ctx, root, args, stderr)
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, syscall.EPIPE) && out.broken {
		// The reader of stdout went away (`ssf builds list | head`): what it wanted it got; say nothing, as the
		// shell's own tools do, but do not claim success either.
		return ExitFailed
	}
	if strings.HasPrefix(err.Error(), "unknown command ") {
		err = &usageError{err} // cobra has no error type for a misspelt command, and it is the caller's to fix
	}
	// Errors can quote what a registry, a source tree or a pipeline file said: escape it for the terminal.
	msg := printable(err.Error())
	fmt.Fprintf(stderr, "ssf: error: %s\n", msg)
	code := exitCode(err)
	var (
		h    *hintError
		te   *factory.TaskError
		u    *usageError
		hint string
	)
	switch {
	case errors.As(err, &h):
		hint = h.hint
	case errors.As(err, &te) && te.Hint != "":
		hint = printable(te.Hint)
	case code == ExitUsage && errors.As(err, &u):
		hint = "run `ssf help` or add --help to a command for its usage"
	}
	if hint != "" {
		fmt.Fprintf(stderr, "ssf: hint: %s\n", hint)
	}
	// With --output json, stdout always holds one JSON document, the failure too: a script parses it and need
	// not tell an empty stdout from a truncated one. The commands print nothing on stdout before they succeed.
	if wantsJSON(cmd) {
		j := jsonError{Error: msg, Hint: hint, ExitCode: code}
		if kept := (*factory.TaskError)(nil); errors.As(err, &kept) {
			j.Workspace = kept.Kept // --keep-workspace
		}
		if werr := writeJSON(stdout, j); werr != nil {
			fmt.Fprintf(stderr, "ssf: error: %s\n", werr)
		}
	}
	return code
}

// execute runs root. A panic in a command (a bug) becomes an error, after the stack is printed on stderr for the
// bug report, so that a run with --output json still leaves one JSON object on stdout and exits 1, not 2 with
// Go's trace. The deferred cleanups of the command (containers, temporary directories) have run by then. Only a
// panic on this goroutine can be caught; the commands keep their work on it or hand errors back to it.
func execute(ctx context.Context, root *cobra.Command, args []string, stderr io.Writer) (cmd *cobra.Command, err error) {
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(stderr, "ssf: panic: %v\n%s", p, debug.Stack())
			cmd, _, _ = root.Find(args) // its flags are parsed: a panic comes from RunE
			err = fmt.Errorf("internal error (a bug in ssf; please report it with the trace above): %v", p)
		}
	}()
	return root.ExecuteContextC(ctx)
}

// hintError carries what to do about an error, printed as an `ssf: hint:` line after it.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var (
		u  *usageError
		pe *pipeline.Error
		pp *pipeline.ParamError
		ie *factory.InputError
	)
	switch {
	case errors.As(err, &u), errors.As(err, &pe), errors.As(err, &pp), errors.As(err, &ie),
		errors.Is(err, factory.ErrNotInitialised):
		return ExitUsage
	}
	return ExitFailed
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "ssf",
		Short: "ssf is a secure software factory: hermetic builds with signed, verifiable provenance",
		Long: `ssf turns source code into artifacts plus signed evidence of how they were made.

Each task of a pipeline (ssf.yaml) runs in a fresh container with no network, a read-only root file system and
an unprivileged user. The factory itself, never the build, hashes the outputs and writes SLSA v1 provenance,
signed as a Sigstore bundle that ssf and stock cosign verify.

The factory's state lives in $SSF_HOME (default ~/.ssf). Start with:
  ssf init
  ssf builder import ROOTFS_DIR --name NAME     (or: ssf builder pull REGISTRY/REPO@sha256:HEX)
  ssf build --out OUT        (as root, in the project directory: -f ssf.yaml and --source . are the
                             defaults; OUT must be outside the source)
  ssf verify OUT/FILE --bundle OUT/attestations/provenance.sigstore.json --key KEY.pub
  ssf sbom OUT/FILE

Publish a build to an OCI registry (the embedded one: ssf registry serve) and verify it there:
  ssf publish OUT --to REGISTRY/REPO[:TAG]
  ssf verify REGISTRY/REPO:TAG --key KEY.pub     (or REGISTRY/REPO@sha256:HEX)

Exit status: 0 success, 1 a build or check failed, 2 bad input or usage.`,
		Version:       factory.Version,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetVersionTemplate("ssf {{.Version}}\n") // what `ssf version` prints
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(newInitCmd(), newKeysCmd(), newBuilderCmd(), newBuildCmd(), newPublishCmd(), newVerifyCmd(), newSBOMCmd(), newVersionCmd(), newRegistryCmd(), newBuildsCmd(), newLogsCmd(), newSecretCmd(), newCacheCmd(), newLogCmd())
	root.AddCommand(newTrustCmd(), newNodeCmd())
	root.AddCommand(newPolicyCmd())
	root.AddCommand(newPipelineCmd())
	root.AddCommand(newAdmissionCmd())
	return root
}

// args wraps a cobra argument validator so its errors exit with the usage status.
func args(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := v(cmd, a); err != nil {
			return &usageError{err}
		}
		return nil
	}
}

func home() (factory.Home, error) { return factory.DefaultHome() }

// printable escapes control and format characters but the newline: a hostile registry's status line such as
// "500 \x1b[2J\x1b[Hverified: ..." would otherwise clear the terminal and print a verdict ssf never reached.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteRune(r)
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// pipeWatch is stdout, noting whether a write to it failed because its reader went away.
type pipeWatch struct {
	w      io.Writer
	broken bool
}

func (p *pipeWatch) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if errors.Is(err, syscall.EPIPE) {
		p.broken = true
	}
	return n, err
}
