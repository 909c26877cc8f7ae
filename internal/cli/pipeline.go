package cli

import (
	"crypto"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/sign"
)

func newPipelineCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "pipeline",
		Short: "Sign pipeline files, and name the keys that sign them: sign, fingerprint, keygen",
		Long: `Signed pipelines. ssf pipeline sign FILE --key KEY.pem writes FILE.sig, a Sigstore bundle (v0.3) holding a
signature over the file's bytes, as cosign sign-blob --bundle does. For an ECDSA P-256 key, stock cosign
accepts it given a trusted root without logs (cosign v2 refuses a bundle without --trusted-root):
  openssl pkey -in KEY.pem -pubout -out KEY.pub
  echo '{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}' > TR.json
  cosign verify-blob --bundle FILE.sig --key KEY.pub --trusted-root TR.json --insecure-ignore-tlog FILE
ssf build verifies a FILE.sig beside the pipeline file: a signature that does not verify fails the build
(exit 1); one that does puts the key's fingerprint in the ssf.build policy gate's input.pipeline.signers, where
a policy can require it (docs/policy.md).`,
	}
	c.AddCommand(newPipelineSignCmd(), newPipelineFingerprintCmd(), newPipelineKeygenCmd())
	return c
}

func newPipelineSignCmd() *cobra.Command {
	var keyPath string
	cmd := &cobra.Command{
		Use:   "sign FILE --key KEY.pem",
		Short: "Sign a pipeline file: writes FILE.sig beside it",
		Long: `Sign FILE's bytes with the private key KEY.pem and write the signature to FILE.sig (replacing one that
is there), then print the key's fingerprint, sha256:<hex of its PKIX DER public key>, which is what a policy
lists to trust the key.

KEY.pem is an unencrypted PEM private key: ECDSA P-256 ("EC PRIVATE KEY" or PKCS #8 "PRIVATE KEY"; ssf pipeline
keygen writes one) or Ed25519 (PKCS #8, e.g. openssl genpkey -algorithm ed25519). It must not be readable by
group or others. Encrypted keys (cosign's) are refused. The public key itself is written in the bundle's key
hint, so ssf build needs no key to verify FILE.sig: it is the policy that decides which keys it trusts.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if keyPath == "" {
				return usagef("--key is required: the private key (PEM) to sign with; ssf pipeline keygen KEY.pem makes one")
			}
			key, err := readSigningKey(keyPath)
			if err != nil {
				return err
			}
			// Read as ssf build reads it (bounded, never blocking on a fifo, and a valid pipeline): the bytes signed
			// are the bytes a build will verify.
			p, err := pipeline.Load(a[0])
			if err != nil {
				return &usageError{err}
			}
			sig, err := pipeline.Sign(cmd.Context(), p.Data, key)
			if err != nil {
				return err
			}
			out := a[0] + pipeline.SignatureSuffix
			if err := writeReplacing(out, sig); err != nil {
				return fmt.Errorf("writing the signature: %w", err)
			}
			fp, err := pipeline.Fingerprint(key.Public())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), out)
			fmt.Fprintf(cmd.ErrOrStderr(), "signed %s with key %s\n", a[0], fp)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "private key to sign with: unencrypted PEM, ECDSA P-256 or Ed25519")
	return cmd
}

func newPipelineFingerprintCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "fingerprint KEY",
		Short: "Print a key's fingerprint, sha256:<hex of its PKIX DER public key>, as policies name signers",
		Long: `Print the fingerprint of KEY, a PEM public key ("PUBLIC KEY") or an unencrypted private key (ECDSA P-256
or Ed25519): sha256:<hex of the PKIX DER encoding of the public key>. It is how ssf.build's
input.pipeline.signers names the keys that signed a pipeline, so a policy lists these strings to trust a key.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			data, err := readSmallFile(a[0])
			if err != nil {
				return err
			}
			var pub crypto.PublicKey
			if block, _ := pem.Decode(data); block != nil && block.Type == "PUBLIC KEY" {
				if pub, err = sign.ParsePublicKeyPEM(data); err != nil {
					return usagef("%s: %w", a[0], err)
				}
			} else {
				key, err := pipeline.ParseSigningKey(data)
				if err != nil {
					return usagef("%s: %w", a[0], err)
				}
				pub = key.Public()
			}
			fp, err := pipeline.Fingerprint(pub)
			if err != nil {
				return usagef("%s: %w", a[0], err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), fp)
			return nil
		},
	}
}

func newPipelineKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen KEY.pem",
		Short: "Make an ECDSA P-256 key to sign pipelines with (mode 0600; never overwrites)",
		Long: `Make an ECDSA P-256 private key (PEM, mode 0600; never overwrites) and print its fingerprint,
sha256:<hex of its PKIX DER public key>, which is what a policy lists to trust the key. Only the private key is
written; its public key, for ssf pipeline fingerprint or cosign verify-blob --key, is
  openssl pkey -in KEY.pem -pubout -out KEY.pub`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := sign.GenerateKey(a[0]); err != nil {
				if errors.Is(err, os.ErrExist) {
					return &usageError{err}
				}
				return err
			}
			key, err := readSigningKey(a[0])
			if err != nil {
				return err
			}
			fp, err := pipeline.Fingerprint(key.Public())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), fp)
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s; its fingerprint (above) is what a policy lists to trust it\n", a[0])
			return nil
		},
	}
}

// readSigningKey reads a private key to sign pipelines with, refusing one that group or others can read.
func readSigningKey(path string) (crypto.Signer, error) {
	// The mode is judged on the file opened and read, not on a path stat'd first: a file swapped in between is not
	// read unjudged.
	data, fi, err := readSmallFileInfo(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, usagef("key %s has mode %04o: a private key must not be readable by group or others; chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	key, err := pipeline.ParseSigningKey(data)
	if err != nil {
		return nil, usagef("key %s: %w", path, err)
	}
	return key, nil
}

// readSmallFile reads a key file: a regular file of at most 64 KiB.
func readSmallFile(path string) ([]byte, error) {
	data, _, err := readSmallFileInfo(path)
	return data, err
}

// readSmallFileInfo is readSmallFile, with the opened file's FileInfo.
func readSmallFileInfo(path string) ([]byte, os.FileInfo, error) {
	// O_NONBLOCK: opening a fifo for reading otherwise waits for a writer, for ever (ssf catches SIGTERM); it is
	// refused below as not regular.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, usagef("reading %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil, nil, usagef("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10+1))
	if err != nil {
		return nil, nil, usagef("reading %s: %w", path, err)
	}
	if len(data) > 64<<10 {
		return nil, nil, usagef("%s is larger than 64 KiB: not a key", path)
	}
	return data, fi, nil
}

// writeReplacing writes data to path in one rename: a reader sees the old file or the new one, never a part.
func writeReplacing(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := errors.Join(tmp.Chmod(0o644), tmp.Sync(), tmp.Close()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
