package factory

import (
	"context"
	"io"

	"github.com/ssf-dev/ssf/internal/sandbox"
	"github.com/ssf-dev/ssf/internal/sign"
)

// The control plane's back ends. Each interface is here because a real alternative exists or is planned
// (DESIGN.md): tests use the real implementations, not mocks.
//
// A Log (the transparency log every bundle is entered in) and a Policy (admission at build request, dependency
// fetch, execution and publish) will join them as stages of Home.Build when they land: Log between attest and
// record, Policy in admit.

// Runtime runs task containers: runc today; crun and runsc are the same OCI runtime interface under another
// binary, Kubernetes Pods a later one.
type Runtime interface {
	// Start prepares a task's container from c: its runtime spec goes into bundleDir (an empty directory no step
	// can reach) and its cgroup is created; nothing runs until Exec. The container lives until it is closed.
	Start(ctx context.Context, bundleDir string, c sandbox.Config) (Container, error)
	// Version names the runtime and its version, for the provenance.
	Version() string
	// List and Delete let a later build remove the containers of a build that was killed outright.
	List(ctx context.Context) ([]string, error)
	Delete(ctx context.Context, id string) error
}

// Container is one task's container: its steps run one after another, each as a fresh container of the task's
// spec, sharing the task's mounts and cgroup.
type Container interface {
	ID() string
	// Exec runs args as one step (a fresh container of the task's spec), writing its output to out, and returns
	// its exit code.
	Exec(ctx context.Context, args []string, out io.Writer) (int, error)
	// Close stops the container and deletes it; after it returns nothing of the task runs.
	Close() error
}

// Attestor turns an in-toto statement the control plane wrote into a signed Sigstore bundle: the factory's key
// (--signer key), or a short-lived certificate of the run's identity, logged and timestamped (--signer identity,
// identity.go).
type Attestor interface {
	Statement(ctx context.Context, statement []byte) (bundle []byte, err error)
}

// runc adapts *sandbox.Runc, whose Start returns its concrete container type, to Runtime.
type runc struct{ *sandbox.Runc }

func (r runc) Start(ctx context.Context, bundleDir string, c sandbox.Config) (Container, error) {
	ctr, err := r.Runc.Start(ctx, bundleDir, c)
	if err != nil {
		return nil, err // not a typed nil in an interface
	}
	return ctr, nil
}

var (
	_ Runtime   = runc{}
	_ Container = (*sandbox.Container)(nil)
	_ Attestor  = (*sign.Signer)(nil)
)
