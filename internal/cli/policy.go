package cli

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	ssfhome "github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/policy"
)

func newPolicyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "The Rego policy set of the factory's gates: init (write the default), test (run its unit tests)",
		Long: `The factory's policy set: Rego files in a directory ($SSF_HOME/policy by default), one package per gate
(ssf.build, ssf.deps, ssf.publish, ssf.verify, ssf.deploy), each a set deny of messages. Any message rejects, and
every message is shown. Policies cannot reach the network (http.send and net.lookup_ip_addr are refused when the
set is compiled). See docs/policy.md for every gate's input and the default rules.`,
	}
	c.AddCommand(newPolicyInitCmd(), newPolicyTestCmd())
	return c
}

// policyDir is DIR when given, else $SSF_HOME/policy.
func policyDir(a []string) (string, error) {
	if len(a) == 1 {
		return a[0], nil
	}
	l, err := ssfhome.Default()
	if err != nil {
		return "", err
	}
	return l.Policy(), nil
}

func newPolicyInitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "init [DIR]",
		Short: "Write the default policy set into DIR (default $SSF_HOME/policy); never overwrites",
		Long: `Write the default policy set, one file per gate and its Rego unit tests, into DIR (default
$SSF_HOME/policy), which is created if missing. Nothing is overwritten: if any of the files exists, nothing is
written and ssf exits 2. Edit the files, then check them with ssf policy test.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			dir, err := policyDir(a)
			if err != nil {
				return err
			}
			written, err := policy.WriteDefault(dir)
			if errors.Is(err, policy.ErrExists) {
				return &usageError{err}
			}
			if err != nil {
				return err
			}
			for _, p := range written {
				fmt.Fprintln(cmd.OutOrStdout(), p)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote the default policy set (%d files, digest %s); run: ssf policy test %s\n",
				len(written), policy.Digest(policy.DefaultFiles()), dir)
			return nil
		},
	}
}

func newPolicyTestCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "test [DIR]",
		Short: "Run the Rego unit tests of the policy set in DIR (default $SSF_HOME/policy)",
		Long: `Compile the policy set in DIR (default $SSF_HOME/policy) as the gates do, its *_test.rego files
included, and run its unit tests (rules named test_*). Each test is printed as PASS or FAIL with its package,
name and file:line. Exit status: 0 all passed, 1 a test failed or none was found, 2 the set does not compile or
DIR is not a directory.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if timeout <= 0 {
				return usagef("--timeout %s: must be positive", timeout)
			}
			dir, err := policyDir(a)
			if err != nil {
				return err
			}
			// A DIR that is missing or not a directory is bad input (exit 2), as for --policy elsewhere; it was
			// exit 1, the status of a failed test.
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				return usagef("policy set %q is not a directory: give the directory of the set's .rego files (`ssf policy init DIR` writes the default set)", dir)
			}
			results, err := policy.Test(cmd.Context(), dir, timeout)
			var le *policy.LoadError
			if errors.As(err, &le) {
				return &usageError{err}
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			failed := 0
			for _, r := range results {
				verdict := "PASS"
				if !r.Pass {
					verdict, failed = "FAIL", failed+1
				}
				fmt.Fprintf(out, "%s %s.%s (%s)", verdict, r.Package, r.Name, r.Location)
				if r.Err != nil {
					fmt.Fprintf(out, ": %s", printable(r.Err.Error()))
				}
				fmt.Fprintln(out)
			}
			switch {
			case len(results) == 0:
				return fmt.Errorf("policy %s has no tests: write rules named test_* in files named *_test.rego", dir)
			case failed > 0:
				return fmt.Errorf("%d of %d policy tests failed", failed, len(results))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d policy tests passed\n", len(results))
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long one test may run")
	return cmd
}
