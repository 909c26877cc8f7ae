package factory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ssf-dev/ssf/internal/durable"
	"github.com/ssf-dev/ssf/internal/source"
)

// BuildRecord is a build's history entry, $SSF_HOME/builds/<id>/build.json. It is written by the control plane
// only (never by a step), each time replaced whole and durably: when the build starts (status "running", so a
// build killed outright still shows), when it is admitted, its source taken, and each step and task ends, and
// when it ends.
type BuildRecord struct {
	ID             string            `json:"id"`
	Status         string            `json:"status"` // running, succeeded, failed or interrupted
	Error          string            `json:"error,omitempty"`
	PipelineName   string            `json:"pipelineName,omitempty"`
	PipelinePath   string            `json:"pipelinePath"`
	PipelineDigest string            `json:"pipelineDigest,omitempty"`
	Params         map[string]string `json:"params,omitempty"`
	SourceURI      string            `json:"sourceUri,omitempty"`
	SourceDigest   map[string]string `json:"sourceDigest,omitempty"`
	SourceStats    *source.Stats     `json:"sourceStats,omitempty"` // files, bytes, git commit and dirty counts
	Builder        string            `json:"builder,omitempty"`
	Out            string            `json:"out,omitempty"`
	StartedAt      time.Time         `json:"startedAt"`
	FinishedAt     *time.Time        `json:"finishedAt,omitempty"`
	DurationMs     int64             `json:"durationMs"`
	Tasks          []TaskRecord      `json:"tasks"`
	Bundles        []string          `json:"bundles,omitempty"` // names under bundles/, on success
}

// TaskRecord is one task of a recorded build.
type TaskRecord struct {
	Name       string       `json:"name"`
	Status     string       `json:"status"` // not-run, running, succeeded or failed
	ExitCode   *int         `json:"exitCode,omitempty"`
	DurationMs int64        `json:"durationMs"`
	Log        string       `json:"log,omitempty"` // relative to the build's directory
	Steps      []StepRecord `json:"steps,omitempty"`
	Workspace  string       `json:"workspace,omitempty"` // where --keep-workspace kept the failed task's files (keep.go)
}

// StepRecord is one step that ran. Its lines are bytes [LogStart, LogEnd) of its task's log.
type StepRecord struct {
	Name       string `json:"name"`
	ExitCode   int    `json:"exitCode"` // -1 when the step did not exit by itself
	DurationMs int64  `json:"durationMs"`
	LogStart   int64  `json:"logStart"`
	LogEnd     int64  `json:"logEnd"`
}

// Build statuses.
const (
	StatusRunning     = "running"
	StatusSucceeded   = "succeeded"
	StatusFailed      = "failed"
	StatusInterrupted = "interrupted"
	StatusUnreadable  = "unreadable" // listed only: its build.json could not be read (Error says why)
)

// recorder keeps a build's history entry as the stages feed it. A failure to record never fails the build: the
// first one is kept and reported once, by finish.
type recorder struct {
	dir string // $SSF_HOME/builds/<id>

	mu  sync.Mutex
	rec BuildRecord
	err error
}

// newRecorder creates the build's history directory (0700: logs may hold what a build printed) and writes its
// first record.
func (h Home) newRecorder(id, pipelinePath string, started time.Time) *recorder {
	r := &recorder{dir: filepath.Join(h.layout().Builds(), id), rec: BuildRecord{
		ID: id, Status: StatusRunning, PipelinePath: pipelinePath, StartedAt: started, Tasks: []TaskRecord{},
	}}
	if err := durable.MkdirAll(h.layout().Builds(), 0o700); err != nil {
		r.err = err
	} else if err := os.Mkdir(r.dir, 0o700); err != nil {
		r.err = err
	} else {
		r.err = r.save()
	}
	return r
}

// save writes build.json, replacing the one before, crash-safe. The caller holds mu or owns r alone.
func (r *recorder) save() error {
	data, err := json.MarshalIndent(r.rec, "", "  ")
	if err != nil {
		return err
	}
	return durable.Replace(filepath.Join(r.dir, "build.json"), append(data, '\n'), 0o600)
}

// checkpoint writes the record as it stands, so that a build killed outright (kill -9, a power cut) still shows
// what it was, which tasks and steps ran and how they ended. Nothing is written once recording has failed. The
// caller holds mu.
func (r *recorder) checkpoint() {
	if r.err == nil {
		r.err = r.save()
	}
}

// admitted records what was admitted: the pipeline, its params and builder, and its tasks (none run yet).
func (r *recorder) admitted(adm *admission) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec.PipelineName, r.rec.PipelineDigest = adm.p.Name, string(adm.p.Digest)
	r.rec.Params, r.rec.Builder, r.rec.Out = adm.params, adm.p.Builder, adm.out
	for _, t := range adm.p.Order() {
		r.rec.Tasks = append(r.rec.Tasks, TaskRecord{Name: t.Name, Status: "not-run"})
	}
	r.checkpoint()
}

