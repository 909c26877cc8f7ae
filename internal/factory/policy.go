package factory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ssf-dev/ssf/internal/deps"
	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/policy"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/source"
)

// Policy is the policy set a command applies at its gates, compiled once, and where it came from.
type Policy struct {
	Set    *policy.Set
	Source string // the directory it was read from (absolute), or DefaultPolicySource
}

// DefaultPolicySource is Policy.Source for the default set built into ssf, which applies when no --policy is given
// and $SSF_HOME/policy does not exist.
const DefaultPolicySource = "embedded:default"

// LoadPolicy loads the policy in effect for a command: dir when given (--policy DIR, which must exist), else
// $SSF_HOME/policy when that directory exists, else the default set built into ssf (policy.DefaultFiles). A set
// that does not compile is a *policy.LoadError naming file:line; a --policy that is not a directory is an
// *InputError. Every command that decides at a gate loads its policy this way, once, before any work.
//
// dir DefaultPolicySource loads the built-in default set, so a Policy can be loaded again from its Source.
func LoadPolicy(ctx context.Context, dir string) (*Policy, error) {
	switch dir {
	case "":
	case DefaultPolicySource:
		return defaultPolicy(ctx)
	default:
		return loadPolicyDir(ctx, dir)
	}
	l, err := home.Default()
	if err != nil {
		return nil, err
	}
	return Home{Dir: l.Dir}.loadPolicy(ctx)
}

// loadPolicy is the home's policy: its policy directory when it exists, else the default set.
func (h Home) loadPolicy(ctx context.Context) (*Policy, error) {
	dir := h.layout().Policy()
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return defaultPolicy(ctx)
	} else if err != nil {
		return nil, fmt.Errorf("reading the policy directory %q: %w", dir, err)
	}
	return loadPolicyDir(ctx, dir)
}

// defaultPolicy is the set built into ssf.
func defaultPolicy(ctx context.Context) (*Policy, error) {
	set, err := policy.Compile(ctx, DefaultPolicySource, policy.DefaultFiles())
	if err != nil {
		return nil, fmt.Errorf("compiling the default policy set: %w", err) // built into ssf: a bug
	}
	return &Policy{Set: set, Source: DefaultPolicySource}, nil
}

func loadPolicyDir(ctx context.Context, dir string) (*Policy, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return nil, inputErrorf("--policy %q is not a directory: give the directory of the policy set's .rego files (`ssf policy init DIR` writes the default set)", dir)
	}
	set, err := policy.Load(ctx, abs)
	if err != nil {
		var le *policy.LoadError
		if !errors.As(err, &le) {
			err = &InputError{Err: err} // a file ReadDir refuses (a symlink, a data file): the set's author's to fix
		}
		return nil, err
	}
	return &Policy{Set: set, Source: abs}, nil
}

// PolicyDenial is a gate that said no: every message of its deny set, for what it decided on.
type PolicyDenial struct {
	Gate    policy.Gate
	What    string // what was decided on, e.g. `dependency "left-pad" (npm 1.3.0)`
	Source  string // the policy set's Source
	Denials []string
	Digest  string // the set's digest
}

func (e *PolicyDenial) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy gate %s denied %s (policy %s, %s):", e.Gate.Package(), e.What, e.Source, e.Digest)
	for _, d := range e.Denials {
		b.WriteString("\n  - " + d)
	}
	return b.String()
}

// Decide asks gate g about input; what names what is decided on in messages. A denial is a *PolicyDenial; an
// evaluation that fails is an error too (wrapping policy.ErrEvaluation): either way the caller must stop.
func (p *Policy) Decide(ctx context.Context, g policy.Gate, what string, input any) error {
	d, err := p.Set.Evaluate(ctx, g, input)
	if err != nil {
		return fmt.Errorf("policy %s: deciding on %s: %w", p.Source, what, err)
	}
	if !d.Allowed() {
		return &PolicyDenial{Gate: g, What: what, Source: p.Source, Denials: d.Denials, Digest: p.Set.Digest()}
	}
	return nil
}

// Ref is how the provenance names the policy set (internalParameters.policy).
func (p *Policy) Ref() *provenance.PolicyRef {
	return &provenance.PolicyRef{Digest: p.Set.Digest(), Source: p.Source}
}

// policyFor is the request's policy, else the home's.
func (h Home) policyFor(ctx context.Context, req BuildRequest) (*Policy, error) {
	if req.Policy != nil {
		return req.Policy, nil
	}
	return h.loadPolicy(ctx)
}

