package factory

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/policy"
)

// TestLoadPolicySources: --policy DIR, else $SSF_HOME/policy when it exists, else the embedded default; a DIR that
// is not a directory is bad input, and a set that does not compile a *policy.LoadError naming file:line.
func TestLoadPolicySources(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	t.Setenv("SSF_HOME", home)

	p, err := LoadPolicy(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Source != DefaultPolicySource || p.Set.Digest() != policy.Digest(policy.DefaultFiles()) {
		t.Errorf("without $SSF_HOME/policy: %s %s, want the embedded default", p.Source, p.Set.Digest())
	}

	if again, err := LoadPolicy(ctx, p.Source); err != nil || again.Source != DefaultPolicySource || again.Set.Digest() != p.Set.Digest() {
		t.Errorf("loading %s again: %v %v", p.Source, err, again)
	}

	own := filepath.Join(home, "policy")
	os.MkdirAll(own, 0o755)
	os.WriteFile(filepath.Join(own, "deps.rego"), []byte("package ssf.deps\n\ndeny contains \"no\" if true\n"), 0o644)
	if p, err = LoadPolicy(ctx, ""); err != nil || p.Source != own {
		t.Fatalf("with $SSF_HOME/policy: %v, source %v", err, p)
	}
	err = p.Decide(ctx, policy.Deps, "x", policy.DepsInput{})
	var pd *PolicyDenial
	if !errors.As(err, &pd) || pd.Gate != policy.Deps || len(pd.Denials) != 1 || !strings.Contains(err.Error(), "\n  - no") {
		t.Errorf("Decide: %v", err)
	}

	given := filepath.Join(t.TempDir(), "given")
	os.MkdirAll(given, 0o755)
	if p, err = LoadPolicy(ctx, given); err != nil || p.Source != given || p.Set.Digest() == policy.Digest(policy.DefaultFiles()) {
		t.Errorf("--policy %s: %v %v", given, err, p)
	}
	if p != nil && p.Decide(ctx, policy.Deps, "x", policy.DepsInput{}) != nil {
		t.Error("an empty set denied")
	}

	var ie *InputError
	if _, err := LoadPolicy(ctx, filepath.Join(home, "missing")); !errors.As(err, &ie) || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("a missing --policy: %v, want an InputError", err)
	}
	os.WriteFile(filepath.Join(given, "b.rego"), []byte("package ssf.build\n\ndeny contains msg if {\n"), 0o644)
	var le *policy.LoadError
	if _, err := LoadPolicy(ctx, given); !errors.As(err, &le) || !strings.Contains(err.Error(), "b.rego:") {
		t.Errorf("a broken set: %v, want a LoadError naming b.rego:LINE", err)
	}
}

// TestPipelineSignatureFifo: a fifo planted as FILE.sig (whoever writes the source directory can) is refused as not
// a regular file at once; opened without O_NONBLOCK it blocked the build for ever, deaf to SIGTERM.
func TestPipelineSignatureFifo(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ssf.yaml")
	if err := syscall.Mkfifo(path+pipeline.SignatureSuffix, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := pipelineSigners(&pipeline.Pipeline{Path: path, Data: []byte("x")})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "is not a regular file") {
			t.Fatalf("a fifo as the signature: %v, want it refused as not a regular file", err)
		}
	case <-time.After(20 * time.Second): // a bound on a hang, not a synchronisation
		os.OpenFile(path+pipeline.SignatureSuffix, os.O_WRONLY|syscall.O_NONBLOCK, 0) // let the goroutine go
		t.Fatal("reading a fifo as the pipeline's signature blocks")
	}
}
