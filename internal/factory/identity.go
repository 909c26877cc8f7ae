package factory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sigsign "github.com/sigstore/sigstore-go/pkg/sign"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ssf-dev/ssf/internal/ca"
	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/source"
	"github.com/ssf-dev/ssf/internal/tlog"
	"github.com/ssf-dev/ssf/internal/trust"
)

// The signers `ssf build --signer` chooses between.
const (
	// SignerKey signs every bundle of a build with the factory's long-lived provenance key (keys/provenance.key).
	SignerKey = "key"
	// SignerIdentity signs each task's attestation with that task's own short-lived certificate, and the
	// provenance and SBOMs with the run's, each logged and timestamped (docs/keyless.md).
	SignerIdentity = "identity"
)

// identity signs a build's statements with short-lived certificates of the factory CA: a fresh ECDSA key in memory
// per statement, a certificate for the workload's SPIFFE ID issued on this node's signed request, the signature
// appended to the factory's transparency log and timestamped by its TSA, and the bundle checked against the
// factory's trusted root before it is handed back. The key is never written anywhere and is dropped once the
// statement is signed.
type identity struct {
	trust   *trust.Factory
	log     *turnLog             // the factory's log, taken in turns with other builds (home.Layout.LogTurn)
	remote  *trust.NodeClient    // on a joined node: the factory's node API instead of trust, log and turn (identity_remote.go)
	trusted root.TrustedMaterial // the factory's trusted root, for the check of every bundle made
	td      string
	issuer  string

	mu        sync.Mutex
	claims    ca.Claims // what the control plane knows of the run, set by forBuild
	pipe      string    // the pipeline's name
	builderID string    // the factory's builder id (config.yaml)
}

// openIdentity loads the factory trust and opens its transparency log for a build (the log admits one appender).
// Identity builds take turns on it (turnLog): a build holds the log while it signs and while nobody else waits,
// and gives it up between signatures when another build or the node API waits. One that finds another holding the
// log's turn (home.Layout.LogTurn) says so on log and waits for it as long as ctx allows. A process that holds the
// log without the turn (`ssf log serve --accept-entries`) makes the build refuse at admission, before anything
// runs.
func (h Home) openIdentity(ctx context.Context, cfg Config, log io.Writer) (*identity, error) {
	l := h.layout()
	if trust.IsJoinedNode(l) {
		return h.openRemoteIdentity(ctx)
	}
	f, err := trust.Load(l, trust.Options{TrustDomain: cfg.TrustDomain, Issuer: cfg.Issuer})
	if err != nil {
		return nil, inputErrorf("--signer identity: loading the factory trust (run `ssf init`, which adds what is missing): %w", err)
	}
	pub, err := trust.LoadPublic(l, cfg.TrustDomain)
	if err != nil {
		return nil, inputErrorf("--signer identity: loading the factory's trusted root (run `ssf init`): %w", err)
	}
	trJSON, err := pub.TrustedRoot()
	if err != nil {
		return nil, err
	}
	tr, err := root.NewTrustedRootFromJSON(trJSON)
	if err != nil {
		return nil, fmt.Errorf("--signer identity: reading the factory's trusted root: %w", err)
	}
	lg, err := openTurnLog(ctx, l.LogTurn(), turnLogOpener(l, f, cfg.TrustDomain), log)
	if errors.Is(err, errLogHeld) {
		return nil, inputErrorf("--signer identity: the transparency log %s is held by another process (`ssf log serve --accept-entries`?): every signature of this build must be appended to it; stop that server (plain `ssf log serve` serves the log read-only beside builds) and retry", l.Log())
	} else if err != nil {
		return nil, fmt.Errorf("--signer identity: %w", err)
	}
	return &identity{trust: f, log: lg, trusted: tr, td: cfg.TrustDomain, issuer: cfg.Issuer}, nil
}

// turnLogOpener opens the factory's log with the trust f a build loaded, once the build has the log's turn. A
// build gives the turn up between its signatures, and `ssf trust rotate` takes the turn: a rotation may have
// happened since f was loaded (at admission, or at the build's last signature). The build must not append then: it
// would start the new log under the retired (destroyed) log key, so that the new log no longer opens with the
// factory's key (every later identity build failing), and sign with the retired intermediate. The trust is checked
// with the turn held, as the node API does, so a rotation is never half seen.
func turnLogOpener(l home.Layout, f *trust.Factory, td string) func(context.Context) (*tlog.Log, error) {
	return func(ctx context.Context) (*tlog.Log, error) {
		if err := trust.CheckCurrent(l, f); errors.Is(err, trust.ErrTrustRotated) {
			return nil, errRotatedMidBuild
		} else if err != nil {
			return nil, err
		}
		return tlog.Open(ctx, l.Log(), f.TLogKey, tlog.WithHost(td))
	}
}

