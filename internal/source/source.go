// Package source takes a build's source at an exact revision: a deterministic snapshot (tar) of a directory. In a
// git work tree (the directory its top or a subdirectory of it) the snapshot holds the files git would commit (the
// HEAD commit's files at their work-tree content, plus untracked files that no .gitignore, .git/info/exclude or
// .ssfignore pattern matches); elsewhere the whole directory less what its .ssfignore leaves out. It is recorded by
// git commit (and the path within the repository) when its files equal that commit's, checked object by object
// without running anything the repository configures, else by the snapshot's digest, with counts of what differs.
// Every task gets a fresh copy of the snapshot, so what was hashed is exactly what the tasks see. docs/source.md
// tells users which files a build takes.
//
// # What it must never do
//
// It must never follow a symlink or cross a mount point while snapshotting, never put a file of the factory home
// into a snapshot (not by path, and not under another name: a hard link), never run a command, filter or hook a
// repository configures, never read git's index (whose flags and extensions the repository sets) or a file that
// core.excludesFile names, never block on a fifo or wait on git without bound, never record a git commit whose
// files the snapshot does not hold byte for byte, never take an ignored file into a snapshot without saying so
// (each left-out path is reported), and never write a snapshot larger than its bound (a task's disk could not hold
// it, and TMPDIR would fill first).
package source

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/pjbgf/sha1cd"
	"hash"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing/fstest"
	"time"

	"github.com/ssf-dev/ssf/internal/archive"
	"github.com/ssf-dev/ssf/internal/provenance"
)

// InputError is a problem with the source the caller named (missing, not a directory, holding a hard link to the
// factory's key): the caller's to fix, as opposed to a failure while taking the snapshot.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErrorf(format string, args ...any) error {
	return &InputError{Err: fmt.Errorf(format, args...)}
}

// Snapshot is the build's source, taken once at an exact revision.
type Snapshot struct {
	Dir    string // absolute
	Path   string // the deterministic tar of the tree
	SHA256 string // hex digest of the tar
	// Commit is the git commit whose files (beneath RepoPath) the snapshot holds, byte for byte and mode for
	// mode; "" if none.
	Commit string
	// Repo is the top of the git work tree Dir is in (symlinks resolved), and RepoPath Dir's slash-separated path
	// beneath it ("" when Dir is the top); both "" when Dir is in no work tree.
	Repo, RepoPath string
	// GitMismatch says why a source in a git work tree is recorded by tree digest rather than by its HEAD commit
	// (e.g. `file "build.sh" differs from commit 3f2da36`), or why a repository above Dir was not taken as its
	// repository; "" otherwise.
	GitMismatch string
	// LeftOut says what of Dir is not in the snapshot and why (ignored paths, nested repositories, fifos,
	// sockets, devices, mount points), for people.
	LeftOut []string
	Stats   Stats
}

// Stats counts what a snapshot holds and, in a git work tree, how it differs from the HEAD commit. It is part of
// `ssf build --output json` and the build's history record (docs/cli-json.md).
type Stats struct {
	Files int   `json:"files"` // regular files and symlinks
	Bytes int64 `json:"bytes"` // the regular files' sizes, added up
	// Ignored counts the paths an ignore rule left out (an ignored directory once, whatever it holds).
	Ignored int `json:"ignored"`
	// SSFIgnorePatterns counts the patterns of the source's .ssfignore (0: none, or no such file).
	SSFIgnorePatterns int       `json:"ssfignorePatterns"`
	Git               *GitStats `json:"git,omitempty"` // nil outside a git work tree
}

// GitStats is how a snapshot taken in a git work tree compares with its HEAD commit.
type GitStats struct {
	Commit string `json:"commit,omitempty"` // HEAD, clean or not; "" when there is no commit or it cannot be read
	Path   string `json:"path,omitempty"`   // the source's path in the repository; "" at its top
	Clean  bool   `json:"clean"`            // the snapshot holds exactly the commit's files: recorded by commit
	// Modified, Deleted and Untracked count the files that differ from the commit, the commit's files missing from
	// the work tree, and the files not in the commit.
	Modified  int `json:"modified"`
	Deleted   int `json:"deleted"`
	Untracked int `json:"untracked"`
}

