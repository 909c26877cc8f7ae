// Package provenance builds and reads SLSA provenance v1 statements (in-toto Statement v1, predicate
// https://slsa.dev/provenance/v1) for ssf's pipeline builds.
//
// # Where the fields come from
//
// Only the subject digests come from the build (they are the hashes the control plane took of the task outputs);
// every other field — builder, invocation, timestamps, pipeline (its file included), params, source, dependencies,
// byproducts, how each task was isolated — is the control plane's own observation, passed in a [Build].
//
// # What it must never do
//
// This package never serialises the in-toto protobuf types with encoding/json: those types carry protobuf field
// names (predicate_type, build_definition) in their struct tags, and verifiers reject statements that use them.
// Every in-toto and SLSA message is written and read with protojson.
package provenance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	digest "github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ssf-dev/ssf/internal/content"
)

// StatementType is the in-toto Statement v1 type URI, the statement's _type.
const StatementType = intoto.StatementTypeUri

// PredicateType is the SLSA provenance v1 predicate type.
const PredicateType = "https://slsa.dev/provenance/v1"

// BuildType identifies a build of an ssf pipeline; it fixes the meaning of the parameters below.
//
// externalParameters (everything a tenant chose, complete):
//
//	{
//	  "pipeline": {"name": <pipeline name>, "path": <path as given, informative only>, "digest": {"sha256": <hex of the pipeline file>}},
//	  "params":   {<param name>: <value as a string>, ...},   // every param, defaults included
//	  "source":   {"uri": <where the source came from>}
//	}
//
// internalParameters (set by the factory, not by the tenant): strings such as {"runtime": "runc version 1.2.0",
// "uid": "1879048192"}, and "tasks": {<task name>: TaskIsolation, ...}, how each task was isolated; omitted when empty.
//
// resolvedDependencies lists the source first (named "source"), then the builder image ("builder"), then the
// pipeline file itself ("pipeline", with its bytes as content), then the dependencies the control plane fetched
// and checked against their pins (spec.dependencies): one per Go module (uri pkg:golang/PATH@VERSION, digest sha256
// of the module zip and dirHash, the go.sum h1 in hex; a module of which only go.mod was needed for the module
// graph has uri pkg:golang/PATH@VERSION#go.mod and the sha256 of that file), one per npm package (uri
// pkg:npm/NAME@VERSION, digest sha256 and sha512 of the tarball) and one per file (uri its URL, name its dest,
// digest sha256), each with downloadLocation; then each task cache (name cache/TASK/CACHE, digest sha256 of the
// tar stream the task's cache was extracted from, annotations saying its state; docs/build-type.md), which the
// factory passes in Build.Fetched after the dependencies.
const BuildType = "https://ssf.dev/buildtypes/pipeline/v1"

// SourceDependencyName is the resolvedDependencies name of the source a build was made from.
const SourceDependencyName = "source"

// PipelineDependencyName is the resolvedDependencies name of the pipeline file, recorded with its bytes so a
// verifier can see what ran and pin it by digest.
const PipelineDependencyName = "pipeline"

// Digest is a digest set, the in-toto wire form of digests: algorithm to lower-case hex value, e.g.
// {"sha256": hex} or {"gitCommit": sha1hex}. Inside ssf a sha256 digest is a digest.Digest (see internal/content);
// DigestSet makes this form of one.
type Digest map[string]string

