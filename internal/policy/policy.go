// Package policy decides, at each of ssf's gates, whether what is about to happen may happen. A policy set is a
// directory of Rego files (OPA's language, evaluated with OPA's Go library); each gate is one Rego package holding a
// set rule `deny` of messages:
//
//	ssf.build    once per build, before anything runs        (input: BuildInput)
//	ssf.deps     once per dependency, before it is fetched  (input: DepsInput)
//	ssf.publish  before a push                               (input: PublishInput)
//	ssf.verify   in `ssf verify`                             (input: VerifyInput)
//	ssf.deploy   in the admission controller, per container  (input: DeployInput)
//
// Any message in `deny` rejects, and every message is returned so a person sees all that is wrong at once. A gate
// whose package the set does not define has no rules and denies nothing. docs/policy.md documents every input
// document with an example, and the default policy set (DefaultFS, written by `ssf policy init`).
//
// [Load] reads and compiles the set once; [Set.Evaluate] reuses one prepared query per gate and is safe for
// concurrent use. [Set.Digest] identifies the set for provenance and verification summaries.
//
// # What it must never do
//
//   - It must never allow on an error: a load error is an error (naming file:line), and an evaluation that fails,
//     times out or yields anything but a set of strings is an error, never an empty Decision. Callers treat an
//     error as a rejection (fail closed).
//   - It must never read a file outside the policy directory: the directory is opened as an os.Root, symbolic
//     links and non-regular files are refused, and only *.rego files are read (each up to MaxFileBytes).
//   - It must never let a policy reach the network or the host unseen: http.send, net.lookup_ip_addr and
//     opa.runtime (which exposes the environment) are removed from the capabilities, so a policy using them does
//     not compile; so are json.match_schema and json.verify_schema, which follow a schema's file:// $ref to any
//     file on the host (OPA refuses only remote ones); rand.intn and uuid.rfc4122 are removed too, so the same input and set always give the same
//     decision. time.now_ns (and the builtins that check certificate or token validity against "now") are kept:
//     a policy may read the clock, which makes its decision depend on when it ran; docs/policy.md says so.
//   - It must never load data documents (JSON or YAML) beside the policies: they would change decisions without
//     being Rego a reviewer reads; a .json, .yaml or .yml file in the directory is refused.
package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"
)

// Gate names an admission point of the factory; its Rego package is "ssf." + the gate.
type Gate string

// The gates.
const (
	Build   Gate = "build"
	Deps    Gate = "deps"
	Publish Gate = "publish"
	Verify  Gate = "verify"
	Deploy  Gate = "deploy"
)

// Gates lists every gate, in the order a build meets them.
var Gates = []Gate{Build, Deps, Publish, Verify, Deploy}

// Package is the gate's Rego package path, e.g. "ssf.build".
func (g Gate) Package() string { return "ssf." + string(g) }

// DefaultTimeout bounds one evaluation when the caller's context does not bound it more.
const DefaultTimeout = time.Second

// MaxFileBytes bounds one policy file; MaxFiles bounds how many the set may hold; MaxSetBytes bounds their sum.
const (
	MaxFileBytes = 1 << 20
	MaxFiles     = 1000
	// MaxSetBytes bounds all the files together: without it, MaxFiles files of MaxFileBytes would be a gigabyte
	// read and parsed (many times that in memory) before any error.
	MaxSetBytes = 16 << 20
)

// disabledBuiltins are refused at compile time; see the package doc.
var disabledBuiltins = map[string]string{
	"http.send":          "it reaches the network",
	"net.lookup_ip_addr": "it reaches the network (DNS)",
	"opa.runtime":        "it exposes the host's environment and configuration",
	"rand.intn":          "it makes decisions random",
	"uuid.rfc4122":       "it makes decisions random",
	// OPA refuses a schema's remote $ref, but loads a file:// one: a policy could read any JSON file on the host.
	"json.match_schema":  "a schema's file:// $ref reads files outside the policy directory",
	"json.verify_schema": "a schema's file:// $ref reads files outside the policy directory",
	// It lists every path of a graph (exponentially many) without checking for cancellation: a 12-node policy
	// graph ran for minutes past a 1 s timeout.
	"graph.reachable_paths": "its running time is exponential and the evaluation timeout cannot stop it",
}

