package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/provenance"
)

// taskAttestations reads the task attestation bundles (attestations/<task>.task.sigstore.json, made by ssf build
// --signer identity) that the provenance lists among its byproducts, to attach each to the artifact manifest as a
// referrer. The provenance has been verified by then, and each bundle must hash to the digest it lists for it:
// a task bundle missing, changed or swapped for another stops the publish. (Each one's own signature, by its
// task's identity, is checked by `ssf verify` and cosign with that identity; publish relies on the run's.)
func taskAttestations(dir string, prov *provenance.Provenance, artifact Descriptor) ([]attestation, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	var out []attestation
	for _, b := range prov.Byproducts {
		if !strings.HasPrefix(b.Name, "attestations/") || !strings.HasSuffix(b.Name, content.TaskBundleSuffix) {
			continue
		}
		data, err := ReadRegular(root, b.Name, MaxAttestationBytes)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("refusing to publish: %s is missing: the provenance lists it (with %s)", b.Name, b.Digest)
		} else if err != nil {
			return nil, err
		}
		if got := digest.FromBytes(data); b.Digest[string(got.Algorithm())] != got.Encoded() {
			return nil, fmt.Errorf("refusing to publish: %s hashes to %s, not to what the provenance lists for it (%s)", b.Name, got, b.Digest)
		}
		out = append(out, attestation{path: b.Name, predicateType: content.TaskPredicateType, bundle: data, subjects: []Descriptor{artifact}})
	}
	return out, nil
}
