package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"
)

// TreeStats counts what a tarball holds.
type TreeStats struct {
	Files    int   // regular files (hard links count once per name)
	Dirs     int   // directories, not counting the root
	Symlinks int   // symbolic links
	Skipped  int   // devices, fifos and sockets, which are left out
	Bytes    int64 // total size of the regular files
}

// copyBufferSize is the size of the buffer file contents are copied through.
const copyBufferSize = 256 << 10

// epoch is every entry's mtime, so that a tarball does not depend on when its files were written.
var epoch = time.Unix(0, 0)

// entry is one member of a tree, found by the walk and written later, once all entries are sorted.
type entry struct {
	rel    string      // slash-separated path relative to the root, without "./"
	info   fs.FileInfo // from Lstat; nil for a directory that WriteFiles adds implicitly
	target string      // symlink target, read during the walk
}

// WriteTree writes the tree under root to w as a deterministic tar stream.
//
// Entries are sorted by path in byte order (so a directory comes before its contents), their names are relative
// without a leading "./", and directories end in "/". Each entry has mtime 0, uid and gid 0, no user or group name
// and no other times or xattrs; its mode is its permission bits and sticky bit. Regular files, directories and
// symlinks are written (a symlink's target verbatim, never followed); a file with several hard links is written
// once per name as a regular file; devices, fifos and sockets are left out and counted in TreeStats.Skipped.
//
// include, if non-nil, is asked about every entry: its slash-separated relative path and the Lstat the walk took
// of it (the file that will be read is checked to be that one, so a filter judging info judges what is written);
// returning false leaves the entry out, and for a directory its whole subtree. root itself is not an entry. No symlink beneath root is ever
// followed, and a file that changes type or identity between the walk and the read is an error.
func WriteTree(ctx context.Context, w io.Writer, root string, include func(rel string, info fs.FileInfo) bool) (TreeStats, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return TreeStats{}, fmt.Errorf("opening tree %q: %w", root, err)
	}
	defer r.Close()
	info, err := r.Stat(".")
	if err != nil {
		return TreeStats{}, fmt.Errorf("opening tree %q: %w", root, err)
	}
	if !info.IsDir() {
		return TreeStats{}, fmt.Errorf("opening tree %q: not a directory", root)
	}
	var entries []entry
	if err := walk(ctx, r, "", include, &entries); err != nil {
		return TreeStats{}, fmt.Errorf("reading tree %q: %w", root, err)
	}
	stats, err := writeEntries(ctx, w, r, entries)
	if err != nil {
		return stats, fmt.Errorf("writing tree %q: %w", root, err)
	}
	return stats, nil
}

// WriteFiles is like WriteTree but writes only the listed files (slash-separated paths relative to root, as
// printed by `git ls-files`). Their parent directories are added with mode 0755, so the stream is the one
// WriteTree gives for a tree that holds just these files. A listed path may be a regular file or a symlink (a
// device, fifo or socket is counted as skipped); a directory, a missing path, a path that is not clean and
// relative, or one beneath a symlink is an error. Duplicates are written once.
func WriteFiles(ctx context.Context, w io.Writer, root string, files []string) (TreeStats, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return TreeStats{}, fmt.Errorf("opening tree %q: %w", root, err)
	}
	defer r.Close()
	var entries []entry
	dirs := map[string]bool{}
	seen := map[string]bool{}
	for _, rel := range files {
		if err := ctx.Err(); err != nil {
			return TreeStats{}, fmt.Errorf("listing files of %q: %w", root, err)
		}
		if !fs.ValidPath(rel) || rel == "." {
			return TreeStats{}, fmt.Errorf("listing file %q in %q: not a clean relative path", rel, root)
		}
		if seen[rel] {
			continue
		}
		seen[rel] = true
		dir, base := path.Split(rel)
		dir = strings.TrimSuffix(dir, "/")
		d, err := openDir(r, dir)
		if err != nil {
			return TreeStats{}, fmt.Errorf("listing file %q in %q: %w", rel, root, err)
		}
		e, err := lstatEntry(d, base, rel)
		if d != r {
			d.Close()
		}
		if err != nil {
			return TreeStats{}, fmt.Errorf("listing file %q in %q: %w", rel, root, err)
		}
		if e.info.IsDir() {
			return TreeStats{}, fmt.Errorf("listing file %q in %q: is a directory", rel, root)
		}
		entries = append(entries, e)
		for dir != "" && !dirs[dir] {
			dirs[dir] = true
			entries = append(entries, entry{rel: dir})
			dir = path.Dir(dir)
			if dir == "." {
				dir = ""
			}
		}
	}
	stats, err := writeEntries(ctx, w, r, entries)
	if err != nil {
		return stats, fmt.Errorf("writing files of %q: %w", root, err)
	}
	return stats, nil
}

