package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"syscall"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/factory"
	"github.com/ssf-dev/ssf/internal/verify"
)

// identityFlags are ssf verify's keyless flags, named as cosign names them.
type identityFlags struct {
	id          verify.Identity
	trustedRoot string
}

func (f *identityFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.id.SAN, "certificate-identity", "", "keyless: the signer's identity, exactly (a SPIFFE ID: spiffe://TD/pipeline/NAME for a build, .../task/TASK for a task)")
	fl.StringVar(&f.id.SANRegexp, "certificate-identity-regexp", "", "keyless: the signer's identity, as a regular expression")
	fl.StringVar(&f.id.Issuer, "certificate-oidc-issuer", "", "keyless: the certificate's issuer, exactly (the factory's issuer, https://TD/issuer by default)")
	fl.StringVar(&f.id.IssuerRegexp, "certificate-oidc-issuer-regexp", "", "keyless: the certificate's issuer, as a regular expression")
	fl.StringVar(&f.trustedRoot, "trusted-root", "", "keyless: Sigstore trusted root (ssf trust export); default the local factory's trust")
}

// keyless reports whether any keyless flag was given.
func (f *identityFlags) keyless() bool {
	return f.id != (verify.Identity{}) || f.trustedRoot != ""
}

// material is the trusted material of a keyless verification: --trusted-root, or the local factory's trust
// (`ssf trust export` of $SSF_HOME), with the identity every bundle's certificate must name. Bad flags are usage
// errors naming the flag.
func (f *identityFlags) material() (root.TrustedMaterial, error) {
	td, issuer := localSigner() // verify_hint.go: the values to suggest, when there is a factory here
	if f.id.SAN == "" && f.id.SANRegexp == "" {
		return nil, usagef("--certificate-identity (or --certificate-identity-regexp) is required to verify a certificate bundle: name who must have signed it, e.g. spiffe://%s/pipeline/NAME (a build's provenance and SBOMs; NAME: the pipeline's metadata.name)", orDefault(td, "ssf.local"))
	}
	if f.id.Issuer == "" && f.id.IssuerRegexp == "" {
		return nil, usagef("--certificate-oidc-issuer (or --certificate-oidc-issuer-regexp) is required to verify a certificate bundle: the issuer of the factory that signed it, %s here (config.yaml's issuer)", orDefault(issuer, "https://TD/issuer by default"))
	}
	var tr *root.TrustedRoot
	if f.trustedRoot != "" {
		data, err := readBounded(f.trustedRoot, maxTrustedRoot, "a Sigstore trusted root")
		if err != nil {
			return nil, usagef("--trusted-root: %w", err)
		}
		if tr, err = root.NewTrustedRootFromJSON(data); err != nil {
			return nil, usagef("--trusted-root %q: not a Sigstore trusted root: %w", f.trustedRoot, err)
		}
	} else {
		h, err := home()
		if err != nil {
			return nil, err
		}
		data, err := h.TrustedRoot()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, usagef("no --trusted-root given and the local factory has no trust: %w (give --trusted-root FILE from `ssf trust export` of the factory that built it)", err)
		} else if err != nil {
			return nil, err
		}
		if tr, err = root.NewTrustedRootFromJSON(data); err != nil {
			return nil, fmt.Errorf("reading the local factory's trusted root: %w", err)
		}
	}
	m := verify.CertificateMaterial(tr, f.id)
	if err := (verify.Options{Trusted: m}).Validate(); err != nil {
		return nil, &usageError{err}
	}
	return m, nil
}

// Bounds of the small files a verifier reads whole: what is larger is not one (and /dev/zero must not take all
// memory).
const (
	maxTrustedRoot = 4 << 20  // a trusted root: certificate chains and keys, tens of KiB for the public-good instance
	maxPublicKey   = 64 << 10 // a PEM public key
)

// readBounded reads the regular file or stream at path, refusing one of more than max bytes as not being what (a
// usage error's words: the caller names the flag).
func readBounded(path string, max int64, what string) ([]byte, error) {
	// O_NONBLOCK: a fifo given (or swapped in before a reload) with no writer must not block the open for ever; it
	// reads as empty. A pipe with a writer (--key <(ssf keys public)) still reads whole, through Go's poller.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%q is larger than %d bytes: not %s", path, max, what)
	}
	return b, nil
}

// signedBy is the verdict's mention of a keyless signer ("" for a key): the identity the certificate names, not
// the flags, since a --certificate-identity-regexp may match more than was meant (unanchored, as cosign reads it,
// spiffe://TD/pipeline/app also matches spiffe://TD/pipeline/app/task/build and .../pipeline/app2).
func signedBy(res *verify.Result) string {
	if res.Signer == "" {
		return ""
	}
	return ", signed by " + res.Signer
}

// bundleHasCertificate reports whether the bundle file at path is signed by a certificate (keyless).
func bundleHasCertificate(path string) bool {
	b, err := verify.ReadBundle(path)
	return err == nil && verify.HasCertificate(b)
}

// factoryMaterialFor is the local factory's trust for a bundle it made: its provenance key for a key-signed
// bundle, or its trusted root for a certificate bundle, accepting only a run identity of its trust domain
// (spiffe://TD/pipeline/NAME, never a task's) with its issuer — what signs a build's provenance and SBOMs.
func factoryMaterialFor(bundle []byte) (root.TrustedMaterial, error) {
	if !verify.HasCertificate(bundle) {
		return factoryKeyMaterial()
	}
	h, err := home()
	if err != nil {
		return nil, err
	}
	cfg, err := h.Config()
	if err != nil {
		return nil, err
	}
	f := identityFlags{id: pipelinesIdentity(cfg)}
	return f.material()
}

// pipelinesIdentity is the identity of the builds of the factory configured by cfg: a run of any of its pipelines
// (spiffe://TD/pipeline/NAME, never a task's), certified by its issuer.
func pipelinesIdentity(cfg factory.Config) verify.Identity {
	return verify.Identity{
		SANRegexp: "^" + regexp.QuoteMeta("spiffe://"+cfg.TrustDomain+"/pipeline/") + "[a-z0-9][a-z0-9_-]*$",
		Issuer:    cfg.Issuer,
	}
}
