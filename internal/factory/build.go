package factory

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/archive"
	"github.com/ssf-dev/ssf/internal/builder"
	"github.com/ssf-dev/ssf/internal/deps"
	"github.com/ssf-dev/ssf/internal/durable"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sandbox"
	"github.com/ssf-dev/ssf/internal/source"
)

// Version is ssf's version, recorded in provenance as runDetails.builder.version.
var Version = "v0.1.0-dev"

// BuildRequest is one `ssf build`.
type BuildRequest struct {
	Pipeline string   // path of ssf.yaml
	Source   string   // source directory
	Params   []string // "name=value", as given on the command line
	Out      string   // where outputs and attestations go; must not exist or be empty
	Log      io.Writer
	Progress io.Writer // a terminal to show download progress on; nil shows none
	NoCache  bool      // tasks get empty caches, not kept (cache.go)
	// KeepWorkspace keeps a failed task's workspace, outputs and tmp, read-only, in the build's history entry
	// (keep.go).
	KeepWorkspace bool
	// Signer is SignerIdentity (a certificate per task and run, each signature logged and timestamped:
	// identity.go; "" too, the default) or SignerKey (the factory's provenance key).
	Signer string
	// Policy is what the gates apply (policy.go), loaded once by the caller; nil applies the home's.
	Policy *Policy
}

// Output is one built file: the file as it goes into the OCI artifact (path relative to Out, digest, size) and
// the task that made it.
type Output struct {
	oci.File
	Task     string
	Internal bool // passed to the tasks that need Task only: not a subject, not in OUT, no SBOM (outputs.go)
}

// BuildResult describes a successful build.
type BuildResult struct {
	Out          string
	Outputs      []Output
	Bundle       string // path of the provenance bundle
	InvocationID string
	Source       provenance.ResourceDescriptor
	SourceStats  source.Stats // files, bytes, and how the source differs from its git commit
	Builder      string
	Duration     time.Duration

	// TaskAttestations are each task's bundle and who signed it (--signer identity; identity.go), in task order.
	TaskAttestations []TaskAttestation
	// SignedBy and Issuer are, for an identity build, the run's SPIFFE ID that signed the provenance and SBOMs and
	// the factory's issuer: what a verifier gives as --certificate-identity and --certificate-oidc-issuer. Empty
	// for a key build.
	SignedBy, Issuer string
}

// BundlePath is where a build's provenance bundle lives, relative to its output directory.
const BundlePath = "attestations/provenance.sigstore.json"

// TaskError is a build that failed in a task: a step exited non-zero, the task timed out, or an output was missing
// or not a regular file.
type TaskError struct {
	Task, Step string
	ExitCode   int // -1 when the step did not exit by itself
	Reason     string
	Hint       string // what to do about it, for people; empty when there is nothing to add
	Kept       string // where the task's directories were kept (--keep-workspace); "" when they were not
}

func (e *TaskError) Error() string {
	if e.Step == "" {
		return fmt.Sprintf("task %q failed: %s", e.Task, e.Reason)
	}
	return fmt.Sprintf("task %q failed in step %q: %s", e.Task, e.Step, e.Reason)
}

// InputError marks a problem with what the caller asked for (a missing source, an occupied output directory),
// as opposed to a build that ran and failed.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErrorf(format string, args ...any) error {
	return &InputError{Err: fmt.Errorf(format, args...)}
}