// source records the source that was taken.
func (r *recorder) source(uri string, digest map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec.SourceURI, r.rec.SourceDigest = uri, digest
	r.checkpoint()
}

func (r *recorder) task(name string) *TaskRecord {
	for i := range r.rec.Tasks {
		if r.rec.Tasks[i].Name == name {
			return &r.rec.Tasks[i]
		}
	}
	r.rec.Tasks = append(r.rec.Tasks, TaskRecord{Name: name})
	return &r.rec.Tasks[len(r.rec.Tasks)-1]
}

// step records a step that ran: its exit code, how long it took, and where its lines are in the task's log.
func (r *recorder) step(task, step string, code int, d time.Duration, logStart, logEnd int64) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.task(task)
	t.Status = StatusRunning
	t.Steps = append(t.Steps, StepRecord{Name: step, ExitCode: code, DurationMs: d.Milliseconds(), LogStart: logStart, LogEnd: logEnd})
	r.checkpoint()
}

// taskDone records how a task that was started ended, and the log it wrote (copied by finish).
func (r *recorder) taskDone(task string, d time.Duration, err error) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.task(task)
	t.DurationMs = d.Milliseconds()
	t.Status = StatusSucceeded
	if err != nil {
		t.Status = StatusFailed
		if te := (*TaskError)(nil); errors.As(err, &te) {
			code := te.ExitCode
			t.ExitCode = &code
		}
	} else {
		zero := 0
		t.ExitCode = &zero
	}
	r.checkpoint()
}

// finish copies the task logs from work/logs and, on success, the bundles from out/attestations, and writes the
// final record. It returns the first error met while recording, for the caller to report; it never changes the
// build's outcome.
func (r *recorder) finish(ctx context.Context, work, out string, buildErr error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil && r.rec.Status == StatusRunning && !dirExists(r.dir) {
		return r.err // nothing to write into
	}
	now := time.Now().UTC()
	r.rec.FinishedAt = &now
	r.rec.DurationMs = now.Sub(r.rec.StartedAt).Milliseconds()
	switch {
	case buildErr == nil:
		r.rec.Status = StatusSucceeded
	case errors.Is(buildErr, context.Canceled) || ctx.Err() != nil:
		r.rec.Status, r.rec.Error = StatusInterrupted, buildErr.Error()
	default:
		r.rec.Status, r.rec.Error = StatusFailed, buildErr.Error()
	}
	keep := func(err error) {
		if r.err == nil && err != nil {
			r.err = err
		}
	}
	for i := range r.rec.Tasks {
		t := &r.rec.Tasks[i]
		if t.Status == StatusRunning { // started, but its end was never recorded
			t.Status = StatusFailed
		}
		from := filepath.Join(work, "logs", t.Name+".log")
		if _, err := os.Lstat(from); err != nil {
			continue // the task never started
		}
		if err := durable.MkdirAll(filepath.Join(r.dir, "logs"), 0o700); err != nil {
			keep(err)
			break
		}
		rel := "logs/" + t.Name + ".log"
		if err := durable.LinkNew(from, filepath.Join(r.dir, rel)); err != nil {
			keep(fmt.Errorf("copying the log of task %q: %w", t.Name, err))
			continue
		}
		t.Log = rel
	}
	if buildErr == nil {
		keep(r.copyBundles(filepath.Join(out, "attestations")))
	}
	keep(r.save())
	return r.err
}

// errKilled is the error a build killed outright is recorded with, by the build that swept up after it.
var errKilled = fmt.Errorf("the build was killed before it ended (its record was finished by a later build's sweep): %w", context.Canceled)

// salvage finishes the history record of a build that was killed outright, which the sweep of its leftovers found:
// before its work directory goes, the task logs it wrote are kept, so `ssf logs` shows what it printed up to the
// kill, and its record says interrupted. Only a record still saying running, in a work directory ssf made, is
// touched.
func (h Home) salvage(run runRecord, log *lineLog) {
	if !isInvocationID(run.Invocation) || run.Work == "" || !ownDir(run.Work) {
		return
	}
	rec, err := h.readRecord(run.Invocation)
	if err != nil || rec.Status != StatusRunning {
		return
	}
	r := &recorder{dir: filepath.Join(h.layout().Builds(), run.Invocation), rec: rec}
	if err := r.finish(context.Background(), run.Work, "", errKilled); err != nil {
		log.printf("warning: the history of interrupted build %s is incomplete: %v", run.Invocation, err)
	}
}

