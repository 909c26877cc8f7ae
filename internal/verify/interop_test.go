package verify_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

// emptyTrustedRoot is the smallest trusted root cosign accepts: no CA, no log. With --key and
// --insecure-ignore-tlog it is all cosign needs to verify a key-only bundle offline.
const emptyTrustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`

// findCosign returns a cosign binary: $SSF_COSIGN, else cosign on PATH, else /root/go/bin/cosign. Without one the
// test is skipped, unless SSF_REQUIRE_INTEROP=1 makes that a failure.
func findCosign(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SSF_COSIGN"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("SSF_COSIGN=%s is not an executable: %v", p, err)
		}
		return p
	}
	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}
	if p, err := exec.LookPath("/root/go/bin/cosign"); err == nil {
		return p
	}
	if os.Getenv("SSF_REQUIRE_INTEROP") == "1" {
		t.Fatal("cosign not found (SSF_COSIGN, PATH, /root/go/bin/cosign) and SSF_REQUIRE_INTEROP=1")
	}
	t.Skip("cosign not found (set SSF_COSIGN or put cosign on PATH); set SSF_REQUIRE_INTEROP=1 to fail instead")
	return ""
}

// TestCosignInterop checks that stock cosign and ssf verify reach the same verdict on ssf's bundles: cosign
// verify-blob-attestation accepts a fresh bundle for its artifact, and rejects it for another file, with a flipped
// signature byte, with another key, and for a statement that is not SLSA provenance v1.
func TestCosignInterop(t *testing.T) {
	cosign := findCosign(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// The key goes through the files ssf init will write, not just memory.
	keyPath := filepath.Join(dir, "keys", "provenance.key")
	if err := sign.GenerateKey(keyPath); err != nil {
		t.Fatal(err)
	}
	key, err := sign.LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := sign.PublicKeyPEM(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, err := sign.PublicKeyPEM(&newKey(t).PublicKey)
	if err != nil {
		t.Fatal(err)
	}

	artifact := []byte("#!/bin/sh\necho built by ssf\n")
	good := signBuild(t, key, testBuild(artifact))
	notProvenance := signStatement(t, key, []byte(`{"_type":"https://in-toto.io/Statement/v1",`+
		`"subject":[{"name":"out/0","digest":{"sha256":"`+sha256Hex(artifact)+`"}}],`+
		`"predicateType":"https://example.com/not-provenance/v1","predicate":{}}`))

	files := map[string]string{
		"artifact":      write("artifact", artifact),
		"other":         write("other", []byte("#!/bin/sh\necho something else\n")),
		"pub":           write("pub.pem", pubPEM),
		"otherPub":      write("other.pem", otherPEM),
		"trustedRoot":   write("trusted_root.json", []byte(emptyTrustedRoot)),
		"good":          write("good.bundle.json", good),
		"flipped":       write("flipped.bundle.json", flipSignatureByte(t, good)),
		"notProvenance": write("not-provenance.bundle.json", notProvenance),
	}

	tests := []struct {
		name       string
		bundle     string
		key        string
		file       string
		ok         bool
		cosignSays string // a word cosign's error must contain, so a usage error can't pass for a rejection
	}{
		{name: "fresh bundle", bundle: "good", key: "pub", file: "artifact", ok: true},
		{name: "bundle for a different file", bundle: "good", key: "pub", file: "other", cosignSays: "digest"},
		{name: "flipped signature byte", bundle: "flipped", key: "pub", file: "artifact", cosignSays: "signature"},
		{name: "other key", bundle: "good", key: "otherPub", file: "artifact", cosignSays: "signature"},
		{name: "not SLSA provenance v1", bundle: "notProvenance", key: "pub", file: "artifact", cosignSays: "predicate type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			args := []string{"verify-blob-attestation",
				"--bundle", files[tt.bundle], "--key", files[tt.key], "--trusted-root", files["trustedRoot"],
				"--insecure-ignore-tlog", "--type", "slsaprovenance1", files[tt.file]}
			cmd := exec.CommandContext(ctx, cosign, args...)
			// A private HOME keeps cosign away from the user's ~/.sigstore cache.
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			out, err := cmd.CombinedOutput()
			t.Logf("$ cosign %s\n%s", strings.Join(args, " "), out)
			var exit *exec.ExitError
			switch {
			case err != nil && !errors.As(err, &exit):
				t.Fatalf("running cosign: %v", err)
			case tt.ok && err != nil:
				t.Errorf("cosign rejected ssf's bundle: %v", err)
			case tt.ok && !strings.Contains(string(out), "Verified OK"):
				t.Errorf("cosign exited 0 without saying Verified OK")
			case !tt.ok && err == nil:
				t.Errorf("cosign accepted a bundle it must reject")
			case !tt.ok && !strings.Contains(strings.ToLower(string(out)), tt.cosignSays):
				t.Errorf("cosign failed, but not for the expected reason (want %q in its output)", tt.cosignSays)
			}

			// ssf verify must agree with cosign.
			bundle, err := os.ReadFile(files[tt.bundle])
			if err != nil {
				t.Fatal(err)
			}
			pub, err := sign.ParsePublicKeyPEM(mustRead(t, files[tt.key]))
			if err != nil {
				t.Fatal(err)
			}
			_, err = verify.File(ctx, files[tt.file], bundle, verify.Options{Trusted: verify.KeyMaterial(pub), BuilderID: builderID})
			if (err == nil) != tt.ok {
				t.Errorf("ssf verify disagrees with cosign: err = %v, want ok = %v", err, tt.ok)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