// Build runs a pipeline hermetically and writes its outputs and signed provenance to req.Out. Nothing is signed
// and nothing is left in req.Out unless every task succeeded.
//
// It runs the control plane's stages in order, each a function with its inputs and outputs:
//
//	admit    the request: config, pipeline, params, builder, signing key, --out     -> admission
//	source   the source at an exact revision, in a work directory of the build's own -> source.Snapshot
//	deps     the declared dependencies, fetched and checked against their pins      -> ingested
//	run      every task in its own container, in dependency order                 -> build (per task:
//	observe  each task's declared outputs, hashed by the control plane              ... outputs, logs, isolation)
//	stage    the outputs and logs copied into a staging directory beside --out      -> provenance.Build
//	sbom     an SPDX and a CycloneDX SBOM of each output, signed, listed in the statement's byproducts
//	attest   the statement, signed by the Attestor                                  -> bundle
//	record   the bundle beside the outputs (later: the transparency log, the index)
//	publish  the staging directory renamed to --out, durably
func (h Home) Build(ctx context.Context, req BuildRequest) (_ *BuildResult, err error) {
	started := time.Now().UTC()
	logw := req.Log
	if logw == nil {
		logw = io.Discard
	}
	log := &lineLog{w: logw}

	adm, err := h.admit(ctx, req)
	if err != nil {
		return nil, err
	}
	defer adm.identity.close(context.WithoutCancel(ctx)) // the transparency log and its turn (identity.go)
	adm.redacts = compileRedaction(adm.secrets)          // once: every step's output, the [ssf] lines, the error (secrets.go)
	log.redact = adm.redacts.bytes                       // before anything runs
	h.sweepLeftovers(ctx, adm.runtime, log)
	ws, err := h.openWork(adm)
	if err != nil {
		return nil, err
	}
	defer ws.close()
	// A --source holding the home, --out or the work directory is the caller's mistake, found before the build is
	// recorded: the history holds builds, not usage errors.
	if err := separate(req.Source, []namedPath{
		{"the factory home (SSF_HOME), which holds the signing key", h.Dir},
		{"--out", adm.out},
		{"the temporary directory (TMPDIR)", ws.work},
	}); err != nil {
		return nil, err
	}
	// The history entry (history.go) is finished after every other stage, before the work directory and its logs
	// are gone; recording is the control plane's, and failing to record changes no build's outcome.
	ws.rec = h.newRecorder(ws.invocation, req.Pipeline, started)
	ws.rec.admitted(adm)
	defer func() {
		if rerr := ws.rec.finish(ctx, ws.work, adm.out, err); rerr != nil {
			log.printf("warning: the build's history in %s is incomplete: %v", ws.rec.dir, rerr)
		} else if err != nil {
			log.printf("build %s recorded: `ssf builds show %s` and `ssf logs %s` tell what happened", ws.invocation, ws.invocation[:8], ws.invocation[:8])
		}
	}()
	// An error can quote what a step made (an output's file name, which a step given a secret can choose): it is
	// redacted of the build's secret values before the history above records it and the caller prints it. Deferred
	// after the recording, so it runs before it.
	defer func() { err = redactError(adm.redacts, err) }()
	src, err := h.source(ctx, req.Source, adm, ws, log)
	if err != nil {
		return nil, err
	}
	ws.rec.sourceStats(src.Stats)
	ws.rec.source(src.Descriptor().URI, src.Descriptor().Digest)
	if err := h.admitBuild(ctx, adm, src, log); err != nil { // the ssf.build gate (policy.go)
		log.printf("build denied: nothing was fetched, run or signed, and %s was left as it was", req.Out)
		return nil, err
	}
	in, err := h.dependencies(ctx, adm, ws, src, log)
	if err != nil {
		log.printf("build failed: nothing was signed and %s was left as it was", req.Out)
		return nil, err
	}
	// The uid is leased until the build ends. Its work directory, which holds files owned by that uid, is removed
	// just after the release (the defers run in reverse); it is root's and 0700 (os.MkdirTemp), so a build that
	// leases the same uid meanwhile cannot reach those files.
	uid, err := h.takeUID(adm.cfg)
	if err != nil {
		return nil, err
	}
	defer uid.release()
	uid.notify = log.printf // a task waiting for a host-wide slot says so
	b, err := h.run(ctx, adm, ws, src, in, uid, log)
	if err != nil {
		log.printf("build failed: nothing was signed and %s was left as it was", req.Out)
		return nil, err
	}
	defer b.caches.wait() // caches still being stored while the build signs; before the uid and work directory go (cache.go)
	stmt, res, err := stage(ctx, b, adm, ws, src)
	if err != nil {
		return nil, err
	}
	stmt.StartedOn, stmt.FinishedOn = started, time.Now().UTC()
	// SBOMs first: the provenance lists their bundles as byproducts, so none can be dropped or swapped unseen.
	if res.TaskAttestations, err = recordTaskAttestations(b, ws.staging, adm.out, &stmt); err != nil { // identity.go
		return nil, err
	}
	if err := attestSBOMs(ctx, adm.attestor, b, ws, res, &stmt); err != nil {
		return nil, err
	}
	bundle, err := attest(ctx, adm.attestor, stmt)
	if err != nil {
		return nil, err
	}
	if err := record(ws.staging, bundle); err != nil {
		return nil, err
	}
	log.printf("signed provenance and SBOMs for %d outputs", len(res.Outputs))
	if err := publishDir(ws.staging, adm.out); err != nil {
		return nil, err
	}
	res.Duration = time.Since(started)
	return res, nil
}

// admission is a build request that passed every check that needs no work done: what the rest of the build runs
// with.
type admission struct {
	req      BuildRequest
	cfg      Config
	p        *pipeline.Pipeline
	params   map[string]string
	images   *builder.Store
	img      builder.Image
	attestor Attestor
	runtime  Runtime
	out      string            // absolute
	secrets  map[string][]byte // the values of the secrets the tasks list, by name (secrets.go)
	redacts  *redaction        // of those values, compiled once (secrets.go); nil when there are none
	identity *identity         // --signer identity: signs each task and the run (identity.go); nil signs with the key
	policy   *Policy           // the gates' policy (policy.go)
	signers  []string          // fingerprints of the keys whose signature over the pipeline file verified (policy.go)
}

