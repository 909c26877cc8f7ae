package sbom_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/deps"
	"github.com/ssf-dev/ssf/internal/sbom"
)

// The SBOMs of an output that is not a Go binary list the dependencies ingested for the task that made it.
func ExampleGenerate() {
	dir, _ := os.MkdirTemp("", "sbom-example-")
	defer os.RemoveAll(dir)
	out := []byte("console.log('hello')\n")
	file := filepath.Join(dir, "app.js")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		panic(err)
	}
	res, err := sbom.Generate(context.Background(), sbom.Input{
		Output: "app.js", Digest: digest.FromBytes(out), File: file,
		Deps: []deps.Dependency{{Kind: deps.Npm, Name: "left-pad", Version: "1.3.0", URI: "pkg:npm/left-pad@1.3.0",
			URL: "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz", Digest: digest.FromString("tarball")}},
		Pipeline: "web", Invocation: "b1", Created: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), Tool: "ssf v0.1.0",
	})
	if err != nil {
		panic(err)
	}
	rows, err := sbom.Rows(content.CycloneDXPredicateType, res.CycloneDX)
	if err != nil {
		panic(err)
	}
	for _, r := range rows {
		fmt.Println(r.Name, r.Version, r.Type, r.PURL, r.Ingested)
	}
	// Output:
	// left-pad 1.3.0 npm pkg:npm/left-pad@1.3.0 yes
}