// SubdirectoryAnnotation is the annotation of the source's resolved dependency naming its path in the repository,
// when the source is a subdirectory recorded by commit.
const SubdirectoryAnnotation = "subdirectory"

// Protected names what must never reach a snapshot under any name: the factory home and its signing key.
type Protected struct {
	Home string // the factory home ($SSF_HOME); every regular file beneath it
	Key  string // the provenance signing key (also looked up by itself, wherever it lives)
}

// Descriptor is the source as a resolved dependency: the git commit (and, for a subdirectory of the repository,
// its path) and the snapshot's digest when there is a commit, else the tree digest (the sha256 of the deterministic
// tar described in docs/build-type.md).
func (s *Snapshot) Descriptor() provenance.ResourceDescriptor {
	if s.Commit != "" {
		repo := s.Repo
		if repo == "" {
			repo = s.Dir
		}
		u := url.URL{Scheme: "file", Path: repo}
		d := provenance.ResourceDescriptor{
			Name:   provenance.SourceDependencyName,
			URI:    "git+" + u.String() + "@" + s.Commit,
			Digest: provenance.Digest{"gitCommit": s.Commit, "sha256": s.SHA256},
		}
		if s.RepoPath != "" {
			// As SPDX writes a path within a repository in a download location: git+URL@REVISION#PATH.
			d.URI += (&url.URL{Fragment: s.RepoPath}).String()
			d.Annotations = map[string]string{SubdirectoryAnnotation: s.RepoPath}
		}
		return d
	}
	u := url.URL{Scheme: "file", Path: s.Dir}
	return provenance.ResourceDescriptor{
		Name:   provenance.SourceDependencyName,
		URI:    u.String(),
		Digest: provenance.Digest{"sha256": s.SHA256},
	}
}

// Summary is the one line `ssf build` prints about the source before tasks run, e.g.
// `source: 142 files, 1.2 MB, commit 3f2da36 (clean)`.
func (s *Snapshot) Summary() string {
	st := s.Stats
	var b strings.Builder
	fmt.Fprintf(&b, "source: %d files, %s, ", st.Files, humanBytes(st.Bytes))
	g := st.Git
	switch {
	case g == nil:
		b.WriteString("not a git work tree")
	case g.Commit == "" && s.GitMismatch != "":
		b.WriteString("git work tree whose commit could not be read")
	case g.Commit == "":
		b.WriteString("git work tree without a commit")
	default:
		b.WriteString("commit " + g.Commit[:7])
	}
	if g != nil && g.Path != "" {
		fmt.Fprintf(&b, " at %s", g.Path)
	}
	switch {
	case g != nil && g.Commit != "" && g.Clean:
		b.WriteString(" (clean)")
	case g != nil && (g.Modified > 0 || g.Deleted > 0 || g.Untracked > 0):
		var parts []string
		for _, c := range []struct {
			n    int
			what string
		}{{g.Modified, "modified"}, {g.Deleted, "deleted"}, {g.Untracked, "untracked"}} {
			if c.n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
			}
		}
		b.WriteString(", dirty: " + strings.Join(parts, ", "))
	case g != nil && g.Commit != "":
		b.WriteString(", not recorded by commit")
	}
	switch {
	case g == nil:
		fmt.Fprintf(&b, " (%s: %d patterns)", SSFIgnore, st.SSFIgnorePatterns)
	case st.SSFIgnorePatterns > 0:
		fmt.Fprintf(&b, "; %s: %d patterns", SSFIgnore, st.SSFIgnorePatterns)
	}
	return b.String()
}

// humanBytes writes n in decimal units, as people read file sizes: 812 bytes, 1.2 MB.
func humanBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d bytes", n)
	}
	f, unit := float64(n)/1000, "kB"
	for _, u := range []string{"MB", "GB", "TB"} {
		if f < 999.95 {
			break
		}
		f, unit = f/1000, u
	}
	return fmt.Sprintf("%.1f %s", f, unit)
}

