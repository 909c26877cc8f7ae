package deps

import (
	"context"
	"errors"
	"io/fs"
)

// gomod ingests the Go modules that go.mod and go.sum at s.Path pin. (Being written.)
func (f *fetcher) gomod(ctx context.Context, src fs.FS, s Spec, tree string) ([]Dependency, error) {
	return nil, errors.New("gomod dependencies are not supported yet")
}

// goEnv is what the go command needs to build offline from the GOPROXY tree.
func goEnv() []string { return nil }
