package sbom

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/content"
)

// A module replaced by a directory (replace gopkg.in/yaml.v3 => ./localyaml) is the build's own code, like the
// main module: listed under its module path with the directory, with no ingested verdict, and not flagged.
func TestModuleReplacedByDirectoryIsTheBuildsOwnCode(t *testing.T) {
	exe := craftedGoBinary(t, "go1.26.0", "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n"+
		"dep\tgopkg.in/yaml.v3\tv3.0.1\t\n=>\t./localyaml\t\t\n")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Generate(context.Background(), Input{Output: "app", Digest: digest.FromBytes(b), File: exe,
		Invocation: "i", Created: time.Unix(1, 0), Tool: "ssf test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.NotIngested) != 0 {
		t.Errorf("NotIngested = %q, want nothing flagged for a directory replacement", res.NotIngested)
	}
	rows, err := Rows(content.CycloneDXPredicateType, res.CycloneDX)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, r := range rows {
		if r.Name == "gopkg.in/yaml.v3" {
			found = true
			if r.Ingested != "-" || strings.Contains(r.PURL, "localyaml") || strings.Contains(r.PURL, "@") {
				t.Errorf("row %+v, want ingested '-' and a purl of the module path without a version", r)
			}
		}
		if strings.Contains(r.Name, "localyaml") {
			t.Errorf("the directory is listed as a component: %+v", r)
		}
	}
	if !found || !strings.Contains(string(res.CycloneDX), `"./localyaml"`) {
		t.Errorf("no component for gopkg.in/yaml.v3 naming its directory:\n%s", res.CycloneDX)
	}
}