// walk appends the entries beneath the directory rel, which d has open. Each name is looked up with Lstat
// relative to its own directory's descriptor, and each subdirectory is opened one component at a time and checked
// to be the directory that Lstat saw, so a symlink is never followed, even one that replaces a directory while
// the walk runs.
func walk(ctx context.Context, d *os.Root, rel string, include func(string, fs.FileInfo) bool, out *[]entry) error {
	f, err := d.OpenFile(".", os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		childRel := name
		if rel != "" {
			childRel = rel + "/" + name
		}
		e, err := lstatEntry(d, name, childRel)
		if err != nil {
			return err
		}
		if include != nil && !include(childRel, e.info) {
			continue
		}
		*out = append(*out, e)
		if !e.info.IsDir() {
			continue
		}
		sub, err := openChild(d, name, e.info)
		if err != nil {
			return fmt.Errorf("opening directory %q: %w", childRel, err)
		}
		err = walk(ctx, sub, childRel, include, out)
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// lstatEntry describes the single path component name in the directory d; rel is its path in the tree.
func lstatEntry(d *os.Root, name, rel string) (entry, error) {
	info, err := d.Lstat(name)
	if err != nil {
		return entry{}, err
	}
	e := entry{rel: rel, info: info}
	if info.Mode()&fs.ModeSymlink != 0 {
		if e.target, err = d.Readlink(name); err != nil {
			return entry{}, err
		}
	}
	return e, nil
}

// openChild opens the subdirectory name of d, checking that it is still the directory described by info.
func openChild(d *os.Root, name string, info fs.FileInfo) (*os.Root, error) {
	sub, err := d.OpenRoot(name)
	if err != nil {
		return nil, err
	}
	got, err := sub.Stat(".")
	if err != nil {
		sub.Close()
		return nil, err
	}
	if !os.SameFile(info, got) {
		sub.Close()
		return nil, errors.New("changed while being read")
	}
	return sub, nil
}

// openDir opens the directory rel beneath r one component at a time, refusing symlinks and non-directories.
// It returns r itself for "". The caller closes the result if it is not r.
func openDir(r *os.Root, rel string) (*os.Root, error) {
	if rel == "" {
		return r, nil
	}
	d := r
	done := ""
	for name := range strings.SplitSeq(rel, "/") {
		done = path.Join(done, name)
		info, err := d.Lstat(name)
		var sub *os.Root
		switch {
		case err != nil:
		case !info.IsDir():
			err = fmt.Errorf("%q is not a directory", done)
		default:
			sub, err = openChild(d, name, info)
		}
		if d != r {
			d.Close()
		}
		if err != nil {
			return nil, err
		}
		d = sub
	}
	return d, nil
}

// writeEntries sorts entries and writes them as a tar stream. Regular files are opened through r and checked to
// be the files the walk saw.
func writeEntries(ctx context.Context, w io.Writer, r *os.Root, entries []entry) (TreeStats, error) {
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.rel, b.rel) })
	var stats TreeStats
	tw := tar.NewWriter(w)
	buf := make([]byte, copyBufferSize)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return stats, err
		}
		hdr := &tar.Header{Name: e.rel, ModTime: epoch, Format: tar.FormatPAX}
		var mode fs.FileMode
		if e.info == nil {
			mode = fs.ModeDir | 0o755
		} else {
			mode = e.info.Mode()
		}
		// Only permission bits and the sticky bit survive. The sticky bit grants nothing and a root filesystem
		// needs it on /tmp; setuid and setgid are dropped because a build step must never gain privileges from a
		// file it was given.
		hdr.Mode = int64(mode & fs.ModePerm)
		if mode&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000 // tar's sticky bit, which is not fs.ModeSticky's value
		}
		switch {
		case mode.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, e.rel+"/"
			stats.Dirs++
		case mode&fs.ModeSymlink != 0:
			// Symlink modes differ between filesystems and mean nothing on Linux; fix them.
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, e.target, 0o777
			stats.Symlinks++
		case mode.IsRegular():
			if err := writeFile(ctx, tw, r, hdr, e.info, buf); err != nil {
				return stats, fmt.Errorf("writing file %q: %w", e.rel, err)
			}
			stats.Files++
			stats.Bytes += hdr.Size
			continue
		default:
			stats.Skipped++
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return stats, fmt.Errorf("writing entry %q: %w", e.rel, err)
		}
	}
	if err := tw.Close(); err != nil {
		return stats, err
	}
	return stats, nil
}

// writeFile writes the header and contents of the regular file hdr.Name. O_NONBLOCK keeps a fifo swapped in after
// the walk from blocking the open; the identity check then rejects it.
func writeFile(ctx context.Context, tw *tar.Writer, r *os.Root, hdr *tar.Header, info fs.FileInfo, buf []byte) error {
	f, err := r.OpenFile(hdr.Name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	got, err := f.Stat()
	if err != nil {
		return err
	}
	if !got.Mode().IsRegular() || !os.SameFile(info, got) {
		return errors.New("changed while being read")
	}
	hdr.Typeflag, hdr.Size = tar.TypeReg, got.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := CopyContext(ctx, tw, io.LimitReader(f, hdr.Size), buf)
	if err != nil {
		return err
	}
	if n != hdr.Size {
		return fmt.Errorf("changed while being read: read %d bytes, expected %d", n, hdr.Size)
	}
	if m, _ := f.Read(make([]byte, 1)); m != 0 {
		return fmt.Errorf("changed while being read: longer than %d bytes", hdr.Size)
	}
	return nil
}

// CopyContext is io.CopyBuffer that stops between chunks when ctx is done, so that a large file does not hold up
// cancellation.
func CopyContext(ctx context.Context, dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := src.Read(buf)
		if m > 0 {
			w, werr := dst.Write(buf[:m])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
