package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"syscall"
)

// SSFIgnore is the name of the file at the top of a source whose gitignore-style patterns leave paths out of the
// snapshot (docs/source.md).
const SSFIgnore = ".ssfignore"

// maxIgnoreFile bounds an ignore file that is read (.gitignore, .git/info/exclude, .ssfignore).
const maxIgnoreFile = 8 << 20

// maxIgnoreTotal bounds the patterns of all the .gitignore files one snapshot reads: the walk holds those of every
// directory above the one it is in, and a .gitignore can ignore itself (so the snapshot's bound does not count
// it), so a chain of directories each with 8 MiB of patterns held gigabytes in the control plane. A variable so
// that tests can lower it.
var maxIgnoreTotal = 64 << 20

// selection is what of the source directory goes into the snapshot, decided by a first walk that reads names and
// ignore files only. The snapshot's own walk then takes exactly these entries, judged again by the guard on the
// Lstat it reads them with.
type selection struct {
	files map[string]bool // regular files and symlinks, relative to the source directory
	dirs  map[string]bool // the directories that hold them, and directories the guard must be asked about
	// ignored is the paths left out because an ignore rule matched them (a directory once, with a trailing "/").
	ignored []string
	// nested is the directories left out because they are git repositories of their own (submodules included).
	nested            []string
	ssfignorePatterns int
	unread            []string // ignore files that were not read (symlinks, fifos), for people
}

// selector walks the source directory and decides what it contributes.
type selector struct {
	gd *guard
	// prefix is the source's path in the repository ("" at its top or outside one); ignore lists' bases and the
	// paths they are matched against are relative to the repository's top.
	prefix string
	git    bool        // the source is (in) a git work tree: .gitignore files are read and .git is left out
	rules  ignoreRules // git's rules for the source's top
	ssf    ignoreRules // .ssfignore's
	head   *gitTree    // the commit's files beneath the source; nil: no commit (nothing is tracked)
	tdirs  map[string]bool
	sel    *selection
	ctx    context.Context
	budget *matchBudget // of the ignore lists' matching (ignore.go); the lists read in the walk share it
	// ignoreBytes adds up the patterns of the .gitignore files read, against maxIgnoreTotal.
	ignoreBytes int
}

// repoPath is the path of rel (relative to the source) in the repository.
func (s *selector) repoPath(rel string) string {
	if s.prefix == "" || rel == "" {
		return s.prefix + rel
	}
	return s.prefix + "/" + rel
}

// selectFiles decides what of the source directory (open in gd.root) the snapshot holds: in a git work tree the
// files git would commit (those of the commit, plus untracked files no ignore rule matches, never .git or a nested
// repository), elsewhere every file; in both, less what .ssfignore at the source's top leaves out.
func selectFiles(ctx context.Context, gd *guard, repo *repoInfo) (*selection, error) {
	s := &selector{gd: gd, sel: &selection{files: map[string]bool{}, dirs: map[string]bool{}}, ctx: ctx}
	if repo != nil {
		s.git, s.prefix, s.rules, s.head = true, repo.prefix, repo.rules, repo.head
		s.sel.unread = append(s.sel.unread, repo.unread...)
	}
	if s.head != nil {
		s.tdirs = map[string]bool{}
		for p := range s.head.files {
			for d := path.Dir(p); d != "." && !s.tdirs[d]; d = path.Dir(d) {
				s.tdirs[d] = true
			}
		}
		for _, p := range s.head.submodules {
			s.tdirs[p] = true // never treated as untracked
		}
	}
	l, err := readIgnoreFile(gd.root, SSFIgnore, s.prefix, &s.sel.unread)
	if err != nil {
		return nil, err
	}
	if l != nil {
		s.ssf = ignoreRules{core: []*ignoreList{l}}
		s.sel.ssfignorePatterns = len(l.patterns)
	}
	// Every list in force shares one budget of matching work (ignore.go).
	budget := &matchBudget{left: maxMatchSteps}
	s.budget = budget
	for _, l := range append(append([]*ignoreList{}, s.rules.core...), s.rules.dirs...) {
		l.budget = budget
	}
	for _, l := range s.ssf.core {
		l.budget = budget
	}
	if err := s.walk("", s.rules, false); err != nil {
		return nil, err
	}
	if budget.exhausted() {
		return nil, inputErrorf("the source's ignore patterns (.gitignore, .git/info/exclude, .ssfignore) take more than %d steps to match against its paths: ssf bounds that work so that a source cannot hold the build; remove patterns with many '*' or '**', or shorten the ignore files", maxMatchSteps)
	}
	return s.sel, nil
}

