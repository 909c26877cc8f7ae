package sbom

import (
	"bytes"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

func (m *model) cyclonedx() ([]byte, error) {
	props := func(ps []property) *[]cdx.Property {
		if len(ps) == 0 {
			return nil
		}
		out := make([]cdx.Property, 0, len(ps))
		for _, p := range ps {
			out = append(out, cdx.Property{Name: p.name, Value: p.value})
		}
		return &out
	}

	outType := cdx.ComponentTypeFile
	if m.goBinary {
		outType = cdx.ComponentTypeApplication
	}
	outProps := append([]property{
		{"ssf:pipeline", m.in.Pipeline},
		{"ssf:invocation", m.in.Invocation},
	}, m.outProps...)
	output := cdx.Component{
		BOMRef:     outputRef,
		Type:       outType,
		Name:       m.in.Output,
		Hashes:     &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: m.in.Digest.Encoded()}},
		Properties: props(outProps),
	}
	toolName, toolVersion, _ := strings.Cut(m.in.Tool, " ")
	bom := &cdx.BOM{
		BOMFormat:    cdx.BOMFormat,
		SpecVersion:  cdx.SpecVersion1_6,
		SerialNumber: "urn:uuid:" + m.documentUUID().String(),
		Version:      1,
		Metadata: &cdx.Metadata{
			Timestamp: m.created(),
			Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
				Type: cdx.ComponentTypeApplication, Name: toolName, Version: toolVersion,
			}}},
			Component:  &output,
			Properties: &[]cdx.Property{{Name: "ssf:evidence", Value: m.evidenceComment()}},
		},
	}
	comps := make([]cdx.Component, 0, len(m.comps))
	refs := make([]string, 0, len(m.comps))
	for _, c := range m.comps {
		cc := cdx.Component{
			BOMRef:     c.reference,
			Type:       cdx.ComponentTypeLibrary,
			Name:       c.name,
			Version:    c.version,
			PackageURL: c.purl,
			Properties: props(c.allProps()),
		}
		if c.kind == KindFile {
			cc.Type = cdx.ComponentTypeFile
		}
		var hashes []cdx.Hash
		if c.sha256 != "" {
			hashes = append(hashes, cdx.Hash{Algorithm: cdx.HashAlgoSHA256, Value: c.sha256})
		}
		if c.sha512 != "" {
			hashes = append(hashes, cdx.Hash{Algorithm: cdx.HashAlgoSHA512, Value: c.sha512})
		}
		if len(hashes) > 0 {
			cc.Hashes = &hashes
		}
		if c.download != "" {
			cc.ExternalReferences = &[]cdx.ExternalReference{{URL: c.download, Type: cdx.ERTypeDistribution}}
		}
		comps = append(comps, cc)
		refs = append(refs, c.reference)
	}
	if len(comps) > 0 {
		bom.Components = &comps
	}
	// The output depends on every component; what each component depends on in turn is not known (build info is
	// a flat list), so they get no entries of their own: CycloneDX reads a missing entry as unknown, an empty one
	// as "depends on nothing".
	bom.Dependencies = &[]cdx.Dependency{{Ref: outputRef, Dependencies: &refs}}

	var buf bytes.Buffer
	enc := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON)
	enc.SetEscapeHTML(false)
	if err := enc.EncodeVersion(bom, cdx.SpecVersion1_6); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