// Capabilities returns OPA's capabilities for this version without the disabled builtins and with no network
// hosts allowed.
func Capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = slices.DeleteFunc(slices.Clone(caps.Builtins), func(b *ast.Builtin) bool {
		_, off := disabledBuiltins[b.Name]
		return off
	})
	caps.AllowNet = []string{}
	return caps
}

// File is one policy file: its slash-separated path relative to the policy directory, and its bytes.
type File struct {
	Name string
	Data []byte
}

// Set is a loaded, compiled policy set. Its methods are safe for concurrent use.
type Set struct {
	files    []File // sorted by Name
	digest   string
	modules  map[string]*ast.Module
	compiler *ast.Compiler
	queries  map[Gate]*rego.PreparedEvalQuery // only gates the set defines
	timeout  time.Duration
}

// Option configures Load.
type Option func(*config)

type config struct{ timeout time.Duration }

// WithTimeout bounds each evaluation (default DefaultTimeout); d must be positive.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// LoadError is a policy set that does not compile or breaks the gates' rules; each entry names file:line.
type LoadError struct {
	Dir      string
	Problems []string // "FILE:LINE: message"
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("policy %s: %s", e.Dir, strings.Join(e.Problems, "; "))
}

// Load reads every *.rego file under dir (sub-directories included; names starting with '.' are skipped) and
// compiles them. Files named *_test.rego are Rego unit tests: they are read and digested, compiled only by Test.
func Load(ctx context.Context, dir string, opts ...Option) (*Set, error) {
	files, err := ReadDir(dir)
	if err != nil {
		return nil, err
	}
	return Compile(ctx, dir, files, opts...)
}

