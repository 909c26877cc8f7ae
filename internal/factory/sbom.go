package factory

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"

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
// image. Each bundle is listed, with its digest, among stmt's byproducts, so publish (and anyone holding the
// provenance) can tell a bundle removed or swapped for another the factory signed.
func attestSBOMs(ctx context.Context, attestor Attestor, b *build, ws *workspace, res *BuildResult, stmt *provenance.Build) error {
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
			rel := "attestations/" + o.Path + f.suffix
			p := filepath.Join(ws.staging, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return fmt.Errorf("writing the SBOM of %q: %w", o.Path, err)
			}
			// O_EXCL: nothing else in the staging tree may be overwritten, whatever the outputs are called.
			if err := writeNew(p, bundle); err != nil { // synced with the whole tree by publishDir
				return fmt.Errorf("writing the SBOM of %q: %w", o.Path, err)
			}
			stmt.Byproducts = append(stmt.Byproducts, provenance.ResourceDescriptor{
				Name: rel, MediaType: content.BundleMediaType, Digest: provenance.DigestSet(digest.FromBytes(bundle)),
			})
		}
	}
	return nil
}

func writeNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
