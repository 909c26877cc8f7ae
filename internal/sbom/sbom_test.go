package sbom_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/opencontainers/go-digest"
	spdxjson "github.com/spdx/tools-golang/json"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
	"github.com/spdx/tools-golang/spdxlib"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/deps"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sbom"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

var created = time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)

func fileDigest(t testing.TB, path string) digest.Digest {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return digest.NewDigest(digest.SHA256, h)
}

func fakeDigest(s string) digest.Digest { return digest.FromString(s) }

// goBinary builds testdata/hello, a real Go program with third-party modules, whose build info names them with
// their sums (a test binary's own build info lists no modules).
func goBinary(t testing.TB) (string, *debug.BuildInfo) {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "hello")
	cmd := exec.Command("go", "build", "-o", exe, "./testdata/hello")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./testdata/hello: %v\n%s", err, out)
	}
	info, err := buildinfo.ReadFile(exe)
	if err != nil {
		t.Fatalf("reading the build info of %s: %v", exe, err)
	}
	if len(info.Deps) < 3 {
		t.Fatalf("testdata/hello names %d modules, want at least 3", len(info.Deps))
	}
	return exe, info
}

func input(out, file string, d digest.Digest, ds []deps.Dependency) sbom.Input {
	return sbom.Input{Output: out, Digest: d, File: file, Deps: ds, Pipeline: "demo", Invocation: "inv-1",
		Created: created, Tool: "ssf v0.1.0-test"}
}

type cdxComp struct {
	c     cdx.Component
	props map[string]string
}

func cdxComponents(t *testing.T, doc []byte) (*cdx.BOM, map[string]cdxComp) {
	t.Helper()
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(doc), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatalf("cyclonedx-go cannot decode the document: %v\n%s", err, doc)
	}
	if bom.SpecVersion != cdx.SpecVersion1_6 || bom.BOMFormat != "CycloneDX" {
		t.Fatalf("specVersion %s, bomFormat %q; want 1.6, CycloneDX", bom.SpecVersion, bom.BOMFormat)
	}
	out := map[string]cdxComp{}
	if bom.Components == nil {
		return &bom, out
	}
	for _, c := range *bom.Components {
		props := map[string]string{}
		if c.Properties != nil {
			for _, p := range *c.Properties {
				props[p.Name] = p.Value
			}
		}
		out[c.Name+"@"+c.Version] = cdxComp{c, props}
	}
	return &bom, out
}

func spdxDocument(t *testing.T, doc []byte) *spdx.Document {
	t.Helper()
	d, err := spdxjson.Read(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("tools-golang cannot read the document: %v\n%s", err, doc)
	}
	if d.SPDXVersion != "SPDX-2.3" {
		t.Fatalf("spdxVersion %q, want SPDX-2.3", d.SPDXVersion)
	}
	if err := spdxlib.ValidateDocument(d); err != nil {
		t.Fatalf("tools-golang finds the document invalid: %v", err)
	}
	return d
}

func spdxPackage(d *spdx.Document, name, version string) *spdx.Package {
	for _, p := range d.Packages {
		if p.PackageName == name && p.PackageVersion == version {
			return p
		}
	}
	return nil
}

func annotations(p *spdx.Package) map[string]string {
	m := map[string]string{}
	for _, a := range p.Annotations {
		k, v, _ := strings.Cut(a.AnnotationComment, "=")
		m[k] = v
	}
	return m
}

