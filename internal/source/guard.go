package source

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// guard decides, entry by entry while the source is snapshotted, what of the source directory may reach the
// tasks. Comparing paths keeps $SSF_HOME out of the source only as long as nothing inside the source is the same
// file under another name: a hard link to the signing key, or a bind mount of the home, would otherwise be copied
// into every task. So the guard:
//
//   - refuses the build when a regular file with more than one link is a file of the factory home (same device and
//     inode), naming the file;
//   - never crosses a mount point: a directory on another device, or one that /proc/self/mountinfo lists as a mount
//     point (a bind mount keeps the device number), is left out with its whole subtree and reported;
//   - refuses a source that is, or holds, the factory home or the key's directory under another name (the source
//     itself a bind mount of the home's parent, say), and a file that is the key itself (same device and inode);
//   - leaves out fifos, sockets and devices, which a task could not use as files, and reports their names.
//
// The checks judge the Lstat the snapshot's walk took of each entry, and the walk reads only a file that is still
// that one (same device and inode), so swapping an entry while the source is snapshotted cannot slip a factory
// file past them. (Linking a file one does not own, such as the key, also needs fs.protected_hardlinks=0.)
type guard struct {
	root    *os.Root // the source directory
	dev     uint64   // its device
	mounts  map[string]bool
	protect Protected
	home    map[fileID]string // files of the factory home by identity; filled on first need
	// The key, the home and the key's directory by identity, checked for every entry: a bind mount shows them
	// under another path with a single link, which neither a path comparison nor the link count catches.
	key         fileID
	protectDirs map[fileID]string

	special []string // fifos, sockets and devices left out
	crossed []string // mount points not crossed
	err     error    // the first refusal
}

// fileID is a file's identity on the host.
type fileID struct{ dev, ino uint64 }

// newGuard opens dir (absolute) for checking against protect.
func newGuard(dir string, protect Protected) (*guard, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, inputErrorf("--source %q: %w", dir, err)
	}
	fi, err := root.Stat(".")
	if err != nil {
		root.Close()
		return nil, inputErrorf("--source %q: %w", dir, err)
	}
	g := &guard{root: root, protect: protect, dev: statOf(fi).Dev, protectDirs: map[fileID]string{}}
	if kfi, err := os.Stat(protect.Key); err == nil {
		g.key = idOf(kfi)
	}
	for what, d := range map[string]string{"the factory home": protect.Home, "the directory of the signing key": filepath.Dir(protect.Key)} {
		if d == "" || d == "." {
			continue
		}
		if dfi, err := os.Stat(d); err == nil {
			g.protectDirs[idOf(dfi)] = what + " (" + d + ")"
		}
	}
	if what, ok := g.protectDirs[idOf(fi)]; ok {
		root.Close()
		return nil, inputErrorf("--source %q is %s under another name (a bind mount?): every task would get a copy of it; choose a source directory that does not hold factory state", dir, what)
	}
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		resolved = dir
	}
	if g.mounts, err = mountPointsBeneath(resolved); err != nil {
		root.Close()
		return nil, fmt.Errorf("listing the mount points beneath the source %q: %w", dir, err)
	}
	return g, nil
}

func (g *guard) close() { g.root.Close() }

// include is the snapshot's filter: it reports whether the entry rel (slash-separated, relative to the source),
// whose Lstat is fi (nil: take one), may be part of the snapshot, and records why not. After a refusal it includes
// nothing more; the caller returns g.err.
func (g *guard) include(rel string, fi fs.FileInfo) bool {
	if g.err != nil {
		return false
	}
	if g.mounts[rel] {
		g.crossed = append(g.crossed, rel)
		return false
	}
	if fi == nil {
		var err error
		if fi, err = g.root.Lstat(rel); err != nil {
			return true // the snapshot's own read reports it
		}
	}
	st := statOf(fi)
	switch {
	case fi.IsDir():
		if st.Dev != g.dev {
			g.crossed = append(g.crossed, rel)
			return false
		}
		return g.dirAllowed(rel, fi)
	case fi.Mode().IsRegular():
		if st.Nlink == 1 && g.key != (fileID{}) && idOf(fi) == g.key {
			g.err = inputErrorf("--source: %q is the provenance signing key %s under another name (a bind mount?): every task would get a copy of it; remove it from the source", rel, g.protect.Key)
			return false
		}
		if st.Nlink > 1 {
			if what := g.homeFile(fileID{st.Dev, st.Ino}); what != "" {
				g.err = inputErrorf("--source: %q is a hard link to %s in the factory home (%s): every task would get a copy of it; remove the link from the source",
					rel, what, g.protect.Home)
				return false
			}
		}
	case fi.Mode()&(fs.ModeNamedPipe|fs.ModeSocket|fs.ModeDevice|fs.ModeCharDevice) != 0:
		g.special = append(g.special, rel)
		return false
	}
	return true
}