// copyBundles copies the signed bundles (provenance, task attestations and SBOMs, also those of outputs in
// subdirectories) of a published build; they are small, and copied rather than linked, so nothing done to --out
// later changes the history. OUT's parent may be someone else's, who can swap what is listed: everything is read
// beneath an os.Root of dir (nothing outside it is reached, whatever links appear), a bundle is opened without
// following a link or blocking on a fifo, and at most maxRecordedBundles are copied.
func (r *recorder) copyBundles(dir string) error {
	// os.OpenRoot follows a symlink at dir itself: attestations swapped for a link to another directory would
	// have its *.sigstore.json files copied. The root opened must be the directory dir was, not a link.
	before, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if opened, err := root.Stat("."); err != nil {
		return err
	} else if !before.IsDir() || !os.SameFile(before, opened) {
		return fmt.Errorf("copying bundles into the build history: %s is not a directory (a symlink?): nothing was copied", dir)
	}
	var names []string
	err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && name == "logs": // the task logs, recorded from the build's own copies
			return fs.SkipDir
		case !d.Type().IsRegular() || !strings.HasSuffix(name, ".sigstore.json"):
			return nil
		case len(names) == maxRecordedBundles:
			return fmt.Errorf("copying bundles into the build history: %s holds more than %d", dir, maxRecordedBundles)
		}
		names = append(names, name)
		return nil
	})
	if err != nil {
		return err
	}
	if bundlesListed != nil {
		bundlesListed()
	}
	for _, name := range names {
		data, err := readBundle(root, name)
		if err != nil {
			return err
		}
		to := filepath.Join(r.dir, "bundles", filepath.FromSlash(name))
		if err := durable.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			return err
		}
		if err := durable.WriteNew(to, data, 0o600); err != nil {
			return err
		}
		r.rec.Bundles = append(r.rec.Bundles, name)
	}
	return nil
}

// bundlesListed, when set by a test, runs after copyBundles has listed the bundles and before it reads them: the
// moment someone who owns OUT's parent could swap one for a symlink.
var bundlesListed func()

// maxRecordedBundle bounds a bundle the recorder copies, as registries bound the bundles they serve;
// maxRecordedBundles their number (a build publishes at most 1023 files, two SBOMs each, plus its provenance and
// task attestations).
const (
	maxRecordedBundle  = 16 << 20
	maxRecordedBundles = 4096
)

// readBundle reads the bundle name beneath root, a directory someone else may be able to change under it (its
// parent can be theirs): the file is opened without following a symlink or blocking on a fifo, must be a regular
// file, and is read up to maxRecordedBundle bytes, so the recorder, running as root, never copies what a
// swapped-in link names or reads forever.
func readBundle(root *os.Root, name string) ([]byte, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("copying bundle %q into the build history: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("copying bundle %q into the build history: %w", name, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxRecordedBundle {
		return nil, fmt.Errorf("copying bundle %q into the build history: not a regular file of at most %d bytes (%s, %d bytes)", name, maxRecordedBundle, fi.Mode().Type(), fi.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxRecordedBundle+1))
	if err != nil {
		return nil, fmt.Errorf("copying bundle %q into the build history: %w", name, err)
	}
	if len(data) > maxRecordedBundle {
		return nil, fmt.Errorf("copying bundle %q into the build history: it grew past %d bytes while read", name, maxRecordedBundle)
	}
	return data, nil
}

func dirExists(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}

// ErrNoBuild is a build id (or prefix) that names no recorded build.
var ErrNoBuild = errors.New("no such build")

// buildIDPrefix is what a build id or a prefix of one may look like: it must not name a path.
var buildIDPrefix = regexp.MustCompile(`^[0-9a-f-]{1,36}$`)

// Builds returns the recorded builds, newest first. A directory whose build.json cannot be read (torn by a crash
// or a full disk, or edited) is listed with status "unreadable" and the reason in Error, or "running" while its
// build still holds its run record (its first record is being written).
func (h Home) Builds() ([]BuildRecord, error) {
	entries, err := os.ReadDir(h.layout().Builds())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading the build history: %w", err)
	}
	var recs []BuildRecord
	for _, e := range entries {
		if !e.IsDir() || !buildIDPrefix.MatchString(e.Name()) {
			continue
		}
		rec, err := h.readRecord(e.Name())
		if err != nil {
			// Listed, not hidden: `ssf builds show` says why, and prune can remove it. Its id is its directory's
			// name, never what the unreadable file says.
			rec = BuildRecord{ID: e.Name(), Status: StatusUnreadable, Error: err.Error(), Tasks: []TaskRecord{}}
			if fi, ierr := e.Info(); ierr == nil {
				rec.StartedAt = fi.ModTime().UTC()
			}
			if h.runLocked(e.Name()) {
				rec.Status = StatusRunning // its first record is being written
			}
		}
		if rec.Status == StatusRunning && !h.runLocked(rec.ID) {
			// Killed outright (kill -9, a crash): its record was never finished, and no build runs under its id.
			rec.Status = StatusInterrupted
		}
		recs = append(recs, rec)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].StartedAt.After(recs[j].StartedAt) })
	return recs, nil
}