func TestGoBinary(t *testing.T) {
	exe, info := goBinary(t)
	sum := fileDigest(t, exe)

	// Ingest every module with a sum but two: one left out, one pinned to another hash.
	var ingested []deps.Dependency
	var missing, wrongSum *debug.Module
	for _, d := range info.Deps {
		if d.Replace != nil || d.Sum == "" {
			continue
		}
		switch {
		case missing == nil:
			missing = d
			continue
		case wrongSum == nil:
			wrongSum = d
			ingested = append(ingested, deps.Dependency{Kind: deps.Gomod, Name: d.Path, Version: d.Version,
				Digest: fakeDigest(d.Path), Pin: "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", URL: "https://proxy.example/" + d.Path})
			continue
		}
		ingested = append(ingested, deps.Dependency{Kind: deps.Gomod, Name: d.Path, Version: d.Version,
			Digest: fakeDigest(d.Path), Pin: d.Sum, URL: "https://proxy.example/" + d.Path + "/@v/" + d.Version + ".zip"})
	}

	res, err := sbom.Generate(context.Background(), input("bin/hello", exe, sum, ingested))
	if err != nil {
		t.Fatal(err)
	}
	if !res.GoBinary {
		t.Fatal("GoBinary is false for a Go binary")
	}
	wantFlagged := []string{missing.Path + "@" + missing.Version, wrongSum.Path + "@" + wrongSum.Version}
	slices.Sort(wantFlagged)
	var gotFlagged []string
	for _, n := range res.NotIngested {
		gotFlagged = append(gotFlagged, strings.SplitN(n, ":", 2)[0])
	}
	if !slices.Equal(gotFlagged, wantFlagged) {
		t.Errorf("NotIngested = %q, want exactly %q", res.NotIngested, wantFlagged)
	}

	bom, comps := cdxComponents(t, res.CycloneDX)
	if mc := bom.Metadata.Component; mc == nil || mc.Name != "bin/hello" || mc.Type != cdx.ComponentTypeApplication ||
		(*mc.Hashes)[0].Value != sum.Encoded() {
		t.Errorf("metadata component = %+v, want the output with its sha256", mc)
	}
	d := spdxDocument(t, res.SPDX)
	for _, m := range info.Deps {
		if m.Replace != nil || m.Sum == "" {
			continue
		}
		key := m.Path + "@" + m.Version
		c, ok := comps[key]
		if !ok {
			t.Errorf("CycloneDX: module %s missing", key)
			continue
		}
		if want := "pkg:golang/" + m.Path + "@" + strings.ReplaceAll(m.Version, "+", "%2B"); c.c.PackageURL != want {
			t.Errorf("CycloneDX %s: purl %q, want %q", key, c.c.PackageURL, want)
		}
		if c.props[sbom.PropGoSum] != m.Sum {
			t.Errorf("CycloneDX %s: %s = %q, want %q", key, sbom.PropGoSum, c.props[sbom.PropGoSum], m.Sum)
		}
		p := spdxPackage(d, m.Path, m.Version)
		if p == nil {
			t.Errorf("SPDX: module %s missing", key)
			continue
		}
		a := annotations(p)
		if a[sbom.PropGoSum] != m.Sum {
			t.Errorf("SPDX %s: %s = %q, want %q", key, sbom.PropGoSum, a[sbom.PropGoSum], m.Sum)
		}
		wantIngested := "true"
		if m == missing || m == wrongSum {
			wantIngested = "false"
		}
		if c.props[sbom.PropIngested] != wantIngested || a[sbom.PropIngested] != wantIngested {
			t.Errorf("%s: ingested CycloneDX %q SPDX %q, want %q", key, c.props[sbom.PropIngested], a[sbom.PropIngested], wantIngested)
		}
		if wantIngested == "true" {
			if c.c.Hashes == nil || (*c.c.Hashes)[0].Value != fakeDigest(m.Path).Encoded() {
				t.Errorf("CycloneDX %s: hashes %v, want the ingested zip's sha256", key, c.c.Hashes)
			}
			if !strings.HasPrefix(p.PackageDownloadLocation, "https://proxy.example/") {
				t.Errorf("SPDX %s: downloadLocation %q", key, p.PackageDownloadLocation)
			}
		}
	}
	if c := comps[wrongSum.Path+"@"+wrongSum.Version]; !strings.Contains(c.props[sbom.PropNotIngested], wrongSum.Sum) {
		t.Errorf("the reason for %s does not name both hashes: %q", wrongSum.Path, c.props[sbom.PropNotIngested])
	}
	if c := comps[info.Main.Path+"@"+info.Main.Version]; c.props[sbom.PropMainModule] != "true" || c.props[sbom.PropIngested] != "" {
		t.Errorf("main module %s: properties %v", info.Main.Path, c.props)
	}
	// Go version and build settings ride on the output.
	var goVersion string
	for _, p := range *bom.Metadata.Component.Properties {
		if p.Name == sbom.PropGoVersion {
			goVersion = p.Value
		}
	}
	if goVersion != info.GoVersion {
		t.Errorf("Go version property %q, want %q", goVersion, info.GoVersion)
	}

	// SPDX: the document describes the output, which contains each module.
	var describes, contains int
	for _, r := range d.Relationships {
		switch {
		case r.Relationship == "DESCRIBES" && r.RefB.ElementRefID == "Output":
			describes++
		case r.Relationship == "CONTAINS" && r.RefA.ElementRefID == "Output":
			contains++
		}
	}
	if describes != 1 || contains != len(d.Packages)-1 {
		t.Errorf("SPDX relationships: %d DESCRIBES Output, %d CONTAINS for %d packages", describes, contains, len(d.Packages))
	}
	// CycloneDX: the output depends on every component.
	if deps := *bom.Dependencies; len(deps) != 1 || len(*deps[0].Dependencies) != len(*bom.Components) {
		t.Errorf("CycloneDX dependencies: %+v", deps)
	}
}

