package factory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/sandbox"
)

// fakeWork makes a build work directory holding the given task logs, as runTask leaves them.
func fakeWork(t *testing.T, logs map[string]string) string {
	t.Helper()
	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, "logs"), 0o700); err != nil {
		t.Fatal(err)
	}
	for task, data := range logs {
		if err := os.WriteFile(filepath.Join(work, "logs", task+".log"), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return work
}

func TestRecorderFailedBuild(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	id := newInvocationID()
	r := h.newRecorder(id, "/p/ssf.yaml", time.Now().UTC())
	if r.err != nil {
		t.Fatal(r.err)
	}
	run, err := h.lockRun(runRecord{Invocation: id, Work: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer run.release()
	// While it runs, the record says so.
	if rec, err := h.FindBuild(id[:8]); err != nil || rec.Status != StatusRunning {
		t.Fatalf("FindBuild while running = %+v, %v; want status running", rec, err)
	}
	r.source("file:///p", map[string]string{"sha256": "ab"})
	first, second := "[build/one] hello\n", "[build/two] oops\n"
	r.step("build", "one", 0, time.Second, 0, int64(len(first)))
	r.step("build", "two", 3, time.Second, int64(len(first)), int64(len(first+second)))
	buildErr := &TaskError{Task: "build", Step: "two", ExitCode: 3, Reason: "exit code 3"}
	r.taskDone("build", 2*time.Second, buildErr)
	work := fakeWork(t, map[string]string{"build": first + second})
	if err := r.finish(context.Background(), work, "", buildErr); err != nil {
		t.Fatal(err)
	}

	run.release()
	fi, err := os.Stat(filepath.Join(h.Dir, "builds", id))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("history directory: %v, %v; want mode 0700", fi, err)
	}
	rec, err := h.FindBuild(id[:8])
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != StatusFailed || rec.Error != buildErr.Error() || rec.SourceURI != "file:///p" || rec.FinishedAt == nil {
		t.Fatalf("record = %+v", rec)
	}
	task := rec.Tasks[0]
	if task.Status != StatusFailed || task.ExitCode == nil || *task.ExitCode != 3 || len(task.Steps) != 2 || task.Steps[1].ExitCode != 3 {
		t.Fatalf("task record = %+v", task)
	}
	for step, want := range map[string]string{"": first + second, "one": first, "two": second} {
		got, err := h.BuildLog(rec, "build", step)
		if err != nil || string(got) != want {
			t.Errorf("BuildLog(step %q) = %q, %v; want %q", step, got, err, want)
		}
	}
	var ie *InputError
	if _, err := h.BuildLog(rec, "nope", ""); !errors.As(err, &ie) {
		t.Errorf("BuildLog of an unknown task: %v; want an InputError", err)
	}
	if _, err := h.BuildLog(rec, "build", "three"); !errors.As(err, &ie) {
		t.Errorf("BuildLog of an unknown step: %v; want an InputError", err)
	}
}

func TestRecorderStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"succeeded", nil, StatusSucceeded},
		{"failed", errors.New("boom"), StatusFailed},
		{"interrupted", fmt.Errorf("running: %w", context.Canceled), StatusInterrupted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Home{Dir: t.TempDir()}
			id := newInvocationID()
			r := h.newRecorder(id, "ssf.yaml", time.Now().UTC())
			out := t.TempDir()
			os.MkdirAll(filepath.Join(out, "attestations"), 0o755)
			os.WriteFile(filepath.Join(out, "attestations", "provenance.sigstore.json"), []byte("{}"), 0o644)
			if err := r.finish(context.Background(), fakeWork(t, nil), out, tc.err); err != nil {
				t.Fatal(err)
			}
			rec, err := h.FindBuild(id)
			if err != nil || rec.Status != tc.want {
				t.Fatalf("status = %q, %v; want %q", rec.Status, err, tc.want)
			}
			_, err = os.Stat(filepath.Join(h.Dir, "builds", id, "bundles", "provenance.sigstore.json"))
			if (err == nil) != (tc.err == nil) {
				t.Errorf("bundle copied: %v; want it copied only on success", err)
			}
		})
	}
}

// A build killed outright leaves a record saying "running" and no run record: it is listed as interrupted.
func TestKilledBuildListedInterrupted(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	h.newRecorder(newInvocationID(), "ssf.yaml", time.Now().UTC())
	recs, err := h.Builds()
	if err != nil || len(recs) != 1 || recs[0].Status != StatusInterrupted {
		t.Fatalf("Builds = %+v, %v; want one interrupted", recs, err)
	}
}

// Failing to record is reported by finish, never a panic, and leaves the build's own error alone.
func TestRecorderCannotWrite(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(h.Dir, "builds"), nil, 0o600); err != nil { // a file where the directory goes
		t.Fatal(err)
	}
	r := h.newRecorder(newInvocationID(), "ssf.yaml", time.Now().UTC())
	r.step("t", "s", 0, time.Second, 0, 0)
	r.taskDone("t", time.Second, nil)
	if err := r.finish(context.Background(), fakeWork(t, nil), "", nil); err == nil {
		t.Fatal("finish succeeded with nowhere to write")
	}
}

