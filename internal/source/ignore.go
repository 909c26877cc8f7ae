package source

import (
	"bytes"
	"strings"
)

// This file is a matcher for gitignore patterns (gitignore(5)), used for the .gitignore files of a git work tree,
// its .git/info/exclude, and a source's .ssfignore. It is written here rather than asking `git ls-files --cached
// --others --exclude-standard` (or `git check-ignore`) because no hardening makes those safe on a hostile work tree:
// core.fsmonitor, core.untrackedCache and core.excludesFile can be overridden on the command line, and GIT_* taken
// out of the environment, but git still opens every .gitignore it finds with a blocking open, so a fifo named
// .gitignore hangs it for good (git 2.39; TestHostileRepositoryRunsNothing shows it); and ls-files reads the index,
// whose entries, flags and extensions (split index, sparse directories, an untracked cache that hides files from
// `git status`) the repository writes. Here each ignore file is opened only if Lstat calls it a regular file,
// without following a link and without blocking, and the index is never read: "tracked" is "in the HEAD commit",
// whose objects are checked against their ids. The matcher's behaviour is checked against git itself in
// ignore_test.go.
//
// Supported, as in git: blank lines and `#` comments; `\` escapes (`\#`, `\!`, `\ `); trailing spaces trimmed
// unless escaped; `!` negation (a file beneath an ignored directory cannot be re-included, because that directory
// is never entered); a trailing `/` matching directories only; a pattern with a `/` at its start or in its middle
// matched against the path relative to the file's directory, any other against the last path component at any
// depth; `*`, `?`, `[...]` (with `!` or `^`, ranges and `[:alpha:]`-style classes), none of which matches a `/`;
// a leading `**/`, a trailing `/**` and a `/**/` matching any number of directories. Matching is case-sensitive
// (core.ignoreCase is not read), as git is on Linux.

// maxIgnoreLine bounds one pattern, so that matching stays cheap whatever a file holds.
const maxIgnoreLine = 1024

// ignorePattern is one line of an ignore file.
type ignorePattern struct {
	glob     string // without the leading `!`, a trailing `/` or (for an anchored pattern) a leading `/`
	negate   bool   // `!`: a match re-includes
	dirOnly  bool   // trailing `/`: matches directories only
	basename bool   // no `/` in it: matched against the last component of the path
}

// ignoreList is the patterns of one ignore file, which apply to the paths beneath base.
type ignoreList struct {
	base     string // slash-separated directory of the file, relative to the top of the snapshot ("" for the top)
	source   string // the file, for people
	patterns []ignorePattern
	budget   *matchBudget // shared by every list of one snapshot; nil: unbounded
}

// maxMatchSteps bounds the work of matching one snapshot's paths against its ignore patterns (4 to 15 ns a step,
// so seconds). Each match costs at most the product of the pattern's and the path's lengths, but an ignore file
// may hold 8 MiB of patterns of 1024 bytes full of stars, and every file and directory of the source is matched
// against every pattern in force: 100 such patterns took a millisecond a path, so 8192 of them over a source of
// thousands of files would hold the build for hours. A real repository stays far below: a pattern such as
// `*.log` costs about twice the length of a name, so 80000 paths against 40 such patterns is about 10^8 steps.
var maxMatchSteps int64 = 500_000_000 // a variable so that tests can lower it

// matchBudget counts down the matching steps left to one snapshot; once below zero every match fails at once, and
// the snapshot is refused (selectFiles).
type matchBudget struct{ left int64 }

func (b *matchBudget) exhausted() bool { return b != nil && b.left < 0 }

// parseIgnore reads the patterns of an ignore file whose directory is base.
func parseIgnore(data []byte, base, source string) ignoreList {
	l := ignoreList{base: base, source: source}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark, as git skips it
	for raw := range bytes.SplitSeq(data, []byte("\n")) {
		line := trimTrailingSpaces(string(raw))
		if line == "" || line[0] == '#' || len(line) > maxIgnoreLine {
			continue
		}
		var p ignorePattern
		if line[0] == '!' {
			p.negate, line = true, line[1:]
		}
		if strings.HasSuffix(line, "/") {
			p.dirOnly, line = true, strings.TrimSuffix(line, "/")
		}
		if line == "" {
			continue
		}
		p.basename = !strings.Contains(line, "/")
		p.glob = strings.TrimPrefix(line, "/")
		l.patterns = append(l.patterns, p)
	}
	return l
}