// admit checks a build request: the factory's config, the pipeline and its params, the builder (in the factory,
// under a name the factory gave it), the signing key, and --out. Every refusal is bad input, named where it is.
func (h Home) admit(ctx context.Context, req BuildRequest) (*admission, error) {
	cfg, err := h.Config()
	if err != nil {
		return nil, err
	}
	if err := h.checkCredentials(cfg); err != nil { // credentials.go
		return nil, err
	}
	p, err := pipeline.Load(req.Pipeline)
	if err != nil {
		var perr *pipeline.Error
		if !errors.As(err, &perr) {
			err = &InputError{Err: err} // an unreadable file is the caller's to fix too
		}
		return nil, err
	}
	params, err := p.ResolveParams(req.Params)
	if err != nil {
		return nil, paramErrorAt(p, err)
	}
	signers, err := pipelineSigners(p) // FILE.sig, over the bytes parsed (policy.go)
	if err != nil {
		return nil, err
	}
	pol, err := h.policyFor(ctx, req)
	if err != nil {
		return nil, err
	}
	images, err := h.Images()
	if err != nil {
		return nil, err
	}
	img, err := images.Lookup(p.BuilderDigest)
	if errors.Is(err, builder.ErrNotFound) {
		return nil, p.Errorf(p.BuilderLine, "spec.builder.image",
			"builder %s is not in the factory: import it with `ssf builder import DIR --name NAME` (`ssf builder list` shows what is there)", p.Builder)
	} else if err != nil {
		return nil, err
	}
	if err := checkBuilderName(p, images); err != nil {
		return nil, err
	}
	secrets, err := h.buildSecrets(p) // a secret that is not set fails the build before anything runs
	if err != nil {
		return nil, err
	}
	// Outputs are a step's bytes: under the factory home they could pose as its state (a dependency cache entry
	// with its checked-digest record, a builder, a key). Checked before anything is created.
	if abs, err := filepath.Abs(req.Out); err == nil && req.Out != "" && pathWithin(realPath(abs), realPath(h.Dir)) {
		return nil, inputErrorf("--out %q is inside the factory home %s: build outputs must never be written among the factory's own state; choose a directory outside it", req.Out, h.Dir)
	}
	out, err := prepareOut(req.Out)
	if err != nil {
		return nil, err
	}
	rc, err := sandbox.NewRunc(cfg.Runtime, h.runcStateDir())
	if err != nil {
		return nil, err
	}
	attestor, ident, err := h.chooseSigner(ctx, req, cfg) // last: an identity holds the log (identity.go)
	if err != nil {
		return nil, err
	}
	if err := ident.admitsPipeline(p.Name); err != nil { // a joined node's scope (identity_remote.go)
		ident.close(ctx)
		return nil, err
	}
	return &admission{req: req, cfg: cfg, p: p, params: params, images: images, img: img,
		attestor: attestor, runtime: runc{rc}, out: out, secrets: secrets, identity: ident, policy: pol, signers: signers}, nil
}

// workspace is a build's own directories and its run record, which lets a later build clean up after this one if
// it is killed outright.
type workspace struct {
	invocation string
	work       string // temporary directory: the source snapshot, task directories, verified outputs, logs
	staging    string // beside --out; "" until the source is taken
	run        *runLock
	rec        *recorder // the build's history entry
}

// openWork creates the build's work directory and its locked run record.
func (h Home) openWork(adm *admission) (*workspace, error) {
	ws := &workspace{invocation: newInvocationID()}
	var err error
	if ws.work, err = os.MkdirTemp("", "ssf-build-"); err != nil {
		return nil, err
	}
	if ws.run, err = h.lockRun(runRecord{Invocation: ws.invocation, Work: ws.work}); err != nil {
		os.RemoveAll(ws.work)
		return nil, fmt.Errorf("recording the build in %s: %w", h.runsDir(), err)
	}
	return ws, nil
}

// close removes the build's directories (a published staging directory is gone already), then its record.
func (ws *workspace) close() {
	if ws.staging != "" {
		os.RemoveAll(ws.staging)
	}
	os.RemoveAll(ws.work)
	ws.run.release() // last: after the directories are gone
}

// source takes the source (refusing one that holds the factory home, --out or the work directory), and only then
// creates the staging directory, so that a staging directory can never become part of a source.
func (h Home) source(ctx context.Context, dir string, adm *admission, ws *workspace, log *lineLog) (*source.Snapshot, error) {
	src, err := source.Take(ctx, dir, source.Protected{Home: h.Dir, Key: h.KeyPath()}, filepath.Join(ws.work, "source.tar"),
		// Every task gets a whole copy on a disk of maxDiskBytes: a larger source cannot build, and its snapshot (a
		// sparse file counts in full) must not fill TMPDIR first.
		adm.cfg.MaxDiskBytes)
	if err != nil {
		if ie := (*source.InputError)(nil); errors.As(err, &ie) {
			return nil, &InputError{Err: err}
		}
		return nil, err
	}
	staging, err := os.MkdirTemp(filepath.Dir(adm.out), "."+filepath.Base(adm.out)+".partial-")
	if err != nil {
		return nil, fmt.Errorf("creating a staging directory beside %q: %w", adm.out, err)
	}
	ws.staging = staging
	if err := ws.run.update(func(r *runRecord) { r.Staging = staging }); err != nil {
		return nil, err
	}
	desc := src.Descriptor()
	log.printf("%s", src.Summary()) // e.g. "source: 142 files, 1.2 MB, commit 3f2da36 (clean)"
	log.printf("source %s (%s)", desc.URI, desc.Digest)
	if src.GitMismatch != "" {
		log.printf("source not recorded by git commit: %s", src.GitMismatch)
	}
	for _, line := range src.LeftOut {
		log.printf("%s", line)
	}
	return src, nil
}

