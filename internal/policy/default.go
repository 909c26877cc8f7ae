package policy

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultFS is the default policy set that `ssf policy init` writes: one file per gate, with its Rego unit tests.
// docs/policy.md documents each rule.
//
//go:embed default/*.rego
var DefaultFS embed.FS

// DefaultFiles returns the default policy set's files, sorted by name, as Load would read them once written.
func DefaultFiles() []File {
	entries, err := DefaultFS.ReadDir("default")
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	files := make([]File, 0, len(entries))
	for _, e := range entries {
		b, err := DefaultFS.ReadFile("default/" + e.Name())
		if err != nil {
			panic(err)
		}
		files = append(files, File{Name: e.Name(), Data: b})
	}
	return files
}

// ErrExists is returned by WriteDefault when a file it would write is already there.
var ErrExists = errors.New("policy file already exists")

// WriteDefault writes the default policy set into dir (created 0755 when missing), each file 0644. It never
// overwrites: if any of its files exists it writes nothing and returns an error wrapping ErrExists naming them.
func WriteDefault(dir string) ([]string, error) {
	files := DefaultFiles()
	var existing []string
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(dir, f.Name)); err == nil {
			existing = append(existing, filepath.Join(dir, f.Name))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("writing the default policy: %w", err)
		}
	}
	if len(existing) > 0 {
		return nil, fmt.Errorf("writing the default policy into %q: %w: %s (remove them or choose another directory)", dir, ErrExists, strings.Join(existing, ", "))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("writing the default policy: %w", err)
	}
	var written []string
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		// O_EXCL: a file that appeared since the check above is not overwritten either.
		out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return written, fmt.Errorf("writing the default policy: %w", err)
		}
		_, werr := out.Write(f.Data)
		if err := errors.Join(werr, out.Sync(), out.Close()); err != nil {
			return written, fmt.Errorf("writing %q: %w", p, err)
		}
		written = append(written, p)
	}
	return written, nil
}