// String writes the set for people: "alg:value" pairs sorted and joined by ", "; "none" when empty.
func (d Digest) String() string {
	parts := make([]string, 0, len(d))
	for alg, v := range d {
		parts = append(parts, alg+":"+v)
	}
	if len(parts) == 0 {
		return "none"
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// DigestSet returns d as an in-toto digest set, {"sha256": hex}.
func DigestSet(d digest.Digest) Digest { return Digest{string(d.Algorithm()): d.Encoded()} }

// ResourceDescriptor is an in-toto resource descriptor: a dependency or a byproduct of a build.
type ResourceDescriptor struct {
	Name      string
	URI       string
	MediaType string
	Digest    Digest
	// DownloadLocation is where the control plane fetched the resource from (a dependency's URL).
	DownloadLocation string
	Annotations      map[string]string
	Content          []byte // the resource itself, for small ones (the pipeline file); nil otherwise
}

// Build is what the control plane observed about one pipeline run.
type Build struct {
	BuilderID      string            // runDetails.builder.id
	BuilderVersion map[string]string // runDetails.builder.version, e.g. {"ssf": "v0.1.0"}
	InvocationID   string            // runDetails.metadata.invocationId
	StartedOn      time.Time
	FinishedOn     time.Time
	PipelineName   string
	PipelinePath   string        // as given, informative
	PipelineDigest digest.Digest // of the pipeline file
	// PipelineContent is the pipeline file's bytes. When set, the statement records the file as the
	// resolvedDependency PipelineDependencyName with this content, and its sha256 must be PipelineDigest.
	PipelineContent []byte
	PipelineURI     string            // uri of that dependency (where the file was read), informative
	Params          map[string]string // every param value
	SourceURI       string
	Internal        map[string]string        // internalParameters (e.g. runtime, runtimeVersion, uid)
	Tasks           map[string]TaskIsolation // internalParameters.tasks: how each task was isolated
	Policy          *PolicyRef               // internalParameters.policy: the policy set the gates applied
	Dependencies    []ResourceDescriptor     // resolvedDependencies: source first, then builder image
	Fetched         []ResourceDescriptor     // resolvedDependencies after the pipeline file: spec.dependencies, as fetched
	Subjects        []Subject                // outputs
	Byproducts      []ResourceDescriptor     // e.g. task logs
}

// PolicyRef names the policy set a build's gates applied: its digest (docs/policy.md) and where it was read from
// (a directory, or "embedded:default").
type PolicyRef struct {
	Digest string `json:"digest"`
	Source string `json:"source"`
}

// TaskIsolation is how the control plane isolated one task: facts it set itself (read back from the runtime spec
// it handed the OCI runtime, and its own configuration), never claims a step made. A verifier or a policy can
// require them (network "none", readOnlyRoot, no capabilities, a known seccomp profile digest, limits).
type TaskIsolation struct {
	// Network is "none" when the task had a network namespace of its own, holding only its loopback.
	Network string `json:"network"`
	// ReadOnlyRoot is true when the root file system (the builder image) was mounted read-only.
	ReadOnlyRoot bool `json:"readOnlyRoot"`
	// HostUID and HostGID are what the steps ran as on the host: leased host-wide for the build, unique among
	// running builds, in a range no account, group or subordinate range overlaps.
	HostUID uint32 `json:"hostUid"`
	HostGID uint32 `json:"hostGid"`
	// Capabilities is every capability in any of the process's sets (bounding, effective, permitted, inheritable,
	// ambient); empty means none.
	Capabilities []string `json:"capabilities"`
	// NoNewPrivileges is the no_new_privs bit: setuid binaries cannot raise privileges.
	NoNewPrivileges bool `json:"noNewPrivileges"`
	// SeccompProfile is the digest of the seccomp profile applied: the sha256 of the JSON encoding of the
	// runtime spec's linux.seccomp object, as handed to the runtime. Empty if none was applied.
	SeccompProfile Digest `json:"seccompProfile,omitempty"`
	// MemoryBytes and Pids are the task's cgroup limits; DiskBytes bounds its writable paths together.
	MemoryBytes int64 `json:"memoryBytes"`
	Pids        int64 `json:"pids"`
	DiskBytes   int64 `json:"diskBytes,omitempty"`
	// TimeoutSeconds is the task's timeout, after which its container was killed.
	TimeoutSeconds int64 `json:"timeoutSeconds"`
	// Runtime is the OCI runtime (as configured) and RuntimeVersion the first line of its --version.
	Runtime        string `json:"runtime"`
	RuntimeVersion string `json:"runtimeVersion"`
	// Inputs are the outputs of the tasks it needs that it was given, read-only at /inputs/<task>/<path>, with
	// the digests the control plane computed when it collected them. Internal outputs appear only here.
	Inputs []TaskInput `json:"inputs,omitempty"`
	// Secrets names the factory secrets the task was given at /run/secrets/NAME: their names only, never a value.
	Secrets []string `json:"secrets,omitempty"`
}

// TaskInput is one file a task was given from a task it needs.
type TaskInput struct {
	Task     string `json:"task"` // the task that produced it
	Path     string `json:"path"` // relative to that task's $SSF_OUTPUTS (and to /inputs/<task>/)
	Digest   Digest `json:"digest"`
	Internal bool   `json:"internal,omitempty"` // an internal output: not a subject, not published
}

// Subject is one output of a build: its name and the sha256 digest the control plane computed.
type Subject struct {
	Name   string
	Digest digest.Digest
}

// Statement returns the in-toto Statement v1 JSON for b with a SLSA provenance v1 predicate. Subjects are sorted by
// name. The output is compact protojson and the same bytes for the same Build.
func Statement(b Build) ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("building provenance: %w", err)
	}

	pipeline := map[string]any{
		"name":   b.PipelineName,
		"digest": map[string]any{"sha256": b.PipelineDigest.Encoded()},
	}
	if b.PipelinePath != "" {
		pipeline["path"] = b.PipelinePath
	}
	external, err := structpb.NewStruct(map[string]any{
		"pipeline": pipeline,
		"params":   anyMap(b.Params),
		"source":   map[string]any{"uri": b.SourceURI},
	})
	if err != nil {
		return nil, fmt.Errorf("building provenance: externalParameters: %w", err)
	}
	var internal *structpb.Struct
	if len(b.Internal) > 0 || len(b.Tasks) > 0 || b.Policy != nil {
		fields := anyMap(b.Internal)
		if b.Policy != nil {
			if _, ok := fields["policy"]; ok {
				return nil, fmt.Errorf("building provenance: internalParameters: \"policy\" is given twice")
			}
			fields["policy"] = map[string]any{"digest": b.Policy.Digest, "source": b.Policy.Source}
		}
		if len(b.Tasks) > 0 {
			if _, ok := fields["tasks"]; ok {
				return nil, fmt.Errorf("building provenance: internalParameters: \"tasks\" is given twice")
			}
			tasks, err := jsonValue(b.Tasks)
			if err != nil {
				return nil, fmt.Errorf("building provenance: internalParameters.tasks: %w", err)
			}
			fields["tasks"] = tasks
		}
		if internal, err = structpb.NewStruct(fields); err != nil {
			return nil, fmt.Errorf("building provenance: internalParameters: %w", err)
		}
	}
	allDeps := b.Dependencies
	if b.PipelineContent != nil {
		allDeps = append(slices.Clone(allDeps), ResourceDescriptor{
			Name:      PipelineDependencyName,
			URI:       b.PipelineURI,
			MediaType: content.PipelineMediaType,
			Digest:    DigestSet(b.PipelineDigest),
			Content:   b.PipelineContent,
		})
	}
	allDeps = append(slices.Clone(allDeps), b.Fetched...)
	deps, err := descriptors(allDeps)
	if err != nil {
		return nil, fmt.Errorf("building provenance: resolvedDependencies: %w", err)
	}
	byproducts, err := descriptors(b.Byproducts)
	if err != nil {
		return nil, fmt.Errorf("building provenance: byproducts: %w", err)
	}

	pred := &slsa.Provenance{
		BuildDefinition: &slsa.BuildDefinition{
			BuildType:            BuildType,
			ExternalParameters:   external,
			InternalParameters:   internal,
			ResolvedDependencies: deps,
		},
		RunDetails: &slsa.RunDetails{
			Builder: &slsa.Builder{Id: b.BuilderID, Version: b.BuilderVersion},
			Metadata: &slsa.BuildMetadata{
				InvocationId: b.InvocationID,
				StartedOn:    timestamppb.New(b.StartedOn),
				FinishedOn:   timestamppb.New(b.FinishedOn),
			},
			Byproducts: byproducts,
		},
	}
	if err := pred.Validate(); err != nil {
		return nil, fmt.Errorf("building provenance: %w", err)
	}
	predStruct, err := toStruct(pred)
	if err != nil {
		return nil, fmt.Errorf("building provenance: converting predicate: %w", err)
	}

	subjects := slices.Clone(b.Subjects)
	slices.SortFunc(subjects, func(x, y Subject) int { return strings.Compare(x.Name, y.Name) })
	st := &intoto.Statement{
		Type:          StatementType,
		PredicateType: PredicateType,
		Predicate:     predStruct,
	}
	for _, s := range subjects {
		st.Subject = append(st.Subject, &intoto.ResourceDescriptor{
			Name:   s.Name,
			Digest: DigestSet(s.Digest),
		})
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("building provenance: %w", err)
	}
	return marshal(st)
}

