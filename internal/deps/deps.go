// Package deps is the control plane's dependency stage: it fetches a pipeline's declared dependencies (Go
// modules pinned by go.sum, npm packages pinned by package-lock.json, files pinned by sha256), checks every byte
// against its pin, keeps them in a cache by digest, and lays them out in a directory that tasks get read-only.
//
// # What it must never do
//
// It never runs code of a dependency (no go command, no npm, no install scripts) and never lets a build step
// take part in a fetch. It never fetches, or takes from the cache, a dependency that Options.Admit (the factory's
// policy) refused or has not yet decided on. It never extends a lock file: a module missing from go.sum, a package without
// integrity, or a spec it cannot verify is refused, by name. It never offers a task a byte it has not checked
// against its pin: a cache hit is hashed again in this build and must be the bytes that passed the pin check
// (the sha256 recorded beside the entry when they did; a cache key names everything its check depends on, the
// module version of a zip included), or it is checked against the pin in full, and the tree gets the very file
// hashed, never one another build put in its place meanwhile. It never writes outside the cache and the tree it is
// given (PrepareNpmCache: the task's fresh /tmp it is given), and never lets a task write to either. It never
// connects, by redirect or DNS either, to a link-local or metadata address, nor to loopback that the fetched URL
// does not name (see net.go); never records or prints the credentials a URL carries, and never sends a configured
// credential (credentials.go) to any host but its own, by redirect either, nor in the clear to a non-loopback
// address; and never records for a
// dependency a URL its bytes did not come from, nor a registry purl for bytes the registry did not serve under
// that name and version.
package deps

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/opencontainers/go-digest"
)

// Kind is the type of a declared dependency.
type Kind string

// The kinds of dependency a pipeline may declare.
const (
	Gomod Kind = "gomod" // go.mod and go.sum at a path of the source
	Npm   Kind = "npm"   // package-lock.json (lockfileVersion 2 or 3) at a path of the source
	File  Kind = "file"  // one file at a URL, pinned by sha256
)

// MountPoint is where tasks see the dependency tree, read-only; steps find it as $SSF_DEPS.
const MountPoint = "/deps"

// Paths inside the tree (and so under MountPoint) that hold the ecosystems' layouts. File destinations may not
// start with a dot, so they never collide with these.
const (
	GoProxyDir  = ".goproxy" // a GOPROXY file tree: <escaped module>/@v/<version>.{info,mod,zip}
	NpmCacheDir = ".npm"     // an npm cache (cacache) holding the tarballs by integrity
)

// Spec is one entry of a pipeline's spec.dependencies, already validated by package pipeline.
type Spec struct {
	Kind   Kind
	Path   string        // gomod, npm: the directory of the source that holds the lock files; clean, slash-separated, "." for the top
	URL    string        // file: where to fetch it (http or https)
	SHA256 digest.Digest // file: its pin
	Dest   string        // file: its path under MountPoint; clean, relative, no component starting with '.'
}

// Options say where and how to fetch.
type Options struct {
	Cache   string // the download cache, $SSF_HOME/cache/deps; created when missing
	GoProxy string // GOPROXY-style list; the first http(s) entry is used
	// GoProxySource says where GoProxy came from, for messages (e.g. "$GOPROXY", "goproxy in config.yaml").
	GoProxySource string
	NpmRegistry   string       // registry URL for lock entries without "resolved", e.g. https://registry.npmjs.org/
	Client        *http.Client // nil: a default client with timeouts
	// Credentials are the control plane's logins to dependency servers, each sent only to its host (credentials.go).
	Credentials []Credential
	Concurrency int // downloads at once; 0: a default
	// MaxTotalBytes bounds the bytes of one ingestion, downloaded or from the cache; 0: DefaultMaxTotalBytes.
	MaxTotalBytes int64
	Progress      io.Writer // a terminal to show progress on; nil shows none
	// Admit, when set, decides on each dependency before any of its bytes are fetched or taken from the cache
	// (once per Candidate: admit.go); an error stops the ingestion. The factory's ssf.deps policy gate.
	Admit func(ctx context.Context, c Candidate) error
}

// Dependency is one ingested and verified dependency, as it is recorded in the provenance and the SBOMs.
type Dependency struct {
	Kind    Kind
	Name    string        // module path, npm package name, or a file's Dest
	Version string        // module or package version; "" for files
	URI     string        // purl (pkg:golang/…@v, pkg:npm/…@v); the URL for files
	URL     string        // where the bytes were fetched from (downloadLocation)
	Digest  digest.Digest // sha256 of the fetched bytes (the module zip, the tarball, the file)
	Pin     string        // the lock file's own hash, as written there: "h1:…", "sha512-…", "sha256:…"
	// ModOnly is true for a Go module of which only go.mod was needed (to load the module graph); Digest is then
	// that of the .mod file.
	ModOnly bool
	Dev     bool // an npm devDependency
	Spec    int  // index of the Spec it came from
}

// InputError is a problem with the lock files or the declared dependencies themselves (missing, malformed, a
// module missing from go.sum, a package without integrity): the pipeline's author must fix it.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErrorf(format string, args ...any) error {
	return &InputError{Err: fmt.Errorf(format, args...)}
}

// MismatchError is fetched bytes that are not what the lock file pins.
type MismatchError struct {
	What   string // e.g. `module github.com/google/uuid@v1.6.0 (zip)`, `npm package left-pad@1.3.0`, `file "x.tgz"`
	Pinned string // where the pin is written, e.g. "go.sum:12", "web/package-lock.json", "the pipeline"
	Want   string // the pin, as written there
	URL    string // where the bytes came from (without user information); "" for a cache entry
	Got    string // the same hash of the bytes received
}

func (e *MismatchError) Error() string {
	from := "the download"
	if e.URL != "" {
		from = e.URL
	}
	return fmt.Sprintf("%s does not match its pin: %s says %s, but %s has %s; find out which is right before changing the pin",
		e.What, e.Pinned, e.Want, from, e.Got)
}