// Take writes the deterministic tar of dir to snapshotPath and describes it.
//
// What dir contributes is selected first (select.go): in a git work tree (dir its top or a directory beneath it),
// the files git would commit, at their work-tree content: the files of the HEAD commit that are present, plus
// untracked files that no .gitignore, .git/info/exclude or .ssfignore pattern matches, never .git, an ignored path or
// a nested repository; outside one, every file less what .ssfignore leaves out. The selection reads names and ignore
// files only, never the index or anything git would run.
//
// The snapshot is then read back and compared with the commit's objects: every file's git blob id and mode must be
// the commit's (beneath the source's path in the repository), and every file of the commit must be there. Only then
// is the source recorded by commit. Git's own idea of "clean" is never asked, because it trusts the index
// (assume-unchanged, skip-worktree, fsmonitor, core.fileMode) and runs the repository's filters and hooks. Otherwise
// the source is recorded by tree digest; src.GitMismatch says why, and src.Stats counts the differences.
//
// The snapshot never crosses a mount point and never holds a file of protect under another name (a hard link):
// see guard. It holds at most maxBytes bytes (0: no bound): a larger source, or one with a large sparse file, is
// refused as bad input once that much is written, instead of filling the disk the snapshot is written to.
func Take(ctx context.Context, dir string, protect Protected, snapshotPath string, maxBytes int64) (*Snapshot, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, inputErrorf("--source %q: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, inputErrorf("--source %q is not a directory", dir)
	}
	src := &Snapshot{Dir: abs, Path: snapshotPath}
	gd, err := newGuard(abs, protect)
	if err != nil {
		return nil, err
	}
	defer gd.close()

	repo, notRepo, err := findRepo(ctx, abs, gd)
	if err != nil {
		return nil, err
	}
	sel, err := selectFiles(ctx, gd, repo)
	if err != nil {
		return nil, err
	}
	var stats archive.TreeStats
	src.SHA256, err = writeSnapshot(snapshotPath, maxBytes, func(w io.Writer) error {
		stats, err = archive.WriteTree(ctx, w, abs, sel.include(gd))
		return err
	})
	if gd.err != nil {
		os.Remove(snapshotPath)
		return nil, gd.err
	}
	if errors.Is(err, errTooLarge) {
		os.Remove(snapshotPath)
		return nil, tooLarge(dir, maxBytes)
	}
	if err != nil {
		os.Remove(snapshotPath)
		return nil, fmt.Errorf("taking a snapshot of the source %q: %w", dir, err)
	}
	src.Stats = Stats{Files: stats.Files + stats.Symlinks, Bytes: stats.Bytes, Ignored: len(sel.ignored), SSFIgnorePatterns: sel.ssfignorePatterns}
	src.GitMismatch = notRepo
	if repo != nil {
		src.Repo, src.RepoPath = repo.top, repo.prefix
		src.Stats.Git = &GitStats{Path: repo.prefix}
		src.GitMismatch = repo.headMismatch
	}
	if repo != nil && repo.head != nil {
		t := repo.head
		d, err := t.diff(snapshotPath)
		if err != nil {
			return nil, fmt.Errorf("checking the snapshot of the source %q: %w", dir, err)
		}
		gs := src.Stats.Git
		gs.Commit, gs.Modified, gs.Deleted, gs.Untracked = t.commit, len(d.modified), len(d.deleted), len(d.untracked)
		switch {
		case t.problem != "":
			src.GitMismatch = t.problem
		case d.first != "":
			src.GitMismatch = d.first
		default:
			src.Commit, gs.Clean = t.commit, true
		}
	}
	src.LeftOut = append(gd.report(), sel.report()...)
	return src, nil
}

// errTooLarge stops a snapshot that passed its bound.
var errTooLarge = errors.New("snapshot too large")

func tooLarge(dir string, maxBytes int64) error {
	return inputErrorf("--source %q holds more than %d bytes (counting sparse files at their full size), more than a task's disk holds (maxDiskBytes in config.yaml): every task gets a whole copy of the source; build a smaller directory or raise maxDiskBytes", dir, maxBytes)
}

// boundedWriter fails once more than max bytes were written to it.
type boundedWriter struct {
	w      io.Writer
	n, max int64
}

