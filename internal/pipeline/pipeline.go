// Package pipeline parses and validates ssf's pipeline-as-code file, ssf.yaml.
//
// A pipeline names a builder image pinned by digest, the params a build takes, and tasks made of
// shell steps, each task saying which other tasks it needs and which outputs it produces. Parse turns
// the file's bytes into a Pipeline in which every field has been checked, or returns an *Error that
// names the file, line and field and says how to fix the problem. Sign and VerifySignature make and
// check the file's detached signature (FILE.sig, a Sigstore bundle over the file's bytes).
//
// # What it must never do
//
// The package is pure: apart from Load reading the file (and Sign drawing an ECDSA signature's
// randomness), it does no I/O, and it never executes anything. It never substitutes params into
// script text: params reach steps only as environment variables (see EnvName), because text
// substitution into scripts is how CI injection happens. It never accepts an ambiguous or unknown
// field: unknown and duplicate keys, anchors and aliases, unusual tags, nulls and extra documents
// are all errors, so that the file means exactly one thing to ssf and to the people who review it.
package pipeline

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// The only apiVersion and kind this package understands.
const (
	APIVersion = "ssf.dev/v1alpha1"
	Kind       = "Pipeline"
)

// Limits on what a pipeline may ask for.
const (
	// DefaultTimeout is a task's timeout when the file gives none.
	DefaultTimeout = 30 * time.Minute
	// MaxTimeout is the longest timeout a task may ask for.
	MaxTimeout = 24 * time.Hour
	// MaxFileSize bounds the file, so a hostile input cannot make the parser use unbounded memory.
	MaxFileSize = 1 << 20
)

// Pipeline is a parsed and validated ssf.yaml.
type Pipeline struct {
	Path          string        // as given to Parse or Load
	Digest        digest.Digest // of the exact file bytes
	Data          []byte        // the exact file bytes, which Digest is of (the provenance records them)
	Name          string        // metadata.name
	Builder       string        // spec.builder.image as written, e.g. "go@sha256:…"
	BuilderName   string        // the part of Builder before '@'
	BuilderDigest digest.Digest // the part after '@'
	BuilderLine   int           // line of spec.builder.image, for errors found later
	Params        []Param       // in file order
	Dependencies  []Dependency  // spec.dependencies, in file order: offered to every task
	Tasks         []Task        // in file order
}

// Param is a value the person starting a build may set; steps see it as the variable EnvName(Name).
type Param struct {
	Name       string
	Default    string
	HasDefault bool           // false means the param is required
	Pattern    *regexp.Regexp // nil when the file gives none; always anchored at both ends
	Line       int
}

// Task is a unit of work run in one fresh container.
type Task struct {
	Name    string
	Needs   []string // tasks whose outputs this task reads
	Timeout time.Duration
	Env     []EnvVar // sorted by Key
	// NpmScripts lets npm run install scripts of the packages in this task (off by default: a package's scripts
	// are its author's code, run at install time).
	NpmScripts bool
	Steps      []Step
	Outputs    []Output // in file order; may be empty (outputs.go)
	Caches     []Cache  // directories kept between builds of this pipeline (caches.go)
	Secrets    []string // names of factory secrets the task gets at /run/secrets/NAME (secrets.go)
	Line       int
}

// EnvVar is one environment variable a task sets for its steps.
type EnvVar struct{ Key, Value string }

// Step is one shell script in a task.
type Step struct {
	Name string
	Run  string
	Line int
}

// Error is a problem in a pipeline file, for people: "FILE:LINE: FIELD: MESSAGE".
type Error struct {
	File  string
	Line  int    // 1-based; 0 when the problem is not at one line
	Field string // e.g. "spec.tasks[1].needs[0]"; empty for problems with the file as a whole
	Msg   string
}

// Error returns "FILE:LINE: FIELD: MESSAGE", leaving out the line and field when they are unknown.
func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += ":" + strconv.Itoa(e.Line)
	}
	if e.Field != "" {
		s += ": " + e.Field
	}
	return s + ": " + e.Msg
}

// Errorf returns an *Error at line and field of p's file, for problems found after parsing
// (for example a builder the factory does not have).
func (p *Pipeline) Errorf(line int, field, format string, args ...any) *Error {
	return &Error{File: p.Path, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Load reads the pipeline file at path and parses it.
func Load(path string) (*Pipeline, error) {
	// Non-blocking: a fifo planted where the pipeline is expected (ssf.yaml in an untrusted checkout) would otherwise
	// block the open for ever; opened so, one with no writer reads as empty and is refused as such. A pipe with a
	// writer (`-f <(...)`) is still read to its end.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("reading pipeline %q: %w", path, err)
	}
	defer f.Close()
	// Read one byte past the limit so that Parse, not a silent truncation, reports an oversized file.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading pipeline %q: %w", path, err)
	}
	return Parse(path, data)
}

// Parse parses and validates the pipeline file data; path is used only in errors and in Pipeline.Path.
// Every error it returns is an *Error, describing the first problem found.
func Parse(path string, data []byte) (*Pipeline, error) {
	p := &Pipeline{Path: path, Digest: digest.FromBytes(data), Data: data}
	d := &decoder{file: path}
	if err := d.parse(data, p); err != nil {
		return nil, err
	}
	return p, nil
}

// parse runs the stages in order; each assumes the ones before it succeeded.
func (d *decoder) parse(data []byte, p *Pipeline) error {
	if len(data) > MaxFileSize {
		return &Error{File: d.file, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)}
	}
	root, err := d.document(data)
	if err != nil {
		return err
	}
	if err := d.plain(root, ""); err != nil {
		return err
	}
	if err := d.pipeline(root, p); err != nil {
		return err
	}
	if err := d.checkNeeds(p); err != nil {
		return err
	}
	return d.checkOutputs(p)
}