// trimTrailingSpaces drops the spaces at the end of line that no backslash escapes (only spaces: a tab stays, as
// in git).
func trimTrailingSpaces(line string) string {
	end := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\\':
			i++ // the escaped character stays, whatever it is
			end = min(i+1, len(line))
		case ' ':
		default:
			end = i + 1
		}
	}
	return line[:end]
}

// match reports whether the list decides about rel (a path relative to the snapshot's top, beneath l.base), and if
// so whether it is ignored: the last pattern that matches decides.
func (l *ignoreList) match(rel string, isDir bool) (decided, ignored bool) {
	local := rel
	if l.base != "" {
		local = strings.TrimPrefix(rel, l.base+"/")
	}
	name := local[strings.LastIndexByte(local, '/')+1:]
	for i := len(l.patterns) - 1; i >= 0; i-- {
		p := &l.patterns[i]
		if p.dirOnly && !isDir {
			continue
		}
		var ok bool
		if p.basename {
			ok = globMatchBudget(p.glob, name, false, l.budget)
		} else {
			ok = globMatchBudget(p.glob, local, true, l.budget)
		}
		if ok {
			return true, !p.negate
		}
	}
	return false, false
}

// ignoreRules is the ignore files in force for one directory of the walk, most general first: core lists (such
// as .git/info/exclude, for the whole tree) and then the per-directory files from the top down. As in git, the
// deepest per-directory file with a matching pattern decides, then the core lists in order.
type ignoreRules struct {
	core []*ignoreList
	dirs []*ignoreList
}

// with returns the rules for a subdirectory that has its own ignore file l.
func (r ignoreRules) with(l *ignoreList) ignoreRules {
	if l == nil || len(l.patterns) == 0 {
		return r
	}
	return ignoreRules{core: r.core, dirs: append(r.dirs[:len(r.dirs):len(r.dirs)], l)}
}

// ignored reports whether rel (whose parent directories are not ignored) is ignored.
func (r ignoreRules) ignored(rel string, isDir bool) bool {
	for i := len(r.dirs) - 1; i >= 0; i-- {
		if decided, ign := r.dirs[i].match(rel, isDir); decided {
			return ign
		}
	}
	for _, l := range r.core {
		if decided, ign := l.match(rel, isDir); decided {
			return ign
		}
	}
	return false
}

// globMatch reports whether name matches the gitignore glob. With pathname set, name is a slash-separated path and
// no wildcard matches a `/` except `**` between slashes (or at either end); without it, name is one path
// component.
func globMatch(glob, name string, pathname bool) bool {
	return globMatchBudget(glob, name, pathname, nil)
}

// globMatchBudget is globMatch charging its steps to b (when not nil); it fails once b is exhausted.
func globMatchBudget(glob, name string, pathname bool, b *matchBudget) bool {
	if b != nil {
		if b.left--; b.left < 0 {
			return false
		}
	}
	if !strings.ContainsAny(glob, "*?[\\") {
		return glob == name // the common literal pattern (node_modules, build)
	}
	// With fewer than two runs of stars a match costs at most len(glob)·len(name) steps without remembering
	// anything; only more can backtrack over the same positions again and again.
	runs := 0
	for i := 0; i < len(glob); i++ {
		if glob[i] == '*' && (i == 0 || glob[i-1] != '*') {
			runs++
		}
	}
	m := globMatcher{glob: glob, name: name, pathname: pathname, memo: runs > 1, budget: b}
	return m.match(0, 0, plain)
}

// globMatcher matches by recursion over (position in glob, position in name, state), remembering the states that
// failed, so that a pattern full of stars costs at most a few steps per (glob, name) position pair.
type globMatcher struct {
	glob, name string
	pathname   bool
	memo       bool     // remember the states that failed
	failed     []uint64 // a bit per state, allocated on the first failure
	budget     *matchBudget
}

// States of the matcher: matching the glob from gi on, or first skipping any run of the name's bytes (star; or
// starSlash: a run that may cross a slash).
const (
	plain = iota
	star
	starSlash
)

func (m *globMatcher) match(gi, ni, state int) bool {
	if m.budget != nil {
		if m.budget.left--; m.budget.left < 0 {
			return false
		}
	}
	key := (gi*(len(m.name)+1)+ni)*3 + state
	if m.failed != nil && m.failed[key/64]&(1<<(key%64)) != 0 {
		return false
	}
	var ok bool
	if state == plain {
		ok = m.step(gi, ni)
	} else {
		// The run is empty, or takes one more byte of the name.
		ok = m.match(gi, ni, plain) || ni < len(m.name) && (state == starSlash || m.name[ni] != '/') && m.match(gi, ni+1, state)
	}
	if !ok && m.memo {
		if m.failed == nil {
			m.failed = make([]uint64, ((len(m.glob)+1)*(len(m.name)+1)*3+63)/64)
		}
		m.failed[key/64] |= 1 << (key % 64)
	}
	return ok
}

