package deps

import (
	"context"
	"errors"
	"io/fs"
)

// npm ingests the packages that package-lock.json at s.Path pins. (Being written.)
func (f *fetcher) npm(ctx context.Context, src fs.FS, s Spec, tree string) ([]Dependency, error) {
	return nil, errors.New("npm dependencies are not supported yet")
}

// npmEnv is what npm needs to install offline from the npm cache in the tree.
func npmEnv(scripts bool) []string { return nil }
