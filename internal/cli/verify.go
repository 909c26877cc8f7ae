package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

func newVerifyCmd() *cobra.Command {
	var bundles []string
	var keyPath string
	var pf policyFlags // verify_policy.go
	var verbose bool
	var params []string
	var reg registryFlags
	var opts verify.Options
	var output *outputFormat
	var idf identityFlags
	cmd := &cobra.Command{
		Use:   "verify FILE --bundle BUNDLE (--certificate-identity ID --certificate-oidc-issuer ISS | --key KEY.pub) | verify REGISTRY/REPO@sha256:HEX|REGISTRY/REPO:TAG (--certificate-identity ID --certificate-oidc-issuer ISS | --key KEY.pub)",
		Short: "Verify a file, or a published build in a registry, against its signed provenance",
		Long: `Verify that BUNDLE is a Sigstore bundle signed by who you name, that it holds SLSA v1 provenance, and that
FILE's sha256 is one of its subjects. Name the signer of a build signed by identity (ssf build's default) with
--certificate-identity spiffe://TD/pipeline/NAME --certificate-oidc-issuer ISS (NAME: the pipeline's
metadata.name; TD and ISS: the factory's config.yaml trustDomain and issuer, ssf.local and
https://ssf.local/issuer by default), and of a build made with --signer key with --key KEY.pub (ssf keys public).
These pin the build further; each one not given is listed by -v as not checked:
  --builder-id ID            runDetails.builder.id
  --builder-digest sha256:H  the builder image (its manifest digest)
  --pipeline-digest sha256:H the pipeline file (sha256sum ssf.yaml)
  --param NAME=VALUE         the build's params, exactly (repeat for each)
  --source-digest ALG:VALUE  the source, e.g. gitCommit:<sha1> or sha256:<hex>

Given REGISTRY/REPO@sha256:HEX instead of a file (as printed by ssf publish), the bundles come from the
registry: every referrer of that manifest with artifactType application/vnd.dev.sigstore.bundle.v0.3+json (or
the sha256-HEX fallback tag) is checked the same way for the manifest's digest, and one must pass; oversized or
malformed referrers are skipped (listed with -v). Given REGISTRY/REPO:TAG, the tag is resolved to the digest
the registry holds for it now (a HEAD request), that digest is verified the same way, and the verdict names it.
A manifest the registry does not have fails with "not found in the registry". Credentials come from the Docker config file; plain HTTP is
used only for loopback registries. A registry that sends nothing for --timeout fails the command.

Bundles signed by identity carry a certificate: give --certificate-identity ID (or
--certificate-identity-regexp RE) and --certificate-oidc-issuer ISS (or --certificate-oidc-issuer-regexp), as
cosign takes them; the trusted root is --trusted-root FILE (ssf trust export) or by default the local
factory's. The certificate must chain to its CA and carry an SCT of its CT log, the bundle must hold an
entry of its transparency log (inclusion proof and signed entry timestamp verified) and a timestamp of its TSA,
both within the certificate's validity, and the certificate must name ID and ISS. The provenance is signed by
spiffe://TD/pipeline/NAME, each task's attestation (OUT/attestations/TASK.task.sigstore.json) by
spiffe://TD/pipeline/NAME/task/TASK. A certificate bundle without an identity is bad usage (exit 2); its
hint names the identity the certificate claims and the local factory's issuer.

Bundles of a --signer key build carry a key hint: give --key KEY.pub, which excludes the identity flags. A bundle
whose signature does not verify with KEY.pub (another factory signed it, or it was changed after
signing) fails with "not signed by this key (KEY.pub)"; -v adds the verifier's own words.

With --policy DIR, --vsa FILE or --attestations DIR, every statement about the artifact is verified, not only
the provenance: the bundles given with --bundle (repeatable) and those of --attestations DIR (default: the
OUT/attestations of the build the file is in), or every bundle referrer of a registry manifest — provenance, task attestations, SBOMs,
summaries — each with its signer. The provenance must verify as above, and the ssf.verify policy (--policy DIR,
else $SSF_HOME/policy, else the built-in set) is evaluated over them (input.artifact, input.statements); every
denial is printed and the exit status is 1. --vsa FILE writes a signed SLSA verification summary, PASSED or
FAILED (docs/policy.md, "Verification summaries"), signed as spiffe://TD/verifier (--vsa-signer identity, the
default) or by the factory's provenance key (--vsa-signer key). Its levels go above SLSA_BUILD_LEVEL_1 only for this
factory's own provenance (its key, or its CA with no --trusted-root). For keyless evidence, match the run and its tasks
with --certificate-identity-regexp '^spiffe://TD/pipeline/NAME(/task/[^/]+)?$'.

Exit status: 0 and a one-line verdict when every check passes; 1 and the reason when one fails; 2 on bad usage.
With --output json, stdout holds one JSON object instead of the verdict, with every check and what was not
checked (docs/cli-json.md).`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			remote := isRegistryRef(a[0])
			keyless := idf.keyless() // verify_identity.go
			withPolicy := pf.active(cmd)
			bundlePath := ""
			if len(bundles) > 0 {
				bundlePath = bundles[0]
			}
			switch {
			case len(bundles) > 1 && !withPolicy:
				return usagef("--bundle is given %d times: several bundles are read only with --policy, --vsa or --attestations (every statement about the artifact)", len(bundles))
			case remote && pf.attestations != "":
				return usagef("--attestations is for files: the bundles of %s come from the registry", a[0])
			case keyless && keyPath != "":
				return usagef("--key excludes --certificate-identity, --certificate-oidc-issuer and --trusted-root: a bundle is signed by a key or by a certificate")
			case !remote && keyPath == "" && !keyless && bundlePath != "" && bundleHasCertificate(bundlePath):
				return needIdentity(a[0], bundlePath) // verify_hint.go
			case remote && keyPath == "" && !keyless:
				return needSigner(a[0]) // verify_hint.go
			case remote && bundlePath != "":
				return usagef("--bundle is for files: the bundles of %s come from the registry", a[0])
			case !remote && bundlePath == "" && !namesAPath(a[0]):
				return usagef("%q is neither a file nor a registry reference (REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:HEX, with the registry's host written out); a file needs --bundle and who signed it", a[0])
			case !remote && bundlePath == "" && !withPolicy:
				return usagef("--bundle is required: the provenance bundle of the build that made %s, OUT/attestations/provenance.sigstore.json", a[0])
			case !remote && keyPath == "" && !keyless:
				return usagef("name who must have signed the bundle: --certificate-identity ID with --certificate-oidc-issuer ISS for a build signed by identity (the default), or --key KEY.pub for one built with --signer key")
			}
			var trusted root.TrustedMaterial
			var err error
			if keyless {
				trusted, err = idf.material()
			} else {
				trusted, err = readTrustedKey(keyPath)
			}
			if err != nil {
				return err
			}
			opts.Trusted = trusted
			if opts.Params, err = parseParams(params); err != nil {
				return err
			}
			if err := opts.Validate(); err != nil {
				return &usageError{err}
			}
			if withPolicy {
				pf.trustedRoot = idf.trustedRoot
				pf.identity = idf.id.SAN
				return verifyWithPolicy(cmd, a[0], remote, bundles, opts, &pf, reg, verbose, *output) // verify_policy.go
			}
			if remote {
				return verifyRegistryRef(cmd, a[0], keyPath, opts, reg, verbose, *output)
			}
			bundle, err := verify.ReadBundle(bundlePath)
			if err != nil {
				return &usageError{err}
			}
			if _, err := os.Stat(a[0]); err != nil {
				return usagef("artifact: %w", err)
			}
			res, err := verify.File(cmd.Context(), a[0], bundle, opts)
			if errors.Is(err, verify.ErrVerification) {
				err = wrongKey(err, bundlePath, keyPath)
				if verbose {
					printKeyDetail(cmd.ErrOrStderr(), err)
				}
				return err
			} else if err != nil {
				return &usageError{err} // the request itself was malformed: not a regular file
			}
			if verbose {
				printChecks(cmd.ErrOrStderr(), res)
			}
			if *output == outputJSON {
				j := verifiedJSON(res)
				j.File = a[0]
				return writeJSON(cmd.OutOrStdout(), j)
			}
			if t := res.Task; t != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "verified: %s %s made by task %s of %s (pipeline %s, invocation %s)%s\n",
					a[0], res.Subject.Digest, t.Task, t.BuilderID, t.Pipeline, t.InvocationID, signedBy(res))
				return nil
			}
			p := res.Provenance
			fmt.Fprintf(cmd.OutOrStdout(), "verified: %s %s built by %s (pipeline %s, invocation %s)%s\n",
				a[0], res.Subject.Digest, p.BuilderID, p.PipelineName, p.InvocationID, signedBy(res))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&bundles, "bundle", nil, "Sigstore bundle with the provenance (OUT/attestations/provenance.sigstore.json); repeatable with --policy, --vsa or --attestations")
	f.StringVar(&keyPath, "key", "", "for a --signer key build: the provenance public key, PEM (from: ssf keys public)")
	f.StringVar(&opts.BuilderID, "builder-id", "", "require this runDetails.builder.id")
	f.StringVar(&opts.BuilderDigest, "builder-digest", "", "require this builder image manifest digest (sha256:HEX)")
	f.StringVar(&opts.PipelineDigest, "pipeline-digest", "", "require this pipeline file digest (sha256:HEX)")
	f.StringArrayVar(&params, "param", nil, "require the build's params to be exactly these, NAME=VALUE (repeatable)")
	f.StringVar(&opts.SourceDigest, "source-digest", "", "require this source digest (ALG:VALUE)")
	f.BoolVarP(&verbose, "verbose", "v", false, "list every check, what was not checked and skipped referrers on stderr")
	reg.add(cmd, 5*time.Minute)
	idf.add(cmd) // verify_identity.go
	pf.add(cmd)  // verify_policy.go
	output = addOutputFlag(cmd)
	return cmd
}