func (m *globMatcher) step(gi, ni int) bool {
	g, n := m.glob, m.name
	for gi < len(g) {
		switch c := g[gi]; c {
		case '*':
			stars := gi
			for gi < len(g) && g[gi] == '*' {
				gi++
			}
			// Two or more stars that make up a whole path component match across slashes; so does any star
			// outside pathname matching, where the name holds no slash anyway.
			whole := gi-stars >= 2 && (stars == 0 || g[stars-1] == '/') && (gi == len(g) || g[gi] == '/')
			switch {
			case !m.pathname || whole && gi == len(g):
				return m.match(gi, ni, starSlash)
			case whole: // `**/`: no directory, or any run that ends in a slash
				return m.match(gi+1, ni, plain) || m.match(gi, ni, starSlash)
			default:
				return m.match(gi, ni, star)
			}
		case '?':
			if ni >= len(n) || m.pathname && n[ni] == '/' {
				return false
			}
			gi, ni = gi+1, ni+1
		case '[':
			if ni >= len(n) {
				return false
			}
			next, ok := matchClass(g, gi, n[ni])
			if next < 0 || !ok || m.pathname && n[ni] == '/' {
				return false
			}
			gi, ni = next, ni+1
		case '\\':
			if gi+1 >= len(g) {
				return false // a pattern ending in a lone backslash matches nothing
			}
			gi++
			fallthrough
		default:
			if ni >= len(n) || n[ni] != g[gi] {
				return false
			}
			gi, ni = gi+1, ni+1
		}
	}
	return ni == len(n)
}

// matchClass matches c against the bracket expression starting at glob[i] (`[`). It returns the index after the
// closing `]`, or -1 when the expression is not closed (such a pattern matches nothing, as in git).
func matchClass(glob string, i int, c byte) (int, bool) {
	i++ // past '['
	negate := false
	if i < len(glob) && (glob[i] == '!' || glob[i] == '^') {
		negate, i = true, i+1
	}
	matched := false
	first := true
	for {
		if i >= len(glob) {
			return -1, false
		}
		if glob[i] == ']' && !first {
			return i + 1, matched != negate
		}
		first = false
		lo := glob[i]
		switch {
		case lo == '[' && i+1 < len(glob) && glob[i+1] == ':':
			end := strings.Index(glob[i+2:], ":]")
			if end < 0 {
				// Not a class name: the `[` is a literal.
				matched = matched || c == '['
				i++
				continue
			}
			name := glob[i+2 : i+2+end]
			in, known := charClass(name, c)
			if !known {
				return -1, false
			}
			matched = matched || in
			i += 2 + end + 2
			continue
		case lo == '\\':
			if i+1 >= len(glob) {
				return -1, false
			}
			i++
			lo = glob[i]
		}
		i++
		if i+1 < len(glob) && glob[i] == '-' && glob[i+1] != ']' {
			hi := glob[i+1]
			i += 2
			if hi == '\\' {
				if i >= len(glob) {
					return -1, false
				}
				hi = glob[i]
				i++
			}
			matched = matched || lo <= c && c <= hi
			continue
		}
		matched = matched || c == lo
	}
}

// charClass reports whether c is in the POSIX class name, and whether the name is known.
func charClass(name string, c byte) (in, known bool) {
	upper, lower, digit := 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9'
	alpha := upper || lower
	punct := c > ' ' && c < 0x7f && !alpha && !digit
	switch name {
	case "alnum":
		return alpha || digit, true
	case "alpha":
		return alpha, true
	case "blank":
		return c == ' ' || c == '\t', true
	case "cntrl":
		return c < ' ' || c == 0x7f, true
	case "digit":
		return digit, true
	case "graph":
		return c > ' ' && c < 0x7f, true
	case "lower":
		return lower, true
	case "print":
		return c >= ' ' && c < 0x7f, true
	case "punct":
		return punct, true
	case "space":
		return c == ' ' || c >= '\t' && c <= '\r', true
	case "upper":
		return upper, true
	case "xdigit":
		return digit || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F', true
	}
	return false, false
}