// runLocked reports whether the build id still has a run record (leftovers.go): it is running, or it was killed
// and no later build has swept up after it yet.
func (h Home) runLocked(id string) bool {
	_, err := os.Lstat(filepath.Join(h.runsDir(), id+".json"))
	return err == nil
}

func (h Home) readRecord(id string) (BuildRecord, error) {
	var rec BuildRecord
	data, err := os.ReadFile(filepath.Join(h.layout().Builds(), id, "build.json"))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("reading the record of build %s: %w (`ssf builds prune` removes it)", id, err)
	}
	// The id names the directory prune removes and the logs read: it must be the directory's own name, so that a
	// corrupt record ("null" has an empty id) or a forged one ("../..") cannot steer a path out of it.
	if rec.ID != id {
		return BuildRecord{}, fmt.Errorf("reading the record of build %s: it names build %q (`ssf builds prune` removes it)", id, rec.ID)
	}
	return rec, nil
}

// FindBuild returns the build whose id is id or starts with it. An id that is malformed, matches nothing or
// matches several builds is an *InputError.
func (h Home) FindBuild(id string) (BuildRecord, error) {
	if !buildIDPrefix.MatchString(id) {
		return BuildRecord{}, inputErrorf("build id %q: want a build id or a prefix of one (hex digits and dashes; `ssf builds list` shows them)", id)
	}
	recs, err := h.Builds()
	if err != nil {
		return BuildRecord{}, err
	}
	var found []BuildRecord
	for _, r := range recs {
		if strings.HasPrefix(r.ID, id) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return BuildRecord{}, &InputError{Err: fmt.Errorf("build %q: %w (`ssf builds list` shows the recorded builds)", id, ErrNoBuild)}
	case 1:
		return found[0], nil
	}
	return BuildRecord{}, inputErrorf("build id %q is ambiguous: it starts %d builds (%s, %s, ...); give more of it", id, len(found), found[0].ID, found[1].ID)
}

// BuildLog returns the stored log of a task of a build, or of one of its steps when step is not empty.
func (h Home) BuildLog(rec BuildRecord, task, step string) ([]byte, error) {
	var t *TaskRecord
	for i := range rec.Tasks {
		if rec.Tasks[i].Name == task {
			t = &rec.Tasks[i]
		}
	}
	if t == nil {
		names := make([]string, len(rec.Tasks))
		for i, t := range rec.Tasks {
			names[i] = t.Name
		}
		return nil, inputErrorf("build %s has no task %q (its tasks: %s)", rec.ID, task, strings.Join(names, ", "))
	}
	if t.Log == "" {
		return nil, inputErrorf("task %q of build %s has no log: it never started", task, rec.ID)
	}
	data, err := os.ReadFile(filepath.Join(h.layout().Builds(), rec.ID, filepath.FromSlash(t.Log)))
	if err != nil {
		return nil, fmt.Errorf("reading the log of task %q of build %s: %w", task, rec.ID, err)
	}
	if step == "" {
		return data, nil
	}
	var names []string
	for _, s := range t.Steps {
		if s.Name == step {
			if s.LogStart < 0 || s.LogStart > s.LogEnd || s.LogEnd > int64(len(data)) {
				return nil, fmt.Errorf("the record of build %s names bytes %d-%d of a %d-byte log", rec.ID, s.LogStart, s.LogEnd, len(data))
			}
			return data[s.LogStart:s.LogEnd], nil
		}
		names = append(names, s.Name)
	}
	return nil, inputErrorf("task %q of build %s ran no step %q (steps that ran: %s)", task, rec.ID, step, strings.Join(names, ", "))
}

// PruneBuilds removes all but the newest keep recorded builds (and directories without a readable record), and
// returns the ids it removed. A build still running is never removed.
func (h Home) PruneBuilds(keep int) ([]string, error) {
	if keep < 0 {
		return nil, inputErrorf("--keep %d: want 0 or more", keep)
	}
	recs, err := h.Builds()
	if err != nil {
		return nil, err
	}
	var removed []string
	kept := 0
	for _, r := range recs {
		if h.runLocked(r.ID) || !buildIDPrefix.MatchString(r.ID) {
			continue
		}
		if r.Status != StatusUnreadable && kept < keep {
			kept++
			continue
		}
		if err := os.RemoveAll(filepath.Join(h.layout().Builds(), r.ID)); err != nil {
			return removed, fmt.Errorf("removing build %s: %w", r.ID, err)
		}
		removed = append(removed, r.ID)
	}
	if len(removed) > 0 {
		if err := durable.SyncDir(h.layout().Builds()); err != nil {
			return removed, err
		}
	}
	return removed, nil
}