func (b *boundedWriter) Write(p []byte) (int, error) {
	if b.n+int64(len(p)) > b.max {
		return 0, errTooLarge
	}
	b.n += int64(len(p))
	return b.w.Write(p)
}

// writeSnapshot creates the file p, which must not exist, fills it with write and returns its sha256. Past
// maxBytes (when not 0) write fails with errTooLarge and nothing more reaches the file.
func writeSnapshot(p string, maxBytes int64, write func(io.Writer) error) (string, error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	var w io.Writer = io.MultiWriter(f, h)
	if maxBytes > 0 {
		w = &boundedWriter{w: w, max: maxBytes}
	}
	if err := write(w); err != nil {
		if errors.Is(err, errTooLarge) {
			return "", errTooLarge
		}
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Git modes of the entries a source commit may hold, as written in tree objects.
const (
	modeFile    = "100644"
	modeExec    = "100755"
	modeSymlink = "120000"
	modeTree    = "40000"
	modeGitlink = "160000"
)

// maxGitObject bounds the size of a commit or tree object read from the repository.
const maxGitObject = 64 << 20

// gitTree is the files of a commit beneath one of its directories, read from objects whose ids were all checked.
type gitTree struct {
	commit string                 // hex object id
	format string                 // "sha1" or "sha256"
	prefix string                 // the directory, slash-separated; "" for the commit's top
	files  map[string]gitTreeFile // by slash-separated path beneath prefix
	// submodules is the paths beneath prefix of the commit's submodules (gitlinks), whose files the commit does
	// not hold: such a commit cannot stand for a snapshot.
	submodules []string
	// problem says why the commit cannot stand for a snapshot whatever the work tree holds (a submodule, a prefix
	// that is not a directory of the commit); "" otherwise.
	problem string
}

// gitTreeFile is one blob of a gitTree.
type gitTreeFile struct {
	mode string // modeFile, modeExec or modeSymlink
	oid  string // hex blob id
}

func (t *gitTree) short() string { return t.commit[:7] }

func (t *gitTree) paths() []string {
	ps := make([]string, 0, len(t.files))
	for p := range t.files {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// readHead returns the files beneath prefix of the HEAD commit of the git work tree whose top is g.dir. It
// returns no tree if there is no commit, and no tree with a reason if the commit cannot be read (an object that is
// missing or does not hash to its id, an unexpected mode or name). An error is returned only when ctx is done.
//
// Git is used only as a store of objects, and every object it returns is checked here against its id, so a
// forged object or replace ref cannot make the listing differ from the commit that is recorded.
func readHead(ctx context.Context, g *gitRepo, prefix string) (*gitTree, string, error) {
	commit, err := g.output(ctx, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
	if errors.Is(err, errGitTimeout) {
		return nil, fmt.Sprintf("reading HEAD: %v", err), nil
	}
	if err != nil {
		return nil, "", ctx.Err() // an empty repository, or HEAD is not a commit
	}
	format, err := g.output(ctx, "rev-parse", "--show-object-format")
	if err != nil {
		return nil, fmt.Sprintf("reading the object format of commit %.7s: %v", commit, err), ctx.Err()
	}
	newHash, ok := map[string]func() hash.Hash{"sha1": sha1cd.New, "sha256": sha256.New}[format]
	if !ok || !isHexID(commit, newHash().Size()) {
		return nil, fmt.Sprintf("HEAD is %q in a repository of object format %q", commit, format), ctx.Err()
	}
	t := &gitTree{commit: commit, format: format, prefix: prefix, files: map[string]gitTreeFile{}}
	if mismatch, err := g.readTree(ctx, t, newHash); mismatch != "" || err != nil {
		return nil, mismatch, err
	}
	return t, "", nil
}

// isHexID reports whether s is the lower-case hex form of an object id of size bytes.
func isHexID(s string, size int) bool {
	if len(s) != 2*size {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// treeEntry is one entry of a tree object.
type treeEntry struct{ mode, name, oid string }

// readTreeObject reads and parses the tree object oid (the directory dir of commit t, for messages). A name that
// is not clean ends the parse with a reason: git itself refuses to check such a name out, and it could escape the
// snapshot.
func readTreeObject(objs *gitObjects, t *gitTree, dir, oid string) ([]treeEntry, string, error) {
	body, err := objs.read(oid, "tree")
	if err != nil {
		return nil, "", fmt.Errorf("directory %q: %w", dir, err)
	}
	var entries []treeEntry
	seen := map[string]bool{}
	for len(body) > 0 {
		mode, rest, ok1 := bytes.Cut(body, []byte(" "))
		name, rest, ok2 := bytes.Cut(rest, []byte("\x00"))
		if !ok1 || !ok2 || len(rest) < objs.size {
			return nil, "", fmt.Errorf("directory %q: malformed tree object %s", dir, oid)
		}
		e := treeEntry{mode: string(mode), name: string(name), oid: hex.EncodeToString(rest[:objs.size])}
		body = rest[objs.size:]
		n := e.name
		if n == "" || n == "." || n == ".." || strings.Contains(n, "/") || strings.EqualFold(n, ".git") || seen[n] {
			return nil, fmt.Sprintf("commit %s has a bad path %q", t.short(), path.Join(dir, n)), nil
		}
		seen[n] = true
		entries = append(entries, e)
	}
	return entries, "", nil
}

// readTree fills t.files from the tree of t.commit beneath t.prefix.
func (g *gitRepo) readTree(ctx context.Context, t *gitTree, newHash func() hash.Hash) (string, error) {
	objs, err := g.objects(ctx, newHash)
	if err != nil {
		return fmt.Sprintf("reading commit %s: %v", t.short(), err), ctx.Err()
	}
	defer objs.close()
	fail := func(err error) (string, error) {
		return fmt.Sprintf("reading commit %s: %v", t.short(), err), ctx.Err()
	}
	body, err := objs.read(t.commit, "commit")
	if err != nil {
		return fail(err)
	}
	// The tree is the commit's first header (see git's commit.c); the commit's own id, checked above, covers it.
	line, _, _ := bytes.Cut(body, []byte("\n"))
	root, ok := strings.CutPrefix(string(line), "tree ")
	if !ok || !isHexID(root, objs.size) {
		return fail(errors.New("no tree header"))
	}
	// Down to the source's directory, one tree at a time.
	if t.prefix != "" {
		dir := ""
		for name := range strings.SplitSeq(t.prefix, "/") {
			entries, bad, err := readTreeObject(objs, t, dir, root)
			if bad != "" || err != nil {
				if err != nil {
					return fail(err)
				}
				return bad, nil
			}
			dir = path.Join(dir, name)
			i := slices.IndexFunc(entries, func(e treeEntry) bool { return e.name == name })
			if i < 0 || entries[i].mode != modeTree {
				t.problem = fmt.Sprintf("directory %q is not in commit %s", t.prefix, t.short())
				return "", nil
			}
			root = entries[i].oid
		}
	}
	type pending struct{ dir, oid string }
	stack := []pending{{"", root}}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		entries, bad, err := readTreeObject(objs, t, path.Join(t.prefix, p.dir), p.oid)
		if err != nil {
			return fail(err)
		}
		if bad != "" {
			return bad, nil
		}
		for _, e := range entries {
			rel := path.Join(p.dir, e.name)
			switch m := e.mode; m {
			case modeTree:
				stack = append(stack, pending{rel, e.oid})
			case modeFile, "100664": // 100664 is what very old git wrote for a plain file; git reads it as 100644
				t.files[rel] = gitTreeFile{modeFile, e.oid}
			case modeExec, modeSymlink:
				t.files[rel] = gitTreeFile{m, e.oid}
			case modeGitlink:
				t.submodules = append(t.submodules, rel)
				if t.problem == "" {
					t.problem = fmt.Sprintf("%q is a submodule of commit %s, whose files are not part of it", path.Join(t.prefix, rel), t.short())
				}
			default:
				return fmt.Sprintf("%q has mode %s in commit %s", path.Join(t.prefix, rel), m, t.short()), nil
			}
		}
	}
	return "", nil
}

// gitDiff is how a snapshot differs from a gitTree.
type gitDiff struct {
	modified, deleted, untracked []string
	first                        string // the first difference, for people; "" when there is none
}

// diff reads the snapshot back and compares every entry with the commit's files: their bytes (as git blob ids)
// and modes.
func (t *gitTree) diff(snapshotPath string) (gitDiff, error) {
	var d gitDiff
	note := func(list *[]string, name, format string, args ...any) {
		*list = append(*list, name)
		if d.first == "" {
			d.first = fmt.Sprintf(format, args...)
		}
	}
	f, err := os.Open(snapshotPath)
	if err != nil {
		return d, err
	}
	defer f.Close()
	newHash := sha1cd.New
	if t.format == "sha256" {
		newHash = sha256.New
	}
	dirs := map[string]bool{}
	for p := range t.files {
		for dir := path.Dir(p); dir != "." && !dirs[dir]; dir = path.Dir(dir) {
			dirs[dir] = true
		}
	}
	seen := map[string]bool{}
	var extraDirs []string
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return d, err
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if hdr.Typeflag == tar.TypeDir {
			if !dirs[name] {
				extraDirs = append(extraDirs, name)
			}
			continue
		}
		want, ok := t.files[name]
		if !ok || seen[name] {
			note(&d.untracked, name, "file %q is not in commit %s", name, t.short())
			continue
		}
		seen[name] = true
		h := newHash()
		var mode string
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			mode = modeSymlink
			fmt.Fprintf(h, "blob %d\x00%s", len(hdr.Linkname), hdr.Linkname)
		case tar.TypeReg:
			// A task runs as another user than the files' owner, so any executable bit counts; git calls a file
			// executable when its owner may run it.
			switch x := hdr.Mode & 0o111; {
			case x == 0:
				mode = modeFile
			case x&0o100 != 0:
				mode = modeExec
			default:
				mode = fmt.Sprintf("%o", hdr.Mode)
			}
			fmt.Fprintf(h, "blob %d\x00", hdr.Size)
			if _, err := io.Copy(h, tr); err != nil {
				return d, err
			}
		default:
			note(&d.modified, name, "%q is of tar type %q, which commit %s cannot hold", name, hdr.Typeflag, t.short())
			continue
		}
		if mode != want.mode {
			note(&d.modified, name, "file %q has mode %s in the work tree but %s in commit %s", name, mode, want.mode, t.short())
		} else if id, err := objectID(h); err != nil {
			note(&d.modified, name, "file %q: %v", name, err)
		} else if id != want.oid {
			note(&d.modified, name, "file %q differs from commit %s", name, t.short())
		}
	}
	for _, p := range t.paths() {
		if !seen[p] {
			note(&d.deleted, p, "file %q of commit %s is not in the work tree (or is not a regular file or symlink there)", p, t.short())
		}
	}
	// A directory of the snapshot that is not the commit's holds untracked files (counted above), or nothing
	// (the guard left out all it held): only the latter is a difference of its own.
	for _, dir := range extraDirs {
		if !slices.ContainsFunc(d.untracked, func(u string) bool { return strings.HasPrefix(u, dir+"/") }) {
			note(&d.untracked, dir+"/", "directory %q is not in commit %s", dir, t.short())
		}
	}
	return d, nil
}

// gitRepo runs git on a repository that is not trusted: its configuration, attributes, hooks and object store
// may all have been written by an attacker, and git runs with the factory's privileges.
//
// Only plumbing that reads objects and refs is run, never anything that reads the index or the work tree, so
// no filter, fsmonitor, untracked cache or hook is ever started, and no core.excludesFile is ever opened (which
// files are untracked and ignored is decided in select.go). The settings below are belt and braces for that, and stop a
// partial clone from fetching a missing object through a transport its configuration names (GIT_ALLOW_PROTOCOL
// is needed for that: a repository's protocol.<name>.allow overrides protocol.allow given with -c).
type gitRepo struct {
	dir string // the top of the work tree, symlinks resolved
	// discover lets git look for the repository in the directories above dir (findRepo); otherwise it looks in
	// dir only.
	discover bool
}

// gitSafety is given to every git command; command-line configuration overrides the repository's.
var gitSafety = []string{
	"--no-replace-objects",
	"-c", "core.fsmonitor=false",
	"-c", "core.hooksPath=/dev/null",
	"-c", "core.sshCommand=false",
	"-c", "core.commitGraph=false",
	"-c", "protocol.allow=never",
}

// gitTimeout bounds each git command. Git blocks forever on a fifo that the repository's configuration names as a
// file to read at startup (an include.path, say), and no option turns that reading off; so a command that does not
// finish in time is killed, and the source is taken without what it would have told. Reading the objects of a
// large repository takes seconds, not minutes.
var gitTimeout = 2 * time.Minute

// errGitTimeout is a git command killed after gitTimeout.
var errGitTimeout = errors.New("git did not finish in time")

// command returns git with args, hardened, bound to a context of its own that ends after gitTimeout; the caller
// calls cancel once git has exited.
func (g *gitRepo) command(ctx context.Context, args ...string) (cmd *exec.Cmd, tctx context.Context, cancel context.CancelFunc) {
	tctx, cancel = context.WithTimeoutCause(ctx, gitTimeout, errGitTimeout)
	cmd = exec.CommandContext(tctx, "git", append(append([]string{"-C", g.dir}, gitSafety...), args...)...)
	env := []string{
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_OPTIONAL_LOCKS=0",
		"GIT_NO_REPLACE_OBJECTS=1",
		"GIT_ALLOW_PROTOCOL=", // no transport at all, whatever the repository's configuration says
		"GIT_PROTOCOL_FROM_USER=0",
		// Nor is GIT_DISCOVERY_ACROSS_FILESYSTEM passed on: discovery stops at a file system's boundary.
	}
	if !g.discover {
		// Look for a repository in dir only, never in a directory above it.
		env = append(env, "GIT_CEILING_DIRECTORIES="+filepath.Dir(g.dir))
	}
	for _, kv := range os.Environ() {
		// GIT_DIR, GIT_WORK_TREE, GIT_CONFIG_PARAMETERS, GIT_EXEC_PATH and the rest would redirect git.
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.Stdin = nil // the null device
	cmd.WaitDelay = 5 * time.Second
	return cmd, tctx, cancel
}

// output runs git and returns its standard output without the final newline.
func (g *gitRepo) output(ctx context.Context, args ...string) (string, error) {
	cmd, tctx, cancel := g.command(ctx, args...)
	defer cancel()
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() == nil && errors.Is(context.Cause(tctx), errGitTimeout) {
			err = fmt.Errorf("%w (%v): does the repository's configuration name a fifo, as include.path?", errGitTimeout, gitTimeout)
		}
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSuffix(out.String(), "\n"), nil
}

// gitObjects reads objects through one `git cat-file --batch` and checks each against its id.
type gitObjects struct {
	cmd     *exec.Cmd
	cancel  context.CancelFunc
	in      io.WriteCloser
	out     *bufio.Reader
	newHash func() hash.Hash
	size    int // bytes in an object id
}

func (g *gitRepo) objects(ctx context.Context, newHash func() hash.Hash) (*gitObjects, error) {
	cmd, _, cancel := g.command(ctx, "cat-file", "--batch")
	in, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	return &gitObjects{cmd: cmd, cancel: cancel, in: in, out: bufio.NewReader(out), newHash: newHash, size: newHash().Size()}, nil
}

// read returns the body of the object oid, which must be of type typ and hash to oid.
func (o *gitObjects) read(oid, typ string) ([]byte, error) {
	if _, err := io.WriteString(o.in, oid+"\n"); err != nil {
		return nil, err
	}
	line, err := o.out.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", oid, err)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != oid {
		return nil, fmt.Errorf("object %s: %s", oid, strings.TrimSpace(line))
	}
	size, err := strconv.Atoi(f[2])
	if err != nil || size < 0 || size > maxGitObject {
		return nil, fmt.Errorf("object %s: size %q", oid, f[2])
	}
	body := make([]byte, size+1) // and the newline after it
	if _, err := io.ReadFull(o.out, body); err != nil {
		return nil, fmt.Errorf("object %s: %w", oid, err)
	}
	body = body[:size]
	h := o.newHash()
	fmt.Fprintf(h, "%s %d\x00", f[1], size)
	h.Write(body)
	if got, err := objectID(h); err != nil {
		return nil, fmt.Errorf("object %s: %w", oid, err)
	} else if got != oid {
		return nil, fmt.Errorf("object %s hashes to %s", oid, got)
	}
	if f[1] != typ {
		return nil, fmt.Errorf("object %s is a %s, not a %s", oid, f[1], typ)
	}
	return body, nil
}

// close stops git, which may be in the middle of writing an object that was refused for its size.
func (o *gitObjects) close() {
	o.in.Close()
	o.cmd.Process.Kill()
	_ = o.cmd.Wait() // every object read was checked; how git exits does not matter
	o.cancel()
}

// errSHA1Collision is input that carries a known SHA-1 collision attack.
var errSHA1Collision = errors.New("its SHA-1 input carries a known collision attack (SHAttered-style), so its object id does not name one content")

// objectID is the git object id of what was written to h. SHA-1 object ids are computed with collision detection,
// as git's own sha1dc does: an attacker who made two blobs with one id could otherwise have the commit recorded
// while other bytes are built.
func objectID(h hash.Hash) (string, error) {
	if cd, ok := h.(interface {
		CollisionResistantSum([]byte) ([]byte, bool)
	}); ok {
		sum, collision := cd.CollisionResistantSum(nil)
		if collision {
			return "", errSHA1Collision
		}
		return hex.EncodeToString(sum), nil
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Files reads the regular files of the snapshot whose names want accepts (slash-separated, relative to the top,
// e.g. "web/package-lock.json"), at most limit bytes in all, into memory. The control plane reads lock files this
// way, from the bytes it recorded rather than from the directory, which may have changed since. A wanted name that
// is a symlink, a directory or anything else but a regular file is never followed or read: opening it fails with
// an error that says what it is.
func (s *Snapshot) Files(ctx context.Context, want func(name string) bool, limit int64) (fs.FS, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	files := snapshotFiles{MapFS: fstest.MapFS{}, special: map[string]string{}}
	tr := tar.NewReader(f)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the source snapshot: %w", err)
		}
		if !want(strings.TrimSuffix(hdr.Name, "/")) {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			files.special[strings.TrimSuffix(hdr.Name, "/")] = map[byte]string{tar.TypeSymlink: "a symlink", tar.TypeDir: "a directory"}[hdr.Typeflag]
			continue
		}
		if total += hdr.Size; total > limit {
			return nil, inputErrorf("the source's lock files add up to more than %d bytes", limit)
		}
		data, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
		if err != nil {
			return nil, fmt.Errorf("reading %q from the source snapshot: %w", hdr.Name, err)
		}
		files.MapFS[hdr.Name] = &fstest.MapFile{Data: data, Mode: 0o444}
	}
}

// snapshotFiles is the files Snapshot.Files read, and the wanted names that are something else.
type snapshotFiles struct {
	fstest.MapFS
	special map[string]string // name -> what it is ("a symlink"; "" for other kinds)
}

func (f snapshotFiles) Open(name string) (fs.File, error) {
	if err := f.notRegular("open", name); err != nil {
		return nil, err
	}
	return f.MapFS.Open(name)
}

func (f snapshotFiles) ReadFile(name string) ([]byte, error) {
	if err := f.notRegular("read", name); err != nil {
		return nil, err
	}
	return f.MapFS.ReadFile(name)
}

func (f snapshotFiles) Stat(name string) (fs.FileInfo, error) {
	if err := f.notRegular("stat", name); err != nil {
		return nil, err
	}
	return f.MapFS.Stat(name)
}

// notRegular is the error for a wanted name that is not a regular file, or nil.
func (f snapshotFiles) notRegular(op, name string) error {
	kind, ok := f.special[name]
	if !ok {
		return nil
	}
	if kind == "" {
		kind = "not a regular file"
	}
	return &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("it is %s in the source: ssf reads lock files only as regular files; commit the file itself", kind)}
}