func TestOtherOutputUsesIngestedDependencies(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bundle.js")
	if err := os.WriteFile(file, []byte("console.log('hi')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sha512sum := sha512.Sum512([]byte("left-pad"))
	ds := []deps.Dependency{
		{Kind: deps.Npm, Name: "left-pad", Version: "1.3.0", URI: "pkg:npm/left-pad@1.3.0",
			URL: "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz", Digest: fakeDigest("lp"),
			Pin: "sha512-" + base64.StdEncoding.EncodeToString(sha512sum[:])},
		{Kind: deps.Gomod, Name: "github.com/google/uuid", Version: "v1.6.0", URI: "pkg:golang/github.com/google/uuid@v1.6.0",
			URL: "https://proxy.golang.org/github.com/google/uuid/@v/v1.6.0.zip", Digest: fakeDigest("uuid"), Pin: "h1:xyz="},
		{Kind: deps.Gomod, Name: "golang.org/x/sys", Version: "v0.1.0", URI: "pkg:golang/golang.org/x/sys@v0.1.0#go.mod",
			Digest: fakeDigest("sys.mod"), Pin: "h1:mod=", ModOnly: true},
		{Kind: deps.File, Name: "x.tgz", URI: "https://example.org/x.tgz", URL: "https://example.org/x.tgz",
			Digest: fakeDigest("x"), Pin: string(fakeDigest("x"))},
	}
	res, err := sbom.Generate(context.Background(), input("web/bundle.js", file, fileDigest(t, file), ds))
	if err != nil {
		t.Fatal(err)
	}
	if res.GoBinary || len(res.NotIngested) != 0 {
		t.Fatalf("GoBinary %v, NotIngested %q; want false, none", res.GoBinary, res.NotIngested)
	}
	bom, comps := cdxComponents(t, res.CycloneDX)
	if len(comps) != 3 {
		t.Fatalf("CycloneDX has %d components, want 3 (the go.mod-only module is not one): %v", len(comps), comps)
	}
	lp := comps["left-pad@1.3.0"]
	if lp.c.PackageURL != "pkg:npm/left-pad@1.3.0" || lp.props[sbom.PropIngested] != "true" {
		t.Errorf("left-pad: %+v %v", lp.c, lp.props)
	}
	hashes := map[cdx.HashAlgorithm]string{}
	for _, h := range *lp.c.Hashes {
		hashes[h.Algorithm] = h.Value
	}
	if hashes[cdx.HashAlgoSHA256] != fakeDigest("lp").Encoded() || hashes[cdx.HashAlgoSHA512] != hex.EncodeToString(sha512sum[:]) {
		t.Errorf("left-pad hashes %v", hashes)
	}
	if x := comps["x.tgz@"]; x.c.Type != cdx.ComponentTypeFile || x.c.PackageURL != "" ||
		(*x.c.ExternalReferences)[0].URL != "https://example.org/x.tgz" {
		t.Errorf("file dependency: %+v", x.c)
	}
	if bom.Metadata.Component.Type != cdx.ComponentTypeFile {
		t.Errorf("output type %q, want file", bom.Metadata.Component.Type)
	}

	d := spdxDocument(t, res.SPDX)
	p := spdxPackage(d, "left-pad", "1.3.0")
	if p == nil || p.PackageDownloadLocation != ds[0].URL || len(p.PackageChecksums) != 2 ||
		p.PackageChecksums[1].Algorithm != "SHA512" || p.PackageChecksums[1].Value != hex.EncodeToString(sha512sum[:]) {
		t.Errorf("SPDX left-pad: %+v", p)
	}
	if p.PackageExternalReferences[0].Locator != "pkg:npm/left-pad@1.3.0" {
		t.Errorf("SPDX left-pad purl %+v", p.PackageExternalReferences[0])
	}
	var dependsOn int
	for _, r := range d.Relationships {
		if r.Relationship == "DEPENDS_ON" && r.RefA.ElementRefID == "Output" {
			dependsOn++
		}
	}
	if dependsOn != 3 {
		t.Errorf("SPDX: %d DEPENDS_ON relationships, want 3", dependsOn)
	}

	rows, err := sbom.Rows(content.SPDXPredicateType, res.SPDX)
	if err != nil {
		t.Fatal(err)
	}
	cdxRows, err := sbom.Rows(content.CycloneDXPredicateType, res.CycloneDX)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rows, cdxRows) {
		t.Errorf("the two formats give different tables:\nSPDX %v\nCycloneDX %v", rows, cdxRows)
	}
	want := []sbom.Row{
		{Name: "github.com/google/uuid", Version: "v1.6.0", Type: sbom.KindGoModule, PURL: "pkg:golang/github.com/google/uuid@v1.6.0", Ingested: "yes"},
		{Name: "left-pad", Version: "1.3.0", Type: sbom.KindNpm, PURL: "pkg:npm/left-pad@1.3.0", Ingested: "yes"},
		{Name: "x.tgz", Type: sbom.KindFile, Ingested: "yes"},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("rows:\n%v\nwant\n%v", rows, want)
	}
}

func TestDeterministic(t *testing.T) {
	exe, _ := goBinary(t)
	in := input("ssf.test", exe, fileDigest(t, exe), nil)
	a, err := sbom.Generate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sbom.Generate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.SPDX, b.SPDX) || !bytes.Equal(a.CycloneDX, b.CycloneDX) {
		t.Fatal("equal input gave different documents")
	}
	in.Invocation = "inv-2"
	c, err := sbom.Generate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	da, dc := spdxDocument(t, a.SPDX), spdxDocument(t, c.SPDX)
	if da.DocumentNamespace == dc.DocumentNamespace || !strings.HasPrefix(da.DocumentNamespace, sbom.NamespacePrefix+"inv-1/") {
		t.Errorf("namespaces %q and %q", da.DocumentNamespace, dc.DocumentNamespace)
	}
	if da.CreationInfo.Created != "2026-11-30T04:00:00Z" {
		t.Errorf("created %q", da.CreationInfo.Created)
	}
}

