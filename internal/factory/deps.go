package factory

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ssf-dev/ssf/internal/deps"
	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/source"
)

// maxLockBytes bounds the lock files the dependency stage reads from a source, in all.
const maxLockBytes = 64 << 20

// ingested is what the dependency stage fetched and checked: the tree tasks get read-only at deps.MountPoint.
type ingested struct {
	tree  string // "" when the pipeline declares no dependencies
	list  []deps.Dependency
	kinds map[deps.Kind]bool
}

// dependencies is the dependency stage: every dependency the pipeline declares is fetched by the control plane
// (or taken from the cache), checked against the pins in the source's lock files as the snapshot recorded them,
// and laid out in a tree of the build's own. No step takes part, and no code of a dependency runs.
func (h Home) dependencies(ctx context.Context, adm *admission, ws *workspace, src *source.Snapshot, log *lineLog) (*ingested, error) {
	in := &ingested{kinds: map[deps.Kind]bool{}}
	p := adm.p
	if len(p.Dependencies) == 0 {
		return in, nil
	}
	specs := make([]deps.Spec, len(p.Dependencies))
	for i, d := range p.Dependencies {
		specs[i] = deps.Spec{Kind: deps.Kind(d.Type), Path: d.Path, URL: d.URL, SHA256: d.SHA256, Dest: d.Dest}
		in.kinds[specs[i].Kind] = true
	}
	// Lock files anywhere in the source: a go.mod may replace a module by a directory with a go.mod of its own.
	files, err := src.Files(ctx, func(name string) bool {
		switch path.Base(name) {
		case "go.mod", "go.sum", "package-lock.json", "npm-shrinkwrap.json":
			return true
		}
		return false
	}, maxLockBytes)
	if err != nil {
		if ie := (*source.InputError)(nil); errors.As(err, &ie) {
			return nil, &InputError{Err: err}
		}
		return nil, err
	}
	in.tree = filepath.Join(ws.work, "deps")
	if err := os.Mkdir(in.tree, 0o755); err != nil {
		return nil, err
	}
	opts := deps.Options{
		Cache:    h.depsCacheDir(),
		Progress: adm.req.Progress,
		Admit:    adm.policy.admitDependency, // the ssf.deps gate (policy.go)
	}
	opts.GoProxy, opts.GoProxySource = goProxy(adm.cfg)
	if opts.Credentials, err = h.fetchCredentials(adm.cfg); err != nil { // credentials.go
		return nil, err
	}
	if in.kinds[deps.Npm] {
		opts.NpmRegistry = npmRegistry(adm.cfg)
	}
	in.list, err = deps.Ingest(ctx, files, specs, in.tree, opts)
	if err != nil {
		return nil, dependencyError(p, err)
	}
	counts := map[deps.Kind]int{}
	for _, d := range in.list {
		counts[d.Kind]++
	}
	var parts []string
	for _, c := range []struct {
		kind        deps.Kind
		one, plural string
	}{{deps.Gomod, "Go module", "Go modules"}, {deps.Npm, "npm package", "npm packages"}, {deps.File, "file", "files"}} {
		switch n := counts[c.kind]; n {
		case 0:
		case 1:
			parts = append(parts, "1 "+c.one)
		default:
			parts = append(parts, fmt.Sprintf("%d %s", n, c.plural))
		}
	}
	if len(parts) == 0 {
		log.printf("dependencies: none to fetch (the lock files pin nothing)")
		return in, nil
	}
	log.printf("dependencies: %s, each checked against its pin", strings.Join(parts, ", "))
	return in, nil
}

// dependencyError names the spec.dependencies entry a failure belongs to, by line; a problem with the lock files or
// the entry is bad input, a download that does not match its pin a failed build.
func dependencyError(p *pipeline.Pipeline, err error) error {
	where := p.Path + ": spec.dependencies"
	if se := (*deps.SpecError)(nil); errors.As(err, &se) && se.Index < len(p.Dependencies) {
		where = fmt.Sprintf("%s:%d: spec.dependencies[%d]", p.Path, p.Dependencies[se.Index].Line, se.Index)
	}
	if ie := (*deps.InputError)(nil); errors.As(err, &ie) {
		return &InputError{Err: fmt.Errorf("%s: %w", where, err)}
	}
	if pd := (*PolicyDenial)(nil); errors.As(err, &pd) {
		return fmt.Errorf("%s: %w", where, err) // nothing was fetched (policy.go)
	}
	return fmt.Errorf("%s: fetching dependencies: %w", where, err)
}

// env is what a task's steps need to use the tree: $SSF_DEPS and each declared ecosystem's offline settings.
func (in *ingested) env(t *pipeline.Task) []string {
	if in == nil || in.tree == "" {
		return nil
	}
	return deps.Env(in.kinds, t.NpmScripts)
}

// descriptors are the resolvedDependencies entries of what was ingested.
func (in *ingested) descriptors() []provenance.ResourceDescriptor {
	if in == nil {
		return nil
	}
	out := make([]provenance.ResourceDescriptor, 0, len(in.list))
	for _, d := range in.list {
		rd := provenance.ResourceDescriptor{URI: d.URI, DownloadLocation: d.URL, Digest: provenance.DigestSet(d.Digest)}
		switch d.Kind {
		case deps.Gomod:
			if d.ModOnly {
				rd.URI += "#go.mod"
			} else if h, ok := strings.CutPrefix(d.Pin, "h1:"); ok {
				if v, err := base64Hex(h); err == nil {
					rd.Digest["dirHash"] = v
				}
			}
		case deps.Npm:
			if b64, ok := strings.CutPrefix(d.Pin, "sha512-"); ok {
				if v, err := base64Hex(b64); err == nil {
					rd.Digest["sha512"] = v
				}
			}
		case deps.File:
			rd.Name = d.Name
		}
		out = append(out, rd)
	}
	return out
}

// goProxy is the configured GOPROXY, else the ssf process's, else the public proxy, and where it came from.
func goProxy(cfg Config) (proxy, source string) {
	switch {
	case cfg.GoProxy != "":
		return cfg.GoProxy, "goproxy in config.yaml"
	case os.Getenv("GOPROXY") != "":
		return os.Getenv("GOPROXY"), "$GOPROXY of the ssf process"
	}
	return "https://proxy.golang.org", "the default"
}

// npmRegistry is the configured registry, else the one npm itself would use (its environment variable, the
// user's and the global npmrc), else the public registry.
func npmRegistry(cfg Config) string {
	if cfg.NpmRegistry != "" {
		return cfg.NpmRegistry
	}
	for _, k := range []string{"npm_config_registry", "NPM_CONFIG_REGISTRY"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	var rcs []string
	if home, err := os.UserHomeDir(); err == nil {
		rcs = append(rcs, filepath.Join(home, ".npmrc"))
	}
	rcs = append(rcs, "/etc/npmrc", "/usr/etc/npmrc", "/usr/local/etc/npmrc")
	for _, rc := range rcs {
		if v := npmrcRegistry(rc); v != "" {
			return v
		}
	}
	return deps.DefaultNpmRegistry
}

// npmrcRegistry reads the registry= line of an npmrc file, or returns "".
func npmrcRegistry(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && strings.TrimSpace(k) == "registry" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// base64Hex turns a standard base64 hash (as go.sum and SRI write them) into lower-case hex.
func base64Hex(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
