package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"debug/buildinfo"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/opencontainers/go-digest"
	spdxjson "github.com/spdx/tools-golang/json"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/deps"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sbom"
	"github.com/ssf-dev/ssf/internal/sign"
)

// sbomBuild is a build output directory holding a real Go binary (the ssf binary under test, which links
// dozens of modules) and its two SBOMs, signed with a throwaway key, laid out as ssf build lays them out.
type sbomBuild struct {
	out, output, pub string
	key              *ecdsa.PrivateKey
	res              *sbom.Result
	flagged          string // the one module left out of the ingested set
}

func newSBOMBuild(t *testing.T) *sbomBuild {
	t.Helper()
	b := &sbomBuild{out: filepath.Join(t.TempDir(), "out")}
	b.output = filepath.Join(b.out, "bin", "ssf")
	for _, d := range []string{"bin", "attestations/bin"} {
		if err := os.MkdirAll(filepath.Join(b.out, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, ssfBin, b.output)

	info, err := buildinfo.ReadFile(b.output)
	if err != nil {
		t.Fatal(err)
	}
	// Every module with a sum was "ingested" but one, which the SBOMs must flag.
	var ingested []deps.Dependency
	for _, m := range info.Deps {
		if m.Replace != nil || m.Sum == "" {
			continue
		}
		if b.flagged == "" && m.Path == "github.com/spf13/cobra" {
			b.flagged = m.Path + "@" + m.Version
			continue
		}
		ingested = append(ingested, deps.Dependency{Kind: deps.Gomod, Name: m.Path, Version: m.Version,
			URI: "pkg:golang/" + m.Path + "@" + m.Version, URL: "https://proxy.golang.org/" + m.Path + "/@v/" + m.Version + ".zip",
			Digest: digest.FromString(m.Path + m.Version), Pin: m.Sum})
	}
	if b.flagged == "" {
		t.Fatal("the ssf binary does not link github.com/spf13/cobra")
	}
	sum := fileSHA256(t, b.output)
	b.res, err = sbom.Generate(context.Background(), sbom.Input{Output: "bin/ssf", Digest: sum, File: b.output,
		Deps: ingested, Pipeline: "interop", Invocation: "interop-1", Created: time.Now(), Tool: "ssf v0.0.0-test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.res.NotIngested) != 1 || !strings.HasPrefix(b.res.NotIngested[0], b.flagged+":") {
		t.Fatalf("NotIngested = %q, want only %s", b.res.NotIngested, b.flagged)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b.key = key
	pem, err := sign.PublicKeyPEM(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	b.pub = filepath.Join(b.out, "..", "sbom.pub")
	if err := os.WriteFile(b.pub, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	subjects := []provenance.Subject{{Name: "bin/ssf", Digest: sum}}
	for _, f := range []struct {
		pt, suffix string
		doc        []byte
	}{
		{content.SPDXPredicateType, content.SPDXBundleSuffix, b.res.SPDX},
		{content.CycloneDXPredicateType, content.CycloneDXBundleSuffix, b.res.CycloneDX},
	} {
		st, err := sbom.Statement(subjects, f.pt, f.doc)
		if err != nil {
			t.Fatal(err)
		}
		bundle, err := sign.NewSigner(key).Statement(context.Background(), st)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(b.out, "attestations", "bin", "ssf"+f.suffix), bundle, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.signProvenance(t)
	return b
}

// signProvenance (re)writes OUT's provenance as ssf build would: every file outside attestations/ a subject, and
// every SBOM bundle in attestations/ a byproduct with its digest.
func (b *sbomBuild) signProvenance(t *testing.T) {
	t.Helper()
	pb := provenance.Build{
		BuilderID: "https://ssf.dev/factory/test", BuilderVersion: map[string]string{"ssf": "test"},
		InvocationID: "interop-1", StartedOn: time.Unix(1, 0), FinishedOn: time.Unix(2, 0),
		PipelineName: "interop", PipelineDigest: digest.FromString("pipeline"), Params: map[string]string{}, SourceURI: "file:///src",
		Dependencies: []provenance.ResourceDescriptor{{Name: "source", URI: "file:///src", Digest: provenance.DigestSet(digest.FromString("src"))}},
	}
	err := filepath.WalkDir(b.out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(b.out, p)
		rel = filepath.ToSlash(rel)
		switch {
		case rel == "attestations/provenance.sigstore.json":
		case strings.HasPrefix(rel, "attestations/"):
			pb.Byproducts = append(pb.Byproducts, provenance.ResourceDescriptor{Name: rel,
				MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json", Digest: provenance.DigestSet(fileSHA256(t, p))})
		default:
			pb.Subjects = append(pb.Subjects, provenance.Subject{Name: rel, Digest: fileSHA256(t, p)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := provenance.Statement(pb)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := sign.NewSigner(b.key).Statement(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.out, "attestations", "provenance.sigstore.json"), bundle, 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func fileSHA256(t *testing.T, path string) digest.Digest {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := digest.SHA256.FromReader(f)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Stock cosign verifies both SBOM bundles as attestations of the binary, by their predicate types.
func TestCosignVerifiesSBOMs(t *testing.T) {
	cosign := interopTool(t, "SSF_COSIGN", "cosign")
	b := newSBOMBuild(t)
	tr := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(tr, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(suffix, typ, file string) (string, error) {
		cmd := exec.Command(cosign, "verify-blob-attestation", "--bundle", filepath.Join(b.out, "attestations", "bin", "ssf"+suffix),
			"--key", b.pub, "--trusted-root", tr, "--insecure-ignore-tlog", "--type", typ, file)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct{ suffix, typ string }{
		{content.SPDXBundleSuffix, "spdxjson"},
		{content.CycloneDXBundleSuffix, "cyclonedx"},
	} {
		if out, err := run(tc.suffix, tc.typ, b.output); err != nil || !strings.Contains(out, "Verified OK") {
			t.Errorf("cosign --type %s rejected the SBOM: %v\n%s", tc.typ, err, out)
		}
	}
	// The negative cases: the other type, and another file.
	if out, err := run(content.SPDXBundleSuffix, "cyclonedx", b.output); err == nil {
		t.Errorf("cosign accepted the SPDX bundle as --type cyclonedx:\n%s", out)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := os.WriteFile(other, []byte("not the binary"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(content.CycloneDXBundleSuffix, "cyclonedx", other); err == nil {
		t.Errorf("cosign accepted the SBOM for another file:\n%s", out)
	}
}

// ssf sbom verifies and prints what the factory attested, in all three formats, and refuses a changed output.
func TestSBOMCommand(t *testing.T) {
	b := newSBOMBuild(t)
	tmp := t.TempDir()

	r := ssf(t, tmp, "sbom", b.output, "--key", b.pub)
	if r.code != 0 {
		t.Fatalf("ssf sbom: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "INGESTED") {
		t.Errorf("table header %q", lines[0])
	}
	var cobra, main string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		switch f[0] {
		case "github.com/spf13/cobra":
			cobra = l
		case "github.com/ssf-dev/ssf":
			main = l
		}
	}
	name, version, _ := strings.Cut(b.flagged, "@")
	if f := strings.Fields(cobra); len(f) != 5 || f[1] != version || f[2] != "go-module" || f[3] != "pkg:golang/"+name+"@"+version || f[4] != "NO" {
		t.Errorf("cobra's row %q, want %s %s go-module pkg:golang/%s@%s NO", cobra, name, version, name, version)
	}
	if f := strings.Fields(main); len(f) != 5 || f[4] != "-" {
		t.Errorf("main module's row %q, want INGESTED -", main)
	}
	if !strings.Contains(r.stderr, "ssf: warning: 1 module compiled in but not ingested") {
		t.Errorf("no warning about the module not ingested:\n%s", r.stderr)
	}
	if n := strings.Count(r.stdout, " yes\n"); n < 10 {
		t.Errorf("only %d ingested rows:\n%s", n, r.stdout)
	}

	r = ssf(t, tmp, "sbom", b.output, "--key", b.pub, "--format", "spdx")
	if r.code != 0 {
		t.Fatalf("ssf sbom --format spdx: exit %d\n%s", r.code, r.stderr)
	}
	doc, err := spdxjson.Read(strings.NewReader(r.stdout))
	if err != nil || doc.SPDXVersion != "SPDX-2.3" || len(doc.Packages) < 10 {
		t.Errorf("ssf sbom --format spdx printed no SPDX 2.3 document (%v)", err)
	}
	r = ssf(t, tmp, "sbom", b.output, "--key", b.pub, "--format", "cyclonedx")
	if r.code != 0 {
		t.Fatalf("ssf sbom --format cyclonedx: exit %d\n%s", r.code, r.stderr)
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(strings.NewReader(r.stdout), cdx.BOMFileFormatJSON).Decode(&bom); err != nil ||
		bom.SpecVersion != cdx.SpecVersion1_6 || bom.Components == nil || len(*bom.Components) < 10 {
		t.Errorf("ssf sbom --format cyclonedx printed no CycloneDX 1.6 document (%v)", err)
	}

	// The same bytes signed for a changed output: a failed check.
	f, err := os.OpenFile(b.output, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0})
	f.Close()
	r = ssf(t, tmp, "sbom", b.output, "--key", b.pub)
	if r.code != 1 || !strings.Contains(r.stderr, "is not a subject") && !strings.Contains(r.stderr, "sigstore-go rejected") {
		t.Errorf("ssf sbom of a changed output: exit %d\n%s", r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("ssf sbom printed a table for a changed output:\n%s", r.stdout)
	}
}

// Names in an SBOM come from the output's build info, which a step wrote: ssf sbom escapes them for the terminal.
func TestSBOMTableEscapesNames(t *testing.T) {
	b := newSBOMBuild(t)
	evil := filepath.Join(b.out, "evil")
	if err := os.WriteFile(evil, []byte("evil"), 0o644); err != nil {
		t.Fatal(err)
	}
	bom := cdx.NewBOM()
	bom.Components = &[]cdx.Component{{Type: cdx.ComponentTypeLibrary, Name: "evil\x1b[2J\x1b[Hverified", Version: "v1\u202e"}}
	var doc bytes.Buffer
	if err := cdx.NewBOMEncoder(&doc, cdx.BOMFileFormatJSON).EncodeVersion(bom, cdx.SpecVersion1_6); err != nil {
		t.Fatal(err)
	}
	st, err := sbom.Statement([]provenance.Subject{{Name: "evil", Digest: digest.FromString("evil")}}, content.CycloneDXPredicateType, doc.Bytes())
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
	r := ssf(t, t.TempDir(), "sbom", evil, "--key", b.pub)
	if r.code != 0 {
		t.Fatalf("ssf sbom: exit %d\n%s", r.code, r.stderr)
	}
	if strings.ContainsAny(r.stdout, "\x1b\u202e") || !strings.Contains(r.stdout, `evil\u001b[2J\u001b[Hverified`) {
		t.Errorf("ssf sbom printed a name from the SBOM unescaped:\n%q", r.stdout)
	}
}

// A third-party JSON Schema validator, ajv (installed by make tools), checks the CycloneDX document against the
// official CycloneDX 1.6 schema, which cyclonedx-go ships in its module (pinned by go.sum). No SPDX 2.3 JSON schema
// can be had offline here (see TestSBOMCommand and internal/sbom for the SPDX checks: tools-golang reads it back).
func TestSBOMSchemas(t *testing.T) {
	ajv := interopTool(t, "SSF_SBOM_VALIDATOR", "ajv-cli/node_modules/.bin/ajv")
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/CycloneDX/cyclonedx-go").Output()
	schemas := filepath.Join(strings.TrimSpace(string(out)), "schema")
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("finding cyclonedx-go's schemas: %v", err)
	}
	b := newSBOMBuild(t)
	dir := t.TempDir()
	validate := func(doc []byte) (string, error) {
		p := filepath.Join(dir, "sbom.cdx.json")
		if err := os.WriteFile(p, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		// --strict=false: the schema uses formats ajv-formats lacks (iri-reference, idn-email); those alone go
		// unchecked, with a note on stderr.
		cmd := exec.Command(ajv, "validate", "--spec=draft7", "-c", "ajv-formats", "--strict=false", "--all-errors",
			"-s", filepath.Join(schemas, "bom-1.6.schema.json"),
			"-r", filepath.Join(schemas, "spdx.schema.json"),
			"-r", filepath.Join(schemas, "jsf-0.82.schemax.json"),
			"-d", p)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Run()
		return buf.String(), err
	}
	if out, err := validate(b.res.CycloneDX); err != nil || !strings.Contains(out, " valid") {
		t.Errorf("ajv rejected the CycloneDX SBOM: %v\n%s", err, out)
	}
	// The validator is live: a component of a type the schema does not know is refused.
	bad := bytes.Replace(b.res.CycloneDX, []byte(`"type":"library"`), []byte(`"type":"banana"`), 1)
	if out, err := validate(bad); err == nil || !strings.Contains(out, "invalid") {
		t.Errorf("ajv accepted a CycloneDX document with a component of type banana: %v\n%s", err, out)
	}
}
