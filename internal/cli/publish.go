package cli

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/factory"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

func newPublishCmd() *cobra.Command {
	var to, keyPath string
	cmd := &cobra.Command{
		Use:   "publish OUT --to REGISTRY/REPO[:TAG] [--key KEY.pub]",
		Short: "Push a finished build's outputs and provenance to an OCI registry",
		Long: `Push the outputs of the build in OUT (the --out of ssf build) to an OCI registry, with its provenance.

The output files go up as one OCI artifact (one layer per file, titled with its path, so oras pull restores
them); an output that is an OCI image layout tarball also goes up as its image, which Kubernetes can run. The
provenance bundle is attached to each as an OCI 1.1 referrer in the layout cosign reads (a registry without the
referrers API gets the sha256-<hex> fallback tag). Nothing is signed: the digests pushed are the ones the build
already signed, and publish refuses outputs that differ from their provenance. With --key, the bundle's
signature is verified before anything is pushed.

Credentials come from the Docker config file and its credential helpers (docker login, crane auth login). Plain
HTTP is used only for registries on a loopback address.

The last line printed is the artifact's REGISTRY/REPO@sha256:<hex>, for ssf verify and cosign verify-attestation.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if to == "" {
				return usagef("--to is required: the registry repository, REGISTRY/REPO[:TAG]")
			}
			var key crypto.PublicKey
			if keyPath != "" {
				pemData, err := os.ReadFile(keyPath)
				if err != nil {
					return usagef("reading public key: %w", err)
				}
				if key, err = sign.ParsePublicKeyPEM(pemData); err != nil {
					return usagef("public key %q: %w", keyPath, err)
				}
			}
			return publish(cmd.Context(), cmd.OutOrStdout(), a[0], to, key)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "registry repository to push to, REGISTRY/REPO[:TAG]")
	cmd.Flags().StringVar(&keyPath, "key", "", "provenance public key (PEM): verify the bundle before pushing")
	return cmd
}

// publish pushes the build in dir to target and prints what went where, the artifact reference last.
func publish(ctx context.Context, w io.Writer, dir, target string, key crypto.PublicKey) error {
	repo, tag, err := oci.ParseTarget(target)
	if err != nil {
		return &usageError{err}
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return usagef("build output %q is not a directory (give the --out of ssf build)", dir)
	}
	bundle, err := os.ReadFile(filepath.Join(dir, factory.BundlePath))
	if err != nil {
		return usagef("reading the build's provenance: %w", err)
	}
	req := oci.PublishRequest{Dir: dir, Bundle: bundle, Repo: repo, Tag: tag}
	if key != nil {
		req.Verify = func(ctx context.Context, digest string, b []byte) error {
			_, err := verify.Artifact(ctx, digest, b, verify.Options{PublicKey: key})
			return err
		}
	}
	pub, err := oci.Publish(ctx, req)
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(pub.Images))
	for p := range pub.Images {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintf(w, "image       %s  %s\n", p, pub.Images[p])
	}
	for _, r := range pub.Referrers {
		fmt.Fprintf(w, "referrer    %s\n", r)
	}
	if tag != "" {
		fmt.Fprintf(w, "tag         %s\n", repo.Tag(tag))
	}
	fmt.Fprintln(w, pub.Artifact)
	return nil
}
