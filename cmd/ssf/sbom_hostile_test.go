package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sbom"
	"github.com/ssf-dev/ssf/internal/sign"
)

// ssfWithin runs ssf like ssf() does, but kills it after limit: the failure these tests catch is a hang.
func ssfWithin(t *testing.T, limit time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, ssfBin, args...)
	cmd.Env = append(os.Environ(), "SSF_HOME="+homeDir, "TMPDIR="+t.TempDir())
	r := runCmd(t, cmd)
	if ctx.Err() != nil {
		t.Fatalf("ssf %s still ran after %v", strings.Join(args, " "), limit)
	}
	return r
}

// Whoever can write OUT can put a fifo, a device or a symlink where an SBOM bundle belongs: ssf sbom reads the
// bundle as publish does, a regular file reached through real directories, and never blocks on it.
func TestSBOMRefusesFifoAndSymlinkBundles(t *testing.T) {
	b := newSBOMBuild(t)
	cdxPath := filepath.Join(b.out, "attestations", "bin", "ssf"+content.CycloneDXBundleSuffix)
	if err := os.Remove(cdxPath); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(cdxPath, 0o644); err != nil {
		t.Fatal(err)
	}
	r := ssfWithin(t, 20*time.Second, "sbom", b.output, "--key", b.pub)
	if r.code != 2 || !strings.Contains(r.stderr, "attestations/bin/ssf.cdx.sigstore.json") || !strings.Contains(r.stderr, "not a regular file") {
		t.Errorf("ssf sbom with a fifo for its bundle: exit %d, want 2 naming the bundle\n%s", r.code, r.stderr)
	}
	if err := os.Remove(cdxPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", cdxPath); err != nil {
		t.Fatal(err)
	}
	r = ssfWithin(t, 20*time.Second, "sbom", b.output, "--key", b.pub)
	if r.code != 2 || !strings.Contains(r.stderr, "symlink") {
		t.Errorf("ssf sbom with a symlink for its bundle: exit %d, want 2 naming the symlink\n%s", r.code, r.stderr)
	}
}

