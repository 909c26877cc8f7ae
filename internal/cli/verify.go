package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

func newVerifyCmd() *cobra.Command {
	var bundlePath, keyPath string
	var verbose bool
	var opts verify.Options
	cmd := &cobra.Command{
		Use:   "verify FILE --bundle BUNDLE --key KEY.pub",
		Short: "Verify a file against its signed provenance",
		Long: `Verify that BUNDLE is a Sigstore bundle signed by KEY.pub, that it holds SLSA v1 provenance, and that FILE's
sha256 is one of its subjects. --builder-id and --source-digest additionally pin the factory and the source
(ALG:VALUE, e.g. gitCommit:<sha1> or sha256:<hex>).

Exit status: 0 and a one-line verdict when every check passes; 1 and the reason when one fails; 2 on bad usage.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if bundlePath == "" || keyPath == "" {
				return usagef("--bundle and --key are required")
			}
			bundle, err := os.ReadFile(bundlePath)
			if err != nil {
				return usagef("reading bundle: %w", err)
			}
			pemData, err := os.ReadFile(keyPath)
			if err != nil {
				return usagef("reading public key: %w", err)
			}
			if opts.PublicKey, err = sign.ParsePublicKeyPEM(pemData); err != nil {
				return usagef("public key %q: %w", keyPath, err)
			}
			if _, err := os.Stat(a[0]); err != nil {
				return usagef("artifact: %w", err)
			}
			res, err := verify.File(cmd.Context(), a[0], bundle, opts)
			if errors.Is(err, verify.ErrVerification) {
				return err
			} else if err != nil {
				return &usageError{err} // the request itself was malformed: not a regular file, a bad --source-digest
			}
			if verbose {
				for _, c := range res.Checks {
					fmt.Fprintf(cmd.ErrOrStderr(), "  %s\n", c)
				}
			}
			p := res.Provenance
			fmt.Fprintf(cmd.OutOrStdout(), "verified: %s sha256:%s built by %s (pipeline %s, invocation %s)\n",
				a[0], res.Subject.SHA256, p.BuilderID, p.PipelineName, p.InvocationID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&bundlePath, "bundle", "", "Sigstore bundle with the provenance (OUT/attestations/provenance.sigstore.json)")
	f.StringVar(&keyPath, "key", "", "provenance public key, PEM (from `ssf keys public`)")
	f.StringVar(&opts.BuilderID, "builder-id", "", "require this runDetails.builder.id")
	f.BoolVarP(&verbose, "verbose", "v", false, "list every check (and what was not checked) on stderr")
	f.StringVar(&opts.SourceDigest, "source-digest", "", "require this source digest (ALG:VALUE)")
	return cmd
}
