// Package sbom writes the software bills of materials of a build's outputs, SPDX 2.3 JSON and CycloneDX 1.6 JSON,
// and the in-toto statements that attest them; it also reads an attested SBOM back for ssf sbom.
//
// # Where the components come from
//
// For a Go binary, from the build info the Go linker embeds in it (debug/buildinfo): the main module, every module
// compiled in with its version and go.sum h1 hash (a replaced module is described by its replacement), the Go
// version and the build settings. Build info is what the binary says about itself, and the binary is a step's
// output: a step can write any bytes it likes. So every module is cross-checked against what the control plane
// ingested and verified against the lock files ([deps.Dependency]); one that was not ingested, or whose hash
// differs from the pin, is flagged in both documents ("ssf:ingested" = "false" with the reason) and returned in
// [Result.NotIngested]. Each component says where its facts came from ("ssf:evidence": "buildinfo" or
// "ingested"), so no reader takes the binary's claim for the factory's observation.
//
// For any other output, the components are the dependencies ingested for the task that made it (and the tasks it
// needs): what was available to the build, verified against its pins, which is not proof that it was used.
//
// The output itself is the described package (SPDX DESCRIBES) and the BOM's metadata component, with the sha256
// the control plane computed.
//
// # Determinism
//
// Equal input gives equal bytes: components are sorted, the SPDX documentNamespace and the CycloneDX serialNumber
// derive from the invocation id and the output's digest, and every timestamp is [Input.Created].
//
// # What it must never do
//
// It never runs, loads or links the output it describes: build info is read as data, from a file of bounded size,
// with bounds on the bytes read, the modules named and the text they hold (past any, the output is described as a
// file and the SBOM says why), so a hostile file can neither hold the control plane's memory nor make an SBOM
// bundle larger than its readers take (verify.MaxBundleSize). A hostile file can make it report false build info, flagged wherever it names a module that was
// not ingested, or none; never more. It never presents a step's claim (the binary's build
// info) as the factory's observation without saying so, never reports a module as ingested unless a dependency
// the control plane verified has the same path, version and h1 hash (a module the binary records no hash for,
// as go build -mod=vendor does, is flagged: its code came from the source's vendor directory, not the lock),
// and never describes bytes other than those whose digest it was given: the file is hashed and must match
// [Input.Digest]. Documents are written only with the formats' own libraries (cyclonedx-go, tools-golang), and
// statements with protojson.
package sbom

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/deps"
)

// MaxBinarySize is the largest output whose build info is read. Reading is bounded by the file anyway (the
// standard library reads in chunks and checks lengths against the file), but a multi-gigabyte output is not a Go
// binary anyone ships, and scanning it would cost the build minutes. Larger outputs are described like any file.
const MaxBinarySize = 2 << 30

// Input is what the control plane knows about one output.
type Input struct {
	Output string        // the output's path in OUT, e.g. "hello" or "bin/tool"
	Digest digest.Digest // its sha256, computed by the control plane
	// File is the path of the output's bytes on disk: the control plane's own copy, which is hashed again and must
	// match Digest. Empty: no build info is read and the output is described as a file.
	File       string
	Deps       []deps.Dependency // ingested and verified for the task that made it and the tasks it needs
	Pipeline   string            // the pipeline's name
	Invocation string            // the build's invocation id
	Created    time.Time         // when the SBOM was made (the build's finish time)
	Tool       string            // the generator, e.g. "ssf v0.1.0-dev"
}

// Result holds the two documents for one output.
type Result struct {
	SPDX      []byte // SPDX 2.3 JSON
	CycloneDX []byte // CycloneDX 1.6 JSON
	// GoBinary is true when the components came from the output's Go build info.
	GoBinary bool
	// NotIngested lists the modules compiled into a Go binary that the control plane did not ingest (or ingested
	// with a different hash), as "path@version: reason", sorted. The build log should show them.
	NotIngested []string
}

// Generate writes the SBOMs of one output. It reads in.File (bounded, as data) but never runs it; ctx stops the
// hashing and reading of a large file.
func Generate(ctx context.Context, in Input) (*Result, error) {
	if err := in.validate(); err != nil {
		return nil, fmt.Errorf("generating the SBOM of %q: %w", in.Output, err)
	}
	m := &model{in: in}
	if in.File != "" {
		info, note, err := readBuildInfo(ctx, in.File, in.Digest)
		if err != nil {
			return nil, fmt.Errorf("generating the SBOM of %q: %w", in.Output, err)
		}
		if note != "" {
			m.outProps = append(m.outProps, property{PropGoBuildInfo, note})
		}
		if info != nil {
			m.fromBuildInfo(info)
		}
	}
	if !m.goBinary {
		m.fromDeps()
	}
	m.sort()
	spdxDoc, err := m.spdx()
	if err != nil {
		return nil, fmt.Errorf("generating the SPDX SBOM of %q: %w", in.Output, err)
	}
	cdxDoc, err := m.cyclonedx()
	if err != nil {
		return nil, fmt.Errorf("generating the CycloneDX SBOM of %q: %w", in.Output, err)
	}
	return &Result{SPDX: spdxDoc, CycloneDX: cdxDoc, GoBinary: m.goBinary, NotIngested: m.notIngested()}, nil
}

func (in *Input) validate() error {
	switch {
	case in.Output == "" || path.IsAbs(in.Output) || path.Clean(in.Output) != in.Output || in.Output == "." ||
		in.Output == ".." || len(in.Output) > 2 && in.Output[:3] == "../":
		return fmt.Errorf("output name %q: want a clean relative path", in.Output)
	case in.Invocation == "":
		return fmt.Errorf("invocation id is empty")
	case in.Created.IsZero():
		return fmt.Errorf("creation time is unset")
	case in.Tool == "":
		return fmt.Errorf("tool is empty")
	}
	if _, err := content.Parse(string(in.Digest)); err != nil {
		return fmt.Errorf("output %w", err)
	}
	return nil
}