// verifyJSON is ssf verify --output json (docs/cli-json.md): file for a file, ref (and tag) for a registry
// manifest.
type verifyJSON struct {
	Verified   bool     `json:"verified"` // always true: a failure is the error object instead
	File       string   `json:"file,omitempty"`
	Ref        string   `json:"ref,omitempty"`
	Tag        string   `json:"tag,omitempty"`
	Subject    string   `json:"subject"`
	Digest     string   `json:"digest"`
	BuilderID  string   `json:"builderId"`
	Pipeline   string   `json:"pipeline"`
	Invocation string   `json:"invocation"`
	Task       string   `json:"task,omitempty"` // a task attestation: the task it is about
	Checks     []string `json:"checks"`
	Unchecked  []string `json:"unchecked"`
	Skipped    []string `json:"skipped,omitempty"`
}

func verifiedJSON(res *verify.Result) verifyJSON {
	if t := res.Task; t != nil {
		return verifyJSON{Verified: true, Subject: res.Subject.Name, Digest: string(res.Subject.Digest),
			BuilderID: t.BuilderID, Pipeline: t.Pipeline, Invocation: t.InvocationID, Task: t.Task,
			Checks: append([]string{}, res.Checks...), Unchecked: append([]string{}, res.Unchecked...)}
	}
	p := res.Provenance
	return verifyJSON{Verified: true, Subject: res.Subject.Name, Digest: string(res.Subject.Digest),
		BuilderID: p.BuilderID, Pipeline: p.PipelineName, Invocation: p.InvocationID,
		Checks: append([]string{}, res.Checks...), Unchecked: append([]string{}, res.Unchecked...)}
}