// walk selects the entries of the directory rel ("" for the top), whose ignore rules are rules. In an ignored
// directory (one that holds files of the commit), only those files are taken, as git would.
func (s *selector) walk(rel string, rules ignoreRules, ignoredDir bool) error {
	if s.git && !ignoredDir {
		l, err := readIgnoreFile(s.gd.root, path.Join(rel, ".gitignore"), s.repoPath(rel), &s.sel.unread)
		if err != nil {
			return err
		}
		if l != nil {
			l.budget = s.budget
			for _, p := range l.patterns {
				s.ignoreBytes += len(p.glob) + 1
			}
			if s.ignoreBytes > maxIgnoreTotal {
				return inputErrorf("the .gitignore files of the source hold more than %d bytes of patterns together (reached at %q): shorten them", maxIgnoreTotal, path.Join(rel, ".gitignore"))
			}
		}
		rules = rules.with(l)
	}
	dir := rel
	if dir == "" {
		dir = "."
	}
	f, err := s.gd.root.Open(dir)
	if err != nil {
		return fmt.Errorf("reading directory %q of the source: %w", dir, err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("reading directory %q of the source: %w", dir, err)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		if s.budget.exhausted() {
			return nil // selectFiles refuses the source
		}
		child := path.Join(rel, name)
		// Git never holds a path with a .git component; outside a work tree only the top's is left out.
		if name == ".git" && (s.git || rel == "") {
			continue
		}
		fi, err := s.gd.root.Lstat(child)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed while the source is read
		}
		if err != nil {
			return fmt.Errorf("reading %q of the source: %w", child, err)
		}
		_, tracked := s.tracked(child)
		isDir := fi.IsDir()
		if !isDir {
			if tracked || !ignoredDir && !s.ignoredPath(rules, child, false) {
				if s.gd.include(child, fi) {
					s.addFile(child)
				} else if s.gd.err != nil {
					return s.gd.err
				}
			} else {
				s.sel.ignored = append(s.sel.ignored, child)
			}
			continue
		}
		if s.gd.mounts[child] || statOf(fi).Dev != s.gd.dev {
			// Not entered; the snapshot's walk asks the guard about it, which reports it.
			s.addFile(child)
			delete(s.sel.files, child)
			s.sel.dirs[child] = true
			continue
		}
		if !s.gd.dirAllowed(child, fi) {
			return s.gd.err
		}
		if s.git && slices.Contains(s.headSubmodules(), child) {
			s.sel.nested = append(s.sel.nested, child+"/")
			continue
		}
		holdsTracked := s.tdirs[child]
		if s.git && !holdsTracked {
			if _, err := s.gd.root.Lstat(path.Join(child, ".git")); err == nil {
				s.sel.nested = append(s.sel.nested, child+"/")
				continue
			}
		}
		ign := ignoredDir || s.ignoredPath(rules, child, true)
		if ign && !holdsTracked {
			s.sel.ignored = append(s.sel.ignored, child+"/")
			continue
		}
		if err := s.walk(child, rules, ign); err != nil {
			return err
		}
	}
	return nil
}