// ReadDir reads the policy files under dir, refusing what Load refuses to read, sorted by name.
func ReadDir(dir string) ([]File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening the policy directory %q: %w", dir, err)
	}
	defer root.Close()
	var files []File
	total := 0
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if p != "." && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch ext := path.Ext(name); {
		case d.IsDir():
			return nil
		case ext == ".json" || ext == ".yaml" || ext == ".yml":
			return fmt.Errorf("%s: data files are not read; write the data as Rego in a .rego file, or move the file out of the policy directory", p)
		case ext != ".rego":
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s: not a regular file (symbolic links are refused so the set is only what is in the directory)", p)
		}
		if len(files) == MaxFiles {
			return fmt.Errorf("more than %d policy files", MaxFiles)
		}
		f, err := root.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		if len(b) > MaxFileBytes {
			return fmt.Errorf("%s: larger than %d bytes", p, MaxFileBytes)
		}
		if total += len(b); total > MaxSetBytes {
			return fmt.Errorf("%s: the policy files together are larger than %d bytes", p, MaxSetBytes)
		}
		files = append(files, File{Name: p, Data: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the policy directory %q: %w", dir, err)
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return files, nil
}

// Digest is the policy set's digest, "sha256:<hex>": SHA-256 over, for each file in byte order of its name (the
// slash-separated path relative to the policy directory), the name's length as 8 bytes big-endian, the name, the
// content's length as 8 bytes big-endian and the content. Lengths make the encoding unambiguous: no two different
// sets share the bytes hashed. Test files count: the set is everything in the directory that Load read.
func Digest(files []File) string {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	h := sha256.New()
	var n [8]byte
	put := func(b []byte) {
		l := uint64(len(b))
		for i := range n {
			n[i] = byte(l >> (56 - 8*i))
		}
		h.Write(n[:])
		h.Write(b)
	}
	for _, f := range sorted {
		put([]byte(f.Name))
		put(f.Data)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// isTest says whether a file holds Rego unit tests.
func isTest(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// parse parses files (test files only when withTests) and checks each module's package.
func parse(files []File, withTests bool) (map[string]*ast.Module, []string) {
	mods := map[string]*ast.Module{}
	var problems []string
	for _, f := range files {
		test := isTest(f.Name)
		if test && !withTests {
			continue
		}
		m, err := ast.ParseModuleWithOpts(f.Name, string(f.Data), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			problems = append(problems, astProblems(err)...)
			continue
		}
		if p := checkPackage(f.Name, m, test); p != "" {
			problems = append(problems, p)
			continue
		}
		mods[f.Name] = m
	}
	return mods, problems
}

// checkPackage refuses a package that is not a gate's (or, in a test file, a gate's "_test" package).
func checkPackage(name string, m *ast.Module, test bool) string {
	pkg := strings.TrimPrefix(m.Package.Path.String(), "data.")
	for _, g := range Gates {
		if pkg == g.Package() || test && pkg == g.Package()+"_test" {
			return ""
		}
	}
	var names []string
	for _, g := range Gates {
		names = append(names, g.Package())
	}
	want := strings.Join(names, ", ")
	if test {
		want += " (or one of them with _test appended)"
	}
	return fmt.Sprintf("%s:%d: package %s is not a gate of ssf; use one of %s", name, m.Package.Location.Row, pkg, want)
}

// astProblems turns OPA's errors into "FILE:LINE: message" lines.
func astProblems(err error) []string {
	var errs ast.Errors
	if errors.As(err, &errs) {
		out := make([]string, 0, len(errs))
		for _, e := range errs {
			if e.Location != nil {
				out = append(out, fmt.Sprintf("%s:%d: %s", e.Location.File, e.Location.Row, e.Message))
			} else {
				out = append(out, e.Message)
			}
		}
		return out
	}
	return []string{err.Error()}
}

// newCompiler is the one compiler configuration: the restricted capabilities, no print output.
func newCompiler() *ast.Compiler {
	return ast.NewCompiler().WithCapabilities(Capabilities()).WithEnablePrintStatements(false)
}

// Compile compiles files (as ReadDir returns them; dir only names them in errors).
func Compile(ctx context.Context, dir string, files []File, opts ...Option) (*Set, error) {
	cfg := config{timeout: DefaultTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.timeout <= 0 {
		return nil, fmt.Errorf("policy timeout %s: must be positive", cfg.timeout)
	}
	mods, problems := parse(files, false)
	if len(problems) > 0 {
		return nil, &LoadError{Dir: dir, Problems: problems}
	}
	c := newCompiler()
	if c.Compile(mods); c.Failed() {
		return nil, &LoadError{Dir: dir, Problems: astProblems(c.Errors)}
	}
	s := &Set{files: slices.Clone(files), digest: Digest(files), modules: mods, compiler: c,
		queries: map[Gate]*rego.PreparedEvalQuery{}, timeout: cfg.timeout}
	for _, g := range Gates {
		defined, problem := checkDeny(c, mods, g)
		if problem != "" {
			problems = append(problems, problem)
		}
		if !defined {
			continue
		}
		pq, err := rego.New(rego.Compiler(c), rego.Query(denyRef(g).String()), rego.StrictBuiltinErrors(true)).PrepareForEval(ctx)
		if err != nil {
			return nil, fmt.Errorf("policy %s: preparing the %s query: %w", dir, g.Package(), err)
		}
		s.queries[g] = &pq
	}
	if len(problems) > 0 {
		return nil, &LoadError{Dir: dir, Problems: problems}
	}
	return s, nil
}

func denyRef(g Gate) ast.Ref {
	return ast.MustParseRef("data." + g.Package() + ".deny")
}

// checkDeny says whether the set defines gate g, and what is wrong with its deny rule: a gate package must define
// deny, as a set (`deny contains msg if ...`) whose elements the type checker does not know to be other than
// strings. What the checker cannot know (a message taken from the input) Evaluate checks on each decision.
func checkDeny(c *ast.Compiler, mods map[string]*ast.Module, g Gate) (defined bool, problem string) {
	var first *ast.Module
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range mods {
			if !yield(k) {
				return
			}
		}
	}) {
		if m := mods[name]; strings.TrimPrefix(m.Package.Path.String(), "data.") == g.Package() {
			first = m
			break
		}
	}
	if first == nil {
		return false, ""
	}
	rules := c.GetRulesExact(denyRef(g))
	if len(rules) == 0 {
		return true, fmt.Sprintf("%s:%d: package %s defines no rule deny; a gate's package must define `deny contains msg if { ... }`",
			first.Package.Location.File, first.Package.Location.Row, g.Package())
	}
	for _, r := range rules {
		if r.Head.RuleKind() != ast.MultiValue {
			return true, fmt.Sprintf("%s:%d: %s.deny must be a set of messages: write `deny contains msg if { ... }`",
				r.Location.File, r.Location.Row, g.Package())
		}
	}
	if t := c.TypeEnv.GetByRef(denyRef(g)); t != nil {
		if set, ok := t.(*types.Set); ok {
			if of := set.Of(); of != nil && types.Compare(of, types.A) != 0 && !types.Contains(types.S, of) {
				r := rules[0]
				return true, fmt.Sprintf("%s:%d: %s.deny must be a set of strings, but its messages are %s",
					r.Location.File, r.Location.Row, g.Package(), types.Sprint(of))
			}
		}
	}
	return true, ""
}

// Digest is the set's digest (see the function Digest).
func (s *Set) Digest() string { return s.digest }

// Defines says whether the set has rules for gate g; a gate it does not define allows everything.
func (s *Set) Defines(g Gate) bool { return s.queries[g] != nil }

// Files returns the set's files, sorted by name.
func (s *Set) Files() []File { return slices.Clone(s.files) }

// Decision is a gate's answer: allowed when Denials is empty.
type Decision struct {
	Denials []string // every message of the gate's deny set, sorted
}

// Allowed says whether nothing was denied.
func (d Decision) Allowed() bool { return len(d.Denials) == 0 }

// ErrEvaluation marks a decision that could not be made (a failed or timed-out evaluation, or a deny set holding
// something else than strings): the caller must reject.
var ErrEvaluation = errors.New("policy evaluation failed")

// Evaluate decides gate g for input (one of the gate's input types, or anything that marshals to JSON the same
// way). It fails closed: any error means the decision could not be made, and the caller must not proceed.
func (s *Set) Evaluate(ctx context.Context, g Gate, input any) (Decision, error) {
	if !slices.Contains(Gates, g) {
		return Decision{}, fmt.Errorf("evaluating policy: %q is not a gate", g)
	}
	if typed, ok := input.(interface{ gate() Gate }); ok && typed.gate() != g {
		return Decision{}, fmt.Errorf("evaluating policy: %T is the input of %s, not %s", input, typed.gate().Package(), g.Package())
	}
	pq := s.queries[g]
	if pq == nil {
		return Decision{}, nil // the set has no rules for this gate
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	value, err := inputValue(input)
	if err != nil {
		return Decision{}, fmt.Errorf("%w: %s: input: %w", ErrEvaluation, g.Package(), err)
	}
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(value))
	if err != nil {
		if ctx.Err() != nil {
			return Decision{}, fmt.Errorf("%w: %s: did not finish within %s: %w", ErrEvaluation, g.Package(), s.timeout, err)
		}
		return Decision{}, fmt.Errorf("%w: %s: %w", ErrEvaluation, g.Package(), err)
	}
	if len(rs) == 0 {
		// A partial set rule is an empty set, never undefined, when the gate defines it; undefined means something
		// else happened, and the engine fails closed.
		return Decision{}, fmt.Errorf("%w: %s.deny is undefined", ErrEvaluation, g.Package())
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{}, fmt.Errorf("%w: %s: unexpected result %v", ErrEvaluation, g.Package(), rs)
	}
	elems, ok := rs[0].Expressions[0].Value.([]any)
	if !ok {
		return Decision{}, fmt.Errorf("%w: %s.deny is %T, not a set", ErrEvaluation, g.Package(), rs[0].Expressions[0].Value)
	}
	d := Decision{Denials: make([]string, 0, len(elems))}
	for _, e := range elems {
		msg, ok := e.(string)
		if !ok {
			return Decision{}, fmt.Errorf("%w: %s.deny holds %v, not a string: every message must be a string", ErrEvaluation, g.Package(), e)
		}
		d.Denials = append(d.Denials, msg)
	}
	slices.Sort(d.Denials)
	return d, nil
}

// inputValue converts input to OPA's value: the input types directly (value.go), anything else through JSON.
func inputValue(input any) (ast.Value, error) {
	if v, ok := input.(valuer); ok {
		return v.value()
	}
	var buf bytes.Buffer
	enc := jsonEncoder(&buf)
	if err := enc.Encode(input); err != nil {
		return nil, err
	}
	return ast.ValueFromReader(&buf)
}