func TestFileMustBeTheDigestedBytes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "out")
	if err := os.WriteFile(file, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file string
		d          digest.Digest
		want       string
	}{
		{"changed", file, digest.FromString("two"), "changed after it was hashed"},
		{"symlink", link, digest.FromString("one"), "link"},
		{"directory", dir, digest.FromString("one"), "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sbom.Generate(context.Background(), input("out", tc.file, tc.d, nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestStatementVerify(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "out")
	if err := os.WriteFile(file, []byte("output bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := fileDigest(t, file)
	res, err := sbom.Generate(context.Background(), input("out", file, sum, nil))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer := sign.NewSigner(key)
	subjects := []provenance.Subject{{Name: "out", Digest: sum}}
	bundles := map[string][]byte{}
	for pt, doc := range map[string][]byte{content.SPDXPredicateType: res.SPDX, content.CycloneDXPredicateType: res.CycloneDX} {
		st, err := sbom.Statement(subjects, pt, doc)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := sbom.Statement(subjects, pt, doc)
		if !bytes.Equal(st, again) {
			t.Fatal("Statement is not deterministic")
		}
		if bundles[pt], err = signer.Statement(context.Background(), st); err != nil {
			t.Fatal(err)
		}
	}
	trusted := verify.KeyMaterial(&key.PublicKey)
	for pt, b := range bundles {
		v, err := verify.Attestation(context.Background(), sum, b, trusted, pt)
		if err != nil {
			t.Fatalf("%s: %v", pt, err)
		}
		if v.Subject.Name != "out" {
			t.Errorf("subject %q", v.Subject.Name)
		}
		rows, err := sbom.Rows(pt, v.Predicate)
		if err != nil || len(rows) != 0 {
			t.Errorf("%s: rows %v, %v", pt, rows, err)
		}
	}
	for _, tc := range []struct {
		name    string
		art     digest.Digest
		bundle  []byte
		trusted func() any
		pt      string
	}{
		{name: "another artifact", art: digest.FromString("other"), bundle: bundles[content.SPDXPredicateType], pt: content.SPDXPredicateType},
		{name: "another key", art: sum, bundle: bundles[content.SPDXPredicateType], pt: content.SPDXPredicateType},
		{name: "the other format", art: sum, bundle: bundles[content.SPDXPredicateType], pt: content.CycloneDXPredicateType},
		{name: "not a bundle", art: sum, bundle: []byte(`{}`), pt: content.SPDXPredicateType},
		{name: "tampered", art: sum, bundle: bytes.Replace(bundles[content.SPDXPredicateType], []byte(`"sig":"M`), []byte(`"sig":"N`), 1), pt: content.SPDXPredicateType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := trusted
			if tc.name == "another key" {
				tr = verify.KeyMaterial(&other.PublicKey)
			}
			_, err := verify.Attestation(context.Background(), tc.art, tc.bundle, tr, tc.pt)
			if !errors.Is(err, verify.ErrVerification) {
				t.Fatalf("error %v, want a verification failure", err)
			}
		})
	}
}

// FuzzGenerate feeds Generate arbitrary bytes as an output: build info is untrusted input, and a hostile file
// may only make Generate call it something that is not a Go binary, never panic or exhaust memory.
func FuzzGenerate(f *testing.F) {
	exe, _ := goBinary(f)
	head := make([]byte, 64<<10)
	if fh, err := os.Open(exe); err == nil {
		n, _ := io.ReadFull(fh, head)
		head = head[:n]
		fh.Close()
	}
	f.Add(head)
	f.Add([]byte("\x7fELF"))
	f.Add([]byte("MZ"))
	f.Add([]byte("\xff Go buildinf:\x08\x02"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(t.TempDir(), "out")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := sbom.Generate(context.Background(), input("out", file, digest.FromBytes(data), nil))
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if _, err := spdxjson.Read(bytes.NewReader(res.SPDX)); err != nil {
			t.Fatalf("SPDX does not parse: %v", err)
		}
	})
}
