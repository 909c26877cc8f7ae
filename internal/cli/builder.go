package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/builder"
	ssfhome "github.com/ssf-dev/ssf/internal/home"
)

func newBuilderCmd() *cobra.Command {
	b := &cobra.Command{
		Use:   "builder",
		Short: "Manage builder images: the root file systems that build tasks run in",
	}
	b.AddCommand(newBuilderImportCmd(), newBuilderPullCmd(), newBuilderListCmd(), newBuilderRmCmd())
	return b
}

func newBuilderImportCmd() *cobra.Command {
	var name, layout string
	cmd := &cobra.Command{
		Use:   "import DIR --name NAME | --oci-layout DIR|TAR --name NAME",
		Short: "Pack a root file system directory, or an OCI image layout, into a builder image stored in the factory",
		Long: `Pack the root file system under DIR into an OCI image stored, content-addressed, in the factory.

The image is deterministic: the same tree gives the same digest whatever the files' times and owners (entries
are sorted, times fixed, owners 0). Symlinks are kept as symlinks; device nodes, fifos and sockets are skipped.
The image needs /bin/sh: steps run as /bin/sh -e -c SCRIPT.

With --oci-layout, the one image of an OCI image layout (a directory, or a tarball of one such as
crane pull --format oci writes) is checked blob by blob, its single layer unpacked with the same rules as a pull,
and the tree packed the same way (see ssf builder pull).

The last line printed is NAME@sha256:<hex>; put it in ssf.yaml as spec.builder.image.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if name == "" {
				return usagef("--name is required (for example --name go-builder)")
			}
			if err := builder.CheckName(name); err != nil {
				return &usageError{err}
			}
			if (layout == "") == (len(a) == 0) {
				return usagef("give a root file system DIR or --oci-layout DIR|TAR, not both or neither")
			}
			var src string
			if layout != "" {
				src = layout
			} else {
				src = a[0]
			}
			fi, err := os.Stat(src)
			if err != nil {
				return usagef("builder source %q: %w", src, err)
			}
			if layout == "" {
				if !fi.IsDir() {
					return usagef("builder root file system %q is not a directory", src)
				}
				if err := builder.CheckRootfs(src); err != nil {
					return builderErr(err)
				}
			}
			store, err := images()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "packing %s ...\n", src)
			var img builder.Image
			if layout != "" {
				p, err := store.ImportLayout(cmd.Context(), layout, name)
				if err != nil {
					return builderErr(err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "image manifest %s unpacked and repacked\n", p.Manifest)
				img = p.Image
			} else if img, err = store.Import(cmd.Context(), src, name); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "imported %d files, %d bytes\n", img.Files, img.Size)
			fmt.Fprintln(cmd.OutOrStdout(), img.Ref())
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the builder image (lower case letters, digits, . _ / -)")
	cmd.Flags().StringVar(&layout, "oci-layout", "", "import the image of this OCI image layout directory or tarball")
	return cmd
}

// builderErr makes the builder store's bad-input errors exit with the usage status.
func builderErr(err error) error {
	if errors.Is(err, builder.ErrBadInput) {
		return &usageError{err}
	}
	return err
}

func newBuilderPullCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "pull REGISTRY/REPO@sha256:HEX [--name NAME]",
		Short: "Fetch a builder image from an OCI registry, pinned by digest",
		Long: `Fetch the image REGISTRY/REPO@sha256:HEX from an OCI registry and store it as a builder.

Builders are pinned by digest: a tag is refused. An index is resolved to linux and this host's architecture.
The manifest must hash to the digest given, the config and the layer to their descriptors, and the layer's tar
stream to the config's diff ID. The image must have one layer (tar or tar+gzip; flatten others with
crane flatten) and /bin/sh. The layer is unpacked with the rules of every builder tree (no path outside it, no
device nodes), then packed as ssf builder import packs a directory, so the digest printed is that of the stored
builder, not the registry's; the registry's is printed above it.

Credentials come from the Docker config ($DOCKER_CONFIG/config.json, ~/.docker/config.json) as for crane and
ssf publish; plain HTTP is used only for loopback registries.

NAME defaults to the repository's last path element. The last line printed is NAME@sha256:<hex>; put it in
ssf.yaml as spec.builder.image.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			ref, err := builder.ParsePullRef(a[0])
			if err != nil {
				return &usageError{err}
			}
			if name == "" {
				name = builder.DefaultName(ref)
			}
			if err := builder.CheckName(name); err != nil {
				return usagef("%w (give --name)", err)
			}
			store, err := images()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "pulling %s ...\n", ref)
			p, err := store.Pull(cmd.Context(), ref, name)
			if err != nil {
				return builderErr(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "pulled %s (image manifest %s), %d files, %d bytes\n", p.Source, p.Manifest, p.Files, p.Size)
			fmt.Fprintln(cmd.OutOrStdout(), p.Ref())
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the builder image (default: the repository's last path element)")
	return cmd
}

func newBuilderRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME@sha256:HEX | NAME",
		Short: "Remove a builder image and its unpacked root file system",
		Long: `Remove a builder image from the factory. NAME alone is refused when it names several images (an older
import is kept, nameless, for pipelines pinned to it): give NAME@sha256:HEX then. Blobs no other builder uses
and the unpacked root file system are deleted once no name is left for the digest.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			h, err := home()
			if err != nil {
				return err
			}
			store, err := h.Images()
			if err != nil {
				return err
			}
			img, err := store.Remove(cmd.Context(), a[0], ssfhome.Layout{Dir: h.Dir}.RootfsCache())
			if err != nil {
				return builderErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", img.Ref())
			return nil
		},
	}
}

func newBuilderListCmd() *cobra.Command {
	var output *outputFormat
	cmd := &cobra.Command{
		Use:   "list [--output json]",
		Short: "List the builder images in the factory",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := images()
			if err != nil {
				return err
			}
			images, err := store.List()
			if err != nil {
				return err
			}
			list := builderList{Builders: []builderJSON{}}
			for _, img := range images {
				b := builderJSON{Name: img.Name, Reference: img.Ref(), Digest: string(img.Digest), Size: img.Size}
				if img.Name == "" {
					// A name that moved on to a newer import still names this digest in pipelines.
					if names, err := store.NamesOf(img.Digest); err == nil && len(names) > 0 {
						b.FormerNames = names
						b.Reference = names[0] + "@" + string(img.Digest)
					}
				}
				list.Builders = append(list.Builders, b)
			}
			if *output == outputJSON {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tREFERENCE\tSIZE")
			for _, b := range list.Builders {
				name := b.Name
				if name == "" {
					name = "<none>"
					if len(b.FormerNames) > 0 {
						name = "<none> (was " + strings.Join(b.FormerNames, ", ") + ")"
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%d\n", name, b.Reference, b.Size)
			}
			return w.Flush()
		},
	}
	output = addOutputFlag(cmd)
	return cmd
}

// builderList is ssf builder list --output json (docs/cli-json.md).
type builderList struct {
	Builders []builderJSON `json:"builders"`
}

type builderJSON struct {
	Name        string   `json:"name"`                  // "" when the name moved on to a newer import
	FormerNames []string `json:"formerNames,omitempty"` // the names that once named this digest
	Reference   string   `json:"reference"`             // NAME@sha256:HEX, for spec.builder.image
	Digest      string   `json:"digest"`
	Size        int64    `json:"size"`
}

// images opens the factory's builder image store.
func images() (*builder.Store, error) {
	h, err := home()
	if err != nil {
		return nil, err
	}
	return h.Images()
}
