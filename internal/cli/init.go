package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newInitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the factory home: config and provenance signing key",
		Long: `Create the factory home ($SSF_HOME, default ~/.ssf) with:

  config.yaml            builderId (the factory's identity in provenance) and the container runtime
  keys/provenance.key    an ECDSA P-256 private key, file mode 0600, that signs provenance
  images/                builder images (an OCI image layout)

init is idempotent: run it again and it creates only what is missing. It never overwrites a key.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := home()
			if err != nil {
				return err
			}
			res, err := h.Init()
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
			fmt.Fprintf(w, "factory home: %s\n", h.Dir)
			return nil
		},
	}
}
