// Package factory is the control plane: it takes the source at an exact revision, schedules a pipeline's tasks
// into sandboxes in dependency order, observes what they produce (hashing the declared outputs itself), and signs
// SLSA provenance of what it observed.
//
// # Stages
//
// [Home.Build] runs named stages, each a function with its inputs and outputs: admit (config, pipeline, params,
// the builder and its name, the key, --out), source ([source.Take]), run and observe (each task in a container of
// the [Runtime], its outputs hashed as it finishes), stage (outputs and logs copied beside --out), attest (the
// statement signed by the [Attestor]), record (the bundle beside the outputs) and publish (one durable rename).
// The interfaces are the factory's own and exist for real alternatives: crun, runsc or Kubernetes Pods for the
// Runtime, a per-task certificate signer for the Attestor. The [Policy] (policy.go) decides at the gates: ssf.build
// once the source is taken, before anything is fetched or run; ssf.deps for each dependency before it is fetched.
//
// With `--signer identity`, the default (identity.go), each task's attestation is signed, right after the task is
// observed, by the task's own short-lived certificate (spiffe://TD/pipeline/<pipeline>/task/<task>), and the
// provenance and SBOMs by the run's; every signature is appended to the factory's transparency log (internal/tlog,
// opened in-process at admission and held until the build ends) and timestamped before its bundle exists. With
// `--signer key` the provenance and SBOMs are signed by the factory's provenance key instead, and no task is.
//
// Every build that gets past admission is recorded in the build history ($SSF_HOME/builds/<id>, history.go) by
// a recorder the stages feed and Build finishes last: build.json, each task's log, and the bundles of a build that
// succeeded. Recording is best effort: a failure to record is a warning, never a failed build.
//
// # What it must never do
//
// It must never mount the factory's state (keys, config, image store) into a task, nor let it reach a task under
// another name (a hard link or a mount point in the source); record in provenance anything a build step reported
// rather than what the control plane observed or set (only the output bytes come from the build; how a task was
// isolated is read back from the runtime spec the control plane wrote); record a builder name the factory never
// gave the pinned digest; follow a symlink out of a task's outputs; sign anything for a failed build (with
// --signer identity a task that succeeded is attested as it ends, so the log may hold its entry when a later task
// fails; that bundle is never written to OUT and no provenance lists it); or leave a
// partial output directory, even after a crash (everything staged is synced before the rename that publishes it);
// let a step write the build history (only the control plane writes it, from its own copies, in a 0700 directory),
// or fail a build because recording it failed. It must never give a secret to a task that did not list it, put a
// secret's value in a task's environment, on a disk, in the runtime spec or the provenance (names only), or let
// one reach a log unredacted (secrets.go); nor hand a control-plane credential (config.yaml credentials) to a
// task. It must never give one pipeline's task cache to another pipeline, a task or a builder (the key holds the
// pipeline's name, file and source, the task, the cache and the builder digest), mount the cache store into a
// task (a task gets a copy on its own disk), read a task's cache other than as a tar stream that follows no link,
// opens no fifo and keeps no setuid bit, or record a cache digest other than that of the bytes the task was given
// (cache.go). It must never make an internal output a subject, an SBOM or a published file (it goes only to the
// tasks that need its task, and into their record of inputs), walk a directory output past MaxOutputEntries or
// sign a statement of more subjects than verifiers accept (outputs.go); nor keep a failed task's files
// (--keep-workspace) otherwise than as a bounded, read-only copy owned by root that holds links as links and no
// fifo, device, setuid or setgid bit (keep.go). It must never let a workload's signing key outlive the one
// statement it signs or leave the process (made in memory, never written, never reachable by a step), write an
// identity bundle before its signature is durably in the log, or hand out one that does not verify against the
// factory's trusted root under its own identity (identity.go). It must never fetch a dependency, run a task or
// sign anything for a build a policy gate denied or could not decide on, nor take a pipeline whose FILE.sig does
// not verify over the bytes it parsed as unsigned (policy.go).
package factory
