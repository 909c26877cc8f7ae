package oci_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/archive"
	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
)

// imageTarball is an OCI image layout tarball of a random image, as a build would write it.
func imageTarball(t *testing.T) []byte {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, "application/vnd.oci.image.manifest.v1+json")
	img = mutate.ConfigMediaType(img, "application/vnd.oci.image.config.v1+json")
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := archive.WriteTree(context.Background(), &b, dir, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestPublishVerifiesEachSBOMForItsOwnImageOnly: a build's SBOM names its own output's image, never another's,
// so publish checks it against that image alone. Checking every SBOM against every image cost N² signature
// checks of bundles of up to 64 MiB for a build of N images.
func TestPublishVerifiesEachSBOMForItsOwnImageOnly(t *testing.T) {
	ctx := context.Background()
	const n = 3
	files := map[string][]byte{}
	for i := range n {
		files[fmt.Sprintf("img%d.tar", i)] = imageTarball(t)
	}
	f := newFixture(t, files, nil)
	for o := range files {
		f.writeSBOM(t, f.key, o, content.SPDXBundleSuffix, content.SPDXPredicateType)
	}
	images := map[digest.Digest]bool{}
	for o := range files {
		images[f.subject(oci.ImageSubjectPrefix+o).Digest] = true
	}
	calls := 0
	check := f.attestationVerifier()
	host, _ := newRegistry(t, true)
	repo, _, _ := oci.ParseTarget(host + "/team/app")
	if _, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Verify: f.verifier(),
		VerifyAttestation: func(ctx context.Context, d digest.Digest, pt string, b []byte) error {
			if images[d] {
				calls++
			}
			return check(ctx, d, pt, b)
		}}); err != nil {
		t.Fatal(err)
	}
	if calls != n {
		t.Errorf("%d SBOMs were checked against images %d times, want %d (each against its own)", n, calls, n)
	}
}