// registryFlags are the flags of every command that talks to a registry.
type registryFlags struct {
	timeout, deadline time.Duration
}

func (r *registryFlags) add(cmd *cobra.Command, deadline time.Duration) {
	cmd.Flags().DurationVar(&r.timeout, "timeout", oci.DefaultTimeout, "fail when the registry sends or accepts nothing for this long")
	cmd.Flags().DurationVar(&r.deadline, "deadline", deadline, "fail when talking to the registry takes longer than this in all")
}

// context returns ctx bounded by the overall deadline, and the registry options for the progress timeout.
func (r registryFlags) context(ctx context.Context) (context.Context, context.CancelFunc, []oci.RegistryOption, error) {
	if r.timeout <= 0 || r.deadline <= 0 {
		return nil, nil, nil, usagef("--timeout and --deadline must be positive (got %s and %s)", r.timeout, r.deadline)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, r.deadline,
		fmt.Errorf("%w: the registry did not finish within --deadline %s", context.DeadlineExceeded, r.deadline))
	return ctx, cancel, []oci.RegistryOption{oci.WithTimeout(r.timeout)}, nil
}

// deadlineError says that the overall deadline ended the command, when it did.
func deadlineError(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return fmt.Errorf("%w (%w)", context.Cause(ctx), err)
	}
	return err
}

// readTrustedKey reads a PEM public key file as the verifier's trusted material.
func readTrustedKey(path string) (root.TrustedMaterial, error) {
	pemData, err := readBounded(path, maxPublicKey, "a PEM public key") // verify_identity.go
	if err != nil {
		return nil, usagef("reading public key: %w", err)
	}
	pub, err := sign.ParsePublicKeyPEM(pemData)
	if err != nil {
		return nil, usagef("public key %q: %w", path, err)
	}
	return verify.KeyMaterial(pub), nil
}

