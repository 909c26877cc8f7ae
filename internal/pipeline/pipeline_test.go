package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	hex64  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	pinned = "sha256:" + hex64
)

// head is lines 1-5 of a valid file, up to spec.builder; cases append spec.params or spec.tasks from line 6.
const head = `apiVersion: ssf.dev/v1alpha1
kind: Pipeline
metadata: {name: hello}
spec:
  builder: {image: go@` + pinned + `}
`

// tasks is lines 6-9 of a valid file: one task, whose mapping starts at line 7.
const tasks = `  tasks:
    - name: build
      steps: [{name: make, run: make}]
      outputs: [bin]
`

// valid is a whole valid file of nine lines.
const valid = head + tasks

func TestParseFull(t *testing.T) {
	p, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := "sha256:" + sha256Hex(data); string(p.Digest) != want {
		t.Errorf("Digest = %q, want %q", p.Digest, want)
	}
	if !bytes.Equal(p.Data, data) {
		t.Error("Data is not the file's bytes")
	}
	p.Data = nil

	// Patterns are compared by their source below; the rest must match exactly.
	params := p.Params
	p.Params = nil
	p.Digest = ""
	want := &Pipeline{
		Path:          "testdata/full.yaml",
		Name:          "hello",
		Builder:       "go@" + pinned,
		BuilderName:   "go",
		BuilderDigest: pinned,
		BuilderLine:   6,
		Tasks: []Task{{
			Name:    "test",
			Needs:   []string{"build"},
			Timeout: 30 * time.Minute,
			Env:     []EnvVar{{"CGO_ENABLED", "0"}, {"GOFLAGS", "-mod=readonly"}},
			Steps: []Step{
				{Name: "vet", Run: "go vet ./...", Line: 15},
				{Name: "unit", Run: "go test ./... > \"$SSF_OUTPUTS/report/test.txt\"\n", Line: 17},
			},
			Outputs: []Output{{Path: "report/test.txt", Line: 20}},
			Line:    11,
		}, {
			Name:    "build",
			Timeout: 5 * time.Minute,
			Steps:   []Step{{Name: "make", Run: "go build -o \"$SSF_OUTPUTS/bin/hello\" .\n", Line: 24}},
			Outputs: []Output{{Path: "bin/hello", Line: 27}, {Path: "bin/hello.sbom.json", Line: 27}},
			Line:    21,
		}, {
			Name:    "package",
			Needs:   []string{"build", "test"},
			Timeout: 90 * time.Minute,
			Steps: []Step{{Name: "tar", Line: 32,
				Run: `tar -czf "$SSF_OUTPUTS/hello.tgz" -C "$SSF_INPUTS/build" bin`}},
			Outputs: []Output{{Path: "hello.tgz", Line: 33}},
			Line:    28,
		}},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Load() =\n%+v\nwant\n%+v", p, want)
	}

	wantParams := []struct {
		name, def, pattern string
		hasDefault         bool
		line               int
	}{
		{name: "greeting", def: "hello", pattern: "^[a-z]+$", hasDefault: true, line: 8},
		{name: "target", line: 9},
	}
	if len(params) != len(wantParams) {
		t.Fatalf("got %d params, want %d", len(params), len(wantParams))
	}
	for i, w := range wantParams {
		got := params[i]
		pattern := ""
		if got.Pattern != nil {
			pattern = got.Pattern.String()
		}
		if got.Name != w.name || got.Default != w.def || got.HasDefault != w.hasDefault || pattern != w.pattern ||
			got.Line != w.line {
			t.Errorf("param %d = %+v (pattern %q), want %+v", i, got, pattern, w)
		}
	}
}

