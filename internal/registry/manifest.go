package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/content"
)

// Manifest media types the registry accepts, spelled where every package takes them from.
const (
	mediaTypeOCIManifest    = ocispec.MediaTypeImageManifest
	mediaTypeOCIIndex       = ocispec.MediaTypeImageIndex
	mediaTypeDockerManifest = content.DockerManifestMediaType
	mediaTypeDockerList     = content.DockerListMediaType
)

// descriptor is an OCI content descriptor, holding the fields the registry uses. Referrer records are this
// struct marshalled, and recordArtifactType relies on artifactType coming before the annotations: keep the order.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// manifestDoc is the union of image manifest and index fields; unknown fields are allowed, as the spec asks.
type manifestDoc struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *descriptor       `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Manifests     []descriptor      `json:"manifests"`
	Subject       *descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// manifest is a parsed, validated manifest.
type manifest struct {
	mediaType    string
	isIndex      bool
	artifactType string // for the referrers API: artifactType, else the config's media type
	blobs        []ref  // config and layers that must be in the repository
	children     []ref  // index entries that must be in the repository
	subject      *digest
	annotations  map[string]string
}

type ref struct {
	d    digest
	size int64
}

// ManifestError says why a manifest was rejected.
type ManifestError struct{ Reason string }

func (e *ManifestError) Error() string { return "invalid manifest: " + e.Reason }

// maxMediaTypeLen bounds the media types a manifest may carry: RFC 6838 allows 127 characters each for the
// type and the subtype. An artifactType (or a config's media type standing in for one) is copied into every
// referrers listing of the subject, so without a bound one pushed referrer made each listing page megabytes.
const maxMediaTypeLen = 255

func invalid(format string, args ...any) error {
	return &ManifestError{Reason: fmt.Sprintf(format, args...)}
}

// nonDistributable reports whether a layer may legitimately be absent from the registry: it names external
// URLs or has one of the (deprecated) non-distributable media types.
func nonDistributable(d descriptor) bool {
	switch d.MediaType {
	case "application/vnd.oci.image.layer.nondistributable.v1.tar",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
		return true
	}
	return len(d.URLs) > 0
}

// parseManifest checks a manifest's syntax: JSON, a supported media type agreeing with contentType, schema
// version 2, and well-formed descriptors. It does not look at storage.
func parseManifest(contentType string, body []byte) (*manifest, error) {
	if !json.Valid(body) {
		return nil, invalid("not valid JSON")
	}
	var doc manifestDoc
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&doc); err != nil {
		return nil, invalid("%v", err)
	}
	ct := ""
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, invalid("Content-Type %q: %v", trimmed(contentType), err)
		}
		ct = mt
	}
	mt := doc.MediaType
	switch {
	case mt == "" && ct == "":
		return nil, invalid("no media type: set Content-Type or the mediaType field")
	case mt == "":
		mt = ct
	case ct != "" && ct != mt:
		return nil, invalid("Content-Type %q differs from the mediaType field %q", ct, mt)
	}
	if doc.SchemaVersion == nil || *doc.SchemaVersion != 2 {
		return nil, invalid("schemaVersion must be 2")
	}
	if len(doc.ArtifactType) > maxMediaTypeLen {
		return nil, invalid("artifactType has %d bytes: a media type has at most %d (RFC 6838)", len(doc.ArtifactType), maxMediaTypeLen)
	}
	m := &manifest{mediaType: mt, artifactType: doc.ArtifactType, annotations: doc.Annotations}
	checkDesc := func(field string, d descriptor) (digest, error) {
		dg, err := parseDigest(d.Digest)
		if err != nil {
			return digest{}, invalid("%s: %v", field, err)
		}
		if d.Size < 0 {
			return digest{}, invalid("%s: negative size %d", field, d.Size)
		}
		if d.MediaType == "" {
			return digest{}, invalid("%s: mediaType is empty", field)
		}
		if len(d.MediaType) > maxMediaTypeLen {
			return digest{}, invalid("%s: mediaType has %d bytes: a media type has at most %d (RFC 6838)", field, len(d.MediaType), maxMediaTypeLen)
		}
		return dg, nil
	}
	switch mt {
	case mediaTypeOCIManifest, mediaTypeDockerManifest:
		if doc.Manifests != nil {
			return nil, invalid("an image manifest has no manifests field")
		}
		if doc.Config == nil {
			return nil, invalid("config is missing")
		}
		dg, err := checkDesc("config", *doc.Config)
		if err != nil {
			return nil, err
		}
		m.blobs = append(m.blobs, ref{dg, doc.Config.Size})
		if m.artifactType == "" {
			m.artifactType = doc.Config.MediaType
		}
		for i, l := range doc.Layers {
			dg, err := checkDesc(fmt.Sprintf("layers[%d]", i), l)
			if err != nil {
				return nil, err
			}
			if !nonDistributable(l) {
				m.blobs = append(m.blobs, ref{dg, l.Size})
			}
		}
	case mediaTypeOCIIndex, mediaTypeDockerList:
		m.isIndex = true
		if doc.Config != nil || doc.Layers != nil {
			return nil, invalid("an index has no config or layers")
		}
		for i, c := range doc.Manifests {
			dg, err := checkDesc(fmt.Sprintf("manifests[%d]", i), c)
			if err != nil {
				return nil, err
			}
			m.children = append(m.children, ref{dg, c.Size})
		}
	default:
		return nil, invalid("unsupported media type %q", trimmed(mt))
	}
	if doc.Subject != nil {
		dg, err := checkDesc("subject", *doc.Subject)
		if err != nil {
			return nil, err
		}
		m.subject = &dg
	}
	return m, nil
}

// referencedDigests returns every digest a stored manifest points at (config, layers, index children), for
// GC. It is lenient: what was stored was validated when it was pushed.
func referencedDigests(body []byte) []digest {
	var doc manifestDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil
	}
	var out []digest
	add := func(s string) {
		if d, err := parseDigest(s); err == nil {
			out = append(out, d)
		}
	}
	if doc.Config != nil {
		add(doc.Config.Digest)
	}
	for _, l := range doc.Layers {
		add(l.Digest)
	}
	for _, c := range doc.Manifests {
		add(c.Digest)
	}
	return out
}

// subjectOf returns a stored manifest's subject, if any.
func subjectOf(body []byte) (digest, bool) {
	var doc manifestDoc
	if err := json.Unmarshal(body, &doc); err != nil || doc.Subject == nil {
		return digest{}, false
	}
	d, err := parseDigest(doc.Subject.Digest)
	return d, err == nil
}
