package oci

import (
	"bytes"
	"testing"

	"github.com/ssf-dev/ssf/internal/content"
)

// decodeReferrers reads a registry's answer, which anyone who may push can shape.
func FuzzDecodeReferrers(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":"sha256:aa","size":3,"annotations":{"a":"b"}}]}`))
	f.Add([]byte(`{"manifests":[{"artifactType":"x"},{}],"extra":[1,2,{"a":null}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		descs, _ := decodeReferrers(bytes.NewReader(data))
		for _, d := range descs {
			// Annotations are dropped, but for the mark of a referrer of another predicate type than provenance.
			if d.ArtifactType != content.BundleMediaType || d.Annotations != nil && (len(d.Annotations) != 1 || d.Annotations[predicateTypeAnnotation] != otherPredicate) {
				t.Errorf("kept %+v", d)
			}
		}
	})
}
