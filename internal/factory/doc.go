// Package factory is the control plane: it takes the source at an exact revision, schedules a pipeline's tasks
// into sandboxes in dependency order, observes what they produce (hashing the declared outputs itself), and signs
// SLSA provenance of what it observed.
//
// # What it must never do
//
// It must never mount the factory's state (keys, config, image store) into a task, record in provenance anything
// a build step reported rather than what the control plane observed (only the output bytes come from the build),
// follow a symlink out of a task's outputs, sign anything for a failed build, or leave a partial output directory.
package factory
