package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

func newVerifyCmd() *cobra.Command {
	var bundlePath, keyPath string
	var verbose bool
	var opts verify.Options
	cmd := &cobra.Command{
		Use:   "verify FILE --bundle BUNDLE --key KEY.pub | verify REGISTRY/REPO@sha256:HEX --key KEY.pub",
		Short: "Verify a file, or a published build in a registry, against its signed provenance",
		Long: `Verify that BUNDLE is a Sigstore bundle signed by KEY.pub, that it holds SLSA v1 provenance, and that FILE's
sha256 is one of its subjects. --builder-id and --source-digest additionally pin the factory and the source
(ALG:VALUE, e.g. gitCommit:<sha1> or sha256:<hex>).

Given REGISTRY/REPO@sha256:HEX instead of a file (as printed by ssf publish), the bundles come from the
registry: every Sigstore bundle attached to that manifest as an OCI referrer (or through the sha256-HEX fallback
tag) is checked the same way for the manifest's digest, and one must pass. Credentials come from the Docker
config file; plain HTTP is used only for loopback registries.

Exit status: 0 and a one-line verdict when every check passes; 1 and the reason when one fails; 2 on bad usage.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			remote := isRegistryRef(a[0])
			switch {
			case remote && keyPath == "":
				return usagef("--key is required")
			case remote && bundlePath != "":
				return usagef("--bundle is for files: the bundles of %s come from the registry", a[0])
			case !remote && (bundlePath == "" || keyPath == ""):
				return usagef("--bundle and --key are required")
			}
			pemData, err := os.ReadFile(keyPath)
			if err != nil {
				return usagef("reading public key: %w", err)
			}
			if opts.PublicKey, err = sign.ParsePublicKeyPEM(pemData); err != nil {
				return usagef("public key %q: %w", keyPath, err)
			}
			if remote {
				return verifyRegistryRef(cmd, a[0], opts, verbose)
			}
			bundle, err := os.ReadFile(bundlePath)
			if err != nil {
				return usagef("reading bundle: %w", err)
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
	f.StringVar(&keyPath, "key", "", "provenance public key, PEM (from: ssf keys public)")
	f.StringVar(&opts.BuilderID, "builder-id", "", "require this runDetails.builder.id")
	f.BoolVarP(&verbose, "verbose", "v", false, "list every check (and what was not checked) on stderr")
	f.StringVar(&opts.SourceDigest, "source-digest", "", "require this source digest (ALG:VALUE)")
	return cmd
}

// isRegistryRef reports whether arg names a manifest in a registry (REGISTRY/REPO@sha256:HEX) rather than a file:
// an existing path is always a file.
func isRegistryRef(arg string) bool {
	if _, err := os.Lstat(arg); err == nil {
		return false
	}
	_, err := name.NewDigest(arg, name.StrictValidation)
	return err == nil
}

// verifyRegistryRef fetches the bundles attached to ref and passes when one of them verifies for its digest.
func verifyRegistryRef(cmd *cobra.Command, ref string, opts verify.Options, verbose bool) error {
	ctx := cmd.Context()
	att, err := oci.FetchBundles(ctx, ref)
	if err != nil {
		return err
	}
	digest := att.Subject.DigestStr()
	var fails []error
	for _, b := range att.Bundles {
		res, err := verify.Artifact(ctx, strings.TrimPrefix(digest, "sha256:"), b, opts)
		if err != nil {
			fails = append(fails, err)
			continue
		}
		if verbose {
			for _, c := range res.Checks {
				fmt.Fprintf(cmd.ErrOrStderr(), "  %s\n", c)
			}
		}
		p := res.Provenance
		fmt.Fprintf(cmd.OutOrStdout(), "verified: %s (subject %q) built by %s (pipeline %s, invocation %s)\n",
			att.Subject, res.Subject.Name, p.BuilderID, p.PipelineName, p.InvocationID)
		return nil
	}
	fails = append(fails, att.Skipped...)
	if len(fails) == 1 {
		return fmt.Errorf("%s: %w", ref, fails[0])
	}
	return fmt.Errorf("%s: none of its %d bundles verified: %w", ref, len(att.Bundles), errors.Join(fails...))
}