// validate checks what the protobuf validators don't: presence of every field ssf promises and hex digests.
func (b *Build) validate() error {
	switch {
	case b.BuilderID == "":
		return fmt.Errorf("builder id is empty")
	case b.InvocationID == "":
		return fmt.Errorf("invocation id is empty")
	case b.PipelineName == "":
		return fmt.Errorf("pipeline name is empty")
	case b.SourceURI == "":
		return fmt.Errorf("source uri is empty")
	case b.StartedOn.IsZero() || b.FinishedOn.IsZero():
		return fmt.Errorf("start or finish time is unset")
	case b.FinishedOn.Before(b.StartedOn):
		return fmt.Errorf("build finished (%s) before it started (%s)",
			b.FinishedOn.Format(time.RFC3339Nano), b.StartedOn.Format(time.RFC3339Nano))
	case len(b.Subjects) == 0:
		return fmt.Errorf("no subjects: a build must have at least one output")
	}
	if _, err := content.Parse(string(b.PipelineDigest)); err != nil {
		return fmt.Errorf("pipeline %w", err)
	}
	if b.PipelineContent != nil {
		// The content is recorded beside the digest that pins it: they must not disagree.
		if sum := digest.FromBytes(b.PipelineContent); sum != b.PipelineDigest {
			return fmt.Errorf("pipeline content hashes to %s, not to the pipeline digest %s", sum, b.PipelineDigest)
		}
		for _, d := range b.Dependencies {
			if d.Name == PipelineDependencyName {
				return fmt.Errorf("dependency %q is given twice", PipelineDependencyName)
			}
		}
	}
	seen := make(map[string]bool, len(b.Subjects))
	for i, s := range b.Subjects {
		if s.Name == "" {
			return fmt.Errorf("subject %d has no name", i)
		}
		if seen[s.Name] {
			return fmt.Errorf("subject %q appears twice", s.Name)
		}
		seen[s.Name] = true
		if _, err := content.Parse(string(s.Digest)); err != nil {
			return fmt.Errorf("subject %q: %w", s.Name, err)
		}
	}
	for i, d := range append(slices.Clone(b.Dependencies), b.Fetched...) {
		if len(d.Digest) == 0 {
			return fmt.Errorf("dependency %d (%q): a resolved dependency needs a digest", i, d.Name)
		}
	}
	return nil
}