// errRotatedMidBuild is why a build whose factory trust was rotated between its signatures fails.
var errRotatedMidBuild = errors.New("the factory's trust was rotated (`ssf trust rotate`) while this build ran: all of a build's signatures must be made with one intermediate CA and log key; run the build again")

// takeTurn takes the exclusive lock on path (created 0600); when another build holds it, it says so on log and
// waits for it as long as ctx allows. The lock goes with the open file: closing it, or the build's death,
// releases it. While it waits it holds a shared lock on turnWaiters(path), so that `ssf node serve`, which
// otherwise keeps the turn for as long as joined nodes append, sees that a build waits and gives the turn up
// (nodeLog.append): a node must not starve the factory's own builds.
func takeTurn(ctx context.Context, path string, log io.Writer) (*os.File, error) {
	return lockTurn(ctx, path, log, true)
}

// turnWaiters is the file that builds waiting for the log's turn at path hold a shared lock on.
func turnWaiters(path string) string { return path + ".waiting" }

// buildWaiting reports whether a build waits for the log's turn at path (holds turnWaiters(path) shared).
func buildWaiting(path string) bool {
	f, err := os.OpenFile(turnWaiters(path), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB), syscall.EWOULDBLOCK)
}

// lockTurn is takeTurn; waiter says whether to show, while waiting, that a build waits (the node API's server
// does not: it is what builds wait for).
func lockTurn(ctx context.Context, path string, log io.Writer, waiter bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return nil, fmt.Errorf("locking %q: %w", path, err)
	}
	if log != nil {
		fmt.Fprintf(log, "[ssf] waiting for the transparency log, which another build or the node API is signing with (%s)\n", path)
	}
	var waiting *os.File
	if waiter {
		// Best effort: without it the build still waits, only without asking the node API to yield.
		if w, err := os.OpenFile(turnWaiters(path), os.O_RDWR|os.O_CREATE, 0o600); err == nil {
			if syscall.Flock(int(w.Fd()), syscall.LOCK_SH) == nil {
				waiting = w
			} else {
				w.Close()
			}
		}
	}
	locked := make(chan error, 1)
	go func() { locked <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-locked:
		if waiting != nil {
			waiting.Close()
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %q: %w", path, err)
		}
		return f, nil
	case <-ctx.Done():
		if waiting != nil {
			waiting.Close()
		}
		go func() { <-locked; f.Close() }() // a lock taken after all is dropped at once
		return nil, context.Cause(ctx)
	}
}

// close releases the transparency log, then its turn. A nil identity (key signing) has nothing to close.
func (id *identity) close(ctx context.Context) error {
	if id == nil || id.remote != nil {
		return nil
	}
	return id.log.Close(ctx)
}

// forBuild records what the control plane knows of the run, for the certificates' Fulcio extensions: the
// pipeline file as the build signer (BuildSignerURI/Digest, BuildConfigURI/Digest), the invocation
// (RunInvocationURI, under the factory's builder id) and, for a git source, its repository and commit.
func (id *identity) forBuild(adm *admission, invocation string, src *source.Snapshot) *identity {
	if id == nil {
		return nil
	}
	c := ca.Claims{
		BuildSignerURI:    fileURI(adm.req.Pipeline),
		BuildSignerDigest: adm.p.Digest.Encoded(),
		BuildConfigURI:    fileURI(adm.req.Pipeline),
		BuildConfigDigest: adm.p.Digest.Encoded(),
		RunInvocationURI:  strings.TrimSuffix(adm.cfg.BuilderID, "/") + "/builds/" + invocation,
	}
	if src != nil && src.Commit != "" {
		// The repository as source.Snapshot.Descriptor names it, built from the path itself: its URI
		// (git+file://REPO@COMMIT#PATH) cannot be cut at an '@', which a file URL keeps unescaped in REPO and PATH.
		repo := src.Repo
		if repo == "" {
			repo = src.Dir
		}
		c.SourceRepositoryURI, c.SourceRepositoryDigest = (&url.URL{Scheme: "file", Path: repo}).String(), src.Commit
	}
	id.mu.Lock()
	id.claims, id.pipe, id.builderID = c, adm.p.Name, adm.cfg.BuilderID
	id.mu.Unlock()
	return id
}

