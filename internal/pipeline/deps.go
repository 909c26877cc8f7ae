package pipeline

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
	"go.yaml.in/yaml/v3"

	"github.com/ssf-dev/ssf/internal/content"
)

// The dependency types spec.dependencies accepts.
const (
	DepGomod = "gomod" // go.mod and go.sum at Path
	DepNpm   = "npm"   // package-lock.json at Path
	DepFile  = "file"  // one file at URL, pinned by SHA256, offered at Dest
)

// Dependency is one entry of spec.dependencies: what the control plane fetches, checks against its pin and
// offers to every task read-only, before any task runs.
type Dependency struct {
	Type   string        // DepGomod, DepNpm or DepFile
	Path   string        // gomod, npm: the source directory holding the lock files; clean, slash-separated, "." for the top
	URL    string        // file: http or https
	SHA256 digest.Digest // file
	Dest   string        // file: its path under $SSF_DEPS
	Line   int
}

// maxDependencies bounds spec.dependencies (each entry may stand for thousands of modules or packages).
const maxDependencies = 64

func (d *decoder) dependencies(n *yaml.Node) ([]Dependency, error) {
	const path = "spec.dependencies"
	items, err := d.list(n, path)
	if err != nil {
		return nil, err
	}
	if len(items) > maxDependencies {
		return nil, d.errAt(n, path, "%d entries: at most %d", len(items), maxDependencies)
	}
	deps := make([]Dependency, 0, len(items))
	seen := map[string]int{} // "type path" or "file dest" -> line
	for i, item := range items {
		dep, key, err := d.dependency(item, index(path, i))
		if err != nil {
			return nil, err
		}
		if first, ok := seen[key]; ok {
			return nil, d.errAt(item, index(path, i), "declares %s again (first at line %d): keep one", key, first)
		}
		seen[key] = item.Line
		// A file cannot also be a directory of another file's dest: refused here, by line, rather than as a
		// failure to lay out the tree after everything was fetched.
		for _, other := range deps {
			if dep.Type != DepFile || other.Type != DepFile {
				continue
			}
			if strings.HasPrefix(dep.Dest, other.Dest+"/") || strings.HasPrefix(other.Dest, dep.Dest+"/") {
				return nil, d.errAt(item, join(index(path, i), "dest"), "dest %s and the dest %s at line %d put a file where the other needs a directory: give them paths apart",
					quote(dep.Dest), quote(other.Dest), other.Line)
			}
		}
		deps = append(deps, dep)
	}
	return deps, nil
}

// dependency reads one entry; key names what it declares, to refuse duplicates.
func (d *decoder) dependency(n *yaml.Node, field string) (Dependency, string, error) {
	f, err := d.fields(n, field, "type", "path", "url", "sha256", "dest")
	if err != nil {
		return Dependency{}, "", err
	}
	typ, err := d.required(f, "type", "type: gomod, npm or file")
	if err != nil {
		return Dependency{}, "", err
	}
	dep := Dependency{Line: n.Line}
	if dep.Type, err = d.str(typ, join(field, "type")); err != nil {
		return Dependency{}, "", err
	}
	only := func(allowed ...string) error {
		for _, k := range []string{"path", "url", "sha256", "dest"} {
			if v := f.optional(k); v != nil && !slices.Contains(allowed, k) {
				return d.errAt(v, join(field, k), "%s %s dependency has no %s: its fields are type, %s",
					map[bool]string{true: "an", false: "a"}[dep.Type == DepNpm], dep.Type, k, strings.Join(allowed, ", "))
			}
		}
		return nil
	}
	switch dep.Type {
	case DepGomod, DepNpm:
		if err := only("path"); err != nil {
			return Dependency{}, "", err
		}
		lock := map[string]string{DepGomod: "go.mod and go.sum", DepNpm: "package-lock.json"}[dep.Type]
		v, err := d.required(f, "path", "path: the source directory that holds "+lock+" (. for the top)")
		if err != nil {
			return Dependency{}, "", err
		}
		if dep.Path, err = d.str(v, join(field, "path")); err != nil {
			return Dependency{}, "", err
		}
		if msg := badRelPath(dep.Path, "path", true); msg != "" {
			return Dependency{}, "", d.errAt(v, join(field, "path"), "%s", msg)
		}
		return dep, dep.Type + " dependencies at path " + quote(dep.Path), nil
	case DepFile:
		if err := only("url", "sha256", "dest"); err != nil {
			return Dependency{}, "", err
		}
		if err := d.fileDependency(f, field, &dep); err != nil {
			return Dependency{}, "", err
		}
		return dep, "dest " + quote(dep.Dest), nil
	default:
		return Dependency{}, "", d.errAt(typ, join(field, "type"), "unknown dependency type %s: use gomod, npm or file", quote(dep.Type))
	}
}