// Two outputs with the same bytes have SBOMs that differ in their names (and, for files, in the dependencies of
// the tasks that made them): ssf sbom OUT/b prints b's SBOM, not a's copied over it.
func TestSBOMRefusesAnotherOutputsSBOM(t *testing.T) {
	b := newSBOMBuild(t)
	twin := filepath.Join(b.out, "bin", "twin")
	copyFile(t, b.output, twin)
	for _, s := range []string{content.SPDXBundleSuffix, content.CycloneDXBundleSuffix} {
		copyFile(t, filepath.Join(b.out, "attestations", "bin", "ssf"+s), filepath.Join(b.out, "attestations", "bin", "twin"+s))
	}
	b.signProvenance(t)
	r := ssf(t, t.TempDir(), "sbom", twin, "--key", b.pub)
	if r.code != 1 || !strings.Contains(r.stderr, `"bin/twin"`) || r.stdout != "" {
		t.Errorf("ssf sbom of an output whose bundle is another output's: exit %d, want 1 naming bin/twin\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// --format spdx and cyclonedx print the signed document; names in it come from a step's build info, so
// characters a terminal acts on (C1 controls, bidi overrides) are printed as JSON escapes, which mean the same.
func TestSBOMJSONEscapesNames(t *testing.T) {
	b := newSBOMBuild(t)
	evil := filepath.Join(b.out, "evil")
	if err := os.WriteFile(evil, []byte("evil"), 0o644); err != nil {
		t.Fatal(err)
	}
	bom := cdx.NewBOM()
	name := "evil\u009b2J\u202everified\U000e0041"
	bom.Components = &[]cdx.Component{{Type: cdx.ComponentTypeLibrary, Name: name, Version: "v1"}}
	var doc bytes.Buffer
	if err := cdx.NewBOMEncoder(&doc, cdx.BOMFileFormatJSON).EncodeVersion(bom, cdx.SpecVersion1_6); err != nil {
		t.Fatal(err)
	}
	st, err := sbom.Statement([]provenance.Subject{{Name: "evil", Digest: fileSHA256(t, evil)}}, content.CycloneDXPredicateType, doc.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := sign.NewSigner(b.key).Statement(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.out, "attestations", "evil"+content.CycloneDXBundleSuffix), bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	b.signProvenance(t)
	r := ssf(t, t.TempDir(), "sbom", evil, "--key", b.pub, "--format", "cyclonedx")
	if r.code != 0 {
		t.Fatalf("ssf sbom: exit %d\n%s", r.code, r.stderr)
	}
	if strings.ContainsAny(r.stdout, "\u009b\u202e\U000e0041") {
		t.Errorf("ssf sbom --format cyclonedx printed a name from the SBOM unescaped:\n%q", r.stdout)
	}
	var got cdx.BOM
	if err := cdx.NewBOMDecoder(strings.NewReader(r.stdout), cdx.BOMFileFormatJSON).Decode(&got); err != nil ||
		got.Components == nil || (*got.Components)[0].Name != name {
		t.Errorf("the escaped document does not read back with the same name (%v)", err)
	}
}

// The provenance lists every SBOM bundle with its digest, so whoever holds OUT cannot publish the build without
// one (say, the SBOM that flags a module not ingested) or with another the factory signed for the same output. (A
// default build, signed by identity: its task's attestation is listed too.)
func TestPublishRefusesStrippedSBOM(t *testing.T) {
	p := builtDefault(t)
	var listed []string
	for _, b := range p.statement()["predicate"].(map[string]any)["runDetails"].(map[string]any)["byproducts"].([]any) {
		b := b.(map[string]any)
		if name := b["name"].(string); strings.HasSuffix(name, ".sigstore.json") {
			listed = append(listed, name)
			data, err := os.ReadFile(filepath.Join(p.out, filepath.FromSlash(name)))
			if err != nil || fileSHA256(t, filepath.Join(p.out, filepath.FromSlash(name))).Encoded() != b["digest"].(map[string]any)["sha256"] {
				t.Errorf("byproduct %s: the file (%d bytes, %v) does not have the listed digest", name, len(data), err)
			}
		}
	}
	if want := []string{"attestations/artifact.cdx.sigstore.json", "attestations/artifact.spdx.sigstore.json",
		"attestations/bin/readme.cdx.sigstore.json", "attestations/bin/readme.spdx.sigstore.json",
		"attestations/make.task.sigstore.json"}; !slices.Equal(sorted(listed), want) {
		t.Fatalf("bundle byproducts %q, want %q", listed, want)
	}
	host := distributionRegistry(t)
	stripped := filepath.Join(p.out, "attestations", "bin", "readme"+content.CycloneDXBundleSuffix)
	saved, err := os.ReadFile(stripped)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(stripped); err != nil {
		t.Fatal(err)
	}
	r := ssf(t, p.tmp, "publish", p.out, "--to", host+"/stripped/app")
	if r.code == 0 || !strings.Contains(r.stderr, "attestations/bin/readme.cdx.sigstore.json is missing") {
		t.Errorf("publish without a listed SBOM: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := os.WriteFile(stripped, saved, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := ssf(t, p.tmp, "publish", p.out, "--to", host+"/whole/app"); r.code != 0 {
		t.Errorf("publish of the whole build: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// The build's provenance lists each SBOM bundle by digest: an SBOM the factory signed for the same output name
// and bytes in another build (cross-checked against what that build ingested) is not this build's.
func TestSBOMRefusesAnotherBuildsSBOM(t *testing.T) {
	b := newSBOMBuild(t)
	if r := ssf(t, t.TempDir(), "sbom", b.output, "--key", b.pub); r.code != 0 || strings.Contains(r.stderr, "not tied to this build") {
		t.Fatalf("ssf sbom of the build as made: exit %d\n%s", r.code, r.stderr)
	}
	// Another build: the same statement signed again (ECDSA: another signature, another bundle digest).
	st, err := sbom.Statement([]provenance.Subject{{Name: "bin/ssf", Digest: fileSHA256(t, b.output)}}, content.CycloneDXPredicateType, b.res.CycloneDX)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := sign.NewSigner(b.key).Statement(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.out, "attestations", "bin", "ssf"+content.CycloneDXBundleSuffix), bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	r := ssf(t, t.TempDir(), "sbom", b.output, "--key", b.pub)
	if r.code != 1 || !strings.Contains(r.stderr, "provenance lists") || r.stdout != "" {
		t.Errorf("ssf sbom with another build's SBOM: exit %d, want 1 naming the provenance\n%s%s", r.code, r.stdout, r.stderr)
	}
}