// runID is the SPIFFE ID of the run of the pipeline: it signs the provenance and the SBOMs.
func (id *identity) runID() string { return "spiffe://" + id.td + "/pipeline/" + id.pipe }

// taskID is the SPIFFE ID of one task of the run: it signs that task's attestation.
func (id *identity) taskID(task string) string { return id.runID() + "/task/" + task }

// workloadAttestor is an Attestor signing as one workload (the run, or a task).
type workloadAttestor struct {
	id     *identity
	spiffe func() string // resolved when signing: the pipeline's name is known only once the build is admitted
}

var _ Attestor = workloadAttestor{}

// runAttestor signs as the run (spiffe://TD/pipeline/<pipeline>).
func (id *identity) runAttestor() Attestor { return workloadAttestor{id: id, spiffe: id.runID} }

func (a workloadAttestor) Statement(ctx context.Context, statement []byte) ([]byte, error) {
	return a.id.sign(ctx, a.spiffe(), statement)
}

// sign signs statement as the workload spiffeID (see identity) and returns the Sigstore bundle v0.3 (JSON).
func (id *identity) sign(ctx context.Context, spiffeID string, statement []byte) ([]byte, error) {
	id.mu.Lock()
	claims := id.claims
	id.mu.Unlock()
	// The workload's key lives only in this call: made here, used once by sign.Bundle, never stored.
	kp, err := sigsign.NewEphemeralKeypair(nil)
	if err != nil {
		return nil, fmt.Errorf("signing as %s: making a key: %w", spiffeID, err)
	}
	certs, tlogs, stamp := id.backend(spiffeID, claims)
	b, err := sigsign.Bundle(&sigsign.DSSEData{Data: statement, PayloadType: content.InTotoPayloadType}, kp, sigsign.BundleOptions{
		CertificateProvider: certs,
		TransparencyLogs:    []sigsign.Transparency{tlogs},
		Context:             ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("signing as %s: %w", spiffeID, err)
	}
	sigs := b.GetDsseEnvelope().GetSignatures()
	if len(sigs) != 1 {
		return nil, fmt.Errorf("signing as %s: the envelope has %d signatures, want 1", spiffeID, len(sigs))
	}
	ts, err := stamp(ctx, sigs[0].GetSig())
	if err != nil {
		return nil, fmt.Errorf("signing as %s: %w", spiffeID, err)
	}
	b.VerificationMaterial.TimestampVerificationData = &protobundle.TimestampVerificationData{
		Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: ts}},
	}
	if err := id.check(b, spiffeID); err != nil {
		return nil, fmt.Errorf("signing as %s: the bundle made does not verify against the factory's trusted root: %w", spiffeID, err)
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("signing as %s: encoding the bundle: %w", spiffeID, err)
	}
	return out, nil
}

// check verifies a bundle just made as cosign will: certificate chain, SCT, log entry (inclusion proof, SET),
// the integrated time and the signed timestamp within the certificate's validity, and the identity.
func (id *identity) check(pb *protobundle.Bundle, spiffeID string) error {
	b, err := bundle.NewBundle(pb)
	if err != nil {
		return err
	}
	v, err := sgverify.NewVerifier(id.trusted, sgverify.WithTransparencyLog(1), sgverify.WithSignedCertificateTimestamps(1),
		sgverify.WithIntegratedTimestamps(1), sgverify.WithSignedTimestamps(1))
	if err != nil {
		return err
	}
	ci, err := sgverify.NewShortCertificateIdentity(id.issuer, "", spiffeID, "")
	if err != nil {
		return err
	}
	_, err = v.Verify(b, sgverify.NewPolicy(sgverify.WithoutArtifactUnsafe(), sgverify.WithCertificateIdentity(ci)))
	return err
}

// logAppender is sigstore-go's sign.Transparency on the factory's own log: the DSSE envelope becomes a dsse 0.0.1
// entry whose verifier is the workload's certificate, appended durably before the bundle exists.
type logAppender struct {
	log interface {
		Append(context.Context, tlog.Entry) (*tlog.LogEntry, error)
	}
}

