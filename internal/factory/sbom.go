package factory

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sbom"
)

// attestSBOMs writes an SPDX and a CycloneDX SBOM of every output, each signed by the attestor as an in-toto
// statement, into the staging directory beside the outputs: attestations/<output>.spdx.sigstore.json and
// .cdx.sigstore.json. The documents come from the control plane (the output's Go build info, cross-checked
// against what was ingested, or the ingested dependencies), never from a step. Each statement's subjects are the
// output and the OCI manifests a publish attaches it to: the artifact of all outputs and, for an image output, its
// image.
func attestSBOMs(ctx context.Context, attestor Attestor, b *build, ws *workspace, res *BuildResult, stmt provenance.Build) error {
	var artifact provenance.Subject
	images := map[string]provenance.Subject{}
	for _, s := range stmt.Subjects {
		switch {
		case s.Name == oci.ArtifactSubject:
			artifact = s
		case strings.HasPrefix(s.Name, oci.ImageSubjectPrefix):
			images[strings.TrimPrefix(s.Name, oci.ImageSubjectPrefix)] = s
		}
	}
	for _, o := range res.Outputs {
		doc, err := sbom.Generate(ctx, sbom.Input{
			Output: o.Path, Digest: o.Digest, File: filepath.Join(ws.staging, filepath.FromSlash(o.Path)),
			Deps: b.deps.list, Pipeline: b.p.Name, Invocation: b.invocation, Created: stmt.FinishedOn,
			Tool: "ssf " + Version,
		})
		if err != nil {
			return err
		}
		for _, m := range doc.NotIngested {
			b.log.printf("output %s: %s (flagged in its SBOMs)", o.Path, m)
		}
		subjects := []provenance.Subject{{Name: o.Path, Digest: o.Digest}}
		if artifact.Name != "" {
			subjects = append(subjects, artifact)
		}
		if img, ok := images[o.Path]; ok {
			subjects = append(subjects, img)
		}
		for _, f := range []struct {
			predicateType, suffix string
			doc                   []byte
		}{
			{content.SPDXPredicateType, content.SPDXBundleSuffix, doc.SPDX},
			{content.CycloneDXPredicateType, content.CycloneDXBundleSuffix, doc.CycloneDX},
		} {
			st, err := sbom.Statement(subjects, f.predicateType, f.doc)
			if err != nil {
				return err
			}
			bundle, err := attestor.Statement(ctx, st)
			if err != nil {
				return fmt.Errorf("signing the SBOM of %q: %w", o.Path, err)
			}
			p := filepath.Join(ws.staging, "attestations", filepath.FromSlash(o.Path)+f.suffix)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, bundle, 0o644); err != nil { // synced with the whole tree by publishDir
				return err
			}
		}
	}
	return nil
}
