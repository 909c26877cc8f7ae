package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/factory"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

func newPublishCmd() *cobra.Command {
	var to, keyPath string
	var verbose bool
	var policyDir *string
	var reg registryFlags
	var output *outputFormat
	cmd := &cobra.Command{
		Use:   "publish OUT --to REGISTRY/REPO[:TAG] [--key KEY.pub] [--output json]",
		Short: "Push a finished build's outputs and provenance to an OCI registry",
		Long: `Push the outputs of the build in OUT (the --out of ssf build) to an OCI registry, with its provenance.

Before anything is pushed, the provenance bundle's signature is verified against the local factory's trust: for
a build signed by identity (the default) its certificate must chain to the factory's CA, be logged and
timestamped, and name a run of its trust domain, spiffe://TD/pipeline/NAME, with its issuer (config.yaml); for a
--signer key build, the factory's provenance key (the public half of the key in $SSF_HOME), or --key KEY.pub.
Every output is hashed again and must be what the signed provenance names; an output that is an OCI image layout tarball must hold, blob for blob, the
image the provenance names. Any failure exits 1 and pushes nothing; a bundle the key did not sign is reported as
"not signed by this key", and -v adds the verifier's own words.

The output files go up as one OCI artifact (one layer per file, titled with its path, so oras pull restores
them); an output that is an OCI image layout tarball also goes up as its image, which Kubernetes can run, its
blobs streamed from the tarball. The provenance bundle is attached to each as an OCI 1.1 referrer in the layout
cosign reads (a registry without the referrers API gets the sha256-<hex> fallback tag), and so is each output's
signed SBOM pair (OUT/attestations/<output>.spdx.sigstore.json and .cdx.sigstore.json), after its signature and
subjects are verified the same way; the provenance lists each SBOM bundle with its digest, and one missing or
changed stops the publish before anything is pushed. An identity build's task attestations
(OUT/attestations/<task>.task.sigstore.json, each listed in the provenance with its digest) are attached too. Nothing is signed: the digests pushed are the ones the build already signed.

Policy: once everything has verified, and before anything is pushed, the ssf.publish gate of the policy set
(--policy DIR, default $SSF_HOME/policy, else the default set built into ssf) decides over the output files,
the verified statements (the provenance and the SBOMs, each with its signer), the target and every tag it will push; any denial exits 1
with every message and pushes nothing. A policy set that does not compile exits 2 naming FILE:LINE
(docs/policy.md).

Credentials come from the Docker config file and its credential helpers (docker login, crane auth login). Plain
HTTP is used only for registries on a loopback address. A registry that sends or accepts nothing for --timeout,
or a publish that takes longer than --deadline, fails the command.

Tags (TAG of --to): with no image among the outputs, TAG names the files artifact. When the outputs hold images,
each image output also gets the tag TAG-<name>, its path without ".tar" and with every character outside
[A-Za-z0-9_.-] turned into "-" (image.tar -> TAG-image, dist/api.tar -> TAG-dist-api); the files artifact is
TAG.files; and TAG names the image when there is exactly one (so crane pull REPO:TAG and a Kubernetes Pod get
the runnable image), or the files artifact when there are several. Tags are pushed last, each pointing at a
digest the build signed; two outputs that would get the same tag, or a tag over 128 characters, stop the publish
before anything is pushed (exit 2).

The last line printed is the artifact's REGISTRY/REPO@sha256:<hex>, for ssf verify and cosign verify-attestation.
With --output json, stdout holds one JSON object instead (docs/cli-json.md).`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if to == "" {
				return usagef("--to is required: the registry repository, REGISTRY/REPO[:TAG]")
			}
			pol, err := loadPolicy(cmd.Context(), *policyDir) // once, before any work (policyflag.go)
			if err != nil {
				return err
			}
			var trusted root.TrustedMaterial
			if keyPath != "" {
				if trusted, err = readTrustedKey(keyPath); err != nil {
					return err
				}
			}
			pub, err := publishWithKey(cmd.Context(), cmd.ErrOrStderr(), a[0], to, trusted, keyPath, verbose, reg, pol)
			if err != nil {
				return err
			}
			if *output == outputJSON {
				return writeJSON(cmd.OutOrStdout(), publishedJSON(pub))
			}
			printPublished(cmd.OutOrStdout(), pub)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "when the key did not sign the bundle, also print the verifier's own words")
	cmd.Flags().StringVar(&to, "to", "", "registry repository to push to, REGISTRY/REPO[:TAG]")
	cmd.Flags().StringVar(&keyPath, "key", "", "for a --signer key build: the provenance public key (PEM) to verify the bundle with (default: the local factory's key; an identity build is verified against the local factory's trust)")
	reg.add(cmd, publishDeadline)
	policyDir = addPolicyFlag(cmd)
	output = addOutputFlag(cmd)
	return cmd
}

// publishDeadline is the default --deadline of ssf publish, and the deadline of ssf build --publish.
const publishDeadline = time.Hour

// factoryKeyMaterial is the public half of the local factory's provenance key.
func factoryKeyMaterial() (root.TrustedMaterial, error) {
	h, err := home()
	if err != nil {
		return nil, err
	}
	key, err := sign.LoadKey(h.KeyPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no provenance key to verify the bundle with; give --key KEY.pub (the key of the factory that built OUT) or run `ssf init`", factory.ErrNotInitialised, h.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the factory key to verify the bundle with: %w", err)
	}
	return verify.KeyMaterial(key.Public()), nil
}