func TestFindAndPruneBuilds(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	start := time.Now().UTC()
	var ids []string // oldest first
	for i := range 4 {
		id := newInvocationID()
		r := h.newRecorder(id, "ssf.yaml", start.Add(time.Duration(i)*time.Minute))
		if err := r.finish(context.Background(), fakeWork(t, nil), "", errors.New("failed")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	recs, err := h.Builds()
	if err != nil || len(recs) != 4 || recs[0].ID != ids[3] || recs[3].ID != ids[0] {
		t.Fatalf("Builds = %+v, %v; want newest first", recs, err)
	}
	var ie *InputError
	for _, bad := range []string{"../x", "", "ZZ", ids[0] + "0"} {
		if _, err := h.FindBuild(bad); !errors.As(err, &ie) {
			t.Errorf("FindBuild(%q) = %v; want an InputError", bad, err)
		}
	}
	removed, err := h.PruneBuilds(2)
	if err != nil || len(removed) != 2 {
		t.Fatalf("PruneBuilds(2) = %v, %v", removed, err)
	}
	recs, _ = h.Builds()
	if len(recs) != 2 || recs[0].ID != ids[3] || recs[1].ID != ids[2] {
		t.Fatalf("after prune: %+v; want the two newest", recs)
	}
	if _, err := h.PruneBuilds(-1); !errors.As(err, &ie) {
		t.Errorf("PruneBuilds(-1) = %v; want an InputError", err)
	}
}

// A record whose id is not its directory's name (a corrupt or hand-edited build.json: "null", "{}", or an id of
// "../..") must never steer a path: prune once removed the whole history, running builds included, for an empty
// id. An unreadable record is listed as such, and prune removes it.
func TestCorruptRecordsListedAndPrunedSafely(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	good := newInvocationID()
	r := h.newRecorder(good, "ssf.yaml", time.Now().UTC())
	if err := r.finish(context.Background(), fakeWork(t, nil), "", errors.New("failed")); err != nil {
		t.Fatal(err)
	}
	running := newInvocationID()
	h.newRecorder(running, "ssf.yaml", time.Now().UTC())
	if err := os.MkdirAll(h.runsDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.runsDir(), running+".json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{"null": "null\n", "empty-object": "{}\n", "torn": `{"id": "`, "dotdot": `{"id": "../.."}`}
	badIDs := map[string]string{}
	for name, body := range bad {
		id := newInvocationID()
		badIDs[id] = name
		if err := os.MkdirAll(filepath.Join(h.layout().Builds(), id), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(h.layout().Builds(), id, "build.json"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := h.Builds()
	if err != nil {
		t.Fatal(err)
	}
	unreadable := 0
	for _, rec := range recs {
		if _, ok := badIDs[rec.ID]; ok {
			if rec.Status != StatusUnreadable || rec.Error == "" {
				t.Errorf("record %s (%s) = %+v; want status %q with the reason", rec.ID, badIDs[rec.ID], rec, StatusUnreadable)
			}
			unreadable++
		}
	}
	if unreadable != len(bad) {
		t.Errorf("Builds listed %d of %d unreadable records: %+v", unreadable, len(bad), recs)
	}
	if _, err := h.PruneBuilds(0); err != nil {
		t.Fatalf("PruneBuilds(0): %v", err)
	}
	if !dirExists(filepath.Join(h.layout().Builds(), running)) {
		t.Fatal("prune removed the directory of a running build")
	}
	for id, name := range badIDs {
		if dirExists(filepath.Join(h.layout().Builds(), id)) {
			t.Errorf("prune kept the unreadable record %s (%s)", id, name)
		}
	}
	if dirExists(filepath.Join(h.layout().Builds(), good)) {
		t.Error("prune --keep 0 kept a finished build")
	}
	if !dirExists(h.Dir) {
		t.Fatal("prune removed the factory home")
	}
}

// A build killed outright (kill -9) never reaches finish: what its record on disk says is what was checkpointed
// as it ran — the source, and every step and task that ended.
func TestRecordCheckpointedAsBuildRuns(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	id := newInvocationID()
	r := h.newRecorder(id, "/p/ssf.yaml", time.Now().UTC())
	r.source("file:///p", map[string]string{"sha256": "ab"})
	r.step("build", "one", 0, time.Second, 0, 10)
	r.taskDone("build", time.Second, nil)
	r.step("test", "two", 7, time.Second, 0, 5)
	// No finish: the process is gone.
	rec, err := h.readRecord(id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.SourceURI != "file:///p" || len(rec.Tasks) != 2 || rec.Tasks[0].Status != StatusSucceeded ||
		len(rec.Tasks[1].Steps) != 1 || rec.Tasks[1].Steps[0].ExitCode != 7 {
		t.Fatalf("record on disk before finish = %+v; want the source, task build succeeded, step test/two exit 7", rec)
	}
}

// A build killed outright (kill -9) never copies its logs: the next build's sweep does, before it removes the
// dead build's work directory, and marks the record interrupted, so `ssf logs` shows what the build printed.
func TestSweepSalvagesKilledBuildsLogs(t *testing.T) {
	rc, err := sandbox.NewRunc("runc", filepath.Join(t.TempDir(), "runc"))
	if err != nil {
		t.Skip(err)
	}
	h := Home{Dir: t.TempDir()}
	id := newInvocationID()
	r := h.newRecorder(id, "/p/ssf.yaml", time.Now().UTC())
	line := "[build/one] the secret is 42\n"
	r.step("build", "one", 0, time.Second, 0, int64(len(line)))
	work := filepath.Join(t.TempDir(), "ssf-build-9")
	if err := os.MkdirAll(filepath.Join(work, "logs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "logs", "build.log"), []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	// The dead build's run record, unlocked: its process is gone.
	if err := os.MkdirAll(h.runsDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(runRecord{Invocation: id, Work: work})
	if err := os.WriteFile(filepath.Join(h.runsDir(), id+".json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	h.sweepLeftovers(context.Background(), runc{rc}, &lineLog{w: io.Discard})
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Fatalf("the dead build's work directory is still there: %v", err)
	}
	rec, err := h.FindBuild(id)
	if err != nil || rec.Status != StatusInterrupted {
		t.Fatalf("FindBuild = %+v, %v; want interrupted", rec, err)
	}
	got, err := h.BuildLog(rec, "build", "one")
	if err != nil || string(got) != line {
		t.Fatalf("log of the killed build's step = %q, %v; want %q", got, err, line)
	}
}

// OUT's parent may belong to someone else (root building into a user's directory), who can swap a bundle for a
// symlink after the build listed them: the recorder, running as root, must not copy what the link names (a key,
// /dev/zero, a fifo) into the history.
func TestCopyBundlesFollowsNoSwappedLink(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	r := h.newRecorder(newInvocationID(), "ssf.yaml", time.Now().UTC())
	att := t.TempDir()
	secret := filepath.Join(t.TempDir(), "signing.key")
	if err := os.WriteFile(secret, []byte("PRIVATE KEY"), 0o600); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(att, "provenance.sigstore.json")
	if err := os.WriteFile(bundle, []byte(`{"real":"bundle"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	bundlesListed = func() {
		if err := os.Remove(bundle); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(secret, bundle); err != nil {
			t.Error(err)
		}
	}
	defer func() { bundlesListed = nil }()
	err := r.copyBundles(att)
	if data, _ := os.ReadFile(filepath.Join(r.dir, "bundles", "provenance.sigstore.json")); string(data) == "PRIVATE KEY" {
		t.Fatal("the recorder copied the file a swapped-in symlink names into the history")
	}
	if err == nil {
		t.Error("copyBundles succeeded with a bundle swapped for a symlink; want an error naming it")
	}
}

// The bundles of outputs in subdirectories (a directory output's SBOMs under attestations/dist/) are recorded
// too, under the same relative names; the task logs are not bundles.
func TestCopyBundlesOfSubdirectories(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	r := h.newRecorder(newInvocationID(), "ssf.yaml", time.Now().UTC())
	att := t.TempDir()
	files := map[string]string{
		"provenance.sigstore.json":             "p",
		"dist/app.js.cdx.sigstore.json":        "c",
		"dist/css/site.css.spdx.sigstore.json": "s",
		"logs/build.log":                       "log",
		"logs/fake.sigstore.json":              "not a bundle",
	}
	for name, data := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(att, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(att, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.copyBundles(att); err != nil {
		t.Fatal(err)
	}
	want := []string{"dist/app.js.cdx.sigstore.json", "dist/css/site.css.spdx.sigstore.json", "provenance.sigstore.json"}
	if !slices.Equal(r.rec.Bundles, want) {
		t.Errorf("recorded %q, want %q", r.rec.Bundles, want)
	}
	for _, name := range want {
		if data, err := os.ReadFile(filepath.Join(r.dir, "bundles", name)); err != nil || string(data) != files[name] {
			t.Errorf("%s in the history: %q, %v; want %q", name, data, err, files[name])
		}
	}
}

// The attestations directory itself swapped for a symlink (by whoever owns OUT's parent) is refused: os.OpenRoot
// follows a link at its own path, which would copy the *.sigstore.json files of the directory it names.
func TestCopyBundlesRefusesAttestationsThatIsALink(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	r := h.newRecorder(newInvocationID(), "ssf.yaml", time.Now().UTC())
	out, outside := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "x.sigstore.json"), []byte("SECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(out, "attestations")); err != nil {
		t.Fatal(err)
	}
	err := r.copyBundles(filepath.Join(out, "attestations"))
	if data, _ := os.ReadFile(filepath.Join(r.dir, "bundles", "x.sigstore.json")); string(data) == "SECRET" {
		t.Fatal("the recorder copied a bundle from the directory a symlinked attestations names")
	}
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("err = %v; want the symlinked attestations refused", err)
	}
}