// dirAllowed refuses the build (setting g.err) when the directory rel, whose Lstat is fi, is the factory home or
// the key's directory under another name. The selection asks before entering a directory, so the refusal names the
// directory rather than the first file of it that a later check would catch.
func (g *guard) dirAllowed(rel string, fi fs.FileInfo) bool {
	if what, ok := g.protectDirs[idOf(fi)]; ok {
		g.err = inputErrorf("--source: %q is %s under another name (a bind mount?): every task would get a copy of it; remove it from the source", rel, what)
		return false
	}
	return true
}

// keyMark stands for the signing key in the index of the home's files.
const keyMark = "\x00key"

// homeFile returns the path, relative to the factory home, of the home's file with identity id, or "". The home
// is indexed once, and only when the source holds a file with several links, so an ordinary source costs nothing.
func (g *guard) homeFile(id fileID) string {
	if g.home == nil {
		g.home = map[fileID]string{}
		// Errors leave parts of the home unindexed; the key is looked up by itself below so it is always known.
		_ = filepath.WalkDir(g.protect.Home, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			if fi, err := d.Info(); err == nil {
				st := statOf(fi)
				rel, _ := filepath.Rel(g.protect.Home, p)
				g.home[fileID{st.Dev, st.Ino}] = rel
			}
			return nil
		})
		if fi, err := os.Lstat(g.protect.Key); err == nil {
			st := statOf(fi)
			g.home[fileID{st.Dev, st.Ino}] = keyMark
		}
	}
	if rel, ok := g.home[id]; ok {
		if rel == keyMark {
			return "the provenance signing key " + g.protect.Key
		}
		return rel
	}
	return ""
}

// report describes what was left out of the source, for the build log; "" when nothing was.
func (g *guard) report() []string {
	var lines []string
	if n := len(g.special); n > 0 {
		lines = append(lines, fmt.Sprintf("left out %d fifo(s), socket(s) or device(s) of the source: %s", n, firstFew(g.special)))
	}
	if n := len(g.crossed); n > 0 {
		lines = append(lines, fmt.Sprintf("did not cross %d mount point(s) in the source (their contents are not part of it): %s", n, firstFew(g.crossed)))
	}
	return lines
}

// firstFew quotes the first names of a list, and says how many more there are.
func firstFew(names []string) string {
	const show = 5
	var b strings.Builder
	for i, n := range names {
		if i == show {
			fmt.Fprintf(&b, " and %d more", len(names)-show)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(n))
	}
	return b.String()
}

func idOf(fi fs.FileInfo) fileID {
	st := statOf(fi)
	return fileID{st.Dev, st.Ino}
}

func statOf(fi fs.FileInfo) *syscall.Stat_t {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st
	}
	return &syscall.Stat_t{}
}

// mountPointsBeneath returns the mount points strictly beneath dir (which has its symlinks resolved), as
// slash-separated paths relative to it.
func mountPointsBeneath(dir string) (map[string]bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mounts := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// Fields: mount id, parent id, major:minor, root, mount point, ... (proc(5)).
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		rel, err := filepath.Rel(dir, mp)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		mounts[filepath.ToSlash(rel)] = true
	}
	return mounts, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, \011, \012, \134) of a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
