package pipeline

import (
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Cache is one entry of a task's caches: a directory the task gets read-write at Path, holding what the previous
// successful run of the same task of the same pipeline left there (docs/caches.md). It is state, not an input
// anyone pinned: the control plane records its digest in the provenance, never trusts it.
type Cache struct {
	Name string // a short identifier, unique in the task
	Path string // absolute and clean, in the task's container
	Line int
}

var cacheNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// maxCaches bounds a task's caches: each is copied in and out of the task.
const maxCaches = 8

// reservedCachePaths are the container paths a cache must not cover or lie under: ssf's own mounts and the
// kernel's file systems.
var reservedCachePaths = []string{"/workspace", "/outputs", "/inputs", "/deps", "/run/secrets", "/proc", "/sys", "/dev"}

// caches reads a task's caches.
func (d *decoder) caches(n *yaml.Node, field string) ([]Cache, error) {
	items, err := d.list(n, field)
	if err != nil {
		return nil, err
	}
	if len(items) > maxCaches {
		return nil, d.errAt(n, field, "%d caches: a task may declare at most %d", len(items), maxCaches)
	}
	var out []Cache
	names, paths := map[string]int{}, map[string]int{}
	for i, item := range items {
		c, err := d.cache(item, index(field, i))
		if err != nil {
			return nil, err
		}
		if first, ok := names[c.Name]; ok {
			return nil, d.errAt(item, join(index(field, i), "name"), "duplicate cache name %q (first at line %d): cache names must be unique in a task", c.Name, first)
		}
		names[c.Name] = item.Line
		for _, other := range out {
			if c.Path == other.Path || strings.HasPrefix(c.Path, other.Path+"/") || strings.HasPrefix(other.Path, c.Path+"/") {
				return nil, d.errAt(item, join(index(field, i), "path"), "path %s overlaps the path %s of cache %q at line %d: give each cache a directory of its own",
					quote(c.Path), quote(other.Path), other.Name, paths[other.Path])
			}
		}
		paths[c.Path] = item.Line
		out = append(out, c)
	}
	return out, nil
}

func (d *decoder) cache(n *yaml.Node, field string) (Cache, error) {
	f, err := d.fields(n, field, "name", "path")
	if err != nil {
		return Cache{}, err
	}
	c := Cache{Line: n.Line}
	v, err := d.required(f, "name", "name: NAME, such as go")
	if err != nil {
		return Cache{}, err
	}
	if c.Name, err = d.str(v, join(field, "name")); err != nil {
		return Cache{}, err
	}
	if !cacheNameRE.MatchString(c.Name) {
		return Cache{}, d.errAt(v, join(field, "name"), "invalid cache name %s: use 1 to 63 lower-case letters, digits, '-' and '_', starting with a letter or digit", quote(c.Name))
	}
	v, err = d.required(f, "path", "path: the directory in the container, such as /tmp/gocache")
	if err != nil {
		return Cache{}, err
	}
	if c.Path, err = d.str(v, join(field, "path")); err != nil {
		return Cache{}, err
	}
	if msg := badCachePath(c.Path); msg != "" {
		return Cache{}, d.errAt(v, join(field, "path"), "%s", msg)
	}
	return c, nil
}

// badCachePath says what is wrong with a cache's container path, or returns "".
func badCachePath(p string) string {
	switch {
	case p == "":
		return "path is empty: give the directory in the container, such as /tmp/gocache"
	case !utf8.ValidString(p) || strings.IndexFunc(p, unicode.IsControl) >= 0 || strings.IndexFunc(p, invisible) >= 0:
		return "path " + quote(p) + " contains a control, invisible or invalid character"
	case len(p) > maxPath:
		return "path is longer than " + strconv.Itoa(maxPath) + " bytes"
	case !strings.HasPrefix(p, "/"):
		return "path " + quote(p) + " is relative: give an absolute directory in the container, such as /tmp/gocache"
	case path.Clean(p) != p:
		return "path " + quote(p) + " is not clean: write " + quote(path.Clean(p))
	case p == "/":
		return `path "/" is the container's root: give a directory of its own, such as /tmp/gocache`
	case p == "/tmp":
		return `path "/tmp" is the task's $HOME and temporary directory: give a directory under it, such as /tmp/gocache`
	}
	for _, r := range reservedCachePaths {
		if p == r || strings.HasPrefix(p, r+"/") || strings.HasPrefix(r, p+"/") {
			return "path " + quote(p) + " overlaps " + r + ", which ssf mounts itself: choose a directory such as /tmp/gocache"
		}
	}
	// The npm package cache (deps.npmTaskCache) is filled by ssf for every task from the packages it fetched and
	// checked: a task cache over or inside it would hand the next build what an earlier step wrote there instead.
	if r := "/tmp/.npm"; p == r || strings.HasPrefix(p, r+"/") {
		return "path " + quote(p) + " overlaps /tmp/.npm, npm's package cache, which ssf fills with the checked packages for every build: cache a tool's own directory instead, such as /tmp/jest"
	}
	for _, part := range strings.Split(p[1:], "/") {
		if len(part) > maxName {
			return "path " + quote(p) + " has a component longer than " + strconv.Itoa(maxName) + " bytes"
		}
	}
	return ""
}