// pipelineSigners verifies the signature beside the pipeline file (FILE.sig), if there is one, over the bytes that
// were parsed, and returns its key's fingerprint. No signature is no signers; one that does not verify fails the
// build: someone meant the file to be signed, and what is there is not that signature.
func pipelineSigners(p *pipeline.Pipeline) ([]string, error) {
	sigPath := p.Path + pipeline.SignatureSuffix
	// O_NONBLOCK: a fifo planted beside the pipeline (whoever writes the source directory can) would otherwise
	// block the open for ever, SIGTERM or not; opened, it is refused below as not a regular file.
	f, err := os.OpenFile(sigPath, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return []string{}, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading the pipeline's signature %q: %w", sigPath, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("the pipeline's signature %q is not a regular file", sigPath)
	}
	data, err := io.ReadAll(io.LimitReader(f, pipeline.MaxSignatureBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the pipeline's signature %q: %w", sigPath, err)
	}
	fp, err := pipeline.VerifySignature(p.Data, data)
	if err != nil {
		return nil, &PipelineSignatureError{Path: sigPath, Err: err}
	}
	return []string{fp}, nil
}

// PipelineSignatureError is a FILE.sig beside the pipeline that does not verify over the file.
type PipelineSignatureError struct {
	Path string
	Err  error
}

func (e *PipelineSignatureError) Error() string {
	return fmt.Sprintf("pipeline signature %s is not a valid signature over the pipeline file: %v; sign the file again with `ssf pipeline sign` or remove the signature", e.Path, e.Err)
}
func (e *PipelineSignatureError) Unwrap() error { return e.Err }

// fromSource says whether the pipeline file is committed, byte for byte, at the source's git commit: the source
// is recorded by commit (its snapshot holds exactly the commit's files) and holds the file, with these bytes, at
// the file's path within it.
func fromSource(ctx context.Context, p *pipeline.Pipeline, src *source.Snapshot) bool {
	if src.Commit == "" {
		return false
	}
	abs, err := filepath.Abs(p.Path)
	if err != nil {
		return false
	}
	rel, err := filepath.Rel(realPath(src.Dir), realPath(abs))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return false
	}
	rel = filepath.ToSlash(rel)
	files, err := src.Files(ctx, func(name string) bool { return name == rel }, int64(len(p.Data))+1)
	if err != nil {
		return false
	}
	got, err := fs.ReadFile(files, rel)
	return err == nil && bytes.Equal(got, p.Data)
}

// admitBuild is the ssf.build gate: once per build, after the source is taken and before any dependency is
// fetched or task runs.
func (h Home) admitBuild(ctx context.Context, adm *admission, src *source.Snapshot, log *lineLog) error {
	desc := src.Descriptor()
	srcDigest := "sha256:" + src.SHA256
	if src.Commit != "" {
		srcDigest = "gitCommit:" + src.Commit
	}
	params := make(map[string]string, len(adm.params))
	for k, v := range adm.params {
		params[k] = v
	}
	in := policy.BuildInput{
		Pipeline: policy.Pipeline{Name: adm.p.Name, Digest: string(adm.p.Digest), Path: adm.p.Path,
			FromSource: fromSource(ctx, adm.p, src), Signers: adm.signers},
		Params:  params,
		Source:  policy.Source{URI: desc.URI, Digest: srcDigest},
		Builder: policy.Builder{ID: adm.cfg.BuilderID, Image: adm.p.Builder, Digest: string(adm.img.Digest)},
	}
	if err := adm.policy.Decide(ctx, policy.Build, fmt.Sprintf("pipeline %q (%s)", adm.p.Name, adm.p.Path), in); err != nil {
		return err
	}
	signed := "unsigned"
	if len(adm.signers) > 0 {
		signed = "signed by " + strings.Join(adm.signers, ", ")
	}
	// A set without rules for a gate allows everything there (an empty --policy directory, a mistyped one): the
	// log says so, so that nobody takes "admitted" for "checked".
	var none []string
	for _, g := range []policy.Gate{policy.Build, policy.Deps} {
		if !adm.policy.Set.Defines(g) {
			none = append(none, g.Package())
		}
	}
	if len(none) > 0 {
		signed += "; the set has no rules for " + strings.Join(none, " or ") + ", which allow everything"
	}
	log.printf("policy %s (%s) admitted the build (pipeline %s)", adm.policy.Source, adm.policy.Set.Digest(), signed)
	return nil
}

// admitDependency is the ssf.deps gate, as deps.Options.Admit: once per dependency, before it is fetched.
func (p *Policy) admitDependency(ctx context.Context, c deps.Candidate) error {
	in := policy.DepsInput{Dependency: policy.Dependency{Type: string(c.Kind), Name: c.Name, Version: c.Version,
		PURL: c.PURL, URL: c.URL, Digest: c.Pin}}
	what := fmt.Sprintf("%s dependency %q", c.Kind, c.Name)
	if c.Version != "" {
		what = fmt.Sprintf("%s dependency %s@%s", c.Kind, c.Name, c.Version)
	}
	return p.Decide(ctx, policy.Deps, what, in)
}
