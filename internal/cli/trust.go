package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/durable"
)

func newTrustCmd() *cobra.Command {
	trust := &cobra.Command{
		Use:   "trust",
		Short: "Work with the factory's trust: its CA, logs and timestamp authority",
	}
	var out string
	export := &cobra.Command{
		Use:   "export",
		Short: "Write the factory's Sigstore trusted root (for cosign --trusted-root and sigstore-go)",
		Long: `Write the factory's trusted root (application/vnd.dev.sigstore.trustedroot+json;version=0.1):

  certificateAuthorities  the CA chain [intermediate, root] that issues workload certificates
  tlogs                   the transparency log's key and log ID
  ctlogs                  the certificate-transparency key that signs the SCTs in certificates
  timestampAuthorities    the RFC 3161 timestamp authority's chain [TSA, root]

It holds public keys and certificates only. Give it to verifiers, air-gapped ones included:
  cosign verify-blob-attestation --trusted-root trusted_root.json --bundle B \
    --certificate-identity spiffe://TD/pipeline/NAME --certificate-oidc-issuer https://TD/issuer \
    --type slsaprovenance1 FILE

Without --out it is written to stdout.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := home()
			if err != nil {
				return err
			}
			tr, err := h.TrustedRoot()
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(tr)
				return err
			}
			if err := durable.Replace(out, tr, 0o644); err != nil {
				return fmt.Errorf("writing the trusted root: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote the trusted root to %s\n", out)
			return nil
		},
	}
	export.Flags().StringVar(&out, "out", "", "the file to write (default stdout)")
	trust.AddCommand(export)
	return trust
}