// tracked reports whether rel is a file of the commit.
func (s *selector) tracked(rel string) (gitTreeFile, bool) {
	if s.head == nil {
		return gitTreeFile{}, false
	}
	f, ok := s.head.files[rel]
	return f, ok
}

func (s *selector) headSubmodules() []string {
	if s.head == nil {
		return nil
	}
	return s.head.submodules
}

// ignoredPath applies git's rules (in a work tree) and .ssfignore's, which can only leave more out.
func (s *selector) ignoredPath(rules ignoreRules, rel string, isDir bool) bool {
	p := s.repoPath(rel)
	return s.git && rules.ignored(p, isDir) || s.ssf.ignored(p, isDir)
}

// addFile selects the file rel and the directories above it.
func (s *selector) addFile(rel string) {
	s.sel.files[rel] = true
	for d := path.Dir(rel); d != "." && !s.sel.dirs[d]; d = path.Dir(d) {
		s.sel.dirs[d] = true
	}
}

// include is the snapshot's filter: only the selected entries, each judged by the guard on the snapshot's Lstat.
func (sel *selection) include(gd *guard) func(string, fs.FileInfo) bool {
	return func(rel string, fi fs.FileInfo) bool {
		if fi.IsDir() && !sel.dirs[rel] || !fi.IsDir() && !sel.files[rel] {
			return false
		}
		return gd.include(rel, fi)
	}
}

// readIgnoreFile reads the ignore file rel beneath root, whose patterns apply beneath base (relative to the
// repository's top), as git does: a missing file has no patterns, and so has one that is not a regular file (git
// refuses a symlinked .gitignore; a fifo would block the reader), which is noted in unread. It is opened without
// following a symlink and without blocking, and checked to be the regular file the Lstat saw.
func readIgnoreFile(root *os.Root, rel, base string, unread *[]string) (*ignoreList, error) {
	fi, err := root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %q of the source: %w", rel, err)
	}
	if !fi.Mode().IsRegular() {
		*unread = append(*unread, rel)
		return nil, nil
	}
	data, err := readRegular(root, rel, fi)
	if err != nil {
		return nil, err
	}
	l := parseIgnore(data, base, rel)
	return &l, nil
}

// readRegular reads the regular file rel of root that fi describes, at most maxIgnoreFile bytes.
func readRegular(root *os.Root, rel string, fi fs.FileInfo) ([]byte, error) {
	if fi.Size() > maxIgnoreFile {
		return nil, inputErrorf("%q in the source is larger than %d bytes: ssf reads ignore files of at most that size; shorten it", rel, maxIgnoreFile)
	}
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("reading %q of the source: %w", rel, err)
	}
	defer f.Close()
	got, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading %q of the source: %w", rel, err)
	}
	if !got.Mode().IsRegular() || !os.SameFile(fi, got) {
		return nil, fmt.Errorf("reading %q of the source: it changed while being read", rel)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxIgnoreFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %q of the source: %w", rel, err)
	}
	if len(data) > maxIgnoreFile {
		return nil, inputErrorf("%q in the source is larger than %d bytes: ssf reads ignore files of at most that size; shorten it", rel, maxIgnoreFile)
	}
	return data, nil
}

// report describes what the selection left out, for the build log.
func (sel *selection) report() []string {
	var lines []string
	if n := len(sel.ignored); n > 0 {
		lines = append(lines, fmt.Sprintf("left out %d ignored path(s) of the source (.gitignore, .git/info/exclude, %s): %s", n, SSFIgnore, firstFew(sel.ignored)))
	}
	if n := len(sel.nested); n > 0 {
		lines = append(lines, fmt.Sprintf("left out %d nested git repository(ies) or submodule(s) of the source, whose files the repository does not hold: %s", n, firstFew(sel.nested)))
	}
	if n := len(sel.unread); n > 0 {
		lines = append(lines, fmt.Sprintf("did not read %d ignore file(s) that are not regular files (a symlink, a fifo): %s", n, firstFew(sel.unread)))
	}
	return lines
}
