package factory

import (
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/source"
)

// TestIdentityClaimsTheWholeRepository: the certificates' SourceRepositoryURI is the whole repository path, even
// one with an '@' in it (file URLs keep it unescaped). Cutting the source's URI at its first '@' made a build of
// /srv/trusted@evil/repo claim to come from file:///srv/trusted, a repository it never read.
func TestIdentityClaimsTheWholeRepository(t *testing.T) {
	const commit = "0123456789abcdef0123456789abcdef01234567"
	for _, c := range []struct {
		src  source.Snapshot
		want string
	}{
		{source.Snapshot{Dir: "/srv/trusted@evil/repo", Repo: "/srv/trusted@evil/repo", Commit: commit}, "file:///srv/trusted@evil/repo"},
		{source.Snapshot{Dir: "/srv/repo/sub@x", Repo: "/srv/repo", RepoPath: "sub@x", Commit: commit}, "file:///srv/repo"},
		{source.Snapshot{Dir: "/srv/a@b/c@d", Commit: commit}, "file:///srv/a@b/c@d"},
	} {
		id := (&identity{td: "ssf.local"}).forBuild(&admission{req: BuildRequest{Pipeline: "/src/ssf.yaml"},
			p: &pipeline.Pipeline{Name: "hello", Digest: digest.FromString("pipeline")}}, "inv", &c.src)
		if id.claims.SourceRepositoryURI != c.want || id.claims.SourceRepositoryDigest != commit {
			t.Errorf("source %+v: SourceRepositoryURI %q digest %q, want %q and %s", c.src, id.claims.SourceRepositoryURI, id.claims.SourceRepositoryDigest, c.want, commit)
		}
	}
}
