package deps

import (
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
)

// file ingests one file pinned by sha256: fetched from s.URL (or taken from the cache), checked, and placed at
// tree/<s.Dest>.
func (f *fetcher) file(ctx context.Context, s Spec, tree string) ([]Dependency, error) {
	what := fmt.Sprintf("file %q", s.Dest)
	if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, inputErrorf("%s: %q is not an http or https URL", what, redactURL(s.URL))
	}
	// Package pipeline checks dest; checked again here, as it is joined to the tree: never a path out of it, nor
	// into the ecosystems' layouts (names starting with a dot).
	if !fs.ValidPath(s.Dest) || s.Dest == "." || strings.HasPrefix(s.Dest, ".") || strings.Contains(s.Dest, "/.") {
		return nil, inputErrorf("%s: dest must be a clean relative path with no component starting with '.'", what)
	}
	if err := s.SHA256.Validate(); err != nil || s.SHA256.Algorithm() != "sha256" {
		return nil, inputErrorf("%s: sha256 %q is not a sha256 digest", what, s.SHA256)
	}
	f.progress.expect(1)
	check := func(p string) error {
		got, err := hashFile(p)
		if err != nil {
			return err
		}
		if got != s.SHA256 {
			return &MismatchError{What: what, Pinned: "the pipeline's sha256", Want: s.SHA256.String(), URL: redactURL(s.URL), Got: got.String()}
		}
		return nil
	}
	if err := f.admit(ctx, Candidate{Kind: File, Name: s.Dest, URL: s.URL, Pin: s.SHA256.String()}); err != nil { // Ingest asked first
		return nil, err
	}
	c, err := f.get(ctx, "sha256/"+s.SHA256.Encoded()+"."+sourceKey(s.URL), s.URL, check)
	if err != nil {
		return nil, err
	}
	if err := place(tree, s.Dest, c); err != nil {
		return nil, fmt.Errorf("placing %s: %w", what, err)
	}
	return []Dependency{{Kind: File, Name: s.Dest, URI: s.URL, URL: s.URL, Digest: c.Digest, Pin: s.SHA256.String()}}, nil
}
