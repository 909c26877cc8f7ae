package sbom

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/provenance"
)

// Statement returns an in-toto Statement v1 about subjects whose predicate is the SBOM document doc (a JSON
// object) of predicateType (content.SPDXPredicateType or content.CycloneDXPredicateType). It is written with protojson, compact,
// like the provenance; the predicate's keys come out sorted, so the document inside is doc re-encoded, equal as
// JSON but not byte for byte.
func Statement(subjects []provenance.Subject, predicateType string, doc []byte) ([]byte, error) {
	if predicateType != content.SPDXPredicateType && predicateType != content.CycloneDXPredicateType {
		return nil, fmt.Errorf("building SBOM statement: predicate type %q is not an SBOM type ssf writes", predicateType)
	}
	if len(subjects) == 0 {
		return nil, fmt.Errorf("building SBOM statement: no subjects")
	}
	pred := &structpb.Struct{}
	if err := protojson.Unmarshal(doc, pred); err != nil {
		return nil, fmt.Errorf("building SBOM statement: the document is not a JSON object: %w", err)
	}
	subjects = slices.Clone(subjects)
	slices.SortFunc(subjects, func(x, y provenance.Subject) int { return strings.Compare(x.Name, y.Name) })
	st := &intoto.Statement{Type: intoto.StatementTypeUri, PredicateType: predicateType, Predicate: pred}
	for _, s := range subjects {
		if _, err := content.Parse(string(s.Digest)); err != nil {
			return nil, fmt.Errorf("building SBOM statement: subject %q: %w", s.Name, err)
		}
		st.Subject = append(st.Subject, &intoto.ResourceDescriptor{Name: s.Name, Digest: provenance.DigestSet(s.Digest)})
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("building SBOM statement: %w", err)
	}
	b, err := protojson.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("building SBOM statement: %w", err)
	}
	// protojson varies its whitespace on purpose; compacting keeps equal statements byte-identical.
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, fmt.Errorf("building SBOM statement: %w", err)
	}
	return buf.Bytes(), nil
}
