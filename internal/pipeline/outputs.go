package pipeline

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Output is one entry of a task's outputs, as the pipeline declares it.
//
// A path written with a trailing '/' declares a directory: every regular file under it, however deep, becomes an
// output of its own, named by its path relative to $SSF_OUTPUTS (dist/ gives dist/app.js, dist/css/site.css).
// An output written {path: P, internal: true} is handed to the tasks that need this one, at /inputs/TASK/P, and
// recorded with its digest among what they read, but it is not a subject of the provenance, gets no SBOM, is
// not copied to OUT and is not published.
type Output struct {
	Path     string // clean, slash-separated, relative to $SSF_OUTPUTS; a directory's without its trailing '/'
	Dir      bool   // written with a trailing '/': every regular file under Path is an output
	Internal bool   // passed to dependent tasks only: never attested as a subject, never published
	Line     int
}

// MaxPublishedFiles is the most output files a build may publish: sigstore-go, and so cosign and ssf verify,
// verify statements of at most 1024 subjects, and one is the OCI artifact of the outputs. The parser counts the
// declared files; the control plane counts again with the files found in directories.
const MaxPublishedFiles = 1023

// String is the output as the file writes its path: a directory with its trailing '/'.
func (o Output) String() string {
	if o.Dir {
		return o.Path + "/"
	}
	return o.Path
}

// Published reports whether the output is attested and published (is not internal).
func (o Output) Published() bool { return !o.Internal }

// outputs reads a task's outputs and checks each path on its own; checkOutputs compares them. The field is
// optional and may be empty: a task that only checks something (a test task) declares none.
func (d *decoder) outputs(n *yaml.Node, path string) ([]Output, []*yaml.Node, error) {
	items, err := d.list(n, path)
	if err != nil {
		return nil, nil, err
	}
	outputs := make([]Output, 0, len(items))
	for i, item := range items {
		o, err := d.output(item, index(path, i))
		if err != nil {
			return nil, nil, err
		}
		outputs = append(outputs, o)
	}
	return outputs, items, nil
}

// output reads one entry: PATH, or {path: PATH, internal: BOOL}.
func (d *decoder) output(n *yaml.Node, field string) (Output, error) {
	o := Output{Line: n.Line}
	pathNode := n
	if n.Kind == yaml.MappingNode {
		f, err := d.fields(n, field, "path", "internal")
		if err != nil {
			return o, err
		}
		if pathNode, err = d.required(f, "path", "path: PATH (relative to $SSF_OUTPUTS; end it with / for a directory)"); err != nil {
			return o, err
		}
		if v := f.optional("internal"); v != nil {
			if o.Internal, err = d.boolean(v, join(field, "internal")); err != nil {
				return o, err
			}
		}
		field = join(field, "path")
	} else if n.Kind != yaml.ScalarNode {
		return o, d.kindError(n, field, "an output path or {path: PATH, internal: true}")
	}
	s, err := d.str(pathNode, field)
	if err != nil {
		return o, err
	}
	o.Path = s
	if dir, ok := strings.CutSuffix(s, "/"); ok && dir != "" {
		o.Path, o.Dir = dir, true
	}
	if msg := OutputPathProblem(o.Path); msg != "" {
		if o.Dir {
			msg += " (in the directory output " + quote(s) + ")"
		}
		return o, d.errAt(pathNode, field, "%s", msg)
	}
	return o, nil
}

// OutputPathProblem says what is wrong with one output path, or returns "". Unclean paths are refused, not
// cleaned, so that the path ssf records is the path the file shows. The control plane applies it to the name of
// every file it finds in a declared directory too: those names are a step's choice, and they become subject names
// people read.
func OutputPathProblem(p string) string {
	switch {
	case p == "":
		return "output path is empty"
	case len(p) > maxPath:
		return fmt.Sprintf("output path %s is longer than %d bytes", quote(p), maxPath)
	case strings.HasPrefix(p, "/"):
		return "output path " + quote(p) + " is absolute: give it relative to $SSF_OUTPUTS"
	case strings.Contains("/"+p+"/", "/../"):
		return "output path " + quote(p) + " contains '..': outputs must stay inside $SSF_OUTPUTS"
	case path.Clean(p) != p:
		return "output path " + quote(p) + " is not clean: write " + quote(path.Clean(p))
	case p == ".":
		return `output path "." is $SSF_OUTPUTS itself: name the files or directories in it`
	case !utf8.ValidString(p):
		return "output path " + quote(p) + " is not valid UTF-8"
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		return "output path " + quote(p) + " contains a control character: it would be printed to terminals and logs"
	case strings.IndexFunc(p, invisible) >= 0:
		r := []rune(p)[slices.IndexFunc([]rune(p), invisible)]
		return fmt.Sprintf("output path %s contains %U, an invisible or reordering character: the name people read would not be the name that is signed; rename the output using visible characters", quote(p), r)
	}
	parts := strings.Split(p, "/")
	// ssf stores its own files beside the outputs under this name; any case, for case-folding file systems.
	if strings.EqualFold(parts[0], "attestations") {
		return "output path " + quote(p) + " is reserved: ssf writes its own files under attestations/"
	}
	for _, part := range parts {
		if len(part) > maxName {
			return fmt.Sprintf("output path %s has a component longer than %d bytes", quote(p), maxName)
		}
	}
	return ""
}

// SBOMClash says why the SBOM bundles ssf writes for the published output file out
// (attestations/<out>.spdx.sigstore.json and .cdx.sigstore.json, beside attestations/provenance.sigstore.json)
// would need a directory where another of them is a file, given the set of all published output files; or
// returns "". Only out's own directories are looked at, so the cost is its length. The parser applies it to the
// declared outputs, the control plane to the files it finds in declared directories.
func SBOMClash(out string, all map[string]bool) string {
	for i := 0; i < len(out); i++ {
		if out[i] != '/' {
			continue
		}
		dir := out[:i]
		if dir == "provenance.sigstore.json" {
			return "output " + quote(out) + " would put its SBOMs inside the provenance bundle attestations/provenance.sigstore.json: rename its first directory"
		}
		for _, suffix := range []string{".spdx.sigstore.json", ".cdx.sigstore.json"} {
			if base, ok := strings.CutSuffix(dir, suffix); ok && all[base] {
				return "output " + quote(out) + " would put its SBOMs inside those of output " + quote(base) +
					" (attestations/" + dir + "): rename one of them"
			}
		}
	}
	return ""
}