// publish pushes the build in dir to target, after verifying its bundle with trusted (nil: the local
// factory's key), and says what went where.
func publish(ctx context.Context, dir, target string, trusted root.TrustedMaterial, reg registryFlags, pol *factory.Policy) (*oci.Published, error) {
	return publishWithKey(ctx, io.Discard, dir, target, trusted, "", false, reg, pol)
}

// publishWithKey is publish with the key's file name (keyPath, "" for the local factory's key) for a wrong-key
// message, and with -v's verifier detail printed to stderr.
func publishWithKey(ctx context.Context, stderr io.Writer, dir, target string, trusted root.TrustedMaterial, keyPath string, verbose bool, reg registryFlags, pol *factory.Policy) (*oci.Published, error) {
	pub, err := publishTo(ctx, dir, target, trusted, keyPath, reg, pol)
	if verbose {
		printKeyDetail(stderr, err)
	}
	return pub, err
}

// pol is the policy whose ssf.publish gate decides before any push (policyflag.go).
func publishTo(ctx context.Context, dir, target string, trusted root.TrustedMaterial, keyPath string, reg registryFlags, pol *factory.Policy) (*oci.Published, error) {
	repo, tag, err := oci.ParseTarget(target)
	if err != nil {
		return nil, &usageError{err}
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, usagef("build output %q is not a directory (give the --out of ssf build)", dir)
	}
	bundle, err := verify.ReadBundle(filepath.Join(dir, factory.BundlePath))
	if err != nil {
		return nil, usagef("reading the build's provenance: %w", err)
	}
	keyName := keyPath
	if trusted == nil {
		if trusted, err = factoryMaterialFor(bundle); err != nil { // its key, or its trust for a keyless build
			return nil, err
		}
		keyName = "the local factory's key; give --key KEY.pub for another factory's build"
	}
	bundlePath := filepath.Join(dir, factory.BundlePath)
	opts := verify.Options{Trusted: trusted}
	if err := opts.Validate(); err != nil {
		return nil, &usageError{err}
	}
	ctx, cancel, ropts, err := reg.context(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	gate := &publishGate{policy: pol, trusted: trusted, target: policyTarget(repo, tag), repo: repo}
	req := oci.PublishRequest{Dir: dir, Bundle: bundle, Repo: repo, Tag: tag,
		Verify: func(ctx context.Context, manifest digest.Digest, b []byte) error {
			_, err := verify.Artifact(ctx, manifest, b, opts)
			if err == nil {
				gate.verified(b)
			}
			return wrongKey(err, bundlePath, keyName)
		},
		VerifyAttestation: func(ctx context.Context, manifest digest.Digest, predicateType string, b []byte) error {
			_, err := verify.Attestation(ctx, manifest, b, trusted, predicateType)
			if err == nil {
				gate.verified(b)
			}
			return wrongKey(err, "the SBOM bundle", keyName)
		},
		Admit: gate.admit, // ssf.publish, before any push
	}
	pub, err := oci.Publish(ctx, req, ropts...)
	if errors.Is(err, oci.ErrTagScheme) {
		return nil, &usageError{err}
	}
	if err != nil {
		return nil, loginHint(target, deadlineError(ctx, err))
	}
	return pub, nil
}

// loginHint adds to a push the registry refused for want of a login (401) how to give ssf one: a newcomer who
// starts ssf registry serve and publishes got only "UNAUTHORIZED: authentication required to push", and nothing
// said where ssf reads credentials or how the embedded registry makes a user.
func loginHint(target string, err error) error {
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		return err
	}
	host, _, _ := strings.Cut(target, "/")
	return &hintError{err: err, hint: fmt.Sprintf("the registry wants a login: ssf reads credentials from the Docker config "+
		"($DOCKER_CONFIG/config.json, else ~/.docker/config.json, and its credential helpers), as crane and cosign do: "+
		"`docker login %[1]s`, `crane auth login %[1]s -u USER --password-stdin` or `oras login %[1]s`; for ssf registry "+
		"serve, make the user on its host with `ssf registry user add USER` (basic auth is accepted over TLS or from "+
		"loopback), or serve with --insecure-local on a loopback address to push without one", printable(host))}
}

// printPublished prints what a publish pushed where, for people, the artifact reference last.
func printPublished(w io.Writer, pub *oci.Published) {
	for _, p := range sortedKeys(pub.Images) {
		fmt.Fprintf(w, "image       %s  %s\n", p, pub.Images[p])
	}
	for _, r := range pub.Referrers {
		fmt.Fprintf(w, "referrer    %s\n", r)
	}
	for _, t := range pub.Tags {
		fmt.Fprintf(w, "tag         %s  %s\n", t.Tag, t.Ref)
	}
	fmt.Fprintln(w, pub.Artifact)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// publishJSON is ssf publish --output json, and the publish field of ssf build --output json (docs/cli-json.md).
type publishJSON struct {
	Artifact  string            `json:"artifact"`
	Images    map[string]string `json:"images"`
	Referrers []string          `json:"referrers"`
	Tags      []tagJSON         `json:"tags"`
}

type tagJSON struct {
	Tag string `json:"tag"`
	Ref string `json:"ref"`
}

// publishedJSON has empty lists and maps rather than null, so a script can range over them without a check.
func publishedJSON(pub *oci.Published) publishJSON {
	j := publishJSON{Artifact: pub.Artifact, Images: map[string]string{}, Referrers: []string{}, Tags: []tagJSON{}}
	for p, r := range pub.Images {
		j.Images[p] = r
	}
	j.Referrers = append(j.Referrers, pub.Referrers...)
	for _, t := range pub.Tags {
		j.Tags = append(j.Tags, tagJSON{Tag: t.Tag, Ref: t.Ref})
	}
	return j
}
