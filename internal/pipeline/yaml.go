package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decoder walks the yaml.Node tree of one file. It never uses the YAML library's struct decoding,
// so that every message a person sees is written here and names a field path and a line.
type decoder struct {
	file  string
	tasks []taskSource // parallel to Pipeline.Tasks
}

// taskSource keeps the nodes that checks spanning several tasks need for their error lines.
type taskSource struct {
	needs   []*yaml.Node
	outputs []*yaml.Node
}

// errAt returns an *Error at the line of n.
func (d *decoder) errAt(n *yaml.Node, field, format string, args ...any) error {
	return &Error{File: d.file, Line: n.Line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// yamlLine matches the library's syntax errors, so their line becomes Error.Line.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document returns the top-level node of the one document in data.
func (d *decoder) document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: d.file, Msg: "file is empty: it must hold one pipeline"}
		}
		return nil, d.syntaxError(data, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, d.syntaxError(data, err)
	default:
		return nil, d.errAt(&extra, "", "file holds more than one YAML document: remove everything from this '---' on")
	}
	if len(doc.Content) != 1 {
		// The library always gives a document exactly one child; this guards against a future change.
		return nil, &Error{File: d.file, Msg: "file does not hold one YAML document"}
	}
	return doc.Content[0], nil
}

// syntaxError turns the library's "yaml: line N: msg" into an *Error at the line of the mistake. The library
// often gives the line where the enclosing block or flow starts (a mapping three lines up from a mis-indented
// key), so the mistake's own line is found as the first line at which the file, cut there, fails the same way.
func (d *decoder) syntaxError(data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if at := mistakeLine(data, msg); at > line {
		if line > 0 {
			msg += fmt.Sprintf(" (in the block that starts at line %d: check this line's indentation and quotes)", line)
		}
		line = at
	}
	if msg == "found unexpected end of stream" && line > 0 {
		msg += ": a quote or bracket opened on this line is never closed"
	}
	if line > 0 && tabIndented(data, line) {
		msg += "; the line is indented with a tab: YAML indents with spaces only"
	}
	return &Error{File: d.file, Line: line, Msg: "invalid YAML: " + msg}
}

