package provenance

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/content"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

const (
	hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hexB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	hexP = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	sha1 = "0123456789abcdef0123456789abcdef01234567"

	digestA = digest.Digest("sha256:" + hexA)
	digestB = digest.Digest("sha256:" + hexB)
	digestP = digest.Digest("sha256:" + hexP)
)

func testBuild() Build {
	return Build{
		BuilderID:      "https://ssf.dev/builders/local@v1",
		BuilderVersion: map[string]string{"ssf": "v0.1.0"},
		InvocationID:   "run-0001",
		StartedOn:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		FinishedOn:     time.Date(2026, 1, 2, 3, 5, 6, 500, time.UTC),
		PipelineName:   "hello",
		PipelinePath:   "ssf.yaml",
		PipelineDigest: digestP,
		Params:         map[string]string{"GOOS": "linux", "VERSION": "1.0"},
		SourceURI:      "git+https://example.com/hello@refs/heads/main",
		Internal:       map[string]string{"runtime": "runc", "uid": "65534"},
		Dependencies: []ResourceDescriptor{
			{Name: SourceDependencyName, URI: "git+https://example.com/hello", Digest: Digest{"gitCommit": sha1}},
			{Name: "builder", URI: "registry.example/go@sha256:" + hexA, Digest: Digest{"sha256": hexA},
				Annotations: map[string]string{"role": "builder-image"}},
		},
		// Deliberately unsorted: Statement sorts subjects by name.
		Subjects: []Subject{{Name: "out/zz", Digest: digestB}, {Name: "out/aa", Digest: digestA}},
		Byproducts: []ResourceDescriptor{
			{Name: "logs/build.log", MediaType: "text/plain", Digest: Digest{"sha256": hexB}},
		},
	}
}