func (la logAppender) GetTransparencyLogEntry(ctx context.Context, certPEM []byte, b *protobundle.Bundle) error {
	envJSON, err := envelopeJSON(b)
	if err != nil {
		return err
	}
	entry, err := tlog.NewDSSEEntry(envJSON, certPEM)
	if err != nil {
		return fmt.Errorf("making the log entry: %w", err)
	}
	le, err := la.log.Append(ctx, entry)
	if err != nil {
		return fmt.Errorf("appending to the transparency log: %w", err)
	}
	b.VerificationMaterial.TlogEntries = append(b.VerificationMaterial.TlogEntries, le.Proto())
	return nil
}

// taskStep is one step of a task as the control plane ran it.
type taskStep struct {
	Name       string    `json:"name"`
	Run        string    `json:"run"` // the script, as the pipeline file gives it
	ExitCode   int       `json:"exitCode"`
	StartedOn  time.Time `json:"startedOn"`
	FinishedOn time.Time `json:"finishedOn"`
}

// taskResource is a resource a task read: the source, a dependency, the builder image.
type taskResource struct {
	Name   string            `json:"name"`
	URI    string            `json:"uri,omitempty"`
	Digest provenance.Digest `json:"digest"`
}

// taskPredicate is the predicate of content.TaskPredicateType (docs/build-type.md): what the control plane
// observed of one task. The statement's subjects are the task's outputs, internal ones included.
type taskPredicate struct {
	Pipeline     string                   `json:"pipeline"`
	Task         string                   `json:"task"`
	InvocationID string                   `json:"invocationId"`
	BuilderID    string                   `json:"builderId"`
	Builder      taskResource             `json:"builder"`
	Source       taskResource             `json:"source"`
	Inputs       []provenance.TaskInput   `json:"inputs"`
	Dependencies []taskResource           `json:"dependencies"`
	Steps        []taskStep               `json:"steps"`
	StartedOn    time.Time                `json:"startedOn"`
	FinishedOn   time.Time                `json:"finishedOn"`
	Isolation    provenance.TaskIsolation `json:"isolation"`
}

// stepDone records that a step of a task ended (for the task's attestation). Only identity builds keep it.
func (b *build) stepDone(task, step, script string, code int, started time.Time) {
	if b.identity == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.steps == nil {
		b.steps = map[string][]taskStep{}
	}
	b.steps[task] = append(b.steps[task], taskStep{Name: step, Run: script, ExitCode: code, StartedOn: started.UTC(), FinishedOn: time.Now().UTC()})
}

// attestTask signs the attestation of a task that has ended with the task's own identity, right after its outputs
// were hashed; the bundle is kept until the build writes OUT (recordTaskAttestations). Key builds sign no task.
func (b *build) attestTask(ctx context.Context, name string, started time.Time, iso provenance.TaskIsolation, outputs []Output) error {
	if b.identity == nil {
		return nil
	}
	src := b.src.Descriptor()
	pred := taskPredicate{
		Pipeline: b.p.Name, Task: name, InvocationID: b.invocation, BuilderID: b.identity.builderID,
		Builder:   taskResource{Name: "builder", URI: "oci:" + b.p.Builder, Digest: provenance.DigestSet(b.p.BuilderDigest)},
		Source:    taskResource{Name: src.Name, URI: src.URI, Digest: src.Digest},
		Inputs:    iso.Inputs,
		StartedOn: started.UTC(), FinishedOn: time.Now().UTC(), Isolation: iso,
	}
	if pred.Inputs == nil {
		pred.Inputs = []provenance.TaskInput{}
	}
	for _, d := range b.deps.descriptors() {
		pred.Dependencies = append(pred.Dependencies, taskResource{Name: d.Name, URI: d.URI, Digest: d.Digest})
	}
	if pred.Dependencies == nil {
		pred.Dependencies = []taskResource{}
	}
	b.mu.Lock()
	pred.Steps = append([]taskStep{}, b.steps[name]...)
	b.mu.Unlock()
	type subject struct {
		Name   string            `json:"name"`
		Digest provenance.Digest `json:"digest"`
	}
	subjects := []subject{}
	for _, o := range outputs {
		subjects = append(subjects, subject{Name: o.Path, Digest: provenance.DigestSet(o.Digest)})
	}
	// The task's log, as OUT/attestations/logs/<task>.log will hold it: every task has one, so even a task with no
	// outputs has a file its attestation verifies against.
	b.mu.Lock()
	logPath := b.logs[name]
	b.mu.Unlock()
	logDigest, err := digestFile(logPath)
	if err != nil {
		return fmt.Errorf("task %q: hashing its log for its attestation: %w", name, err)
	}
	subjects = append(subjects, subject{Name: "attestations/logs/" + name + ".log", Digest: provenance.DigestSet(logDigest)})
	st, err := json.Marshal(struct {
		Type          string        `json:"_type"`
		Subject       []subject     `json:"subject"`
		PredicateType string        `json:"predicateType"`
		Predicate     taskPredicate `json:"predicate"`
	}{provenance.StatementType, subjects, content.TaskPredicateType, pred})
	if err != nil {
		return fmt.Errorf("task %q: writing its attestation: %w", name, err)
	}
	signStart := time.Now()
	bundle, err := b.identity.sign(ctx, b.identity.taskID(name), st)
	if err != nil {
		return fmt.Errorf("task %q: %w", name, err)
	}
	b.log.printf("task %s attested as %s in %d ms", name, b.identity.taskID(name), time.Since(signStart).Milliseconds())
	b.mu.Lock()
	if b.taskBundles == nil {
		b.taskBundles = map[string][]byte{}
	}
	b.taskBundles[name] = bundle
	b.mu.Unlock()
	return nil
}