// mistakeLine returns the smallest n such that the first n lines of data fail to parse with msg, found by
// bisection (a handful of parses of a file of at most MaxFileSize), or 0 if the whole file does not fail that way.
func mistakeLine(data []byte, msg string) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	failsAt := func(n int) bool { return yamlProblem(bytes.Join(lines[:n], nil)) == msg }
	lo, hi := 0, len(lines)
	if !failsAt(hi) {
		return 0
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if failsAt(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// yamlProblem returns the library's message, without its "yaml: line N: " prefix, for the first syntax error
// in the first two documents of data (as document reads them), or "" if there is none.
func yamlProblem(data []byte) string {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for range 2 {
		var n yaml.Node
		if err := dec.Decode(&n); errors.Is(err, io.EOF) {
			return ""
		} else if err != nil {
			if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
				return m[2]
			}
			return strings.TrimPrefix(err.Error(), "yaml: ")
		}
	}
	return ""
}

// tabIndented reports whether line (1-based) of data has a tab in its leading white space.
func tabIndented(data []byte, line int) bool {
	lines := bytes.Split(data, []byte("\n"))
	if line > len(lines) {
		return false
	}
	l := lines[line-1]
	return bytes.ContainsRune(l[:len(l)-len(bytes.TrimLeft(l, " \t"))], '\t')
}

// explicitTags are the only tags a file may spell out, by the node kind they fit. Any other tag
// (!!binary, !!timestamp, !custom, ...) would give a value a meaning other than its text.
var explicitTags = map[yaml.Kind][]string{
	yaml.ScalarNode:   {"!!str", "!!int", "!!float", "!!bool", "!!null"},
	yaml.MappingNode:  {"!!map"},
	yaml.SequenceNode: {"!!seq"},
}

// plain checks the whole tree, whatever the schema, for YAML features that make a file mean more
// than it shows: anchors, aliases, merge keys, unusual tags, non-string keys and duplicate keys.
// It runs before the schema walk, so that walk may assume plain nested mappings, lists and scalars.
// It never follows an alias, so a self-referencing anchor cannot make it loop.
func (d *decoder) plain(n *yaml.Node, path string) error {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return d.errAt(n, path, "anchors and aliases are not allowed: write the value out in full")
	}
	if n.Style&yaml.TaggedStyle != 0 && !slices.Contains(explicitTags[n.Kind], n.Tag) {
		return d.errAt(n, path, "tag %s is not allowed here: remove it", n.Tag)
	}
	switch n.Kind {
	case yaml.MappingNode:
		return d.plainMapping(n, path)
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := d.plain(c, index(path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *decoder) plainMapping(n *yaml.Node, path string) error {
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := d.plainKey(k, path); err != nil {
			return err
		}
		field := join(path, k.Value)
		if first, ok := seen[k.Value]; ok {
			return d.errAt(k, field, "duplicate key %s (first at line %d): keep one", quote(k.Value), first.Line)
		}
		seen[k.Value] = k
		if err := d.plain(v, field); err != nil {
			return err
		}
	}
	return nil
}

// plainKey accepts only keys that are plain strings.
func (d *decoder) plainKey(k *yaml.Node, path string) error {
	if k.Kind == yaml.AliasNode || k.Anchor != "" {
		return d.errAt(k, path, "anchors and aliases are not allowed: write the value out in full")
	}
	if k.Kind != yaml.ScalarNode {
		return d.errAt(k, path, "keys must be plain strings, found %s", describe(k))
	}
	if k.ShortTag() == "!!merge" {
		return d.errAt(k, path, "merge keys (<<) are not allowed: write the fields out in full")
	}
	if k.Style&yaml.TaggedStyle != 0 && k.Tag != "!!str" {
		return d.errAt(k, path, "tag %s is not allowed on a key: remove it", k.Tag)
	}
	return nil
}

// fields holds the values of a mapping by key.
type fields struct {
	node *yaml.Node
	path string
	vals map[string]*yaml.Node
}

// fields checks that n is a mapping whose keys are all in allowed.
func (d *decoder) fields(n *yaml.Node, path string, allowed ...string) (*fields, error) {
	if n.Kind != yaml.MappingNode {
		return nil, d.kindError(n, path, "a mapping")
	}
	f := &fields{node: n, path: path, vals: make(map[string]*yaml.Node)}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(allowed, k.Value) {
			return nil, d.errAt(k, join(path, k.Value), "unknown field %s: allowed fields are %s",
				quote(k.Value), strings.Join(allowed, ", "))
		}
		f.vals[k.Value] = v
	}
	return f, nil
}

// optional returns the value of key, or nil if the mapping does not have it.
func (f *fields) optional(key string) *yaml.Node { return f.vals[key] }

// required returns the value of key, or an error at the mapping that says how to add it.
func (d *decoder) required(f *fields, key, example string) (*yaml.Node, error) {
	if v := f.vals[key]; v != nil {
		return v, nil
	}
	return nil, d.errAt(f.node, join(f.path, key), "missing required field: add %s", example)
}

// str returns the text of a scalar. Nulls are refused rather than read as "" or "~", because the
// writer may have meant either or forgotten a value.
func (d *decoder) str(n *yaml.Node, path string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", d.kindError(n, path, "a string")
	}
	if n.ShortTag() == "!!null" {
		return "", d.errAt(n, path, `value is null: write a value, or "" for an empty string`)
	}
	if strings.IndexByte(n.Value, 0) >= 0 {
		// A NUL byte cannot reach a process through its environment or argv.
		return "", d.errAt(n, path, "value contains a NUL byte")
	}
	return n.Value, nil
}

// list returns the items of a sequence.
func (d *decoder) list(n *yaml.Node, path string) ([]*yaml.Node, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, d.kindError(n, path, "a list")
	}
	return n.Content, nil
}

func (d *decoder) kindError(n *yaml.Node, path, want string) error {
	return d.errAt(n, path, "expected %s, found %s", want, describe(n))
}

// describe names what a node is, in a person's words.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "null"
		}
		return "the value " + quote(n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

// join returns the field path of key inside the mapping at path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// index returns the field path of item i of the list at path.
func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// quote quotes s for a message, shortened so that a huge value cannot flood a terminal.
func quote(s string) string {
	const max = 64
	if r := []rune(s); len(r) > max {
		return strconv.Quote(string(r[:max])) + "…"
	}
	return strconv.Quote(s)
}
