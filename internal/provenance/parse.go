package provenance

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	digest "github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ssf-dev/ssf/internal/content"
)

// ErrInvalid is wrapped by every error Parse returns for a statement that is not valid SLSA provenance v1.
var ErrInvalid = errors.New("invalid provenance statement")

// Provenance is what Parse read from a statement: the fields a verifier needs.
type Provenance struct {
	Subjects     []Subject // in statement order
	BuildType    string
	BuilderID    string
	InvocationID string
	StartedOn    time.Time // zero if absent
	FinishedOn   time.Time // zero if absent

	// Read from externalParameters only when BuildType is ssf's BuildType.
	PipelineName   string
	PipelinePath   string
	PipelineDigest digest.Digest
	Params         map[string]string
	SourceURI      string

	BuilderVersion map[string]string
	Internal       map[string]string        // internalParameters; non-string values as their JSON text; not "tasks"
	Tasks          map[string]TaskIsolation // internalParameters.tasks, for ssf's BuildType
	Dependencies   []ResourceDescriptor
	Byproducts     []ResourceDescriptor
}

// parseOptions ignore unknown fields, as in-toto and SLSA require of consumers; duplicate keys and wrong types are
// still errors.
var parseOptions = protojson.UnmarshalOptions{DiscardUnknown: true}

// Parse reads an in-toto Statement v1 (e.g. a DSSE payload) whose predicate is SLSA provenance v1. It checks _type,
// predicateType, the subjects (each needs a sha256 digest) and the predicate's required fields; it checks no
// signature.
func Parse(statement []byte) (*Provenance, error) {
	var st intoto.Statement
	if err := parseOptions.Unmarshal(statement, &st); err != nil {
		return nil, fmt.Errorf("%w: decoding in-toto statement: %w", ErrInvalid, err)
	}
	if err := checkJSONNames(statement); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if st.GetType() != StatementType {
		return nil, fmt.Errorf("%w: _type is %q, want %q", ErrInvalid, st.GetType(), StatementType)
	}
	if st.GetPredicateType() != PredicateType {
		return nil, fmt.Errorf("%w: predicateType is %q, want %q", ErrInvalid, st.GetPredicateType(), PredicateType)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}

	p := &Provenance{}
	for i, s := range st.GetSubject() {
		d, err := content.FromHex(s.GetDigest()["sha256"])
		if err != nil {
			return nil, fmt.Errorf("%w: subject %d (%q) has no sha256 digest", ErrInvalid, i, s.GetName())
		}
		p.Subjects = append(p.Subjects, Subject{Name: s.GetName(), Digest: d})
	}

	predJSON, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		return nil, fmt.Errorf("%w: predicate: %w", ErrInvalid, err)
	}
	var pred slsa.Provenance
	if err := parseOptions.Unmarshal(predJSON, &pred); err != nil {
		return nil, fmt.Errorf("%w: decoding SLSA provenance predicate: %w", ErrInvalid, err)
	}
	if err := pred.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}

	bd, rd := pred.GetBuildDefinition(), pred.GetRunDetails()
	p.BuildType = bd.GetBuildType()
	p.BuilderID = rd.GetBuilder().GetId()
	p.BuilderVersion = rd.GetBuilder().GetVersion()
	p.InvocationID = rd.GetMetadata().GetInvocationId()
	if t := rd.GetMetadata().GetStartedOn(); t != nil {
		p.StartedOn = t.AsTime()
	}
	if t := rd.GetMetadata().GetFinishedOn(); t != nil {
		p.FinishedOn = t.AsTime()
	}
	p.Internal = stringFields(bd.GetInternalParameters())
	p.Dependencies = fromDescriptors(bd.GetResolvedDependencies())
	p.Byproducts = fromDescriptors(rd.GetByproducts())

	if p.BuildType == BuildType {
		if err := p.readExternal(bd.GetExternalParameters()); err != nil {
			return nil, fmt.Errorf("%w: buildDefinition.externalParameters: %w", ErrInvalid, err)
		}
		if tasks, ok := p.Internal["tasks"]; ok {
			if err := json.Unmarshal([]byte(tasks), &p.Tasks); err != nil {
				return nil, fmt.Errorf("%w: buildDefinition.internalParameters.tasks: %w", ErrInvalid, err)
			}
			delete(p.Internal, "tasks")
			if len(p.Internal) == 0 {
				p.Internal = nil
			}
		}
	}
	return p, nil
}

