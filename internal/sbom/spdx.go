package sbom

import (
	"bytes"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
)

// The identifiers of the output itself in both documents.
const (
	outputSPDXID = "Output" // SPDXRef-Output
	outputRef    = "ssf:output"
)

// NamespacePrefix begins every SPDX documentNamespace ssf writes; the rest is the invocation id and a name-based
// UUID of the invocation, output and digest.
const NamespacePrefix = "https://ssf.dev/spdx/"

const noAssertion = "NOASSERTION"

// documentUUID names one SBOM: the same invocation, output and digest give the same UUID (RFC 9562 version 5).
func (m *model) documentUUID() uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceURL,
		[]byte("https://ssf.dev/sbom/"+m.in.Invocation+"\x00"+m.in.Output+"\x00"+string(m.in.Digest)))
}

func (m *model) created() string { return m.in.Created.UTC().Format(time.RFC3339) }

func (m *model) spdx() ([]byte, error) {
	annotate := func(props []property) []spdx.Annotation {
		var out []spdx.Annotation
		for _, p := range props {
			out = append(out, spdx.Annotation{
				Annotator:         common.Annotator{Annotator: "ssf", AnnotatorType: "Tool"},
				AnnotationDate:    m.created(),
				AnnotationType:    "OTHER",
				AnnotationComment: p.name + "=" + p.value,
			})
		}
		return out
	}

	purpose := "FILE"
	if m.goBinary {
		purpose = "APPLICATION"
	}
	out := &spdx.Package{
		PackageName:             m.in.Output,
		PackageSPDXIdentifier:   outputSPDXID,
		PackageFileName:         m.in.Output,
		PackageDownloadLocation: noAssertion,
		PackageChecksums:        []common.Checksum{{Algorithm: common.SHA256, Value: m.in.Digest.Encoded()}},
		PackageLicenseConcluded: noAssertion,
		PackageLicenseDeclared:  noAssertion,
		PackageCopyrightText:    noAssertion,
		PrimaryPackagePurpose:   purpose,
		BuiltDate:               m.created(),
		PackageComment: "Output " + m.in.Output + " of pipeline " + strconv.Quote(m.in.Pipeline) + ", invocation " +
			m.in.Invocation + "; its sha256 was computed by the ssf control plane.",
		Annotations: annotate(m.outProps),
	}
	doc := &spdx.Document{
		SPDXVersion:       spdx.Version,
		DataLicense:       spdx.DataLicense,
		SPDXIdentifier:    "DOCUMENT",
		DocumentName:      m.in.Output,
		DocumentNamespace: NamespacePrefix + url.PathEscape(m.in.Invocation) + "/" + m.documentUUID().String(),
		CreationInfo: &spdx.CreationInfo{
			Creators:       []common.Creator{{CreatorType: "Tool", Creator: m.in.Tool}},
			Created:        m.created(),
			CreatorComment: m.evidenceComment(),
		},
		Packages: []*spdx.Package{out},
		Relationships: []*spdx.Relationship{{
			RefA:         common.MakeDocElementID("", "DOCUMENT"),
			RefB:         common.MakeDocElementID("", outputSPDXID),
			Relationship: common.TypeRelationshipDescribe,
		}},
	}
	for _, c := range m.comps {
		p := &spdx.Package{
			PackageName:             c.name,
			PackageSPDXIdentifier:   common.ElementID(c.spdxID),
			PackageVersion:          c.version,
			PackageDownloadLocation: noAssertion,
			PackageLicenseConcluded: noAssertion,
			PackageLicenseDeclared:  noAssertion,
			PackageCopyrightText:    noAssertion,
			PrimaryPackagePurpose:   "LIBRARY",
		}
		if c.kind == KindFile {
			p.PrimaryPackagePurpose = "FILE"
		}
		if c.download != "" {
			p.PackageDownloadLocation = c.download
		}
		if c.sha256 != "" {
			p.PackageChecksums = append(p.PackageChecksums, common.Checksum{Algorithm: common.SHA256, Value: c.sha256})
		}
		if c.sha512 != "" {
			p.PackageChecksums = append(p.PackageChecksums, common.Checksum{Algorithm: common.SHA512, Value: c.sha512})
		}
		if c.purl != "" {
			p.PackageExternalReferences = []*spdx.PackageExternalReference{{
				Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL, Locator: c.purl,
			}}
		}
		props := c.allProps()
		p.Annotations = annotate(props)
		if c.ingested != nil && !*c.ingested {
			p.PackageComment = "NOT INGESTED: " + c.reason
		}
		doc.Packages = append(doc.Packages, p)

		rel := &spdx.Relationship{
			RefA: common.MakeDocElementID("", outputSPDXID),
			RefB: common.MakeDocElementID("", c.spdxID),
		}
		if m.goBinary {
			rel.Relationship = common.TypeRelationshipContains
			rel.RelationshipComment = "compiled in, according to the binary's build info"
		} else {
			rel.Relationship = common.TypeRelationshipDependsOn
			rel.RelationshipComment = "ingested for the task that made the output"
		}
		doc.Relationships = append(doc.Relationships, rel)
	}
	var buf bytes.Buffer
	if err := spdxjson.Write(doc, &buf, spdxjson.EscapeHTML(false)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// allProps is c's properties with the ingestion verdict, as both documents carry them.
func (c *component) allProps() []property {
	props := c.props
	if c.ingested != nil {
		v := "false"
		if *c.ingested {
			v = "true"
		}
		props = append(props, property{PropIngested, v})
		if !*c.ingested {
			props = append(props, property{PropNotIngested, c.reason})
		}
	}
	return props
}

func (m *model) evidenceComment() string {
	if m.goBinary {
		return "Components are the modules named by the output's own Go build info (" + m.goVersion + "), which a build " +
			"step wrote; each is cross-checked against the dependencies the ssf control plane ingested and verified " +
			"(" + PropIngested + ")."
	}
	return "Components are the dependencies the ssf control plane ingested and verified against their pins for the " +
		"task that made the output (and the tasks it needs): available to the build, not proof of use."
}
