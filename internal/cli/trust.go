package cli

import (
	"fmt"
	"path/filepath"

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
	trust.AddCommand(export, newTrustRotateCmd())
	return trust
}

func newTrustRotateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate",
		Short: "Start a new intermediate CA and a new transparency log key; bundles made before still verify",
		Long: `Retire the factory CA's intermediate and the transparency log's key, and make new ones:

  keys/ca-intermediate.*   a new intermediate, signed by the root (which needs keys/ca-root.key)
  keys/tlog.key            a new log key: a new log (a new tree) starts in $SSF_HOME/log at the next signature
  keys/node.crt            this node's certificate, reissued by the new intermediate for the same key
  keys/retired/END-KEYID/  the old intermediate's certificate and the old log's public key, and END, when they
                           stopped being valid; the old intermediate key and log key are destroyed
  log-KEYID/               the old log, moved as it was: serve it with any static file server and audit it
                           with ssf log verify --log URL --key keys/retired/END-KEYID/tlog.pub

ssf trust export then lists the old intermediate and log key valid until END, and the new ones from then on:
bundles signed before the rotation still verify (ssf verify, cosign --trusted-root), and a certificate of the old
intermediate used after END does not. Give verifiers the new trusted root. The CT key and the timestamp authority
are kept. Nodes that joined with ssf node join must join again: the new intermediate does not accept the old
one's node certificates.

It refuses while an identity build or ssf log serve --accept-entries uses the log; restart a running ssf log
serve afterwards (it follows the old directory). If the root key was moved offline, put it back (mode 0600) for
this command and move it away again. A rotation stopped half-way is finished by running it again.

Exit status 2 when the root key is missing or the log is in use.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := home()
			if err != nil {
				return err
			}
			res, err := h.RotateTrust()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if res.Resumed {
				fmt.Fprintf(w, "finished the rotation recorded in %s\n", res.Retired.Dir)
			}
			fmt.Fprintf(w, "retired the intermediate CA and the log key as of %s: %s\n", res.Retired.End.Format("2006-01-02T15:04:05Z07:00"), res.Retired.Dir)
			if res.Retired.LogArchive != "" {
				fmt.Fprintf(w, "archived the transparency log to %s\n", filepath.Join(h.Dir, res.Retired.LogArchive))
			}
			fmt.Fprintf(w, "new intermediate CA valid until %s; a new transparency log starts at the next signature\n", res.NewIntermediate.NotAfter.Format("2006-01-02"))
			fmt.Fprintln(w, "export the trusted root again for verifiers: ssf trust export --out trusted_root.json")
			return nil
		},
	}
}