func descriptors(in []ResourceDescriptor) ([]*intoto.ResourceDescriptor, error) {
	var out []*intoto.ResourceDescriptor
	for i, d := range in {
		rd := &intoto.ResourceDescriptor{
			Name:             d.Name,
			Uri:              d.URI,
			MediaType:        d.MediaType,
			Content:          d.Content,
			DownloadLocation: d.DownloadLocation,
		}
		if len(d.Digest) > 0 {
			rd.Digest = make(map[string]string, len(d.Digest))
			for alg, v := range d.Digest {
				if alg == "" || v == "" {
					return nil, fmt.Errorf("%d (%q): empty digest algorithm or value", i, d.Name)
				}
				rd.Digest[alg] = strings.ToLower(v)
			}
		}
		if len(d.Annotations) > 0 {
			a, err := structpb.NewStruct(anyMap(d.Annotations))
			if err != nil {
				return nil, fmt.Errorf("%d (%q): annotations: %w", i, d.Name, err)
			}
			rd.Annotations = a
		}
		if err := rd.Validate(); err != nil {
			return nil, fmt.Errorf("%d (%q): %w", i, d.Name, err)
		}
		out = append(out, rd)
	}
	return out, nil
}

// jsonValue turns v into the generic form structpb accepts, through its JSON encoding (so the struct tags name
// the fields).
func jsonValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func anyMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// toStruct converts a protobuf message to a Struct through its protojson form, which is the form the statement's
// predicate has on the wire.
func toStruct(m proto.Message) (*structpb.Struct, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(b, s); err != nil {
		return nil, err
	}
	return s, nil
}

// marshal writes m as compact protojson. protojson sorts map and Struct keys but deliberately varies its
// whitespace; compacting removes the variation so the same statement always has the same bytes.
func marshal(m proto.Message) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
