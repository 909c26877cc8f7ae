package sbom

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	spdxjson "github.com/spdx/tools-golang/json"

	"github.com/ssf-dev/ssf/internal/content"
)

// Row is one component of an SBOM, as ssf sbom prints it.
type Row struct {
	Name, Version string
	Type          string // KindGoModule, KindNpm or KindFile (from the purl)
	PURL          string
	Ingested      string // "yes", "NO" (compiled in but not ingested, or another hash), "-" (not applicable)
}

// Rows reads the components of an SBOM document of predicateType with the format's own library, sorted by name
// and version. The described output itself is not a row.
func Rows(predicateType string, doc []byte) ([]Row, error) {
	var rows []Row
	switch predicateType {
	case content.CycloneDXPredicateType:
		var bom cdx.BOM
		if err := cdx.NewBOMDecoder(bytes.NewReader(doc), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
			return nil, fmt.Errorf("reading CycloneDX SBOM: %w", err)
		}
		if bom.Components != nil {
			for _, c := range *bom.Components {
				var props []property
				if c.Properties != nil {
					for _, p := range *c.Properties {
						props = append(props, property{p.Name, p.Value})
					}
				}
				rows = append(rows, row(c.Name, c.Version, c.PackageURL, props))
			}
		}
	case content.SPDXPredicateType:
		d, err := spdxjson.Read(bytes.NewReader(doc))
		if err != nil {
			return nil, fmt.Errorf("reading SPDX SBOM: %w", err)
		}
		described := map[string]bool{}
		for _, r := range d.Relationships {
			if r != nil && r.Relationship == "DESCRIBES" {
				described[string(r.RefB.ElementRefID)] = true
			}
		}
		for _, p := range d.Packages {
			if p == nil || described[string(p.PackageSPDXIdentifier)] {
				continue
			}
			var purl string
			for _, ref := range p.PackageExternalReferences {
				if ref != nil && ref.RefType == "purl" {
					purl = ref.Locator
				}
			}
			var props []property
			for _, a := range p.Annotations {
				if name, value, ok := strings.Cut(a.AnnotationComment, "="); ok {
					props = append(props, property{name, value})
				}
			}
			rows = append(rows, row(p.PackageName, p.PackageVersion, purl, props))
		}
	default:
		return nil, fmt.Errorf("predicate type %q is not an SBOM type", predicateType)
	}
	slices.SortFunc(rows, func(a, b Row) int { return cmpStrings(a.Name, b.Name, a.Version, b.Version, a.PURL, b.PURL) })
	return rows, nil
}

func row(name, version, purl string, props []property) Row {
	r := Row{Name: name, Version: version, PURL: purl, Ingested: "-"}
	switch {
	case strings.HasPrefix(purl, "pkg:golang/"):
		r.Type = KindGoModule
	case strings.HasPrefix(purl, "pkg:npm/"):
		r.Type = KindNpm
	default:
		r.Type = KindFile
	}
	for _, p := range props {
		if p.name == PropIngested {
			switch p.value {
			case "true":
				r.Ingested = "yes"
			case "false":
				r.Ingested = "NO"
			}
		}
	}
	return r
}
