package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A step writes an image whose manifest says "layers" twice: encoding/json would check the second list (a layer in
// the tarball), a parser that keeps the first would pull a layer the control plane never hashed. The build fails
// naming the output, and signs nothing.
func TestBuildRefusesAmbiguousImageManifest(t *testing.T) {
	p := newProject(t, `
    - name: pack
      steps:
        - name: copy
          run: cp image.tar "$SSF_OUTPUTS/image.tar"
      outputs: [image.tar]
`)
	dir := t.TempDir()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	blob := func(b []byte) (string, int) {
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		if err := os.WriteFile(filepath.Join(blobs, h), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return "sha256:" + h, len(b)
	}
	descJSON := func(mediaType string, b []byte) string {
		d, n := blob(b)
		return `{"mediaType":"` + mediaType + `","digest":"` + d + `","size":` + strconv.Itoa(n) + `}`
	}
	config := descJSON("application/vnd.oci.image.config.v1+json", []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	good := descJSON("application/vnd.oci.image.layer.v1.tar", []byte("a layer in the tarball"))
	evilSum := sha256.Sum256([]byte("a layer elsewhere"))
	evil := `{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:` + hex.EncodeToString(evilSum[:]) + `","size":17}`
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` + config +
		`,"layers":[` + evil + `],"layers":[` + good + `]}`)
	m := descJSON("application/vnd.oci.image.manifest.v1+json", manifest)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "index.json"), []byte(`{"schemaVersion":2,"manifests":[`+m+`]}`), 0o644)
	p.write()
	p.addTarOf("image.tar", dir)
	r := p.build()
	if r.code != 1 || !strings.Contains(r.stderr, `output "image.tar"`) || !strings.Contains(r.stderr, `key "layers" appears twice in one object`) {
		t.Fatalf("exit %d, want 1 naming the output and the repeated key:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(p.out, "attestations")); !os.IsNotExist(err) {
		t.Errorf("a refused build left provenance in %s", p.out)
	}
}
