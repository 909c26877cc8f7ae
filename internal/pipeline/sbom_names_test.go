package pipeline

import (
	"strings"
	"testing"
)

// ssf writes each output's SBOM bundles to attestations/<output>.spdx.sigstore.json and .cdx.sigstore.json, and
// the provenance to attestations/provenance.sigstore.json. Outputs whose files there would need one of those
// paths as a directory are refused when the file is read (exit 2), not after every task ran.
func TestOutputsWhoseSBOMPathsClash(t *testing.T) {
	for _, tc := range []struct{ outputs, want string }{
		{"[x, x.spdx.sigstore.json/y]", `output "x.spdx.sigstore.json/y" would put its SBOMs inside those of output "x"`},
		{"[x.cdx.sigstore.json/a/b, x]", `output "x.cdx.sigstore.json/a/b" would put its SBOMs inside those of output "x"`},
		{"[provenance.sigstore.json/a]", `output "provenance.sigstore.json/a" would put its SBOMs inside the provenance bundle`},
	} {
		t.Run(tc.outputs, func(t *testing.T) {
			_, err := Parse("ssf.yaml", []byte(strings.Replace(valid, "[bin]", tc.outputs, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "ssf.yaml:9") {
				t.Errorf("Parse() error = %v, want ssf.yaml:9 and %q", err, tc.want)
			}
		})
	}
	for _, ok := range []string{"[x, x.spdx.sigstore.json]", "[x, y/x.spdx.sigstore.json/z]", "[logs/a.log, provenance]"} {
		if _, err := Parse("ssf.yaml", []byte(strings.Replace(valid, "[bin]", ok, 1))); err != nil {
			t.Errorf("outputs %s: %v", ok, err)
		}
	}
}
