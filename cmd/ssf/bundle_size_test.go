package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bundle is untrusted until it verifies: ssf verify and ssf publish read at most 16 MiB of one, so a huge
// file (here 1 GiB, sparse) is refused with a message instead of being read into memory whole.
func TestHugeBundleRefused(t *testing.T) {
	tmp := t.TempDir()
	pub := throwawayPublicKey(t, tmp)
	artifact := filepath.Join(tmp, "artifact")
	out := filepath.Join(tmp, "out")
	bundle := filepath.Join(out, "attestations", "provenance.sigstore.json")
	if err := os.MkdirAll(filepath.Dir(bundle), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{artifact, []byte("artifact\n")}, {bundle, nil}} {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Truncate(bundle, 1<<30); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		append([]string{"verify", artifact, "--bundle", bundle}, asRun...),
		{"verify", artifact, "--bundle", bundle, "--key", pub},
		{"publish", out, "--to", "127.0.0.1:1/app"},
		{"publish", out, "--to", "127.0.0.1:1/app", "--key", pub},
	} {
		r := ssf(t, tmp, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "is larger than 16777216 bytes") {
			t.Errorf("ssf %s: exit %d, want 2 and a bundle too large\n%s%s", args[0], r.code, r.stdout, r.stderr)
		}
	}
}