// run unpacks the builder and runs every task as the build's leased uid (with its cgroup and limits); each task's
// outputs are observed (hashed by the control plane) as it finishes.
func (h Home) run(ctx context.Context, adm *admission, ws *workspace, src *source.Snapshot, in *ingested, uid *taskUID, log *lineLog) (*build, error) {
	log.printf("builder %s", adm.p.Builder)
	rootfs, err := adm.images.Rootfs(ctx, adm.img.Digest, h.rootfsCacheDir())
	if err != nil {
		return nil, fmt.Errorf("unpacking builder %s: %w", adm.p.Builder, err)
	}
	b := &build{
		p: adm.p, params: adm.params, src: src, deps: in, rootfs: rootfs, runtime: adm.runtime, work: ws.work,
		invocation: ws.invocation, lease: uid, log: log, maxOutput: adm.cfg.MaxOutputBytes, rec: ws.rec,
		verified: map[string][]Output{}, logs: map[string]string{},
		runtimeName: adm.cfg.Runtime, isolation: map[string]provenance.TaskIsolation{}, secrets: adm.secrets,
		redacts: adm.redacts, identity: adm.identity.forBuild(adm, ws.invocation, src),
	}
	b.caches = h.newCaches(adm, rootfs, ws.invocation, uid.id, log)
	if adm.req.KeepWorkspace && ws.rec != nil {
		b.keepDir = filepath.Join(ws.rec.dir, "workspaces") // keep.go
	}
	if err := b.run(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// stage copies the observed outputs and the task logs into the staging directory and describes the build for the
// provenance: every field but the times, which Build sets.
func stage(ctx context.Context, b *build, adm *admission, ws *workspace, src *source.Snapshot) (provenance.Build, *BuildResult, error) {
	p, req := adm.p, adm.req
	res := &BuildResult{
		Out: adm.out, InvocationID: b.invocation, Source: src.Descriptor(), SourceStats: src.Stats,
		Builder: p.Builder, Bundle: filepath.Join(adm.out, BundlePath),
	}
	if b.identity != nil {
		res.SignedBy, res.Issuer = b.identity.runID(), b.identity.issuer
	}
	stmt := provenance.Build{
		BuilderID:      adm.cfg.BuilderID,
		BuilderVersion: map[string]string{"ssf": Version},
		InvocationID:   b.invocation,
		PipelineName:   p.Name,
		PipelinePath:   req.Pipeline,
		PipelineDigest: p.Digest,
		// The file itself, from the bytes that were parsed (not read again), so a verifier sees what ran.
		PipelineContent: p.Data,
		PipelineURI:     fileURI(req.Pipeline),
		Params:          adm.params,
		SourceURI:       res.Source.URI,
		Internal: map[string]string{
			"runtime": adm.runtime.Version(), "uid": fmt.Sprint(b.lease.id), "network": "none",
			"seccomp": "true", // sandbox.Start refuses to run without it
		},
		Tasks:  b.isolation,
		Policy: adm.policy.Ref(), // policy.go
		Dependencies: []provenance.ResourceDescriptor{res.Source, {
			Name:      "builder",
			URI:       "oci:" + res.Builder,
			MediaType: ocispec.MediaTypeImageManifest,
			Digest:    provenance.DigestSet(adm.img.Digest),
		}},
		Fetched: append(b.deps.descriptors(), b.caches.descriptors(p.Order())...), // caches: cache.go
	}
	var files []oci.File
	if err := checkSBOMNames(b.published()); err != nil {
		return stmt, nil, err
	}
	for _, t := range p.Order() {
		for _, o := range published(b.verified[t.Name]) {
			// Copied from the control plane's own copy; the digest is checked again so a fault between the two
			// copies cannot put bytes in OUT that the provenance does not describe.
			digest, _, err := copyFile(filepath.Join(ws.work, "verified", t.Name, o.Path), filepath.Join(ws.staging, o.Path))
			if err != nil {
				return stmt, nil, err
			}
			if digest != o.Digest {
				return stmt, nil, fmt.Errorf("output %q changed while being copied to %q", o.Path, adm.out)
			}
			res.Outputs = append(res.Outputs, o)
			stmt.Subjects = append(stmt.Subjects, provenance.Subject{Name: o.Path, Digest: o.Digest})
			files = append(files, o.File)
		}
		logName := "attestations/logs/" + t.Name + ".log"
		digest, _, err := copyFile(b.logs[t.Name], filepath.Join(ws.staging, logName))
		if err != nil {
			return stmt, nil, err
		}
		stmt.Byproducts = append(stmt.Byproducts, provenance.ResourceDescriptor{
			Name: logName, MediaType: "text/plain; charset=utf-8", Digest: provenance.DigestSet(digest),
		})
	}
	// The manifests a publish will push are pure functions of the outputs, so their digests are subjects too:
	// cosign and ssf verify a registry reference by its manifest digest, and publish never signs anything.
	ociSubjects, err := oci.BuildSubjects(ctx, ws.staging, files)
	if err != nil {
		return stmt, nil, fmt.Errorf("computing the OCI artifact of the outputs: %w", err)
	}
	for _, s := range ociSubjects {
		stmt.Subjects = append(stmt.Subjects, provenance.Subject{Name: s.Name, Digest: s.Digest})
	}
	return stmt, res, checkSubjectCount(len(res.Outputs), len(stmt.Subjects)) // outputs.go
}

// attest writes the provenance statement and has the attestor sign it.
func attest(ctx context.Context, attestor Attestor, stmt provenance.Build) ([]byte, error) {
	statement, err := provenance.Statement(stmt)
	if err != nil {
		return nil, fmt.Errorf("writing provenance: %w", err)
	}
	bundle, err := attestor.Statement(ctx, statement)
	if err != nil {
		return nil, fmt.Errorf("signing provenance: %w", err)
	}
	return bundle, checkProvenanceSize(bundle) // outputs.go
}

// record puts the signed bundle beside the staged outputs. (The transparency log and the metadata index will be
// written here too.)
func record(staging string, bundle []byte) error {
	p := filepath.Join(staging, BundlePath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, bundle, 0o644) // synced with the whole tree by publishDir
}

// checkBuilderName refuses a builder name the factory never gave the pinned digest: the name is recorded in signed
// provenance, so `distroless-official@sha256:X` for an image imported as `bb` would be a claim the control plane
// did not make. Every name a digest was ever imported under stays valid, so a pipeline pinned to an image whose
// name has since moved on to a newer import keeps building.
func checkBuilderName(p *pipeline.Pipeline, images *builder.Store) error {
	names, err := images.NamesOf(p.BuilderDigest)
	if err != nil {
		return err
	}
	if slices.Contains(names, p.BuilderName) {
		return nil
	}
	if len(names) == 0 {
		return p.Errorf(p.BuilderLine, "spec.builder.image",
			"builder %s: the factory has no name recorded for %s; import the image again with `ssf builder import DIR --name %s`",
			p.Builder, p.BuilderDigest, p.BuilderName)
	}
	refs := make([]string, len(names))
	for i, n := range names {
		refs[i] = n + "@" + string(p.BuilderDigest)
	}
	return p.Errorf(p.BuilderLine, "spec.builder.image",
		"builder name %q is not a name the factory gave %s, which it imported as %s: write %s (`ssf builder list` shows names and digests)",
		p.BuilderName, p.BuilderDigest, strings.Join(names, ", "), refs[0])
}

// prepareOut checks that out can receive a build: it must not exist or be an empty directory.
func prepareOut(out string) (string, error) {
	if out == "" {
		return "", inputErrorf("--out is required: name a directory for the outputs and attestations")
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", inputErrorf("--out %q: %w", out, err)
	case len(entries) > 0:
		return "", inputErrorf("--out %q is not empty: choose a new directory (ssf never overwrites earlier outputs)", out)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return "", err
	}
	return abs, nil
}

// realPath is p with every symlink of its longest existing prefix resolved (p itself may not exist yet).
func realPath(p string) string {
	var rest []string
	for cur := filepath.Clean(p); ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(append([]string{r}, rest...)...)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return filepath.Clean(p)
		}
		rest = append([]string{filepath.Base(cur)}, rest...)
		cur = parent
	}
}

