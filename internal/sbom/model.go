package sbom

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/ssf-dev/ssf/internal/deps"
)

// Property names both formats carry (CycloneDX properties; SPDX annotations "name: value").
const (
	// PropIngested is "true" when the control plane ingested and verified this component for the build, "false"
	// when the output's build info names a module it did not (see PropNotIngested for why). Absent for the main
	// module, which is the source itself.
	PropIngested = "ssf:ingested"
	// PropNotIngested says why a component is flagged.
	PropNotIngested = "ssf:notIngestedReason"
	// PropEvidence says where the component's facts come from: EvidenceBuildInfo or EvidenceIngested.
	PropEvidence = "ssf:evidence"
	// PropGoSum is a Go module's go.sum hash ("h1:…") as the binary's build info or the lock file states it.
	PropGoSum = "ssf:go:sum"
	// PropGoVersion and PropGoBuildPrefix + KEY carry the binary's Go version and build settings.
	PropGoVersion     = "ssf:go:version"
	PropGoBuildPrefix = "ssf:go:build:"
	// PropGoBuildInfo, on the output, says why build info it has was not used (too costly to read, too many
	// modules); the output is then described by the ingested dependencies, like any file.
	PropGoBuildInfo = "ssf:go:buildInfo"
	// PropMainModule marks the Go main module.
	PropMainModule = "ssf:go:mainModule"
	// PropGoReplacedByDirectory names the directory a go.mod replace pointed a module at: its code is the build's
	// own files, like the main module's, so whether it was ingested does not apply.
	PropGoReplacedByDirectory = "ssf:go:replacedByDirectory"
	// PropDev marks an npm devDependency.
	PropDev = "ssf:npm:dev"
)

// Evidence values.
const (
	// EvidenceBuildInfo: the output's own embedded build info says so; a step wrote those bytes.
	EvidenceBuildInfo = "buildinfo (claimed by the output itself; cross-checked against ssf:ingested)"
	// EvidenceIngested: the control plane fetched this dependency and verified it against its pin, for the task.
	EvidenceIngested = "ingested (fetched and verified by the control plane; available to the build, not proof of use)"
)

// Kinds of component, as the table prints them.
const (
	KindGoModule = "go-module"
	KindNpm      = "npm"
	KindFile     = "file"
)

type property struct{ name, value string }

// component is one entry of both documents.
type component struct {
	kind      string
	name      string
	version   string
	purl      string
	sha256    string // hex, of the fetched bytes
	sha512    string // hex
	download  string // where the bytes came from; "" unknown
	main      bool   // the Go main module
	ingested  *bool  // nil: not applicable
	reason    string // why not ingested
	props     []property
	spdxID    string // without the "SPDXRef-" prefix, which tools-golang adds
	reference string // CycloneDX bom-ref
}

// model is the documents' common content.
type model struct {
	in        Input
	goBinary  bool
	outProps  []property // on the output: Go version and build settings
	comps     []*component
	goVersion string
}

func (m *model) fromDeps() {
	for _, d := range m.in.Deps {
		if d.ModOnly {
			continue // only its go.mod was fetched, to load the module graph: no code of it reached the task
		}
		c := &component{name: d.Name, version: d.Version, purl: d.URI, download: d.URL,
			props: []property{{PropEvidence, EvidenceIngested}}}
		t := true
		c.ingested = &t
		switch d.Kind {
		case deps.Gomod:
			c.kind = KindGoModule
			if d.Pin != "" {
				c.props = append(c.props, property{PropGoSum, d.Pin})
			}
		case deps.Npm:
			c.kind = KindNpm
			if d.Dev {
				c.props = append(c.props, property{PropDev, "true"})
			}
		default:
			c.kind = KindFile
			c.purl = ""
		}
		if d.Digest != "" {
			c.sha256 = d.Digest.Encoded()
		}
		if sha512, ok := pinSHA512(d.Pin); ok {
			c.sha512 = sha512
		}
		m.comps = append(m.comps, c)
	}
}

// pinSHA512 reads an npm integrity pin ("sha512-<base64>") as hex.
func pinSHA512(pin string) (string, bool) {
	b64, ok := strings.CutPrefix(pin, "sha512-")
	if !ok {
		return "", false
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != 64 {
		return "", false
	}
	return hex.EncodeToString(b), true
}

func (m *model) sort() {
	slices.SortFunc(m.comps, func(a, b *component) int {
		if a.main != b.main {
			if a.main {
				return -1
			}
			return 1
		}
		return cmpStrings(a.kind, b.kind, a.name, b.name, a.version, b.version, a.purl, b.purl, a.sha256, b.sha256)
	})
	m.comps = slices.CompactFunc(m.comps, func(a, b *component) bool {
		return a.kind == b.kind && a.name == b.name && a.version == b.version && a.purl == b.purl && a.sha256 == b.sha256
	})
	usedSPDX := map[string]bool{"DOCUMENT": true, outputSPDXID: true}
	usedRef := map[string]bool{outputRef: true}
	for _, c := range m.comps {
		c.spdxID = unique(usedSPDX, spdxIDPart(c.kind+"-"+c.name+"-"+c.version))
		ref := c.purl
		if ref == "" {
			ref = c.kind + ":" + c.name
		}
		c.reference = unique(usedRef, ref)
	}
}

func cmpStrings(pairs ...string) int {
	for i := 0; i+1 < len(pairs); i += 2 {
		if c := strings.Compare(pairs[i], pairs[i+1]); c != 0 {
			return c
		}
	}
	return 0
}

func unique(used map[string]bool, id string) string {
	out := id
	for n := 2; used[out]; n++ {
		out = fmt.Sprintf("%s-%d", id, n)
	}
	used[out] = true
	return out
}

// spdxIDPart keeps what an SPDX identifier may hold (letters, digits, '.', '-') and replaces the rest.
func spdxIDPart(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

func (m *model) notIngested() []string {
	var out []string
	for _, c := range m.comps {
		if c.ingested != nil && !*c.ingested {
			out = append(out, fmt.Sprintf("%s@%s: %s", c.name, c.version, c.reason))
		}
	}
	return out
}

// purlGolang returns pkg:golang/PATH@VERSION with each part percent-encoded as the purl spec asks; version "" or
// "(devel)" (a main module built from a work tree) is left out.
func purlGolang(modPath, version string) string {
	segs := strings.Split(modPath, "/")
	for i, s := range segs {
		segs[i] = purlEscape(s)
	}
	p := "pkg:golang/" + strings.Join(segs, "/")
	if version != "" && version != "(devel)" {
		p += "@" + purlEscape(version)
	}
	return p
}

func purlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_', c == '~':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
