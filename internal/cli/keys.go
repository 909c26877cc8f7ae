package cli

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/factory"

	"github.com/ssf-dev/ssf/internal/sign"
)

func newKeysCmd() *cobra.Command {
	keys := &cobra.Command{
		Use:   "keys",
		Short: "Work with the factory's signing keys",
	}
	keys.AddCommand(&cobra.Command{
		Use:   "public",
		Short: "Print the provenance public key as PEM (give it to verifiers: ssf verify --key, cosign --key)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := home()
			if err != nil {
				return err
			}
			key, err := sign.LoadKey(h.KeyPath())
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: %s has no provenance key; run `ssf init` first", factory.ErrNotInitialised, h.Dir)
			} else if err != nil {
				return err
			}
			pem, err := sign.PublicKeyPEM(key.Public())
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(pem)
			return err
		},
	})
	return keys
}