// errorCases are files with exactly one problem each, and where it must be reported.
var errorCases = []struct {
	name  string
	file  string
	line  int
	field string
	msg   string
}{
	// The file as a whole.
	{"empty", "", 0, "", "file is empty"},
	{"only a comment", "# nothing\n", 0, "", "file is empty"},
	{"syntax", valid + "  tasks: [\n", 10, "", "invalid YAML"},
	{"two documents", valid + "---\napiVersion: ssf.dev/v1alpha1\n", 10, "", "more than one YAML document"},
	{"list at top", "- apiVersion\n", 1, "", "must be a mapping"},
	{"scalar at top", "hello\n", 1, "", "must be a mapping"},

	// YAML features that make a file mean more than it shows.
	{"anchor and alias", head + "  params: [&p {name: a}]\n  tasks: *p\n", 6, "spec.params[0]", "aliases are not allowed"},
	{"merge key", strings.Replace(valid, "{name: hello}", "{<<: {name: hello}}", 1), 3, "metadata",
		"merge keys (<<) are not allowed"},
	{"binary tag", strings.Replace(valid, "kind: Pipeline", "kind: !!binary UGlwZWxpbmU=", 1), 2, "kind",
		"tag !!binary is not allowed"},
	{"custom tag", strings.Replace(valid, "metadata:", "metadata: !meta", 1), 3, "metadata", "tag !meta is not allowed"},
	{"tag of another kind", strings.Replace(valid, "metadata:", "metadata: !!seq", 1), 3, "metadata",
		"tag !!seq is not allowed"},
	{"tag on key", strings.Replace(valid, "kind:", "!!int kind:", 1), 2, "", "tag !!int is not allowed on a key"},
	{"list as key", valid + "? [a]\n: b\n", 10, "", "keys must be plain strings"},
	{"duplicate top key", valid + "kind: Pipeline\n", 10, "kind", `duplicate key "kind" (first at line 2)`},
	{"duplicate nested key", head + tasks + "      env: {A: x, A: y}\n", 10, "spec.tasks[0].env.A", `duplicate key "A"`},

	// Shape.
	{"unknown top field", valid + "status: {}\n", 10, "status",
		`unknown field "status": allowed fields are apiVersion, kind, metadata, spec`},
	{"unknown task field", valid + "      image: go\n", 10, "spec.tasks[0].image",
		"allowed fields are name, needs, timeout, env, npmScripts, steps, outputs"},
	{"unknown builder field", strings.Replace(valid, "{image:", "{tag: x, image:", 1), 5, "spec.builder.tag",
		"allowed fields are image"},
	{"list for mapping", strings.Replace(valid, "{name: hello}", "[hello]", 1), 3, "metadata",
		"expected a mapping, found a list"},
	{"mapping for string", strings.Replace(valid, "{name: hello}", "{name: {first: hello}}", 1), 3, "metadata.name",
		"expected a string, found a mapping"},
	{"string for list", head + "  tasks: build\n", 6, "spec.tasks", `expected a list, found the value "build"`},
	{"null name", strings.Replace(valid, "{name: hello}", "{name: ~}", 1), 3, "metadata.name", "value is null"},
	{"empty value is null", strings.Replace(valid, "{name: hello}", "{name: }", 1), 3, "metadata.name",
		"value is null"},
	{"NUL byte", strings.Replace(valid, "run: make", `run: "make\0"`, 1), 8, "spec.tasks[0].steps[0].run",
		"NUL byte"},

	// Required fields and fixed values.
	{"missing apiVersion", strings.Replace(valid, "apiVersion: ssf.dev/v1alpha1\n", "", 1), 1, "apiVersion",
		"missing required field: add apiVersion: ssf.dev/v1alpha1"},
	{"wrong apiVersion", strings.Replace(valid, "ssf.dev/v1alpha1", "ssf.dev/v1", 1), 1, "apiVersion",
		`must be "ssf.dev/v1alpha1", found "ssf.dev/v1"`},
	{"missing kind", strings.Replace(valid, "kind: Pipeline\n", "", 1), 1, "kind", "missing required field"},
	{"wrong kind", strings.Replace(valid, "kind: Pipeline", "kind: Task", 1), 2, "kind", `must be "Pipeline"`},
	{"missing metadata", strings.Replace(valid, "metadata: {name: hello}\n", "", 1), 1, "metadata",
		"missing required field"},
	{"missing metadata.name", strings.Replace(valid, "{name: hello}", "{}", 1), 3, "metadata.name",
		"missing required field"},
	{"missing spec", "apiVersion: ssf.dev/v1alpha1\nkind: Pipeline\nmetadata: {name: hello}\n", 1, "spec",
		"missing required field"},
	{"missing builder", strings.Replace(valid, "  builder: {image: go@"+pinned+"}\n", "", 1), 5, "spec.builder",
		"missing required field"},
	{"missing image", strings.Replace(valid, "{image: go@"+pinned+"}", "{}", 1), 5, "spec.builder.image",
		"missing required field"},
	{"missing tasks", head, 5, "spec.tasks", "missing required field"},
	{"no tasks", head + "  tasks: []\n", 6, "spec.tasks", "no tasks"},
	{"missing task name", head + "  tasks:\n    - steps: [{name: make, run: make}]\n      outputs: [bin]\n", 7,
		"spec.tasks[0].name", "missing required field"},
	{"missing steps", head + "  tasks:\n    - name: build\n      outputs: [bin]\n", 7, "spec.tasks[0].steps",
		"missing required field"},
	{"no steps", strings.Replace(valid, "[{name: make, run: make}]", "[]", 1), 8, "spec.tasks[0].steps", "no steps"},
	{"missing step name", strings.Replace(valid, "{name: make, run: make}", "{run: make}", 1), 8,
		"spec.tasks[0].steps[0].name", "missing required field"},
	{"missing run", strings.Replace(valid, "{name: make, run: make}", "{name: make}", 1), 8,
		"spec.tasks[0].steps[0].run", "missing required field"},
	{"empty run", strings.Replace(valid, "run: make", `run: " "`, 1), 8, "spec.tasks[0].steps[0].run",
		"run is empty"},
	{"missing outputs", head + "  tasks:\n    - name: build\n      steps: [{name: make, run: make}]\n", 7,
		"spec.tasks", "no task declares a published output"},
	{"no outputs", strings.Replace(valid, "[bin]", "[]", 1), 7, "spec.tasks", "no task declares a published output: a build signs provenance"},
	{"only internal outputs", strings.Replace(valid, "[bin]", "[{path: bin, internal: true}]", 1) +
		"    - {name: t, needs: [build], steps: [{name: s, run: x}], outputs: [{path: obj/, internal: true}]}\n",
		7, "spec.tasks", "no task declares a published output"},
	{"internal not a boolean", strings.Replace(valid, "[bin]", "[{path: bin, internal: yes}]", 1), 9,
		"spec.tasks[0].outputs[0].internal", "expected true or false"},
	{"unknown output field", strings.Replace(valid, "[bin]", "[{path: bin, public: true}]", 1), 9,
		"spec.tasks[0].outputs[0].public", "unknown field"},
	{"output without a path", strings.Replace(valid, "[bin]", "[{internal: true}]", 1), 9,
		"spec.tasks[0].outputs[0].path", "missing required field"},
	{"output as a list", strings.Replace(valid, "[bin]", "[[bin]]", 1), 9,
		"spec.tasks[0].outputs[0]", "expected an output path or {path: PATH, internal: true}, found a list"},
	{"mapping output with a bad path", strings.Replace(valid, "[bin]", "[{path: /bin, internal: true}]", 1), 9,
		"spec.tasks[0].outputs[0].path", "is absolute"},
	{"directory output escaping", strings.Replace(valid, "[bin]", "[../dist/]", 1), 9,
		"spec.tasks[0].outputs[0]", `output path "../dist" contains '..'`},
	{"directory output not clean", strings.Replace(valid, "[bin]", "[dist//]", 1), 9,
		"spec.tasks[0].outputs[0]", `output path "dist/" is not clean: write "dist" (in the directory output "dist//")`},
	{"root as a directory output", strings.Replace(valid, "[bin]", "[/]", 1), 9,
		"spec.tasks[0].outputs[0]", "is absolute"},
	{"outputs directory itself", strings.Replace(valid, "[bin]", "[./]", 1), 9,
		"spec.tasks[0].outputs[0]", `output path "." is $SSF_OUTPUTS itself`},
	{"reserved directory output", strings.Replace(valid, "[bin]", "[Attestations/]", 1), 9,
		"spec.tasks[0].outputs[0]", "is reserved"},
	{"file inside a directory output", strings.Replace(valid, "[bin]", "[dist/, dist/app.js]", 1), 9,
		"spec.tasks[0].outputs[1]", `output "dist/app.js" is inside output "dist" of task "build"`},
	{"directory output around a file", strings.Replace(valid, "[bin]", "[dist/app.js, dist/]", 1), 9,
		"spec.tasks[0].outputs[1]", `output "dist" contains output "dist/app.js" of task "build"`},
	{"file and directory of one path", strings.Replace(valid, "[bin]", "[dist, dist/]", 1), 9,
		"spec.tasks[0].outputs[1]", `duplicate output "dist"`},
	{"two tasks' directories nested", strings.Replace(valid, "[bin]", "[dist/]", 1) +
		"    - {name: t, steps: [{name: s, run: x}], outputs: [{path: dist/js/, internal: true}]}\n",
		10, "spec.tasks[1].outputs[0]", `output "dist/js" is inside output "dist" of task "build"`},
	{"too many published files", strings.Replace(valid, "[bin]", "["+manyFiles(1024)+"]", 1), 9,
		"spec.tasks[0].outputs[1023]", "more than 1023 published output files"},
	{"directory output inside the provenance bundle", strings.Replace(valid, "[bin]", "[provenance.sigstore.json/]", 1), 9,
		"spec.tasks[0].outputs[0]", "would put its SBOMs inside the provenance bundle"},
	{"directory output inside a file's SBOMs", strings.Replace(valid, "[bin]", "[bin, bin.cdx.sigstore.json/]", 1), 9,
		"spec.tasks[0].outputs[1]", `output "bin.cdx.sigstore.json/" would put its SBOMs inside those of output "bin"`},

	// Names.
	{"upper-case pipeline name", strings.Replace(valid, "{name: hello}", "{name: Hello}", 1), 3, "metadata.name",
		`invalid name "Hello"`},
	{"task name starting with -", strings.Replace(valid, "name: build", "name: -build", 1), 7, "spec.tasks[0].name",
		`invalid name "-build"`},
	{"step name with a dot", strings.Replace(valid, "name: make", "name: ma.ke", 1), 8,
		"spec.tasks[0].steps[0].name", `invalid name "ma.ke"`},
	{"name of 64 characters", strings.Replace(valid, "name: build", "name: "+strings.Repeat("b", 64), 1), 7,
		"spec.tasks[0].name", "invalid name"},
	{"param name starting with a digit", head + "  params: [{name: 1st}]\n" + tasks, 6, "spec.params[0].name",
		`invalid param name "1st"`},
	{"param name with a dash", head + "  params: [{name: a-b}]\n" + tasks, 6, "spec.params[0].name",
		`invalid param name "a-b"`},
	{"duplicate param", head + "  params:\n    - name: a\n    - name: a\n" + tasks, 8, "spec.params[1].name",
		`duplicate param name "a" (first at line 7)`},
	{"duplicate task", valid + "    - name: build\n      steps: [{name: make, run: make}]\n      outputs: [lib]\n", 10,
		"spec.tasks[1].name", `duplicate task name "build" (first at line 7)`},
	{"duplicate step", strings.Replace(valid, "[{name: make, run: make}]", "[{name: make, run: a}, {name: make, run: b}]", 1),
		8, "spec.tasks[0].steps[1].name", `duplicate step name "make"`},

	// Builder.
	{"builder by tag", strings.Replace(valid, "go@"+pinned, "go:1.22", 1), 5, "spec.builder.image",
		"builder must be pinned by digest: write NAME@sha256:<hex> (ssf builder list shows digests)"},
	{"bare builder", strings.Replace(valid, "go@"+pinned, "go", 1), 5, "spec.builder.image",
		"builder must be pinned by digest"},
	{"builder with tag and digest", strings.Replace(valid, "go@", "go:1.22@", 1), 5, "spec.builder.image",
		`invalid builder name "go:1.22"`},
	{"upper-case builder name", strings.Replace(valid, "go@", "Go@", 1), 5, "spec.builder.image",
		`invalid builder name "Go"`},
	{"short digest", strings.Replace(valid, pinned, "sha256:abc", 1), 5, "spec.builder.image",
		`invalid builder digest "sha256:abc"`},
	{"upper-case digest", strings.Replace(valid, hex64, strings.ToUpper(hex64), 1), 5, "spec.builder.image",
		"invalid builder digest"},
	{"sha512 digest", strings.Replace(valid, "sha256:", "sha512:", 1), 5, "spec.builder.image",
		"invalid builder digest"},

	// Params.
	{"bad pattern", head + "  params: [{name: a, pattern: '^($'}]\n" + tasks, 6, "spec.params[0].pattern",
		`invalid pattern "^($"`},
	{"unanchored pattern", head + "  params: [{name: a, pattern: '[a-z]+'}]\n" + tasks, 6, "spec.params[0].pattern",
		`must match whole values: write it as "^(?:[a-z]+)$"`},
	{"pattern anchored only in part", head + "  params: [{name: a, pattern: '^a|b$'}]\n" + tasks, 6,
		"spec.params[0].pattern", "must match whole values"},
	{"default failing pattern", head + "  params:\n    - name: a\n      pattern: '^[a-z]+$'\n      default: A1\n" + tasks,
		9, "spec.params[0].default", `default "A1" does not match the param's pattern "^[a-z]+$"`},
	{"null default", head + "  params: [{name: a, default: null}]\n" + tasks, 6, "spec.params[0].default",
		"value is null"},

	// Env.
	{"env key starting with a digit", valid + "      env: {1A: x}\n", 10, "spec.tasks[0].env.1A",
		`invalid variable name "1A"`},
	{"env key with a dash", valid + "      env: {A-B: x}\n", 10, "spec.tasks[0].env.A-B", "invalid variable name"},
	{"reserved env key", valid + "      env: {SSF_OUTPUTS: /tmp}\n", 10, "spec.tasks[0].env.SSF_OUTPUTS",
		"reserved for ssf"},
	{"reserved env key in lower case", valid + "      env: {ssf_param_a: x}\n", 10, "spec.tasks[0].env.ssf_param_a",
		"reserved for ssf"},
	{"env value a list", valid + "      env: {A: [x]}\n", 10, "spec.tasks[0].env.A", "expected a string, found a list"},
	{"env value null", valid + "      env: {A: }\n", 10, "spec.tasks[0].env.A", "value is null"},
	{"env a list", valid + "      env: [A=x]\n", 10, "spec.tasks[0].env", "expected a mapping of variable names"},

	// Needs.
	{"unknown need", valid + "      needs: [fetch]\n", 10, "spec.tasks[0].needs[0]",
		`unknown task "fetch": known tasks are build`},
	{"needs itself", valid + "      needs: [build]\n", 10, "spec.tasks[0].needs[0]", `task "build" needs itself`},
	{"need listed twice", valid + "      needs: [lint, lint]\n" +
		"    - {name: lint, steps: [{name: vet, run: go vet}], outputs: [vet.txt]}\n", 10, "spec.tasks[0].needs[1]",
		`task "lint" is listed twice`},
	{"needs not a list", valid + "      needs: lint\n", 10, "spec.tasks[0].needs", "expected a list"},
	{"cycle of two", head + "  tasks:\n" +
		"    - {name: a, needs: [b], steps: [{name: s, run: x}], outputs: [a]}\n" +
		"    - {name: b, needs: [a], steps: [{name: s, run: x}], outputs: [b]}\n",
		8, "spec.tasks[1].needs[0]", "needs form a cycle: a -> b -> a"},
	{"cycle of three after a fine task", head + "  tasks:\n" +
		"    - {name: a, steps: [{name: s, run: x}], outputs: [a]}\n" +
		"    - {name: b, needs: [a, c], steps: [{name: s, run: x}], outputs: [b]}\n" +
		"    - {name: c, needs: [d], steps: [{name: s, run: x}], outputs: [c]}\n" +
		"    - {name: d, needs: [b], steps: [{name: s, run: x}], outputs: [d]}\n",
		10, "spec.tasks[3].needs[0]", "needs form a cycle: b -> c -> d -> b"},
	{"long cycle", head + "  tasks:\n" + longCycle(12), 18, "spec.tasks[11].needs[0]",
		"needs form a cycle: t0 -> t1 -> t2 -> t3 -> t4 -> t5 -> t6 -> t7 -> t8 -> t9 -> … (2 more) -> t0;"},

	// Outputs.
	{"empty output", strings.Replace(valid, "[bin]", `[""]`, 1), 9, "spec.tasks[0].outputs[0]", "output path is empty"},
	{"absolute output", strings.Replace(valid, "[bin]", "[/bin]", 1), 9, "spec.tasks[0].outputs[0]", "is absolute"},
	{"control character in output", strings.Replace(valid, "[bin]", `["a\nb"]`, 1), 9, "spec.tasks[0].outputs[0]", "control character"},
	{"right-to-left override in output", strings.Replace(valid, "[bin]", `["evil\u202Eexe.txt"]`, 1), 9, "spec.tasks[0].outputs[0]",
		`"evil\u202eexe.txt" contains U+202E, an invisible or reordering character`},
	{"zero-width space in output", strings.Replace(valid, "[bin]", `["b\u200Bin"]`, 1), 9, "spec.tasks[0].outputs[0]", "contains U+200B"},
	{"isolate in output directory", strings.Replace(valid, "[bin]", `["d\u2066/x"]`, 1), 9, "spec.tasks[0].outputs[0]", "contains U+2066"},
	{"pop directional isolate in output", strings.Replace(valid, "[bin]", `["x\u2069"]`, 1), 9, "spec.tasks[0].outputs[0]", "contains U+2069"},
	{"line separator in output", strings.Replace(valid, "[bin]", `["a\u2028b"]`, 1), 9, "spec.tasks[0].outputs[0]", "contains U+2028"},
	{"no-break space in output", strings.Replace(valid, "[bin]", `["a\u00A0b"]`, 1), 9, "spec.tasks[0].outputs[0]", "contains U+00A0"},
	{"right-to-left override in task name", strings.Replace(valid, "name: build", "name: \"bu\u202Eild\"", 1), 7, "spec.tasks[0].name", `invalid name "bu\u202eild"`},
	{"zero-width space in step name", strings.Replace(valid, "name: make,", "name: \"ma\u200Bke\",", 1), 8, "spec.tasks[0].steps[0].name", `invalid name "ma\u200bke"`},
	{"right-to-left override in param name", head + "  params:\n    - {name: \"greet\u202Eing\"}\n" + tasks, 7, "spec.params[0].name", `invalid param name "greet\u202eing"`},
	{"output with ..", strings.Replace(valid, "[bin]", "[../bin]", 1), 9, "spec.tasks[0].outputs[0]",
		`"../bin" contains '..'`},
	{"output with .. inside", strings.Replace(valid, "[bin]", "[bin/../../x]", 1), 9, "spec.tasks[0].outputs[0]",
		"contains '..'"},
	{"output with //", strings.Replace(valid, "[bin]", "[bin//x]", 1), 9, "spec.tasks[0].outputs[0]",
		`"bin//x" is not clean: write "bin/x"`},
	{"output with ./", strings.Replace(valid, "[bin]", "[./bin]", 1), 9, "spec.tasks[0].outputs[0]",
		`is not clean: write "bin"`},
	{"output with two trailing /", strings.Replace(valid, "[bin]", "[bin//]", 1), 9, "spec.tasks[0].outputs[0]",
		`is not clean: write "bin"`},
	{"output .", strings.Replace(valid, "[bin]", "[.]", 1), 9, "spec.tasks[0].outputs[0]", "$SSF_OUTPUTS itself"},
	{"output longer than PATH_MAX", strings.Replace(valid, "[bin]", "["+strings.Repeat("a/", 2048)+"b]", 1), 9,
		"spec.tasks[0].outputs[0]", "longer than 4096 bytes"},
	{"output component longer than NAME_MAX", strings.Replace(valid, "[bin]", "[bin/"+strings.Repeat("b", 256)+"]", 1),
		9, "spec.tasks[0].outputs[0]", "component longer than 255 bytes"},
	{"output under attestations", strings.Replace(valid, "[bin]", "[attestations/x]", 1), 9,
		"spec.tasks[0].outputs[0]", "reserved"},
	{"output Attestations", strings.Replace(valid, "[bin]", "[Attestations]", 1), 9, "spec.tasks[0].outputs[0]",
		"reserved"},
	{"duplicate output", strings.Replace(valid, "[bin]", "[bin, lib, bin]", 1), 9, "spec.tasks[0].outputs[2]",
		`duplicate output "bin"`},
	{"output of two tasks", valid + "    - {name: test, steps: [{name: s, run: x}], outputs: [lib, bin]}\n", 10,
		"spec.tasks[1].outputs[1]", `output "bin" is also declared by task "build"`},
	{"output inside another", valid + "    - {name: test, steps: [{name: s, run: x}], outputs: [bin/x]}\n", 10,
		"spec.tasks[1].outputs[0]", `output "bin/x" is inside output "bin" of task "build"`},
	{"output containing another", strings.Replace(valid, "[bin]", "[bin/a/b]", 1) +
		"    - {name: test, steps: [{name: s, run: x}], outputs: [bin]}\n", 10,
		"spec.tasks[1].outputs[0]", `output "bin" contains output "bin/a/b" of task "build"`},
	{"output inside another of the same task", strings.Replace(valid, "[bin]", "[bin, bin/x]", 1), 9,
		"spec.tasks[0].outputs[1]", `is inside output "bin"`},

	// Timeout.
	{"timeout without unit", valid + "      timeout: 5\n", 10, "spec.tasks[0].timeout", `invalid duration "5"`},
	{"timeout zero", valid + "      timeout: 0s\n", 10, "spec.tasks[0].timeout", "out of range"},
	{"timeout negative", valid + "      timeout: -1m\n", 10, "spec.tasks[0].timeout", "out of range"},
	{"timeout over a day", valid + "      timeout: 24h1s\n", 10, "spec.tasks[0].timeout", "at most 24h0m0s"},
	{"timeout a mapping", valid + "      timeout: {minutes: 5}\n", 10, "spec.tasks[0].timeout", "expected a string"},
}