// readExternal reads the externalParameters layout documented at BuildType.
func (p *Provenance) readExternal(ext *structpb.Struct) error {
	pipeline, err := structField(ext, "pipeline")
	if err != nil {
		return err
	}
	if p.PipelineName, err = stringField(pipeline, "pipeline.name", "name", true); err != nil {
		return err
	}
	if p.PipelinePath, err = stringField(pipeline, "pipeline.path", "path", false); err != nil {
		return err
	}
	digestSet, err := structField(pipeline, "digest")
	if err != nil {
		return fmt.Errorf("pipeline.%w", err)
	}
	pipelineHex, err := stringField(digestSet, "pipeline.digest.sha256", "sha256", true)
	if err != nil {
		return err
	}
	if p.PipelineDigest, err = content.FromHex(pipelineHex); err != nil {
		return fmt.Errorf("pipeline.digest.sha256: %w", err)
	}

	params, err := structField(ext, "params")
	if err != nil {
		return err
	}
	p.Params = make(map[string]string, len(params.GetFields()))
	for k, v := range params.GetFields() {
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return fmt.Errorf("params.%s: want a string", k)
		}
		p.Params[k] = s.StringValue
	}

	source, err := structField(ext, "source")
	if err != nil {
		return err
	}
	p.SourceURI, err = stringField(source, "source.uri", "uri", true)
	return err
}

func structField(s *structpb.Struct, key string) (*structpb.Struct, error) {
	v, ok := s.GetFields()[key]
	if !ok {
		return nil, fmt.Errorf("%s: missing", key)
	}
	sv, ok := v.GetKind().(*structpb.Value_StructValue)
	if !ok {
		return nil, fmt.Errorf("%s: want an object", key)
	}
	return sv.StructValue, nil
}

func stringField(s *structpb.Struct, path, key string, required bool) (string, error) {
	v, ok := s.GetFields()[key]
	if !ok {
		if required {
			return "", fmt.Errorf("%s: missing", path)
		}
		return "", nil
	}
	sv, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		return "", fmt.Errorf("%s: want a string", path)
	}
	if required && sv.StringValue == "" {
		return "", fmt.Errorf("%s: empty", path)
	}
	return sv.StringValue, nil
}

// stringFields flattens a Struct to strings; values that are not strings become their JSON text.
func stringFields(s *structpb.Struct) map[string]string {
	if len(s.GetFields()) == 0 {
		return nil
	}
	out := make(map[string]string, len(s.GetFields()))
	for k, v := range s.GetFields() {
		if sv, ok := v.GetKind().(*structpb.Value_StringValue); ok {
			out[k] = sv.StringValue
			continue
		}
		b, err := marshal(v)
		if err != nil {
			// A Value decoded from JSON always encodes again; keep the key visible if it somehow doesn't.
			b = []byte("?")
		}
		out[k] = string(b)
	}
	return out
}

func fromDescriptors(in []*intoto.ResourceDescriptor) []ResourceDescriptor {
	var out []ResourceDescriptor
	for _, d := range in {
		rd := ResourceDescriptor{
			Name:        d.GetName(),
			URI:         d.GetUri(),
			MediaType:   d.GetMediaType(),
			Annotations: stringFields(d.GetAnnotations()),
			Content:     d.GetContent(),

			DownloadLocation: d.GetDownloadLocation(),
		}
		if len(d.GetDigest()) > 0 {
			rd.Digest = make(Digest, len(d.GetDigest()))
			for alg, v := range d.GetDigest() {
				rd.Digest[alg] = v
			}
		}
		out = append(out, rd)
	}
	return out
}

// checkJSONNames rejects protobuf field names (predicate_type, build_definition, type) where the JSON names belong.
// protojson accepts both spellings, but other verifiers only read the JSON names: a statement they would read
// without a predicateType or buildType must not mean something to ssf.
func checkJSONNames(statement []byte) error {
	var raw map[string]any
	if err := json.Unmarshal(statement, &raw); err != nil {
		return fmt.Errorf("decoding in-toto statement: %w", err)
	}
	if err := checkMessageNames(raw, (&intoto.Statement{}).ProtoReflect().Descriptor(), ""); err != nil {
		return err
	}
	return checkMessageNames(raw["predicate"], (&slsa.Provenance{}).ProtoReflect().Descriptor(), "predicate.")
}

func checkMessageNames(v any, md protoreflect.MessageDescriptor, path string) error {
	obj, ok := v.(map[string]any)
	if !ok || md.ParentFile().Package() == "google.protobuf" {
		// Not an object (protojson has already judged its type) or a well-known type with its own JSON form.
		return nil
	}
	for key, val := range obj {
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			if alt := md.Fields().ByName(protoreflect.Name(key)); alt != nil {
				return fmt.Errorf("%s%s: protobuf field name; the JSON name is %q", path, key, alt.JSONName())
			}
			continue
		}
		if fd.Message() == nil || fd.IsMap() {
			continue
		}
		if !fd.IsList() {
			if err := checkMessageNames(val, fd.Message(), path+key+"."); err != nil {
				return err
			}
			continue
		}
		list, _ := val.([]any)
		for i, e := range list {
			if err := checkMessageNames(e, fd.Message(), fmt.Sprintf("%s%s[%d].", path, key, i)); err != nil {
				return err
			}
		}
	}
	return nil
}
