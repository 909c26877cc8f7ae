package sign

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestGenerateKeyModes(t *testing.T) {
	// A permissive umask must not loosen the key's mode.
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })

	dir := filepath.Join(t.TempDir(), "home", "keys")
	path := filepath.Join(dir, "provenance.key")
	if err := GenerateKey(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key mode = %04o, want 0600", got)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("key directory mode = %04o, want 0700", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("key directory holds %d entries, want only the key (temporary file left behind?)", len(entries))
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key file is not a PKCS#8 PEM: %q", data)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if ek, ok := k.(*ecdsa.PrivateKey); !ok || ek.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", k)
	}

	loaded, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Equal(k) {
		t.Error("LoadKey returned a different key from the one written")
	}
}

func TestGenerateKeyRefusesOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "provenance.key")
	if err := GenerateKey(path); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	err = GenerateKey(path)
	if !errors.Is(err, os.ErrExist) {
		t.Fatalf("second GenerateKey: err = %v, want one wrapping os.ErrExist", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Error("existing key was replaced")
	}

	// A dangling symlink at the path is not a missing key: it must not be written through.
	link := filepath.Join(t.TempDir(), "link.key")
	target := filepath.Join(t.TempDir(), "elsewhere.key")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := GenerateKey(link); !errors.Is(err, os.ErrExist) {
		t.Errorf("GenerateKey over a dangling symlink: err = %v, want os.ErrExist", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("GenerateKey wrote through a symlink to %s", target)
	}
}

// TestGenerateKeyConcurrent: of many racing GenerateKey calls exactly one wins, the rest get os.ErrExist.
func TestGenerateKeyConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "provenance.key")
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = GenerateKey(path) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, os.ErrExist):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d GenerateKey calls succeeded, want exactly 1", won)
	}
	if _, err := LoadKey(path); err != nil {
		t.Errorf("key left by the race does not load: %v", err)
	}
}

func TestLoadKeyRefuses(t *testing.T) {
	good := func(t *testing.T) string {
		path := filepath.Join(t.TempDir(), "k")
		if err := GenerateKey(path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	writeKey := func(t *testing.T, data []byte) string {
		path := filepath.Join(t.TempDir(), "k")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pkcs8 := func(t *testing.T, k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	tests := []struct {
		name string
		path func(t *testing.T) string
		want string
		is   error
	}{
		{"mode 0644", func(t *testing.T) string {
			p := good(t)
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, "chmod 600", ErrInsecureKeyFile},
		{"mode 0640", func(t *testing.T) string {
			p := good(t)
			if err := os.Chmod(p, 0o640); err != nil {
				t.Fatal(err)
			}
			return p
		}, "chmod 600", ErrInsecureKeyFile},
		{"mode 0602 (others may write)", func(t *testing.T) string {
			p := good(t)
			if err := os.Chmod(p, 0o602); err != nil {
				t.Fatal(err)
			}
			return p
		}, "chmod 600", ErrInsecureKeyFile},
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none") }, "", fs.ErrNotExist},
		{"directory", func(t *testing.T) string { return t.TempDir() }, "not a regular file", nil},
		{"not PEM", func(t *testing.T) string { return writeKey(t, []byte("hello")) }, "no PEM block", nil},
		{"EC PRIVATE KEY block", func(t *testing.T) string {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der, _ := x509.MarshalECPrivateKey(k)
			return writeKey(t, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
		}, "PKCS#8", nil},
		{"P-384", func(t *testing.T) string {
			k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			return writeKey(t, pkcs8(t, k))
		}, "want P-256", nil},
		{"ed25519", func(t *testing.T) string {
			_, k, _ := ed25519.GenerateKey(rand.Reader)
			return writeKey(t, pkcs8(t, k))
		}, "want ECDSA P-256", nil},
		{"trailing data", func(t *testing.T) string {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			return writeKey(t, append(pkcs8(t, k), "junk"...))
		}, "after the PEM block", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path(t)
			k, err := LoadKey(path)
			if err == nil {
				t.Fatalf("LoadKey accepted it: %v", k)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want one wrapping %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestPublicKeyPEMRoundTrip(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p, err := PublicKeyPEM(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(p), "-----BEGIN PUBLIC KEY-----\n") {
		t.Errorf("not a PUBLIC KEY PEM: %q", p)
	}
	pub, err := ParsePublicKeyPEM(p)
	if err != nil {
		t.Fatal(err)
	}
	if !k.PublicKey.Equal(pub) {
		t.Error("round trip changed the key")
	}

	bad := map[string][]byte{
		"empty":       nil,
		"private key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}),
		"bad DER":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}),
		"two blocks":  append(append([]byte{}, p...), p...),
	}
	for name, in := range bad {
		if _, err := ParsePublicKeyPEM(in); err == nil {
			t.Errorf("%s: ParsePublicKeyPEM accepted it", name)
		}
	}
}
