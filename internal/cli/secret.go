package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ssf-dev/ssf/internal/factory"
	"github.com/ssf-dev/ssf/internal/secret"
)

func newSecretCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "secret",
		Short: "The factory's task secrets: set (value on stdin), list (names only), rm",
		Long: `The factory's task secrets, encrypted at rest in $SSF_HOME/secrets with a key only the control plane
reads ($SSF_HOME/keys/secrets.key). A task that lists a secret (secrets: [NAME] in ssf.yaml) gets its value as
the file /run/secrets/NAME, on a tmpfs of its own, readable only by the task's user; never as an environment
variable. The provenance names the secret, never its value, and task logs are redacted of it. See docs/secrets.md.`,
	}
	c.AddCommand(newSecretSetCmd(), newSecretListCmd(), newSecretRmCmd())
	return c
}

func newSecretSetCmd() *cobra.Command {
	var raw bool
	cmd := &cobra.Command{
		Use:   "set NAME",
		Short: "Set a secret from stdin (one trailing newline is dropped unless --raw); replaces an earlier value",
		Long: `Set the secret NAME to the bytes read from stdin, for example:

  printf %s "$NPM_TOKEN" | ssf secret set NPM_TOKEN
  ssf secret set DEPLOY_KEY --raw < deploy_key

The value is never taken from the command line, where other users and the shell's history see it. NAME is a
letter followed by at most 63 letters, digits, '_' or '-'. The value must be 4 bytes to 64 KiB: logs are redacted
of it, which a shorter value would make useless. One trailing newline (as echo adds) is dropped; --raw keeps the
bytes exactly. At a terminal, ssf asks for the value (one line) and does not show it as it is typed.`,
		Args: func(cmd *cobra.Command, a []string) error {
			if len(a) > 1 {
				// Never quoted back: the extra argument is most likely the value itself.
				return &usageError{fmt.Errorf("ssf secret set takes only NAME, got %d arguments: the value is read from stdin, never from the command line, where ps and the shell's history keep it (if that was the value, set it again from stdin and consider the old one seen): printf %%s \"$VALUE\" | ssf secret set NAME", len(a))}
			}
			return args(cobra.ExactArgs(1))(cmd, a)
		},
		RunE: func(cmd *cobra.Command, a []string) error {
			name := a[0]
			if err := secret.CheckName(name); err != nil {
				return &usageError{err}
			}
			var value []byte
			var err error
			if f, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				// Typed at a terminal: prompt, rather than seem to hang, and do not echo the value on the screen.
				fmt.Fprintf(cmd.ErrOrStderr(), "ssf: value of secret %s (one line, not shown; pipe in a value of several lines): ", name)
				value, err = readHidden(cmd.Context(), int(f.Fd()))
				fmt.Fprintln(cmd.ErrOrStderr())
			} else {
				value, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), secret.MaxSize+2))
			}
			if err != nil {
				return fmt.Errorf("reading the value of secret %q from stdin: %w", name, err)
			}
			if !raw {
				value = bytes.TrimSuffix(value, []byte("\n"))
				value = bytes.TrimSuffix(value, []byte("\r"))
			}
			if err := secret.CheckValue(value); err != nil {
				return &hintError{err: &usageError{fmt.Errorf("secret %q: %w", name, err)},
					hint: fmt.Sprintf("the value is read from stdin, 4 bytes to 64 KiB: printf %%s \"$VALUE\" | ssf secret set %s (or < FILE, with --raw to keep its bytes exactly)", name)}
			}
			h, err := initialisedHome()
			if err != nil {
				return err
			}
			if err := h.Secrets().Set(name, value); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "ssf: secret %s set (%d bytes); tasks that list it get /run/secrets/%s\n", name, len(value), name)
			return nil
		},
	}
	cmd.Flags().BoolVar(&raw, "raw", false, "keep the value's bytes exactly (no trailing newline dropped)")
	return cmd
}

func newSecretListCmd() *cobra.Command {
	var output *outputFormat
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the secrets' names and when each was set (never their values)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := initialisedHome()
			if err != nil {
				return err
			}
			list, err := h.Secrets().List()
			if err != nil {
				return err
			}
			if *output == outputJSON {
				if list == nil {
					list = []secret.Info{}
				}
				return writeJSON(cmd.OutOrStdout(), struct {
					Secrets []secret.Info `json:"secrets"`
				}{list})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSET")
			for _, s := range list {
				if s.Error != "" {
					fmt.Fprintf(tw, "%s\tunreadable: %s\n", s.Name, printable(s.Error))
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\n", s.Name, s.SetAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	output = addOutputFlag(cmd)
	return cmd
}

func newSecretRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a secret (builds of tasks that list it then fail before any task runs)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := secret.CheckName(a[0]); err != nil {
				return &usageError{err}
			}
			h, err := initialisedHome()
			if err != nil {
				return err
			}
			err = h.Secrets().Remove(a[0])
			if errors.Is(err, secret.ErrNotFound) {
				return &usageError{fmt.Errorf("secret %q is not set (`ssf secret list` shows what is)", a[0])}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "ssf: secret %s removed\n", a[0])
			return nil
		},
	}
}

// initialisedHome is the factory home, refused (exit 2, saying to run `ssf init`) when it is not initialised: a
// secret's key is never made, nor an empty list or "not set" answered, in a directory that is not a factory.
func initialisedHome() (factory.Home, error) {
	h, err := home()
	if err != nil {
		return h, err
	}
	if _, err := h.Config(); err != nil {
		return h, err
	}
	return h, nil
}

// readHidden reads one line from the terminal fd without echoing it. Ctrl-C (which ssf catches to cancel its
// context) ends the read at once, with the terminal's echo restored, rather than after the next Enter.
func readHidden(ctx context.Context, fd int) ([]byte, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return nil, err
	}
	type read struct {
		v   []byte
		err error
	}
	done := make(chan read, 1)
	go func() {
		v, err := term.ReadPassword(fd)
		done <- read{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		term.Restore(fd, state) // the process ends now: ReadPassword would restore it only on its return
		return nil, errors.New("interrupted: no secret was set")
	}
}
