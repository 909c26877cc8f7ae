package deps

import (
	"context"
	"errors"
)

// file ingests one file pinned by sha256. (Being written.)
func (f *fetcher) file(ctx context.Context, s Spec, tree string) ([]Dependency, error) {
	return nil, errors.New("file dependencies are not supported yet")
}
