package deps

import (
	"context"
	"fmt"
	"io/fs"
)

// Ingest fetches (or takes from the cache) every dependency specs declare, checks each against its pin, and lays
// them out under tree (an empty directory) for tasks: files at tree/<Dest>, Go modules as a GOPROXY file tree at
// tree/GoProxyDir, npm tarballs as an npm cache at tree/NpmCacheDir. Lock files are read from src, the source
// snapshot the build records. Every file in tree is read-only; tree is mounted at MountPoint.
//
// Errors are *SpecError, naming the spec they came from, around *InputError for problems with the lock files or specs, *MismatchError for bytes that are not what
// they are pinned to, *FetchError for a download the server refused.
func Ingest(ctx context.Context, src fs.FS, specs []Spec, tree string, opts Options) ([]Dependency, error) {
	f, err := newFetcher(opts)
	if err != nil {
		return nil, err
	}
	defer f.progress.finish()
	// Files are known from the pipeline alone: each is decided on before anything of any spec is fetched.
	for i, s := range specs {
		if s.Kind == File {
			if err := f.admit(ctx, Candidate{Kind: File, Name: s.Dest, URL: s.URL, Pin: s.SHA256.String()}); err != nil {
				return nil, &SpecError{Index: i, Err: err}
			}
		}
	}
	var all []Dependency
	for i, s := range specs {
		var got []Dependency
		switch s.Kind {
		case Gomod:
			got, err = f.gomod(ctx, src, s, tree)
		case Npm:
			got, err = f.npm(ctx, src, s, tree)
		case File:
			got, err = f.file(ctx, s, tree)
		default:
			err = fmt.Errorf("unknown dependency type %q", s.Kind)
		}
		if err != nil {
			return nil, &SpecError{Index: i, Err: err}
		}
		for j := range got {
			got[j].Spec = i
			// What is recorded is where the bytes came from, never a credential a URL carries (a lock's
			// "resolved" may hold one too).
			got[j].URL = redactURL(got[j].URL)
			if got[j].Kind == File {
				got[j].URI = redactURL(got[j].URI)
			}
		}
		all = append(all, got...)
	}
	return all, nil
}

// SpecError is a failure of the Index-th spec (its entry of spec.dependencies).
type SpecError struct {
	Index int
	Err   error
}

func (e *SpecError) Error() string { return e.Err.Error() }
func (e *SpecError) Unwrap() error { return e.Err }