func TestStatementGolden(t *testing.T) {
	got, err := Statement(testBuild())
	if err != nil {
		t.Fatal(err)
	}
	// The same Build must give the same bytes: statements are signed, and golden files must be stable.
	again, err := Statement(testBuild())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, again) {
		t.Fatalf("Statement is not deterministic:\n%s\n%s", got, again)
	}

	golden := filepath.Join("testdata", "statement.golden.json")
	var indented bytes.Buffer
	if err := json.Indent(&indented, got, "", "  "); err != nil {
		t.Fatalf("statement is not JSON: %v\n%s", err, got)
	}
	indented.WriteByte('\n')
	if *update {
		if err := os.WriteFile(golden, indented.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(indented.Bytes(), want) {
		t.Errorf("statement differs from %s (run go test -update to accept):\n%s", golden, indented.Bytes())
	}
}

// TestStatementWireNames guards against the encoding/json mistake: protobuf field names on the wire.
func TestStatementWireNames(t *testing.T) {
	got, err := Statement(testBuild())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"_type", "subject", "predicateType", "predicate"} {
		if _, ok := m[key]; !ok {
			t.Errorf("statement has no %q key: %s", key, got)
		}
	}
	for _, bad := range []string{"predicate_type", "build_definition", "run_details", "external_parameters", "resolved_dependencies", "invocation_id"} {
		if strings.Contains(string(got), `"`+bad+`"`) {
			t.Errorf("statement uses protobuf field name %q: %s", bad, got)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	b := testBuild()
	st, err := Statement(b)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(st)
	if err != nil {
		t.Fatal(err)
	}
	want := &Provenance{
		Subjects:       []Subject{{Name: "out/aa", Digest: digestA}, {Name: "out/zz", Digest: digestB}},
		BuildType:      BuildType,
		BuilderID:      b.BuilderID,
		InvocationID:   b.InvocationID,
		StartedOn:      b.StartedOn,
		FinishedOn:     b.FinishedOn,
		PipelineName:   b.PipelineName,
		PipelinePath:   b.PipelinePath,
		PipelineDigest: b.PipelineDigest,
		Params:         b.Params,
		SourceURI:      b.SourceURI,
		BuilderVersion: b.BuilderVersion,
		Internal:       b.Internal,
		Dependencies:   b.Dependencies,
		Byproducts:     b.Byproducts,
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Parse(Statement(b)):\n got %+v\nwant %+v", p, want)
	}
}

func TestStatementRejects(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Build)
		want   string
	}{
		{"no subjects", func(b *Build) { b.Subjects = nil }, "no subjects"},
		{"subject without name", func(b *Build) { b.Subjects[0].Name = "" }, "has no name"},
		{"duplicate subject", func(b *Build) { b.Subjects[1].Name = b.Subjects[0].Name }, "appears twice"},
		{"short subject digest", func(b *Build) { b.Subjects[0].Digest = "sha256:abc" }, "want sha256:<64 lower-case hex digits>"},
		{"non-hex subject digest", func(b *Build) { b.Subjects[0].Digest = digest.Digest("sha256:" + strings.Repeat("g", 64)) }, "want sha256:<64 lower-case hex digits>"},
		{"bare hex subject digest", func(b *Build) { b.Subjects[0].Digest = hexA }, "want sha256:<64 lower-case hex digits>"},
		{"upper-case subject digest", func(b *Build) { b.Subjects[0].Digest = digest.Digest("sha256:" + strings.ToUpper(hexA)) }, "lower-case"},
		{"bad pipeline digest", func(b *Build) { b.PipelineDigest = hexP }, "pipeline digest"},
		{"upper-case pipeline digest", func(b *Build) { b.PipelineDigest = digest.Digest("sha256:" + strings.ToUpper(hexP)) }, "pipeline digest"},
		{"no builder id", func(b *Build) { b.BuilderID = "" }, "builder id"},
		{"no invocation id", func(b *Build) { b.InvocationID = "" }, "invocation id"},
		{"no pipeline name", func(b *Build) { b.PipelineName = "" }, "pipeline name"},
		{"no source uri", func(b *Build) { b.SourceURI = "" }, "source uri"},
		{"no start time", func(b *Build) { b.StartedOn = time.Time{} }, "time is unset"},
		{"finished before start", func(b *Build) { b.FinishedOn = b.StartedOn.Add(-time.Second) }, "before it started"},
		{"dependency without digest", func(b *Build) { b.Dependencies[0].Digest = nil }, "needs a digest"},
		{"dependency bad sha256", func(b *Build) { b.Dependencies[1].Digest = Digest{"sha256": "zz"} }, "resolvedDependencies"},
		{"dependency bad gitCommit length", func(b *Build) { b.Dependencies[0].Digest = Digest{"gitCommit": hexA} }, "resolvedDependencies"},
		{"byproduct empty", func(b *Build) { b.Byproducts = []ResourceDescriptor{{}} }, "byproducts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBuild()
			tt.change(&b)
			_, err := Statement(b)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Statement: err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	valid, err := Statement(testBuild())
	if err != nil {
		t.Fatal(err)
	}
	// edit decodes the valid statement, applies f to the generic JSON and encodes it again.
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(valid, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pred := func(m map[string]any) map[string]any { return m["predicate"].(map[string]any) }
	ext := func(m map[string]any) map[string]any {
		return pred(m)["buildDefinition"].(map[string]any)["externalParameters"].(map[string]any)
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "decoding in-toto statement"},
		{"not json", []byte("{"), "decoding in-toto statement"},
		{"array", []byte("[]"), "decoding in-toto statement"},
		{"legacy type", edit(func(m map[string]any) { m["_type"] = "https://in-toto.io/Statement/v0.1" }), "_type"},
		{"no type", edit(func(m map[string]any) { delete(m, "_type") }), "_type"},
		{"other predicate", edit(func(m map[string]any) { m["predicateType"] = "https://slsa.dev/provenance/v0.2" }), "predicateType"},
		{"protobuf field name", edit(func(m map[string]any) {
			m["predicate_type"] = m["predicateType"]
			delete(m, "predicateType")
		}), "protobuf field name"},
		{"protobuf field name type", edit(func(m map[string]any) {
			m["type"] = m["_type"]
			delete(m, "_type")
		}), "protobuf field name"},
		{"nested protobuf field name", edit(func(m map[string]any) {
			bd := pred(m)["buildDefinition"].(map[string]any)
			bd["build_type"] = "https://example.com/other"
			delete(bd, "buildType")
		}), "predicate.buildDefinition.build_type: protobuf field name"},
		{"protobuf field name in list", edit(func(m map[string]any) {
			rd := pred(m)["buildDefinition"].(map[string]any)["resolvedDependencies"].([]any)[1].(map[string]any)
			rd["media_type"] = "x"
		}), "resolvedDependencies[1].media_type"},
		{"no subjects", edit(func(m map[string]any) { m["subject"] = []any{} }), "subject"},
		{"subject sha512 only", edit(func(m map[string]any) {
			m["subject"] = []any{map[string]any{"name": "x", "digest": map[string]any{"sha512": strings.Repeat("ab", 64)}}}
		}), "no sha256"},
		{"subject bad hex", edit(func(m map[string]any) {
			m["subject"] = []any{map[string]any{"name": "x", "digest": map[string]any{"sha256": strings.Repeat("zz", 32)}}}
		}), "hex"},
		{"no predicate", edit(func(m map[string]any) { delete(m, "predicate") }), "predicate"},
		{"no builder id", edit(func(m map[string]any) {
			pred(m)["runDetails"].(map[string]any)["builder"] = map[string]any{"id": ""}
		}), "builder"},
		{"no build type", edit(func(m map[string]any) {
			delete(pred(m)["buildDefinition"].(map[string]any), "buildType")
		}), "buildType"},
		{"bad start time", edit(func(m map[string]any) {
			pred(m)["runDetails"].(map[string]any)["metadata"].(map[string]any)["startedOn"] = "yesterday"
		}), "decoding SLSA provenance"},
		{"param not a string", edit(func(m map[string]any) { ext(m)["params"].(map[string]any)["GOOS"] = 1 }), "params.GOOS"},
		{"no pipeline", edit(func(m map[string]any) { delete(ext(m), "pipeline") }), "pipeline: missing"},
		{"pipeline digest missing", edit(func(m map[string]any) {
			delete(ext(m)["pipeline"].(map[string]any), "digest")
		}), "pipeline.digest: missing"},
		{"pipeline digest not hex", edit(func(m map[string]any) {
			ext(m)["pipeline"].(map[string]any)["digest"] = map[string]any{"sha256": "x"}
		}), "pipeline.digest.sha256"},
		{"no source", edit(func(m map[string]any) { delete(ext(m), "source") }), "source: missing"},
		{"duplicate key", []byte(strings.Replace(string(valid), `"_type":`, `"_type":"x","_type":`, 1)), "decoding in-toto statement"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", p)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestParseOtherBuildType: a statement from another builder is valid provenance, but ssf's pipeline fields stay
// empty rather than being guessed.
func TestParseOtherBuildType(t *testing.T) {
	in := `{"_type":"https://in-toto.io/Statement/v1",
		"subject":[{"name":"a","digest":{"sha256":"` + strings.ToUpper(hexA) + `"}}],
		"predicateType":"https://slsa.dev/provenance/v1",
		"predicate":{"buildDefinition":{"buildType":"https://example.com/other","externalParameters":{"x":1},"unknownField":true},
			"runDetails":{"builder":{"id":"https://example.com/builder"}}}}`
	p, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if p.BuildType != "https://example.com/other" || p.BuilderID != "https://example.com/builder" {
		t.Errorf("got %+v", p)
	}
	if p.PipelineName != "" || p.Params != nil || p.SourceURI != "" {
		t.Errorf("pipeline fields read from a foreign buildType: %+v", p)
	}
	if p.Subjects[0].Digest != digestA {
		t.Errorf("subject digest not lower-cased: %q", p.Subjects[0].Digest)
	}
}

func FuzzParse(f *testing.F) {
	valid, err := Statement(testBuild())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1"}`))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + hexA + `"}}],` +
		`"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"` + BuildType +
		`","externalParameters":{"pipeline":[]}},"runDetails":{"builder":{"id":"b"}}}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := Parse(in)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a result with an error")
			}
			return
		}
		if len(p.Subjects) == 0 {
			t.Fatal("accepted a statement without subjects")
		}
		for _, s := range p.Subjects {
			if _, err := content.Parse(string(s.Digest)); err != nil {
				t.Fatalf("accepted subject digest %q: %v", s.Digest, err)
			}
		}
		if p.BuilderID == "" || p.BuildType == "" {
			t.Fatalf("accepted provenance without builder id or build type: %+v", p)
		}
	})
}

