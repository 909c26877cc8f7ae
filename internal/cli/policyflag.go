package cli

import (
	"context"
	"errors"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/factory"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/policy"
)

// policyFlagUsage is --policy's help, the same on every command that decides at a gate. Its first back-quoted word is
// what the help shows as the flag's value (pflag's UnquoteUsage): `ssf init` there showed as "--policy ssf init".
const policyFlagUsage = "directory `DIR` of the Rego policy set the gates apply (default $SSF_HOME/policy; when that directory does not exist, the default set built into ssf, which ssf init also writes there; docs/policy.md)"

// addPolicyFlag adds --policy DIR to cmd and returns where its value goes.
func addPolicyFlag(cmd *cobra.Command) *string {
	var dir string
	cmd.Flags().StringVar(&dir, "policy", "", policyFlagUsage)
	return &dir
}

// loadPolicy loads the policy in effect for a command (factory.LoadPolicy: dir, else $SSF_HOME/policy, else the
// built-in default), once, before the command does any work. A set that does not compile (FILE:LINE: message), or
// a --policy that is not a directory, is bad input: exit 2.
func loadPolicy(ctx context.Context, dir string) (*factory.Policy, error) {
	p, err := factory.LoadPolicy(ctx, dir)
	var le *policy.LoadError
	if errors.As(err, &le) {
		return nil, &hintError{err: &usageError{err}, hint: "fix the policy set (`ssf policy test DIR` compiles it and runs its tests), or give another with --policy DIR"}
	}
	return p, err
}

// publishGate collects the statements a publish verified (the provenance and each SBOM), and decides ssf.publish
// over them and the output files before anything is pushed (oci.PublishRequest.Admit).
type publishGate struct {
	policy  *factory.Policy
	trusted root.TrustedMaterial
	target  string          // policyTarget's spelling
	repo    name.Repository // where the tags go

	mu         sync.Mutex
	seen       map[digest.Digest]bool // bundles already read: one SBOM bundle is verified for several manifests
	statements []policy.Statement
	err        error
}

// verified records the statement of a bundle that has just verified against g.trusted.
func (g *publishGate) verified(bundle []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := digest.FromBytes(bundle)
	if g.seen == nil {
		g.seen = map[digest.Digest]bool{}
	}
	if g.seen[d] || g.err != nil {
		return
	}
	g.seen[d] = true
	st, err := factory.PolicyStatement(bundle, g.trusted)
	if err != nil {
		g.err = err
		return
	}
	g.statements = append(g.statements, st)
}

// admit is the ssf.publish gate.
func (g *publishGate) admit(ctx context.Context, files []oci.File, tags []string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.err != nil:
		return g.err // a statement that could not be read: fail closed
	case g.policy == nil:
		return errors.New("no policy was loaded for the ssf.publish gate") // a bug: fail closed
	}
	in := policy.PublishInput{Outputs: make([]policy.Output, 0, len(files)), Statements: g.statements, Target: g.target,
		Tags: make([]string, 0, len(tags))}
	for _, t := range tags {
		in.Tags = append(in.Tags, policyTarget(g.repo, t))
	}
	if in.Statements == nil {
		in.Statements = []policy.Statement{}
	}
	for _, f := range files {
		in.Outputs = append(in.Outputs, policy.Output{Name: f.Path, Digest: string(f.Digest)})
	}
	return g.policy.Decide(ctx, policy.Publish, "the publish to "+g.target, in)
}

// policyTarget is ssf.publish's input.target: where the push goes, REGISTRY/REPO[:TAG], spelled one way whatever
// way it was typed (oci.CanonicalRepository).
func policyTarget(repo name.Repository, tag string) string {
	ref := oci.CanonicalRepository(repo)
	if tag != "" {
		ref += ":" + tag
	}
	return ref
}
