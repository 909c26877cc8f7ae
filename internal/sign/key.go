// Package sign signs in-toto statements as DSSE envelopes inside Sigstore bundles v0.3 with the factory's
// provenance key, so that ssf verify, sigstore-go and stock cosign all accept them.
//
// # Keys
//
// The provenance key is ECDSA P-256, stored as a PKCS#8 PEM file with mode 0600 in a directory created 0700.
// GenerateKey never overwrites an existing file and never leaves a half-written key at the final path; LoadKey
// refuses a key that group or others can read or write.
//
// # What it must never do
//
// This package never writes a private key with loose permissions, never replaces an existing key, and never signs
// without checking, right after signing, that the bundle verifies with the key's public half.
package sign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ssf-dev/ssf/internal/durable"
)

// ErrInsecureKeyFile is returned by LoadKey for a key file that group or others may read or write.
var ErrInsecureKeyFile = errors.New("private key file is accessible by group or others")

// maxKeyFile bounds what LoadKey reads: a P-256 PKCS#8 PEM is about 240 bytes.
const maxKeyFile = 64 << 10

// GenerateKey creates a new ECDSA P-256 private key at path as PKCS#8 PEM ("PRIVATE KEY") with mode 0600, creating
// the parent directory with mode 0700 if needed. It fails with an error wrapping os.ErrExist if path exists.
//
// The key is written with durable.WriteNew: to a temporary file (mode 0600 whatever the umask) in the same
// directory, synced, and then hard-linked to path. link(2) never replaces an existing file, so a concurrent
// GenerateKey or an existing key is never overwritten, and a crash leaves either no key or a complete one at path.
func GenerateKey(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating key directory %q: %w", dir, err)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("key file %q already exists; refusing to overwrite it: %w", path, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checking key file %q: %w", path, err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating ECDSA P-256 key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding private key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	if err := durable.WriteNew(path, data, 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("key file %q already exists; refusing to overwrite it: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("writing key file %q: %w", path, err)
	}
	return nil
}

// LoadKey reads an ECDSA P-256 private key written by GenerateKey. It refuses (wrapping ErrInsecureKeyFile) a
// file whose mode gives group or others any access, and anything that is not a regular file.
func LoadKey(path string) (*ecdsa.PrivateKey, error) {
	// Stat before opening: opening a FIFO would block.
	before, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("loading private key: %w", err)
	}
	if !before.Mode().IsRegular() {
		return nil, fmt.Errorf("private key %q is not a regular file (%s)", path, before.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loading private key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("checking private key %q: %w", path, err)
	}
	if !os.SameFile(before, fi) {
		return nil, fmt.Errorf("private key %q changed while it was being opened", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("refusing to use private key %q: %w (mode %04o); fix with: chmod 600 %s",
			path, ErrInsecureKeyFile, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading private key %q: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("private key %q is larger than %d bytes", path, maxKeyFile)
	}
	key, err := parsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("private key %q: %w", path, err)
	}
	return key, nil
}

func parsePrivateKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("PEM block is %q, want %q (PKCS#8)", block.Type, "PRIVATE KEY")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("unexpected data after the PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing PKCS#8: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want ECDSA P-256", k)
	}
	if ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("key is on curve %s, want P-256", ek.Curve.Params().Name)
	}
	return ek, nil
}

// PublicKeyPEM encodes pub as a PKIX "PUBLIC KEY" PEM block, the format cosign's --key reads.
func PublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM decodes one PKIX "PUBLIC KEY" PEM block.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("parsing public key: no PEM block found")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("parsing public key: PEM block is %q, want %q", block.Type, "PUBLIC KEY")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("parsing public key: unexpected data after the PEM block")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing public key: %w", err)
	}
	return pub, nil
}
