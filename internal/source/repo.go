package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// repoInfo is the git work tree a source directory is in.
type repoInfo struct {
	top    string // its top, symlinks resolved
	prefix string // the source's slash-separated path beneath top; "" when the source is the top
	// rules is git's ignore rules for the source's top: .git/info/exclude and the .gitignore files of the
	// directories from the repository's top down to the source's parent. (core.excludesFile is never read: it
	// names a file anywhere on the host, which the repository's configuration may point at a secret or a fifo.)
	rules ignoreRules
	head  *gitTree // the commit's files beneath prefix; nil when there is no commit or it cannot be read
	// headMismatch is why head is nil although HEAD names a commit; "" otherwise.
	headMismatch string
	unread       []string // ignore files above the source that were not read
}

// findRepo returns the git work tree that the source directory dir (absolute) is the top of or lies in, or nil.
// When it is not nil but a work tree above dir was found and not taken, the string says why, for people.
//
// The work tree is found by `git rev-parse --show-toplevel` run in dir, with the same hardening as every git
// command here (gitRepo): rev-parse reads the repository's configuration but starts nothing it names. Git does
// not look across a file system's boundary, and refuses a repository another user owns. A work tree above dir is
// taken only if it passes the guard's rules too: no mount point between its top and dir (the source would be
// another file system's files, not the repository's), its top not the factory home or inside it, and dir not
// in a directory the repository ignores (git would not hold those files either).
func findRepo(ctx context.Context, dir string, gd *guard) (*repoInfo, string, error) {
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, "", nil
	}
	out, err := (&gitRepo{dir: resolved, discover: true}).output(ctx, "rev-parse", "--show-toplevel")
	if errors.Is(err, errGitTimeout) && ctx.Err() == nil {
		// A plain directory, then: .git at its top is left out all the same.
		return nil, fmt.Sprintf("looking for the git work tree of the source: %v", err), nil
	}
	if err != nil || out == "" {
		return nil, "", ctx.Err()
	}
	top := filepath.Clean(out)
	rel, err := filepath.Rel(top, resolved)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return nil, "", nil
	}
	info := &repoInfo{top: top}
	g := &gitRepo{dir: top}
	if rel != "." {
		info.prefix = filepath.ToSlash(rel)
		if why, err := aboveRules(top, info.prefix, gd); why != "" || err != nil {
			return nil, why, err
		}
	}
	root, err := os.OpenRoot(top)
	if err != nil {
		return nil, fmt.Sprintf("the git work tree %s above the source cannot be opened: %v", top, err), nil
	}
	defer root.Close()
	unread := &info.unread
	if p, err := g.output(ctx, "rev-parse", "--git-path", "info/exclude"); err == nil {
		if !filepath.IsAbs(p) {
			p = filepath.Join(top, p)
		}
		if l, err := readOutside(p, unread); err != nil {
			return nil, "", err
		} else if l != nil {
			info.rules.core = append(info.rules.core, l)
		}
	} else if ctx.Err() != nil {
		return nil, "", ctx.Err()
	}
	// The .gitignore files above the source, each deciding whether the next directory down is ignored.
	if info.prefix != "" {
		dirRel := ""
		for name := range strings.SplitSeq(info.prefix, "/") {
			l, err := readIgnoreFile(root, path.Join(dirRel, ".gitignore"), dirRel, unread)
			if err != nil {
				return nil, "", err
			}
			info.rules = info.rules.with(l)
			dirRel = path.Join(dirRel, name)
			if info.rules.ignored(dirRel, true) {
				return nil, fmt.Sprintf("the git work tree %s ignores %q, which holds the source: the source is taken as a plain directory", top, dirRel), nil
			}
		}
	}
	info.head, info.headMismatch, err = readHead(ctx, g, info.prefix)
	if err != nil {
		return nil, "", err
	}
	return info, "", nil
}

// aboveRules checks a work tree whose top is above the source (at prefix beneath it) against the guard's rules.
// It returns why the work tree is not taken as the source's, or "".
func aboveRules(top, prefix string, gd *guard) (string, error) {
	fi, err := os.Stat(top)
	if err != nil {
		return fmt.Sprintf("the git work tree %s above the source cannot be read: %v", top, err), nil
	}
	if statOf(fi).Dev != gd.dev {
		return fmt.Sprintf("the git work tree %s above the source is on another file system", top), nil
	}
	if what, ok := gd.protectDirs[idOf(fi)]; ok {
		return fmt.Sprintf("the git work tree %s above the source is %s", top, what), nil
	}
	if home := gd.protect.Home; home != "" {
		if h, err := filepath.EvalSymlinks(home); err == nil {
			if r, err := filepath.Rel(h, top); err == nil && r != ".." && !strings.HasPrefix(r, "../") {
				return fmt.Sprintf("the git work tree %s above the source is in the factory home (%s)", top, home), nil
			}
		}
	}
	mounts, err := mountPointsBeneath(top)
	if err != nil {
		return "", fmt.Errorf("listing the mount points beneath the git work tree %q: %w", top, err)
	}
	for d := prefix; d != "."; d = path.Dir(d) {
		if mounts[d] {
			return fmt.Sprintf("the source lies beneath the mount point %s in the git work tree %s, so its files are not the repository's", filepath.Join(top, d), top), nil
		}
	}
	return "", nil
}

// readOutside reads an ignore file outside the source (the repository's .git/info/exclude) as readIgnoreFile
// does: a file that is not regular is not read, nor followed if it is a symlink.
func readOutside(p string, unread *[]string) (*ignoreList, error) {
	root, err := os.OpenRoot(filepath.Dir(p))
	if err != nil {
		return nil, nil // no info directory: no patterns
	}
	defer root.Close()
	var skipped []string
	l, err := readIgnoreFile(root, filepath.Base(p), "", &skipped)
	if len(skipped) > 0 {
		*unread = append(*unread, p)
	}
	if l != nil {
		l.source = p
	}
	return l, err
}
