package pipeline

import (
	"fmt"
	"strings"
)

// This file holds the checks that look at several tasks at once, and so run after all are read.

// checkNeeds checks every needs entry names another task, once, and that needs form no cycle.
func (d *decoder) checkNeeds(p *Pipeline) error {
	byName := make(map[string]int, len(p.Tasks))
	names := make([]string, len(p.Tasks))
	for i, t := range p.Tasks {
		byName[t.Name] = i
		names[i] = t.Name
	}
	for ti, t := range p.Tasks {
		seen := make(map[string]bool, len(t.Needs))
		for ni, need := range t.Needs {
			n, field := d.tasks[ti].needs[ni], needField(ti, ni)
			_, known := byName[need]
			switch {
			case need == t.Name:
				return d.errAt(n, field, "task %q needs itself: remove this entry", need)
			case !known:
				return d.errAt(n, field, "unknown task %s: known tasks are %s", quote(need), nameList(names, ", "))
			case seen[need]:
				return d.errAt(n, field, "task %q is listed twice: list it once", need)
			}
			seen[need] = true
		}
	}
	return d.checkCycles(p, byName)
}

// checkCycles reports the first cycle a depth-first walk in file order finds, at the needs entry
// that closes it. Every need is known to exist by now.
func (d *decoder) checkCycles(p *Pipeline, byName map[string]int) error {
	const (
		unvisited = iota
		visiting  // on the current path
		finished
	)
	state := make([]int, len(p.Tasks))
	var path []int
	var visit func(ti int) error
	visit = func(ti int) error {
		state[ti] = visiting
		path = append(path, ti)
		for ni, need := range p.Tasks[ti].Needs {
			next := byName[need]
			switch state[next] {
			case visiting:
				return d.cycleError(p, path, next, ti, ni)
			case unvisited:
				if err := visit(next); err != nil {
					return err
				}
			}
		}
		path = path[:len(path)-1]
		state[ti] = finished
		return nil
	}
	for ti := range p.Tasks {
		if state[ti] == unvisited {
			if err := visit(ti); err != nil {
				return err
			}
		}
	}
	return nil
}

// cycleError describes the cycle from task start along path back to start, closed by the needs
// entry ni of task ti.
func (d *decoder) cycleError(p *Pipeline, path []int, start, ti, ni int) error {
	var names []string
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == start {
			for _, t := range path[i:] {
				names = append(names, p.Tasks[t].Name)
			}
			break
		}
	}
	return d.errAt(d.tasks[ti].needs[ni], needField(ti, ni), "needs form a cycle: %s -> %s; remove one of these needs",
		nameList(names, " -> "), p.Tasks[start].Name)
}

// checkOutputs checks that no output is declared twice and none lies inside another, across all tasks (a
// directory output counts as everything under it), so that each output file has exactly one task that produced
// it; that no published output's SBOM bundles would need another's as a directory; and that something is
// published at all.
func (d *decoder) checkOutputs(p *Pipeline) error {
	var tree outputTree
	all := map[string]bool{} // published output files, for the SBOM bundle names
	published := false
	for ti, t := range p.Tasks {
		for oi, out := range t.Outputs {
			if msg := tree.conflict(p, out.Path, ti); msg != "" {
				return d.errAt(d.tasks[ti].outputs[oi], outputField(ti, oi), "%s", msg)
			}
			tree.add(out.Path, ti)
			if out.Published() {
				published = true
				if !out.Dir {
					all[out.Path] = true
				}
				if len(all) > MaxPublishedFiles {
					return d.errAt(d.tasks[ti].outputs[oi], outputField(ti, oi), "more than %d published output files: verifiers (sigstore-go, cosign) accept at most %d subjects in one statement, one of them the OCI artifact; publish an archive, or declare files only later tasks need as internal", MaxPublishedFiles, MaxPublishedFiles+1)
				}
			}
		}
	}
	for ti, t := range p.Tasks {
		for oi, out := range t.Outputs {
			if !out.Published() {
				continue // no SBOM is written for it
			}
			name := out.Path
			if out.Dir {
				name += "/" // its files' SBOMs go under attestations/<dir>/
			}
			if msg := SBOMClash(name, all); msg != "" {
				return d.errAt(d.tasks[ti].outputs[oi], outputField(ti, oi), "%s", msg)
			}
		}
	}
	if !published {
		// Provenance is a statement about outputs: with none, the build would sign a statement about nothing (the
		// empty artifact every such build shares). Tests belong in a task beside one that builds something.
		return &Error{File: d.file, Line: p.Tasks[0].Line, Field: "spec.tasks",
			Msg: "no task declares a published output: a build signs provenance about what it outputs, so at least one task must declare one (outputs: [PATH] for a file, [DIR/] for a directory); internal outputs ({path: P, internal: true}) are not published"}
	}
	return nil
}

func outputField(ti, oi int) string { return index(join(index("spec.tasks", ti), "outputs"), oi) }

// declared is an output path and the index of the task that declared it.
type declared struct {
	path string
	task int
}

// outputTree holds the outputs declared so far, one node per path component, so that comparing an
// output with all earlier ones costs time in proportion to its own length, however hostile the file.
type outputTree struct {
	children map[string]*outputTree
	output   *declared // the output that ends at this node, if any
	below    *declared // the first output declared below this node, if any
}

func (t *outputTree) add(out string, task int) {
	d := &declared{path: out, task: task}
	n := t
	for _, c := range strings.Split(out, "/") {
		if n.below == nil {
			n.below = d
		}
		next := n.children[c]
		if next == nil {
			if n.children == nil {
				n.children = make(map[string]*outputTree)
			}
			next = &outputTree{}
			n.children[c] = next
		}
		n = next
	}
	n.output = d
}

// conflict says how out, declared by task, clashes with an output declared before it, or returns "".
func (t *outputTree) conflict(p *Pipeline, out string, task int) string {
	n := t
	for _, c := range strings.Split(out, "/") {
		if prev := n.output; prev != nil {
			return fmt.Sprintf("output %s is inside output %s of task %q: declare only one of them",
				quote(out), quote(prev.path), p.Tasks[prev.task].Name)
		}
		if n = n.children[c]; n == nil {
			return ""
		}
	}
	switch prev := n.output; {
	case prev != nil && prev.task == task:
		return "duplicate output " + quote(out) + ": list it once"
	case prev != nil:
		return fmt.Sprintf("output %s is also declared by task %q: each output must belong to one task",
			quote(out), p.Tasks[prev.task].Name)
	case n.below != nil:
		return fmt.Sprintf("output %s contains output %s of task %q: declare only one of them",
			quote(out), quote(n.below.path), p.Tasks[n.below.task].Name)
	}
	return ""
}

func needField(ti, ni int) string { return index(join(index("spec.tasks", ti), "needs"), ni) }

// nameList joins names for a message, keeping only the first few so that a hostile file cannot
// flood a terminal.
func nameList(names []string, sep string) string {
	const max = 10
	if len(names) <= max {
		return strings.Join(names, sep)
	}
	return strings.Join(names[:max], sep) + sep + fmt.Sprintf("… (%d more)", len(names)-max)
}