// The pipeline file is recorded as a resolved dependency with its bytes, so a verifier sees what ran; its digest is
// the one externalParameters pins, and content that does not hash to it is refused.
func TestStatementRecordsPipeline(t *testing.T) {
	content := []byte("apiVersion: ssf.dev/v1alpha1\nkind: Pipeline\n")
	b := testBuild()
	b.PipelineContent = content
	b.PipelineDigest = digest.FromBytes(content)
	b.PipelineURI = "file:///src/ssf.yaml"
	st, err := Statement(b)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(st)
	if err != nil {
		t.Fatal(err)
	}
	want := ResourceDescriptor{Name: PipelineDependencyName, URI: "file:///src/ssf.yaml", MediaType: "application/yaml",
		Digest: Digest{"sha256": b.PipelineDigest.Encoded()}, Content: content}
	if n := len(p.Dependencies); n != 3 || !reflect.DeepEqual(p.Dependencies[2], want) {
		t.Errorf("dependencies = %+v\nwant the source, the builder and %+v", p.Dependencies, want)
	}
	// On the wire, content is base64 (in-toto ResourceDescriptor), readable by any verifier.
	var raw struct {
		Predicate struct {
			BuildDefinition struct {
				ResolvedDependencies []map[string]any `json:"resolvedDependencies"`
			} `json:"buildDefinition"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(st, &raw); err != nil {
		t.Fatal(err)
	}
	if got := raw.Predicate.BuildDefinition.ResolvedDependencies[2]["content"]; got != "YXBpVmVyc2lvbjogc3NmLmRldi92MWFscGhhMQpraW5kOiBQaXBlbGluZQo=" {
		t.Errorf("content on the wire = %v", got)
	}

	b.PipelineContent = []byte("something else")
	if _, err := Statement(b); err == nil || !strings.Contains(err.Error(), "pipeline content hashes to") {
		t.Errorf("content that does not match the digest: err = %v", err)
	}
}

// How each task was isolated is recorded in internalParameters.tasks, with the field names docs/build-type.md
// gives, and read back by Parse.
func TestStatementRecordsTaskIsolation(t *testing.T) {
	b := testBuild()
	iso := TaskIsolation{
		Network: "none", ReadOnlyRoot: true, HostUID: 100007, HostGID: 100007, Capabilities: []string{},
		NoNewPrivileges: true, SeccompProfile: Digest{"sha256": hexB}, MemoryBytes: 4 << 30, Pids: 1024,
		DiskBytes: 20 << 30, TimeoutSeconds: 1800, Runtime: "runc", RuntimeVersion: "runc version 1.1.5",
	}
	b.Tasks = map[string]TaskIsolation{"build": iso}
	st, err := Statement(b)
	if err != nil {
		t.Fatal(err)
	}
	want := `"tasks":{"build":{"capabilities":[],"diskBytes":21474836480,"hostGid":100007,"hostUid":100007,` +
		`"memoryBytes":4294967296,"network":"none","noNewPrivileges":true,"pids":1024,"readOnlyRoot":true,` +
		`"runtime":"runc","runtimeVersion":"runc version 1.1.5","seccompProfile":{"sha256":"` + hexB + `"},"timeoutSeconds":1800}}`
	if !strings.Contains(string(st), want) {
		t.Errorf("statement does not contain\n%s\n%s", want, st)
	}
	p, err := Parse(st)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Tasks, b.Tasks) || !reflect.DeepEqual(p.Internal, b.Internal) {
		t.Errorf("Parse: tasks %+v, internal %v", p.Tasks, p.Internal)
	}
	b.Internal = map[string]string{"tasks": "x"}
	if _, err := Statement(b); err == nil {
		t.Error("tasks given twice: no error")
	}
}
