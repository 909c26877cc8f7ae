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

// checkOutputs checks that no output is declared twice and none lies inside another, across all
// tasks: each output file must have exactly one task that produced it.
func (d *decoder) checkOutputs(p *Pipeline) error {
	var tree outputTree
	for ti, t := range p.Tasks {
		for oi, out := range t.Outputs {
			if msg := tree.conflict(p, out, ti); msg != "" {
				field := index(join(index("spec.tasks", ti), "outputs"), oi)
				return d.errAt(d.tasks[ti].outputs[oi], field, "%s", msg)
			}
			tree.add(out, ti)
		}
	}
	all := map[string]bool{}
	for _, t := range p.Tasks {
		for _, out := range t.Outputs {
			all[out] = true
		}
	}
	for ti, t := range p.Tasks {
		for oi, out := range t.Outputs {
			if msg := sbomClash(out, all); msg != "" {
				field := index(join(index("spec.tasks", ti), "outputs"), oi)
				return d.errAt(d.tasks[ti].outputs[oi], field, "%s", msg)
			}
		}
	}
	return nil
}

// sbomClash says why the files ssf writes for out (attestations/<out>.spdx.sigstore.json and .cdx.sigstore.json,
// beside attestations/provenance.sigstore.json) would need a directory where another of them is a file, or
// returns "". Only out's own directories are looked at, so the cost is its length.
func sbomClash(out string, all map[string]bool) string {
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