// pathWithin says whether p is dir or beneath it (both clean and absolute).
func pathWithin(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// paramErrorAt places a --param problem in the pipeline file: at the param's declaration when it has one, so the
// message reads FILE:LINE: spec.params[i]: ….
func paramErrorAt(p *pipeline.Pipeline, err error) error {
	var pe *pipeline.ParamError
	if !errors.As(err, &pe) {
		return err
	}
	for i, d := range p.Params {
		if d.Name == pe.Param {
			return p.Errorf(d.Line, fmt.Sprintf("spec.params[%d] (--param %s)", i, d.Name), "%s", pe.Msg)
		}
	}
	return p.Errorf(0, "--param", "%s", pe.Msg)
}

// namedPath is a path and what it is, for messages.
type namedPath struct{ what, path string }

// separate refuses a source directory that contains any of the given paths: the build would receive a copy of
// them (the signing key, earlier outputs, its own work files).
// The first path found in the source is the one reported, so the most serious comes first.
func separate(source string, paths []namedPath) error {
	src, err := filepath.Abs(source)
	if err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(src); err == nil {
		src = real
	}
	for _, np := range paths {
		what, p := np.what, np.path
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		} else if real, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
			abs = filepath.Join(real, filepath.Base(abs)) // --out need not exist yet
		}
		if rel, err := filepath.Rel(src, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			if what == "--out" && rel != "." {
				// The usual case with the default --source (.) and --out out: the fix is to move OUT, not the source.
				return inputErrorf("--source %q contains --out (%s): the next build would take these outputs as source; choose an --out outside the source, such as %s",
					source, p, filepath.Join(filepath.Dir(src), filepath.Base(src)+"-"+filepath.Base(abs)))
			}
			return inputErrorf("--source %q contains %s (%s): every task would get a copy of it; choose a source directory that does not contain it", source, what, p)
		}
	}
	return nil
}