// TaskBundlePath is where the attestation bundle of task lives, relative to a build's output directory.
func TaskBundlePath(task string) string { return "attestations/" + task + content.TaskBundleSuffix }

// TaskAttestation is one task's signed attestation in a build's output directory.
type TaskAttestation struct {
	Task     string
	Bundle   string // its path, under the build's --out
	Identity string // the SPIFFE ID that signed it
}

// recordTaskAttestations writes each task's bundle into the staging directory and lists it, with its digest,
// among the provenance's byproducts, so the provenance (signed by the run) links every task's evidence. It
// returns where each will be once the staging directory is published as out.
func recordTaskAttestations(b *build, staging, out string, stmt *provenance.Build) ([]TaskAttestation, error) {
	if b.identity == nil {
		return nil, nil
	}
	var done []TaskAttestation
	for _, t := range b.p.Order() {
		bundle, ok := b.taskBundles[t.Name]
		if !ok {
			return nil, fmt.Errorf("task %q has no attestation", t.Name)
		}
		rel := TaskBundlePath(t.Name)
		p := filepath.Join(staging, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("writing the attestation of task %q: %w", t.Name, err)
		}
		// O_EXCL: an output of the same name is never overwritten (and a task's bundle never overwrites one).
		if err := writeNew(p, bundle); err != nil { // synced with the whole tree by publishDir
			return nil, fmt.Errorf("writing the attestation of task %q: %w", t.Name, err)
		}
		stmt.Byproducts = append(stmt.Byproducts, provenance.ResourceDescriptor{
			Name: rel, MediaType: content.BundleMediaType, Digest: provenance.DigestSet(digest.FromBytes(bundle)),
		})
		done = append(done, TaskAttestation{Task: t.Name, Bundle: filepath.Join(out, filepath.FromSlash(rel)), Identity: b.identity.taskID(t.Name)})
	}
	return done, nil
}

// chooseSigner makes the build's attestor for req.Signer: the run's identity (SignerIdentity, or "": the secure
// choice is the default), which also returns the identity that signs the tasks, or the provenance key
// (SignerKey). It runs last in admission, because an identity holds the transparency log until it is closed.
func (h Home) chooseSigner(ctx context.Context, req BuildRequest, cfg Config) (Attestor, *identity, error) {
	switch req.Signer {
	case SignerKey:
		key, err := sign.LoadKey(h.KeyPath())
		if err != nil {
			return nil, nil, fmt.Errorf("loading the provenance key (run `ssf init` if the factory is new): %w", err)
		}
		return sign.NewSigner(key), nil, nil
	case "", SignerIdentity:
		id, err := h.openIdentity(ctx, cfg, req.Log)
		if err != nil {
			return nil, nil, err
		}
		return id.runAttestor(), id, nil
	}
	return nil, nil, inputErrorf("--signer %q: want %q (the factory's provenance key) or %q (a short-lived certificate per task and run)", req.Signer, SignerKey, SignerIdentity)
}

// digestFile is the sha256 of a file the control plane wrote itself (a task's log), read as a stream.
func digestFile(path string) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return digest.SHA256.FromReader(f)
}
