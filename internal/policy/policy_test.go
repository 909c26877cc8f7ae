package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hexB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func writeSet(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func loadDefault(t testing.TB) *Set {
	t.Helper()
	s, err := Compile(context.Background(), "default", DefaultFiles())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"syntax", map[string]string{"build.rego": "package ssf.build\n\ndeny contains msg if {\n\tmsg := \n}\n"}, []string{"build.rego:5:", "unexpected } token"}},
		{"type", map[string]string{"sub/deps.rego": "package ssf.deps\n\ndeny contains msg if {\n\tmsg := concat(\",\", 5)\n}\n"}, []string{"sub/deps.rego:4:"}},
		{"unknown package", map[string]string{"x.rego": "\npackage ssf.other\n\ndeny contains \"x\"\n"}, []string{"x.rego:2:", "package ssf.other is not a gate", "ssf.build, ssf.deps"}},
		{"no deny", map[string]string{"p.rego": "package ssf.publish\n\nallow := true\n"}, []string{"p.rego:1:", "defines no rule deny"}},
		{"deny not a set", map[string]string{"v.rego": "package ssf.verify\n\ndeny := \"no\"\n"}, []string{"v.rego:3:", "must be a set of messages"}},
		{"deny of numbers", map[string]string{"d.rego": "package ssf.deploy\n\ndeny contains 1 if true\n"}, []string{"d.rego:3:", "must be a set of strings", "number"}},
		{"http.send", map[string]string{"b.rego": "package ssf.build\n\ndeny contains msg if {\n\tr := http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1/\"})\n\tmsg := r.body\n}\n"}, []string{"b.rego:4:", "http.send"}},
		{"net.lookup_ip_addr", map[string]string{"b.rego": "package ssf.build\n\ndeny contains msg if {\n\tnet.lookup_ip_addr(\"example.com\")\n\tmsg := \"x\"\n}\n"}, []string{"b.rego:4:", "net.lookup_ip_addr"}},
		{"opa.runtime", map[string]string{"b.rego": "package ssf.build\n\ndeny contains msg if {\n\tmsg := opa.runtime().env.HOME\n}\n"}, []string{"b.rego:4:", "opa.runtime"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(context.Background(), writeSet(t, tc.files))
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Load: %v, want a *LoadError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadRefusesWhatIsNotPolicy(t *testing.T) {
	dir := writeSet(t, map[string]string{"data.json": "{}"})
	if _, err := Load(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "data.json: data files are not read") {
		t.Errorf("a data file: %v", err)
	}
	outside := writeSet(t, map[string]string{"evil.rego": "package ssf.build\n\ndeny contains \"evil\"\n"})
	dir = writeSet(t, map[string]string{"ok.rego": "package ssf.deps\n\ndeny contains \"x\" if false\n"})
	if err := os.Symlink(filepath.Join(outside, "evil.rego"), filepath.Join(dir, "link.rego")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "link.rego: not a regular file") {
		t.Errorf("a symbolic link: %v", err)
	}
	dir = writeSet(t, map[string]string{"big.rego": "package ssf.build\n#" + strings.Repeat("x", MaxFileBytes)})
	if _, err := Load(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a big file: %v", err)
	}
	// Many files each within MaxFileBytes, together over MaxSetBytes: refused before they are parsed.
	many := map[string]string{}
	for i := range MaxSetBytes/MaxFileBytes + 1 {
		many[fmt.Sprintf("f%02d.rego", i)] = "package ssf.build\n#" + strings.Repeat("x", MaxFileBytes-20)
	}
	dir = writeSet(t, many)
	if _, err := Load(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "the policy files together are larger than") {
		t.Errorf("a set over MaxSetBytes: %v", err)
	}
	// Hidden directories (.git) and other files (README.md) are skipped.
	dir = writeSet(t, map[string]string{".git/x.rego": "not rego", "README.md": "hi", "b.rego": "package ssf.build\n\ndeny contains \"no\" if false\n"})
	s, err := Load(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(s.Files()); got != 1 {
		t.Errorf("%d files read, want 1", got)
	}
}

func buildInput() BuildInput {
	return BuildInput{
		Pipeline: Pipeline{Name: "app", Digest: "sha256:" + hexA, Path: "ssf.yaml", FromSource: true, Signers: []string{}},
		Params:   map[string]string{"target": "linux"},
		Source:   Source{URI: "git+file:///src/app", Digest: "gitCommit:0123456789abcdef0123456789abcdef01234567"},
		Builder:  Builder{ID: "https://ssf.dev/factory/host", Image: "go", Digest: "sha256:" + hexB},
	}
}

func provenanceFor(hex, builderID string) Statement {
	return Statement{
		Type:          "https://in-toto.io/Statement/v1",
		Subject:       []Subject{{Name: "app", Digest: map[string]string{"sha256": hex}}},
		PredicateType: "https://slsa.dev/provenance/v1",
		Predicate: json.RawMessage(fmt.Sprintf(`{"buildDefinition":{"buildType":"https://ssf.dev/buildtypes/pipeline/v1"},"runDetails":{"builder":{"id":%q}}}`,
			builderID)),
		Signer: Signer{Key: "sha256:" + hexB},
	}
}

func TestDefaultPolicyGates(t *testing.T) {
	s := loadDefault(t)
	unpinned := buildInput()
	unpinned.Builder.Digest = ""
	unpinned.Source.Digest = ""
	sbom := provenanceFor(hexA, "https://ssf.dev/factory/host")
	sbom.PredicateType = "https://spdx.dev/Document"
	art := Artifact{URI: "registry.local/app@sha256:" + hexA, Digest: "sha256:" + hexA}
	good := []Statement{provenanceFor(hexA, "https://ssf.dev/factory/host"), sbom}
	adm := Admission{Namespace: "prod", Kind: "Deployment", Name: "web", Container: "app", Image: art.URI}
	tagged := adm
	tagged.Image = "registry.local/app:latest"
	for _, tc := range []struct {
		name  string
		gate  Gate
		input any
		want  []string // substrings of each denial, in sorted order; none: allowed
	}{
		{"build allowed", Build, buildInput(), nil},
		{"build unpinned", Build, unpinned, []string{`builder "go" is not pinned`, `source "git+file:///src/app" has no digest`}},
		{"deps https file", Deps, DepsInput{Dependency{Type: "file", Name: "tool.tgz", URL: "https://example.com/tool.tgz", Digest: "sha256:" + hexA}}, nil},
		{"deps http file", Deps, DepsInput{Dependency{Type: "file", Name: "tool.tgz", URL: "http://example.com/tool.tgz", Digest: "sha256:" + hexA}}, []string{`dependency "tool.tgz" is fetched over plain http`}},
		{"deps unpinned http file", Deps, DepsInput{Dependency{Type: "file", Name: "t", URL: "http://e/t"}}, []string{`"t" has no pinned digest`, `"t" is fetched over plain http`}},
		{"publish allowed", Publish, PublishInput{Outputs: []Output{{Name: "app", Digest: "sha256:" + hexA}}, Statements: good, Target: "localhost:5000/app"}, nil},
		{"publish one output without provenance", Publish, PublishInput{Outputs: []Output{{Name: "app", Digest: "sha256:" + hexA}, {Name: "lib", Digest: "sha256:" + hexB}}, Statements: good, Target: "localhost:5000/app"}, []string{`output "lib"`}},
		{"verify allowed", Verify, VerifyInput{Artifact: art, Statements: good}, nil},
		{"verify sbom only", Verify, VerifyInput{Artifact: art, Statements: []Statement{sbom}}, []string{"has no verified SLSA provenance from a trusted ssf builder"}},
		{"verify other builder", Verify, VerifyInput{Artifact: art, Statements: []Statement{provenanceFor(hexA, "https://example.com/ci")}}, []string{"no verified SLSA provenance"}},
		{"verify provenance of another artifact", Verify, VerifyInput{Artifact: art, Statements: []Statement{provenanceFor(hexB, "https://ssf.dev/factory/host")}}, []string{"no verified SLSA provenance"}},
		{"deploy allowed", Deploy, DeployInput{Artifact: art, Statements: good, Admission: adm}, nil},
		{"deploy tag without provenance", Deploy, DeployInput{Artifact: art, Admission: tagged}, []string{`container "app" of Deployment prod/web: image "registry.local/app:latest" is not named by digest`, "has no verified SLSA provenance"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := s.Evaluate(context.Background(), tc.gate, tc.input)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Denials) != len(tc.want) || d.Allowed() != (len(tc.want) == 0) {
				t.Fatalf("denials %q, want %d matching %q", d.Denials, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(d.Denials[i], w) {
					t.Errorf("denial %d %q does not contain %q", i, d.Denials[i], w)
				}
			}
		})
	}
}

func TestEveryDenialIsShown(t *testing.T) {
	dir := writeSet(t, map[string]string{"deps.rego": `package ssf.deps

deny contains "first" if true
deny contains "second" if input.dependency.type == "npm"
deny contains sprintf("third: %s", [input.dependency.name]) if true
deny contains "never" if false
`})
	s, err := Load(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Evaluate(context.Background(), Deps, DepsInput{Dependency{Type: "npm", Name: "left-pad"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.Denials, "|"); got != "first|second|third: left-pad" {
		t.Errorf("denials %q", got)
	}
	// A gate the set does not define denies nothing.
	if d, err := s.Evaluate(context.Background(), Deploy, DeployInput{}); err != nil || !d.Allowed() {
		t.Errorf("undefined gate: %v, %v", d, err)
	}
}

func TestEvaluateFailsClosed(t *testing.T) {
	dir := writeSet(t, map[string]string{
		// A loop over 10^12 pairs: far beyond any timeout.
		"build.rego": `package ssf.build

deny contains "slow" if {
	some i in numbers.range(1, 1000000)
	some j in numbers.range(1, 1000000)
	i * j == -1
}
`,
		// A message taken from the input: the type checker cannot see it is not a string.
		"deps.rego": `package ssf.deps

deny contains input.dependency.version if true
`,
		// A builtin error (strict): a division by zero.
		"publish.rego": `package ssf.publish

deny contains msg if {
	x := 1 / count(input.outputs)
	msg := sprintf("%v", [x])
}
`,
	})
	s, err := Load(context.Background(), dir, WithTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d, err := s.Evaluate(context.Background(), Build, buildInput())
	if !errors.Is(err, ErrEvaluation) || !strings.Contains(err.Error(), "did not finish within 200ms") {
		t.Errorf("a slow policy: %v, %v; want a timeout error", d, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the timeout took %s", took)
	}
	// The caller's own deadline counts too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Evaluate(ctx, Build, buildInput()); !errors.Is(err, ErrEvaluation) {
		t.Errorf("a cancelled context: %v", err)
	}
	if _, err := s.Evaluate(context.Background(), Deps, map[string]any{"dependency": map[string]any{"version": 3}}); !errors.Is(err, ErrEvaluation) || !strings.Contains(err.Error(), "not a string") {
		t.Errorf("a number as message: %v", err)
	}
	if _, err := s.Evaluate(context.Background(), Publish, PublishInput{}); !errors.Is(err, ErrEvaluation) {
		t.Errorf("a division by zero: %v", err)
	}
	// The wrong input for the gate, and a gate that does not exist.
	if _, err := s.Evaluate(context.Background(), Build, DepsInput{}); err == nil {
		t.Error("DepsInput accepted at ssf.build")
	}
	if _, err := s.Evaluate(context.Background(), Gate("run"), nil); err == nil {
		t.Error("gate run accepted")
	}
}

func TestHTTPSendNeverRuns(t *testing.T) {
	// Even a policy that only mentions http.send in a rule never reached must not load: nothing is sent.
	dir := writeSet(t, map[string]string{"verify.rego": `package ssf.verify

deny contains "unreachable" if {
	false
	http.send({"method": "GET", "url": "http://127.0.0.1:9/"})
}
`})
	if _, err := Load(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "http.send") {
		t.Fatalf("Load: %v, want a refusal of http.send", err)
	}
	for _, name := range []string{"http.send", "net.lookup_ip_addr", "opa.runtime", "rand.intn", "uuid.rfc4122", "json.match_schema", "json.verify_schema"} {
		for _, b := range Capabilities().Builtins {
			if b.Name == name {
				t.Errorf("capability %s is enabled", name)
			}
		}
	}
}

func TestConcurrentEvaluate(t *testing.T) {
	s := loadDefault(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				in := buildInput()
				want := 0
				if (g+i)%2 == 1 {
					in.Builder.Digest = fmt.Sprintf("tag-%d-%d", g, i)
					want = 1
				}
				d, err := s.Evaluate(context.Background(), Build, in)
				if err != nil {
					errs <- err
					return
				}
				// The same statements (their parsed predicates shared) decided at the same time.
				art := Artifact{URI: "out/app", Digest: "sha256:" + hexA}
				sts := []Statement{provenanceFor(hexA, fmt.Sprintf("https://ssf.dev/factory/h%d", i%3))}
				if v, err := s.Evaluate(context.Background(), Verify, VerifyInput{Artifact: art, Statements: sts}); err != nil || !v.Allowed() {
					errs <- fmt.Errorf("verify: %v, %v", v, err)
					return
				}
				if v, err := s.Evaluate(context.Background(), Deploy, DeployInput{Artifact: art, Statements: sts, Admission: Admission{Image: "r/app:v1"}}); err != nil || len(v.Denials) != 1 {
					errs <- fmt.Errorf("deploy: %v, %v", v, err)
					return
				}
				if len(d.Denials) != want || want == 1 && !strings.Contains(d.Denials[0], in.Builder.Digest) {
					errs <- fmt.Errorf("goroutine %d, run %d: denials %q", g, i, d.Denials)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDigest(t *testing.T) {
	base := []File{{Name: "a.rego", Data: []byte("package ssf.build\n")}, {Name: "b/c.rego", Data: []byte("package ssf.deps\n")}}
	d := Digest(base)
	if !strings.HasPrefix(d, "sha256:") || len(d) != 71 {
		t.Fatalf("digest %q", d)
	}
	if got := Digest([]File{base[1], base[0]}); got != d {
		t.Errorf("the order of the files changed the digest")
	}
	seen := map[string]string{d: "base"}
	variants := map[string][]File{
		"one byte of content":                   {{Name: "a.rego", Data: []byte("package ssf.build\r")}, base[1]},
		"a name":                                {{Name: "A.rego", Data: base[0].Data}, base[1]},
		"a byte moved between name and content": {{Name: "a.regop", Data: []byte("ackage ssf.build\n")}, base[1]},
		"a file dropped":                        {base[0]},
		"a file added":                          append(base[:2:2], File{Name: "z.rego"}),
		"an empty set":                          nil,
		"content appended":                      {{Name: "a.rego", Data: []byte("package ssf.build\n\n")}, base[1]},
	}
	for name, files := range variants {
		got := Digest(files)
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: same digest as %s", name, prev)
		}
		seen[got] = name
	}
	// Every single-bit flip of every byte changes it.
	for i := range base[0].Data {
		flipped := []byte(string(base[0].Data))
		flipped[i] ^= 1
		if Digest([]File{{Name: "a.rego", Data: flipped}, base[1]}) == d {
			t.Errorf("flipping byte %d left the digest unchanged", i)
		}
	}
	// The digest Load reports is that of the files it read.
	dir := writeSet(t, map[string]string{"a.rego": string(base[0].Data) + "\ndeny contains \"x\" if false\n"})
	s, err := Load(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Digest() != Digest(s.Files()) {
		t.Error("Set.Digest differs from Digest(Set.Files())")
	}
}

func TestDefaultPolicyUnitTests(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteDefault(dir); err != nil {
		t.Fatal(err)
	}
	results, err := Test(context.Background(), dir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) < 10 {
		t.Errorf("%d tests ran", len(results))
	}
	for _, r := range results {
		if !r.Pass {
			t.Errorf("%s %s (%s) failed: %v", r.Package, r.Name, r.Location, r.Err)
		}
	}
	// Written once, never overwritten.
	if _, err := WriteDefault(dir); !errors.Is(err, ErrExists) {
		t.Errorf("second WriteDefault: %v", err)
	}
	// Loading what was written gives the embedded set's digest.
	s, err := Load(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Digest() != loadDefault(t).Digest() {
		t.Error("the written set's digest differs from the embedded one's")
	}
}

func BenchmarkEvaluate(b *testing.B) {
	s := loadDefault(b)
	art := Artifact{URI: "registry.local/app@sha256:" + hexA, Digest: "sha256:" + hexA}
	good := []Statement{provenanceFor(hexA, "https://ssf.dev/factory/host")}
	inputs := map[Gate]any{
		Build:   buildInput(),
		Deps:    DepsInput{Dependency{Type: "gomod", Name: "github.com/google/uuid", Version: "v1.6.0", PURL: "pkg:golang/github.com/google/uuid@v1.6.0", URL: "https://proxy.golang.org/github.com/google/uuid/@v/v1.6.0.zip", Digest: "h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0="}},
		Publish: PublishInput{Outputs: []Output{{Name: "app", Digest: "sha256:" + hexA}}, Statements: good, Target: "localhost:5000/app"},
		Verify:  VerifyInput{Artifact: art, Statements: good},
		Deploy:  DeployInput{Artifact: art, Statements: good, Admission: Admission{Namespace: "prod", Kind: "Pod", Name: "web", Container: "app", Image: art.URI}},
	}
	for _, g := range Gates {
		b.Run(string(g), func(b *testing.B) {
			ctx := context.Background()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					d, err := s.Evaluate(ctx, g, inputs[g])
					if err != nil || !d.Allowed() {
						b.Fatal(d, err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// BenchmarkEvaluateRealProvenance decides ssf.verify over provenance as ssf writes it (the provenance package's
// golden statement), once with its parsed predicate memoised (warm) and once with new bytes each time (cold).
func BenchmarkEvaluateRealProvenance(b *testing.B) {
	raw, err := os.ReadFile("../provenance/testdata/statement.golden.json")
	if err != nil {
		b.Fatal(err)
	}
	raw = []byte(strings.ReplaceAll(string(raw), "https://ssf.dev/builders/local@v1", "https://ssf.dev/factory/host"))
	var st Statement
	if err := json.Unmarshal(raw, &st); err != nil {
		b.Fatal(err)
	}
	s := loadDefault(b)
	art := Artifact{URI: "out/aa", Digest: "sha256:" + hexA}
	b.Run("warm", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if d, err := s.Evaluate(context.Background(), Verify, VerifyInput{Artifact: art, Statements: []Statement{st}}); err != nil || !d.Allowed() {
					b.Fatal(d, err)
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
	b.Run("cold", func(b *testing.B) {
		for i := range b.N {
			cold := st
			cold.Predicate = append(json.RawMessage(fmt.Sprintf(`{"nonce":%d,`, i)), st.Predicate[1:]...)
			if d, err := s.Evaluate(context.Background(), Verify, VerifyInput{Artifact: art, Statements: []Statement{cold}}); err != nil || !d.Allowed() {
				b.Fatal(d, err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
}

// TestUninterruptibleBuiltinRefused: graph.reachable_paths ignores the evaluation timeout (minutes on a 12-node
// complete graph), so a policy using it does not compile.
func TestUninterruptibleBuiltinRefused(t *testing.T) {
	dir := writeSet(t, map[string]string{"b.rego": `package ssf.build

g := {sprintf("%d", [i]): [sprintf("%d", [j]) | some j in numbers.range(0, 11)] | some i in numbers.range(0, 11)}

deny contains "x" if count(graph.reachable_paths(g, {"0"})) > 0
`})
	if _, err := Load(context.Background(), dir, WithTimeout(time.Second)); err == nil || !strings.Contains(err.Error(), "b.rego:5") || !strings.Contains(err.Error(), "graph.reachable_paths") {
		t.Fatalf("a policy with graph.reachable_paths: %v", err)
	}
}