// longCycle returns n tasks from line 7 on, each needing the next and the last needing the first.
func longCycle(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "    - {name: t%d, needs: [t%d], steps: [{name: s, run: x}], outputs: [o%d]}\n", i, (i+1)%n, i)
	}
	return b.String()
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func TestParseErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("ssf.yaml", []byte(tc.file))
			if err == nil {
				t.Fatalf("Parse() = %+v, want an error", p)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse() error %T %q is not an *Error", err, err)
			}
			if e.File != "ssf.yaml" || e.Line != tc.line || e.Field != tc.field || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("Parse() error = %q\nwant line %d, field %q, message containing %q", err, tc.line, tc.field, tc.msg)
			}
			if p != nil {
				t.Errorf("Parse() returned a pipeline with its error")
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	data := []byte(valid + strings.Repeat("#", MaxFileSize))
	_, err := Parse("big.yaml", data)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Msg, "larger than") {
		t.Fatalf("Parse() error = %v, want an *Error about the size", err)
	}
}

// TestParseAccepts covers files at the edges of what is allowed.
func TestParseAccepts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		file  string
		check func(*Pipeline) bool
	}{
		{"timeout of exactly 24h", valid + "      timeout: 24h\n",
			func(p *Pipeline) bool { return p.Tasks[0].Timeout == 24*time.Hour }},
		{"empty env and needs", valid + "      env: {}\n      needs: []\n",
			func(p *Pipeline) bool { return len(p.Tasks[0].Env) == 0 && len(p.Tasks[0].Needs) == 0 }},
		{"empty default", head + "  params: [{name: a, default: ''}]\n" + tasks,
			func(p *Pipeline) bool { return p.Params[0].HasDefault && p.Params[0].Default == "" }},
		{"empty default matching ^$", head + "  params: [{name: a, default: '', pattern: '^$'}]\n" + tasks,
			func(p *Pipeline) bool { return p.Params[0].Pattern.String() == "^$" }},
		{"numbers taken as their text", valid + "      env: {PORT: 08080, RATIO: 1.50, ON: true}\n",
			func(p *Pipeline) bool {
				return reflect.DeepEqual(p.Tasks[0].Env, []EnvVar{{"ON", "true"}, {"PORT", "08080"}, {"RATIO", "1.50"}})
			}},
		{"explicit !!str", strings.Replace(valid, "name: build", "name: !!str 007", 1),
			func(p *Pipeline) bool { return p.Tasks[0].Name == "007" }},
		{"document markers", "---\n" + valid + "...\n",
			func(p *Pipeline) bool { return p.Tasks[0].Line == 8 }},
		{"CRLF line ends", strings.ReplaceAll(valid, "\n", "\r\n"),
			func(p *Pipeline) bool { return p.Tasks[0].Outputs[0].Path == "bin" }},
		{"builder with a path", strings.Replace(valid, "go@", "ssf.dev/builders/go-1.22@", 1),
			func(p *Pipeline) bool {
				return p.BuilderName == "ssf.dev/builders/go-1.22" && p.BuilderDigest == pinned
			}},
		{"need declared later in the file", head + "  tasks:\n" +
			"    - {name: b, needs: [a], steps: [{name: s, run: x}], outputs: [b]}\n" +
			"    - {name: a, steps: [{name: s, run: x}], outputs: [a]}\n",
			func(p *Pipeline) bool { return p.Tasks[0].Needs[0] == "a" }},
		{"outputs sharing a parent", strings.Replace(valid, "[bin]", "[bin/a, bin/b, bin.txt]", 1),
			func(p *Pipeline) bool { return len(p.Tasks[0].Outputs) == 3 }},
		{"directory and internal outputs", strings.Replace(valid, "[bin]", "[dist/, {path: obj/, internal: true}, {path: bin, internal: false}, {path: a.o, internal: true}]", 1),
			func(p *Pipeline) bool {
				return reflect.DeepEqual(p.Tasks[0].Outputs, []Output{
					{Path: "dist", Dir: true, Line: 9}, {Path: "obj", Dir: true, Internal: true, Line: 9},
					{Path: "bin", Line: 9}, {Path: "a.o", Internal: true, Line: 9}}) &&
					p.Tasks[0].Outputs[0].String() == "dist/" && p.Tasks[0].Outputs[2].String() == "bin"
			}},
		{"test task without outputs", valid + "    - {name: test, needs: [build], steps: [{name: s, run: x}]}\n" +
			"    - {name: lint, steps: [{name: s, run: x}], outputs: []}\n",
			func(p *Pipeline) bool { return len(p.Tasks[1].Outputs) == 0 && len(p.Tasks[2].Outputs) == 0 }},
		{"internal output beside a name like its SBOM", strings.Replace(valid, "[bin]", "[{path: x, internal: true}, x.spdx.sigstore.json/]", 1),
			func(p *Pipeline) bool { return len(p.Tasks[0].Outputs) == 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("ssf.yaml", []byte(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(p) {
				t.Errorf("Parse() = %+v, not as expected", p)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssf.yaml")
	_, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load() error = %v, want one wrapping fs.ErrNotExist and naming %q", err, path)
	}
}

func TestErrorString(t *testing.T) {
	for _, tc := range []struct {
		err  Error
		want string
	}{
		{Error{File: "ssf.yaml", Line: 7, Field: "spec.tasks[0].name", Msg: "bad"}, "ssf.yaml:7: spec.tasks[0].name: bad"},
		{Error{File: "ssf.yaml", Line: 7, Msg: "bad"}, "ssf.yaml:7: bad"},
		{Error{File: "ssf.yaml", Msg: "bad"}, "ssf.yaml: bad"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	p := &Pipeline{Path: "ssf.yaml"}
	if got, want := p.Errorf(5, "spec.builder.image", "no builder %q", "go").Error(),
		`ssf.yaml:5: spec.builder.image: no builder "go"`; got != want {
		t.Errorf("Errorf() = %q, want %q", got, want)
	}
}

func TestResolveParams(t *testing.T) {
	p, err := Parse("ssf.yaml", []byte(head+`  params:
    - {name: greeting, default: hello, pattern: '^[a-z]+$'}
    - {name: target}
    - {name: mode, default: ''}
`+tasks))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		want  map[string]string
		param string // of the *ParamError, when one is wanted
		msg   string
	}{
		{name: "defaults", args: []string{"target=linux"},
			want: map[string]string{"greeting": "hello", "target": "linux", "mode": ""}},
		{name: "all given", args: []string{"mode=fast", "greeting=hi", "target="},
			want: map[string]string{"greeting": "hi", "target": "", "mode": "fast"}},
		{name: "= in value", args: []string{"target=a=b"},
			want: map[string]string{"greeting": "hello", "target": "a=b", "mode": ""}},
		{name: "no =", args: []string{"target"}, param: "target", msg: `malformed param "target": write NAME=VALUE`},
		{name: "no name", args: []string{"=x"}, param: "", msg: `malformed param "=x"`},
		{name: "unknown", args: []string{"target=x", "colour=red"}, param: "colour",
			msg: `unknown param "colour": this pipeline declares greeting, target, mode`},
		{name: "given twice", args: []string{"target=x", "target=y"}, param: "target", msg: `param "target" given twice`},
		{name: "failing pattern", args: []string{"target=x", "greeting=Hi!"}, param: "greeting",
			msg: `value "Hi!" of param "greeting" does not match its pattern "^[a-z]+$"`},
		{name: "pattern needs the whole value", args: []string{"target=x", "greeting=hi\n"}, param: "greeting",
			msg: "does not match"},
		{name: "NUL", args: []string{"target=a\x00b"}, param: "target", msg: "NUL byte"},
		{name: "required missing", args: nil, param: "target", msg: `param "target" is required: pass --param target=VALUE`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.ResolveParams(tc.args)
			if tc.msg == "" {
				if err != nil || !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("ResolveParams() = %v, %v; want %v", got, err, tc.want)
				}
				return
			}
			var pe *ParamError
			if !errors.As(err, &pe) || pe.Param != tc.param || !strings.Contains(pe.Msg, tc.msg) {
				t.Fatalf("ResolveParams() error = %#v, want a *ParamError for %q containing %q", err, tc.param, tc.msg)
			}
		})
	}
}

func TestResolveParamsNone(t *testing.T) {
	p, err := Parse("ssf.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.ResolveParams(nil); err != nil || got == nil || len(got) != 0 {
		t.Errorf("ResolveParams(nil) = %v, %v; want an empty map", got, err)
	}
	_, err = p.ResolveParams([]string{"a=b"})
	if err == nil || !strings.Contains(err.Error(), "this pipeline declares no params") {
		t.Errorf("ResolveParams(a=b) error = %v", err)
	}
}

func TestOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tasks string // "name:need,need name ..."
		want  string
	}{
		{"file order without needs", "c b a", "c b a"},
		{"need later in the file", "b:a a", "a b"},
		{"ready tasks in file order", "c:a a b", "a c b"},
		{"diamond", "d:b,c b:a c:a a", "a b c d"},
		{"chain backwards", "a:b b:c c:d d", "d c b a"},
		{"independent chains", "x2:x1 y2:y1 x1 y1", "x1 x2 y1 y2"},
		// Not possible after Parse; Order must still end and never invent an order.
		{"cycle left out", "a:b b:a c", "c"},
		{"unknown need left out", "a:zz b", "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Pipeline
			for _, f := range strings.Fields(tc.tasks) {
				name, needs, _ := strings.Cut(f, ":")
				task := Task{Name: name}
				if needs != "" {
					task.Needs = strings.Split(needs, ",")
				}
				p.Tasks = append(p.Tasks, task)
			}
			var got []string
			for _, task := range p.Order() {
				got = append(got, task.Name)
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("Order() = %v, want %s", got, tc.want)
			}
		})
	}
}