func parseParams(kvs []string) (map[string]string, error) {
	if kvs == nil {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--param %q: want NAME=VALUE", kv)
		}
		if _, dup := m[k]; dup {
			return nil, usagef("--param %q given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

// flagFor names the flag that sets each expectation verify reports as unchecked.
var flagFor = map[string]string{
	"builder id": "--builder-id", "builder image": "--builder-digest", "pipeline digest": "--pipeline-digest",
	"params": "--param", "source digest": "--source-digest",
}

func printChecks(w io.Writer, res *verify.Result) {
	for _, c := range res.Checks {
		fmt.Fprintf(w, "  %s\n", c)
	}
	for _, u := range res.Unchecked {
		what, _, _ := strings.Cut(u, " (")
		fmt.Fprintf(w, "ssf: hint: not checked: %s; require it with %s\n", u, flagFor[what])
	}
}

// isRegistryRef reports whether arg names a manifest in a registry (REGISTRY/REPO@sha256:HEX or
// REGISTRY/REPO:TAG, the registry's host written out) rather than a file: an existing path is always a file.
func isRegistryRef(arg string) bool {
	if _, err := os.Lstat(arg); err == nil {
		return false
	}
	_, err := oci.ParseReference(arg)
	return err == nil
}

// verifyRegistryRef verifies ref through the verify package and prints the verdict.
func verifyRegistryRef(cmd *cobra.Command, ref, keyPath string, opts verify.Options, reg registryFlags, verbose bool, output outputFormat) error {
	ctx, cancel, ropts, err := reg.context(cmd.Context())
	if err != nil {
		return err
	}
	defer cancel()
	res, err := verify.Reference(ctx, ref, opts, ropts...)
	if errors.Is(err, verify.ErrBadReference) {
		return &usageError{err}
	}
	if err != nil {
		err = wrongKey(err, ref, keyPath)
		if verbose {
			printKeyDetail(cmd.ErrOrStderr(), err)
		}
		return deadlineError(ctx, err)
	}
	if verbose {
		printChecks(cmd.ErrOrStderr(), &res.Result)
		for _, s := range res.Skipped {
			fmt.Fprintf(cmd.ErrOrStderr(), "ssf: note: skipped: %s\n", printable(s.Error()))
		}
	}
	p := res.Provenance
	via, tag := "", ""
	if _, err := name.NewTag(ref, name.StrictValidation); err == nil && !strings.Contains(ref, "@") {
		tag = ref
		via = "tag " + ref + ", " // the verdict names the digest verified, and the tag that named it then
	}
	if output == outputJSON {
		j := verifiedJSON(&res.Result)
		j.Ref, j.Tag = res.Ref, tag
		for _, s := range res.Skipped {
			j.Skipped = append(j.Skipped, printable(s.Error()))
		}
		return writeJSON(cmd.OutOrStdout(), j)
	}
	if p == nil { // a task attestation about the manifest (never one of ssf's): no build to name
		fmt.Fprintf(cmd.OutOrStdout(), "verified: %s (%ssubject %q)%s\n", res.Ref, via, res.Subject.Name, signedBy(&res.Result))
		return nil
	}
	fmt.Fprintf(cmd.OutOrStdout(), "verified: %s (%ssubject %q) built by %s (pipeline %s, invocation %s)%s\n",
		res.Ref, via, res.Subject.Name, p.BuilderID, p.PipelineName, p.InvocationID, signedBy(&res.Result))
	return nil
}

// keyError is a bundle that the given key did not sign, said in one sentence; detail is the verifier's own
// account (sigstore-go's threshold of accepted signatures), printed with -v.
type keyError struct {
	msg    error // wraps verify.ErrVerification
	detail error
}

func (e *keyError) Error() string { return e.msg.Error() }
func (e *keyError) Unwrap() error { return e.msg }

// wrongKey turns a failure because what (a bundle file or a registry reference) is not signed by key (a key
// file, or a description of the key) into a keyError with a hint; any other error is returned as it is.
func wrongKey(err error, what, key string) error {
	if !errors.Is(err, verify.ErrNotSignedByKey) {
		return err
	}
	return &hintError{
		err: &keyError{msg: fmt.Errorf("%w: %s is not signed by this key (%s)", verify.ErrVerification, what, key), detail: err},
		hint: "give --key the public key of the factory that built it (`ssf keys public` on that factory); " +
			"a bundle changed after it was signed fails the same way; -v shows the verifier's own words",
	}
}

// printKeyDetail prints what the verifier said about a wrong key, for -v.
func printKeyDetail(w io.Writer, err error) {
	var ke *keyError
	if errors.As(err, &ke) {
		fmt.Fprintf(w, "ssf: note: %s\n", printable(ke.detail.Error()))
	}
}

// namesAPath reports whether path names anything (a dangling symlink too).
func namesAPath(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