// publishDir moves the finished staging directory to out in one rename, so out holds a whole build or nothing:
// every output, log and the bundle is synced, then their directories, before the rename, and the parent after it,
// so after a crash out is absent or complete (see durable.PublishDir).
func publishDir(staging, out string) error {
	if err := os.Chmod(staging, 0o755); err != nil {
		return err
	}
	if err := durable.PublishDir(staging, out); err != nil {
		return fmt.Errorf("publishing the outputs in %q: %w", out, err)
	}
	return nil
}

// build is the state of one running build.
type build struct {
	p          *pipeline.Pipeline
	params     map[string]string
	src        *source.Snapshot
	deps       *ingested
	rootfs     string
	runtime    Runtime
	work       string
	invocation string
	lease      *taskUID // the host uid and gid the steps run as (lease.id), with the build's cgroup and limits (uid.go)
	log        *lineLog
	maxOutput  int64     // bytes of outputs one task may produce
	rec        *recorder // the build's history entry; nil in tests that run tasks alone

	mu       sync.Mutex
	verified map[string][]Output // task -> its outputs, hashed by us
	logs     map[string]string   // task -> path of its log

	runtimeName string                              // the OCI runtime as configured
	isolation   map[string]provenance.TaskIsolation // task -> how it was isolated, from its runtime spec
	caches      *caches                             // the tasks' caches (cache.go); nil in tests that run tasks alone
	secrets     map[string][]byte                   // secret values by name: mounted for the tasks that list them, redacted from every log
	redacts     *redaction                          // of those values, compiled once (secrets.go)
	keepDir     string                              // where a failed task's directories are kept (keep.go); "" keeps none

	identity    *identity             // signs each task's attestation when it ends (identity.go); nil with --signer key
	steps       map[string][]taskStep // task -> its steps as they ran, for its attestation (identity builds only)
	taskBundles map[string][]byte     // task -> its signed attestation, written to OUT with the rest (identity.go)
}

// run executes the tasks in dependency order, each as soon as the tasks it needs are done, and stops everything
// at the first failure.
func (b *build) run(ctx context.Context) (err error) {
	// Caches are stored in the build's context, not the run's: a run that succeeded leaves them to Build, which
	// waits for them after signing; one that failed cancels them and waits here, before its disks go (cache.go).
	b.caches.storeIn(ctx)
	defer func() {
		if err != nil {
			b.caches.abandon()
		}
	}()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	tasks := b.p.Order()
	done := make(map[string]chan struct{}, len(tasks))
	for _, t := range tasks {
		done[t.Name] = make(chan struct{})
	}
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	for _, t := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, n := range t.Needs {
				select {
				case <-done[n]:
				case <-ctx.Done():
					return
				}
			}
			if ctx.Err() != nil {
				return
			}
			started := time.Now()
			err := b.runTask(ctx, t)
			b.rec.taskDone(t.Name, time.Since(started), err)
			if err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
				cancel(err)
				return
			}
			close(done[t.Name])
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return context.Cause(ctx) // cancelled from outside (Ctrl-C)
}

