package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/factory"
	ssfhome "github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/policy"
)

func newInitCmd() *cobra.Command {
	var trustDomain, issuer string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the factory home: config and provenance signing key",
		Long: `Create the factory home ($SSF_HOME, default ~/.ssf) with:

  config.yaml            builderId (the factory's identity in provenance) and the container runtime
  keys/provenance.key    an ECDSA P-256 private key, file mode 0600, that signs provenance
  keys/ca-root.*         the factory CA's root (key and certificate); the key can be moved offline
                         afterwards (docs/keyless.md)
  keys/ca-intermediate.* the CA's intermediate, which issues node and short-lived workload certificates
  keys/ctlog.key         the certificate-transparency key that signs the SCTs embedded in certificates
  keys/tlog.key          the transparency log's key (checkpoints and signed entry timestamps)
  keys/tsa.*             the RFC 3161 timestamp authority (key and certificate, signed by the root)
  keys/node.*            this node's identity, spiffe://TD/node/<host>
  images/                builder images (an OCI image layout)
  policy/                the default Rego policy set of the factory's gates, written only when policy/ does
                         not exist; edit it there (ssf policy test checks it; docs/policy.md)

Every key is ECDSA P-256, a file of mode 0600. --trust-domain (default ssf.local) and --issuer (default
https://TD/issuer) are recorded in config.yaml: workload certificates name spiffe://TD/pipeline/<pipeline>
and carry the issuer; verifiers pin both. ssf trust export writes the trusted root that cosign reads.

init is idempotent: run it again and it creates only what is missing. It never overwrites a key.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := home()
			if err != nil {
				return err
			}
			var opts []factory.InitOption
			if trustDomain != "" {
				opts = append(opts, factory.WithTrustDomain(trustDomain))
			}
			if issuer != "" {
				opts = append(opts, factory.WithIssuer(issuer))
			}
			res, err := h.Init(opts...)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			say := func(created bool, what string) {
				if created {
					fmt.Fprintf(w, "created %s\n", what)
				} else {
					fmt.Fprintf(w, "kept existing %s\n", what)
				}
			}
			say(res.CreatedConfig, "config "+h.Dir+"/config.yaml")
			say(res.CreatedKey, "provenance key "+h.KeyPath())
			for _, p := range res.CreatedTrust {
				say(true, p)
			}
			created, err := initPolicy(ssfhome.Layout{Dir: h.Dir}.Policy())
			if err != nil {
				return err
			}
			say(created, "policy set "+ssfhome.Layout{Dir: h.Dir}.Policy())
			fmt.Fprintf(w, "factory home: %s\n", h.Dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&trustDomain, "trust-domain", "", "the factory's SPIFFE trust domain (default ssf.local; recorded in config.yaml)")
	cmd.Flags().StringVar(&issuer, "issuer", "", "the OIDC issuer URL in workload certificates (default https://TD/issuer)")
	return cmd
}

// initPolicy writes the default policy set into dir when dir does not exist, so that people see the rules that
// apply and edit them there; an existing directory, even empty, is the factory's policy and is left alone.
func initPolicy(dir string) (bool, error) {
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if _, err := policy.WriteDefault(dir); err != nil {
		return false, err
	}
	return true, nil
}
