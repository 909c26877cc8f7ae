package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/factory"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print ssf's version",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "ssf", factory.Version)
			return err
		},
	}
}