func TestOrderPointsIntoTasks(t *testing.T) {
	p, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	order := p.Order()
	if len(order) != 3 || order[0] != &p.Tasks[1] {
		t.Errorf("Order()[0] = %p, want &p.Tasks[1] = %p", order[0], &p.Tasks[1])
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("go_version"); got != "SSF_PARAM_GO_VERSION" {
		t.Errorf("EnvName(go_version) = %q", got)
	}
}

func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(valid))
	for _, tc := range errorCases {
		f.Add([]byte(tc.file))
	}
	digestRE := regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.yaml", data)
		if err != nil {
			if e, ok := err.(*Error); !ok || e.File != "f.yaml" || e.Msg == "" || e.Line < 0 {
				t.Fatalf("Parse() error %T %#v is not a complete *Error", err, err)
			}
			if p != nil {
				t.Fatal("Parse() returned a pipeline with its error")
			}
			return
		}
		checkValid(t, p, digestRE)
	})
}

// checkValid checks what every successfully parsed pipeline promises.
func checkValid(t *testing.T, p *Pipeline, digestRE *regexp.Regexp) {
	t.Helper()
	if !digestRE.MatchString(string(p.Digest)) || !digestRE.MatchString(string(p.BuilderDigest)) || p.BuilderLine < 1 {
		t.Fatalf("bad digests or builder line: %+v", p)
	}
	if len(p.Tasks) == 0 || len(p.Order()) != len(p.Tasks) {
		t.Fatalf("Order() has %d of %d tasks", len(p.Order()), len(p.Tasks))
	}
	published := false
	for _, task := range p.Tasks {
		for _, out := range task.Outputs {
			published = published || out.Published()
		}
	}
	if !published {
		t.Fatalf("accepted a pipeline that publishes nothing")
	}
	for _, task := range p.Tasks {
		if task.Timeout <= 0 || task.Timeout > MaxTimeout || len(task.Steps) == 0 {
			t.Fatalf("task %+v breaks an invariant", task)
		}
		for _, out := range task.Outputs {
			if msg := OutputPathProblem(out.Path); msg != "" {
				t.Fatalf("accepted output: %s", msg)
			}
			if out.Line < 1 {
				t.Fatalf("output %+v has no line", out)
			}
		}
	}
	args := []string{}
	for _, prm := range p.Params {
		if !prm.HasDefault {
			args = append(args, prm.Name+"=")
		}
	}
	_, _ = p.ResolveParams(args) // must not panic; "" may fail a pattern
}

// manyFiles is n distinct output paths, comma-separated.
func manyFiles(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i)
	}
	return strings.Join(names, ", ")
}