func (d *decoder) fileDependency(f *fields, field string, dep *Dependency) error {
	v, err := d.required(f, "url", "url: https://HOST/PATH")
	if err != nil {
		return err
	}
	if dep.URL, err = d.str(v, join(field, "url")); err != nil {
		return err
	}
	u, perr := url.Parse(dep.URL)
	switch {
	case perr == nil && u.User != nil:
		// Never echo a credential: the message names the URL without it.
		u.User = nil
		return d.errAt(v, join(field, "url"), "url %s (user information left out here) carries user information: a pipeline file is no place for credentials, and ssf never records them; serve the file without them", quote(u.String()))
	case perr != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return d.errAt(v, join(field, "url"), "url %s is not an http or https URL with a host", quote(dep.URL))
	}
	v, err = d.required(f, "sha256", "sha256: the file's SHA-256 as 64 hex digits (sha256sum FILE)")
	if err != nil {
		return err
	}
	hex, err := d.str(v, join(field, "sha256"))
	if err != nil {
		return err
	}
	if dep.SHA256, err = content.FromHex(strings.TrimPrefix(hex, "sha256:")); err != nil {
		return d.errAt(v, join(field, "sha256"), "invalid sha256 %s: write 64 lower-case hex digits (sha256sum FILE)", quote(hex))
	}
	v, err = d.required(f, "dest", "dest: the file's path under $SSF_DEPS, e.g. x.tgz")
	if err != nil {
		return err
	}
	if dep.Dest, err = d.str(v, join(field, "dest")); err != nil {
		return err
	}
	if msg := badRelPath(dep.Dest, "dest", false); msg != "" {
		return d.errAt(v, join(field, "dest"), "%s", msg)
	}
	return nil
}

// badRelPath says what is wrong with a relative path of the pipeline (a source directory, a dest under
// $SSF_DEPS), or returns "". top allows "." for the top directory. No component may start with a dot: the
// dependency tree keeps its ecosystems' layouts under such names.
func badRelPath(p, what string, top bool) string {
	switch {
	case p == "":
		return what + " is empty"
	case top && p == ".":
		return ""
	case strings.HasPrefix(p, "/"):
		return fmt.Sprintf("%s %s is absolute: give it relative", what, quote(p))
	case strings.Contains("/"+p+"/", "/../"):
		return fmt.Sprintf("%s %s contains '..': it must stay inside the %s", what, quote(p), map[string]string{"path": "source", "dest": "dependency tree"}[what])
	case path.Clean(p) != p:
		return fmt.Sprintf("%s %s is not clean: write %s", what, quote(p), quote(path.Clean(p)))
	case !utf8.ValidString(p) || strings.IndexFunc(p, unicode.IsControl) >= 0 || strings.IndexFunc(p, invisible) >= 0:
		return fmt.Sprintf("%s %s contains a control, invisible or invalid character", what, quote(p))
	case len(p) > maxPath:
		return fmt.Sprintf("%s is longer than %d bytes", what, maxPath)
	}
	for _, part := range strings.Split(p, "/") {
		if strings.HasPrefix(part, ".") {
			return fmt.Sprintf("%s %s has a component starting with '.': name it without one", what, quote(p))
		}
		if len(part) > maxName {
			return fmt.Sprintf("%s %s has a component longer than %d bytes", what, quote(p), maxName)
		}
	}
	return ""
}

// boolean reads a YAML boolean (true or false, nothing else).
func (d *decoder) boolean(n *yaml.Node, field string) (bool, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || (n.Value != "true" && n.Value != "false") {
		return false, d.errAt(n, field, "expected true or false, found %s", describe(n))
	}
	return n.Value == "true", nil
}
