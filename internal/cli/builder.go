package cli

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newBuilderCmd() *cobra.Command {
	b := &cobra.Command{
		Use:   "builder",
		Short: "Manage builder images: the root file systems that build tasks run in",
	}
	b.AddCommand(newBuilderImportCmd(), newBuilderListCmd())
	return b
}

func newBuilderImportCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "import DIR --name NAME",
		Short: "Pack a root file system directory into a builder image stored in the factory",
		Long: `Pack the root file system under DIR into an OCI image stored, content-addressed, in the factory.

The image is deterministic: the same tree gives the same digest whatever the files' times and owners (entries
are sorted, times fixed, owners 0). Symlinks are kept as symlinks; device nodes, fifos and sockets are skipped.
The image needs /bin/sh: steps run as /bin/sh -e -c SCRIPT.

The last line printed is NAME@sha256:<hex>; put it in ssf.yaml as spec.builder.image.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if name == "" {
				return usagef("--name is required (for example --name go-builder)")
			}
			fi, err := os.Stat(a[0])
			if err != nil {
				return usagef("builder root file system %q: %w", a[0], err)
			}
			if !fi.IsDir() {
				return usagef("builder root file system %q is not a directory", a[0])
			}
			h, err := home()
			if err != nil {
				return err
			}
			store, err := h.Images()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "packing %s ...\n", a[0])
			img, err := store.Import(cmd.Context(), a[0], name)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "imported %d files, %d bytes\n", img.Files, img.Size)
			fmt.Fprintln(cmd.OutOrStdout(), img.Ref())
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the builder image (lower case letters, digits, . _ / -)")
	return cmd
}

func newBuilderListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the builder images in the factory",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := home()
			if err != nil {
				return err
			}
			store, err := h.Images()
			if err != nil {
				return err
			}
			images, err := store.List()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tREFERENCE\tSIZE")
			for _, img := range images {
				name, ref := img.Name, img.Ref()
				if name == "" {
					// A name that moved on to a newer import still names this digest in pipelines.
					name = "<none>"
					if names, err := store.NamesOf(img.Digest); err == nil && len(names) > 0 {
						name = "<none> (was " + strings.Join(names, ", ") + ")"
						ref = names[0] + "@" + string(img.Digest)
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%d\n", name, ref, img.Size)
			}
			return w.Flush()
		},
	}
}