// runTask runs one task in a fresh container and observes it: prepare its directories, start its container, run
// its steps, read back how it was isolated, stop it, and hash its declared outputs.
func (b *build) runTask(ctx context.Context, t *pipeline.Task) (err error) {
	dir := filepath.Join(b.work, "tasks", t.Name)
	slot, err := b.lease.startTask(ctx, dir) // a host-wide task slot, and the task's size-limited disk mounted on dir
	if err != nil {
		return fmt.Errorf("task %q: %w", t.Name, err)
	}
	release := slot.release // or handed to the cache store, which needs the disk a little longer (cache.go)
	defer func() {
		if release != nil {
			release()
		}
	}()
	// Runs before the disk is released and after the container is gone (deferred below): --keep-workspace.
	defer func() { err = b.keepOnFailure(ctx, t.Name, dir, err) }()
	mounts, outDir, err := b.prepareTask(ctx, t, dir)
	if err != nil {
		return err
	}
	secretMounts, unmountSecrets, err := b.mountSecrets(t, dir) // a tmpfs of this task's own (secrets.go)
	if err != nil {
		return err
	}
	defer unmountSecrets()
	mounts = append(mounts, secretMounts...)
	logPath := filepath.Join(b.work, "logs", t.Name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return err
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()

	taskCtx, cancel := context.WithTimeoutCause(ctx, t.Timeout, fmt.Errorf("task %q timed out after %s", t.Name, t.Timeout))
	defer cancel()
	ctr, err := b.runtime.Start(taskCtx, filepath.Join(dir, "bundle"), sandbox.Config{
		ID:       containerID(b.invocation, t.Name),
		Rootfs:   b.rootfs,
		Mounts:   mounts,
		Env:      b.taskEnv(t),
		Cwd:      "/workspace",
		UID:      uint32(b.lease.id),
		GID:      uint32(b.lease.id),
		Hostname: "ssf",
		Memory:   slot.memory, Pids: slot.pids, CgroupParent: slot.cgroup, Disk: slot.disk,
	})
	if err != nil {
		return fmt.Errorf("task %q: %w", t.Name, err)
	}
	defer ctr.Close()
	taskStart := time.Now()
	b.log.printf("task %s started (container %s, timeout %s)", t.Name, ctr.ID(), t.Timeout)
	if err := b.runSteps(taskCtx, ctr, t, logFile); err != nil {
		return err
	}
	// The runtime spec the runtime applied (to the last step; steps differ only in their command), read back from
	// the bundle directory, which no step can reach, for the provenance.
	iso, err := isolationOf(filepath.Join(dir, "bundle"))
	if err != nil {
		return fmt.Errorf("task %q: %w", t.Name, err)
	}
	iso = withSettings(iso, b.runtimeName, b.runtime.Version(), b.lease.limits.Disk, t.Timeout)
	// Stop everything in the container before looking at its outputs: nothing may change them while we hash.
	if err := ctr.Close(); err != nil {
		return fmt.Errorf("stopping task %q: %w", t.Name, err)
	}
	outputs, err := collectOutputs(ctx, t, outDir, filepath.Join(b.work, "verified", t.Name), b.maxOutput)
	if err != nil {
		return err
	}
	if err := logFile.Close(); err != nil {
		return err
	}
	b.log.printf("task %s finished in %.1fs; hashed %d output(s)", t.Name, time.Since(taskStart).Seconds(), len(outputs))
	b.mu.Lock()
	iso.Inputs = b.inputsOf(t) // internal outputs are recorded only here (outputs.go)
	b.verified[t.Name] = outputs
	b.logs[t.Name] = logPath
	iso.Secrets = t.Secrets // names only
	b.isolation[t.Name] = iso
	b.mu.Unlock()
	if err := b.attestTask(ctx, t.Name, taskStart, iso, outputs); err != nil { // its own identity (identity.go)
		return err
	}
	// The task succeeded and its container is gone: nothing changes the cache copies while they are read. They are
	// stored in the background, so the tasks that need this one start meanwhile (cache.go).
	if b.caches.keepAfter(ctx, t, dir, release) {
		release = nil
	}
	return nil
}

// prepareTask fills the task's directory dir: a fresh copy of the source as its workspace, empty outputs and tmp
// owned by the build's uid, and the verified outputs of the tasks it needs, read-only. It returns the container's
// mounts and the outputs directory.
func (b *build) prepareTask(ctx context.Context, t *pipeline.Task, dir string) ([]sandbox.Mount, string, error) {
	ws, outDir, tmp, inputs := filepath.Join(dir, "workspace"), filepath.Join(dir, "outputs"), filepath.Join(dir, "tmp"), filepath.Join(dir, "inputs")
	for _, d := range []string{ws, outDir, tmp, inputs, filepath.Join(dir, "bundle")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, "", err
		}
	}
	snap, err := os.Open(b.src.Path)
	if err != nil {
		return nil, "", err
	}
	err = archive.Extract(ctx, snap, ws, archive.ExtractOptions{Chown: true, UID: b.lease.id, GID: b.lease.id})
	snap.Close()
	if err != nil {
		return nil, "", fmt.Errorf("copying the source into task %q: %w", t.Name, err)
	}
	for _, d := range []string{ws, outDir, tmp} {
		if err := os.Chown(d, b.lease.id, b.lease.id); err != nil {
			return nil, "", err
		}
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, "", err
	}
	// npm writes to its cache (the index whenever it reads it; npm 9 the tarballs too): the task gets a writable
	// copy of the cache in its own /tmp, the tree staying read-only.
	if b.deps.kinds[deps.Npm] {
		if err := deps.PrepareNpmCache(b.deps.tree, tmp, b.lease.id, b.lease.id); err != nil {
			return nil, "", fmt.Errorf("preparing task %q: %w", t.Name, err)
		}
	}
	mounts := []sandbox.Mount{
		{Source: ws, Destination: "/workspace"},
		{Source: outDir, Destination: "/outputs"},
		{Source: tmp, Destination: "/tmp"},
		{Source: inputs, Destination: "/inputs", ReadOnly: true},
	}
	for _, n := range t.Needs {
		if err := os.Mkdir(filepath.Join(inputs, n), 0o755); err != nil {
			return nil, "", err
		}
		mounts = append(mounts, sandbox.Mount{Source: filepath.Join(b.work, "verified", n), Destination: "/inputs/" + n, ReadOnly: true})
	}
	if b.deps.tree != "" {
		mounts = append(mounts, sandbox.Mount{Source: b.deps.tree, Destination: deps.MountPoint, ReadOnly: true})
	}
	cacheMounts, err := b.caches.prepare(ctx, t, dir, tmp) // copies on the task's disk (cache.go)
	if err != nil {
		return nil, "", err
	}
	mounts = append(mounts, cacheMounts...)
	return mounts, outDir, nil
}

// taskEnv is a task's whole environment: nothing is inherited from the host, and params arrive as data.
func (b *build) taskEnv(t *pipeline.Task) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/tmp", "SSF_OUTPUTS=/outputs", "SSF_TASK=" + t.Name, "SSF_PIPELINE=" + b.p.Name,
	}
	for _, kv := range b.deps.env(t) {
		k, v, _ := strings.Cut(kv, "=")
		env = setEnv(env, k, v)
	}
	for _, kv := range t.Env {
		env = setEnv(env, kv.Key, kv.Value)
	}
	names := make([]string, 0, len(b.params))
	for n := range b.params {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		env = setEnv(env, pipeline.EnvName(n), b.params[n])
	}
	return env
}

// runSteps runs a task's steps one after another in its container, logging each line to the terminal and to
// logFile, and stops at the first that fails.
func (b *build) runSteps(taskCtx context.Context, ctr Container, t *pipeline.Task, logFile io.Writer) error {
	var logged int64 // bytes of this task's log, over all its steps
	for _, s := range t.Steps {
		w := b.log.prefixed(fmt.Sprintf("[%s/%s] ", t.Name, s.Name), logFile, &logged)
		logStart, stepStart := logged, time.Now()
		out := b.redacts.writer(w) // before the output is split into lines (secrets.go)
		code, err := ctr.Exec(taskCtx, []string{"/bin/sh", "-e", "-c", s.Run}, out)
		flushRedactor(out)
		w.Flush()
		if err != nil {
			code = -1
		}
		b.rec.step(t.Name, s.Name, code, time.Since(stepStart), logStart, logged)
		b.stepDone(t.Name, s.Name, s.Run, code, stepStart) // identity.go
		switch {
		case errors.Is(err, sandbox.ErrKilled) && errors.Is(taskCtx.Err(), context.DeadlineExceeded):
			return &TaskError{Task: t.Name, Step: s.Name, ExitCode: -1, Reason: fmt.Sprintf("timed out after %s (the task's timeout); the container was killed", t.Timeout)}
		case err != nil:
			return fmt.Errorf("task %q, step %q: %w", t.Name, s.Name, err)
		case code != 0:
			te := &TaskError{Task: t.Name, Step: s.Name, ExitCode: code, Reason: fmt.Sprintf("exit code %d", code)}
			if w.networkError {
				te.Hint = networkHint
			}
			return te
		}
	}
	return nil
}

// ctxReader stops a long copy when the build is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func execBit(f *os.File) os.FileMode {
	if fi, err := f.Stat(); err == nil && fi.Mode()&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// copyHashed copies r to a new file at path with the given mode and returns the sha256 and size of the bytes
// written.
func copyHashed(r io.Reader, path string, mode os.FileMode) (digest.Digest, int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", 0, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		f.Close()
		return "", 0, err
	}
	if err := f.Close(); err != nil {
		return "", 0, err
	}
	return digest.NewDigest(digest.SHA256, h), n, nil
}

// copyFile copies a file the control plane wrote itself, keeping its executable bit, and returns the sha256 and
// size of the copy.
func copyFile(from, to string) (digest.Digest, int64, error) {
	f, err := os.Open(from)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	return copyHashed(f, to, execBit(f))
}

// fileURI is a file:// URI for path, absolute when it can be made so.
func fileURI(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return (&url.URL{Scheme: "file", Path: path}).String()
}

func setEnv(env []string, key, value string) []string {
	for i, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			env[i] = key + "=" + value
			return env
		}
	}
	return append(env, key+"="+value)
}

// newInvocationID returns a random UUID (version 4), unique per build.
func newInvocationID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// containerID names a task's container; the invocation prefix lets a later build find an interrupted build's
// containers. Task names are validated by the pipeline parser (no slashes).
func containerID(invocation, task string) string {
	return "ssf-" + strings.ReplaceAll(invocation, "-", "")[:16] + "-" + task
}
