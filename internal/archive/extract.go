package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// ExtractOptions says how Extract treats what it writes.
type ExtractOptions struct {
	// Chown gives every extracted entry, and every directory Extract creates, the owner UID and group GID.
	// Without it entries belong to the caller; the owners recorded in the tar stream are never used.
	Chown    bool
	UID, GID int

	// Sync flushes every extracted file and directory to stable storage before Extract returns, so that the
	// caller can publish the tree with a rename and trust it after a crash.
	Sync bool
}

// Extract unpacks the tar stream r into dest, which must be an empty directory or not exist yet (it is then
// created with mode 0755).
//
// Every entry is created through an [os.Root] opened at dest, one path component at a time: a name that is
// absolute or contains "..", a parent that is not a real directory (a symlink from an earlier entry, say), a hard
// link whose target is not a regular file already extracted, or an entry that would replace another is rejected,
// as are devices, fifos and other unsupported types. Symlink targets are stored verbatim and never followed.
// Regular files and directories get the permission bits and sticky bit of their entries (setuid and setgid are
// dropped), and parent directories missing from the stream get 0755; owners, times and xattrs in the stream are
// ignored, as are global PAX headers.
// On error, dest may hold part of the stream and the caller should remove it.
func Extract(ctx context.Context, r io.Reader, dest string, opts ExtractOptions) error {
	if err := os.Mkdir(dest, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("extracting into %q: %w", dest, err)
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return fmt.Errorf("extracting into %q: %w", dest, err)
	}
	defer root.Close()
	if err := checkEmpty(root); err != nil {
		return fmt.Errorf("extracting into %q: %w", dest, err)
	}
	x := &extractor{root: root, opts: opts, dirs: map[string]fs.FileMode{}}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("extracting into %q: %w", dest, err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("extracting into %q: reading tar stream: %w", dest, err)
		}
		if err := x.extract(ctx, hdr, tr); err != nil {
			return fmt.Errorf("extracting %q into %q: %w", hdr.Name, dest, err)
		}
	}
	if err := x.finish(); err != nil {
		return fmt.Errorf("extracting into %q: %w", dest, err)
	}
	return nil
}

func checkEmpty(root *os.Root) error {
	f, err := root.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && err != io.EOF {
		return err
	}
	if len(names) > 0 {
		return errors.New("destination is not empty")
	}
	return nil
}

// extractor holds the state of one Extract call.
type extractor struct {
	root  *os.Root
	opts  ExtractOptions
	dirs  map[string]fs.FileMode // every directory created, with the mode it gets at the end
	files []string               // regular files written, for Sync
	buf   []byte                 // for copying file contents
}

// maxNameLen bounds an entry's name (and a hard link's target). Every missing parent is created through the
// os.Root one component at a time, each walking the path from dest, so a name's cost grows with its depth
// squared: one PAX header of a megabyte of "a/" would take days, in a single entry the ctx is not checked within.
// Linux's PATH_MAX keeps a source's own deep trees working (2,048 levels at most).
const maxNameLen = 4096

// entryName checks a name from the stream and returns it clean, without a leading "./" or a trailing "/".
// It returns "." for the root itself.
func entryName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	if len(name) > maxNameLen {
		return "", fmt.Errorf("name is %d bytes long: at most %d (PATH_MAX) are supported", len(name), maxNameLen)
	}
	if strings.HasPrefix(name, "/") {
		return "", errors.New("absolute name")
	}
	var parts []string
	for part := range strings.SplitSeq(name, "/") {
		switch part {
		case "..":
			return "", errors.New(`name contains ".."`)
		case "", ".":
		default:
			parts = append(parts, part)
		}
	}
	if len(parts) == 0 {
		return ".", nil
	}
	return strings.Join(parts, "/"), nil
}

// entryMode is the mode an entry gets: its permission bits and sticky bit.
func entryMode(hdr *tar.Header) fs.FileMode {
	mode := fs.FileMode(hdr.Mode) & fs.ModePerm
	if hdr.Mode&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

func (x *extractor) extract(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
	default:
		return fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
	}
	// The tar reader fills a sparse file's holes with zeros, which would be written out: a few blocks of stream
	// could fill the disk. Nothing ssf extracts needs one (its own tarballs never have them).
	if IsSparse(hdr) {
		return errors.New("sparse files are not supported")
	}
	name, err := entryName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return nil // dest itself; its mode is the caller's
		}
		return errors.New("names the destination itself")
	}
	if err := x.parents(name, true); err != nil {
		return err
	}
	mode := entryMode(hdr)
	switch hdr.Typeflag {
	case tar.TypeDir:
		info, err := x.root.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return x.mkdir(name, mode)
		case err != nil:
			return err
		case !info.IsDir():
			return fmt.Errorf("%q exists and is not a directory", name)
		}
		x.dirs[name] = mode // a directory created for an earlier entry, or listed twice: the last mode wins
		return nil
	case tar.TypeReg:
		return x.file(ctx, name, mode, r)
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return errors.New("symlink with an empty target")
		}
		if err := x.root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		if x.opts.Chown {
			return x.root.Lchown(name, x.opts.UID, x.opts.GID)
		}
		return nil
	default: // tar.TypeLink, the only type left
		target, err := entryName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		if err := x.parents(target, false); err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		info, err := x.root.Lstat(target)
		if err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("hard link to %q: not a regular file", hdr.Linkname)
		}
		return x.root.Link(target, name)
	}
}

// parents checks that every parent of name is a directory, not a symlink, creating missing ones if create is set.
// A directory this extraction created is known to be one (nothing it writes can replace a name that exists), so it
// is not looked up again: each lookup walks the whole path, and a deep tree would cost the cube of its depth.
func (x *extractor) parents(name string, create bool) error {
	for i := range len(name) {
		if name[i] != '/' {
			continue
		}
		dir := name[:i]
		if _, ok := x.dirs[dir]; ok {
			continue
		}
		info, err := x.root.Lstat(dir)
		switch {
		case create && errors.Is(err, fs.ErrNotExist):
			if err := x.mkdir(dir, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case info.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("parent %q is a symlink, which is never followed", dir)
		case !info.IsDir():
			return fmt.Errorf("parent %q is not a directory", dir)
		}
	}
	return nil
}

// mkdir creates a directory that only its owner can use until finish gives it its mode, so that nobody can put
// anything in it meanwhile, and so that a read-only mode does not stop its own contents being extracted.
func (x *extractor) mkdir(name string, mode fs.FileMode) error {
	if err := x.root.Mkdir(name, 0o700); err != nil {
		return err
	}
	x.dirs[name] = mode
	if x.opts.Chown {
		return x.root.Lchown(name, x.opts.UID, x.opts.GID)
	}
	return nil
}

// file writes a regular file. O_EXCL makes the open fail on anything that exists, a symlink included, so the
// write cannot land anywhere but a new file.
func (x *extractor) file(ctx context.Context, name string, mode fs.FileMode, r io.Reader) error {
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if x.buf == nil {
		x.buf = make([]byte, copyBufferSize)
	}
	_, err = CopyContext(ctx, f, r, x.buf)
	if err == nil && x.opts.Chown {
		err = f.Chown(x.opts.UID, x.opts.GID)
	}
	if err == nil {
		// After Chown, which may clear mode bits, and through the descriptor, which cannot be a symlink.
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if x.opts.Sync {
		x.files = append(x.files, name)
	}
	return nil
}

// finish gives the directories their modes, deepest first so that a read-only parent does not get in the way,
// and with Sync then flushes every file and directory. Modes are changed through descriptors opened with
// O_DIRECTORY, never through a path that could name a symlink.
func (x *extractor) finish() error {
	dirs := slices.Sorted(maps.Keys(x.dirs))
	slices.Reverse(dirs) // "a/b" sorts after "a": children first
	for _, name := range dirs {
		if err := x.chmodDir(name, x.dirs[name]); err != nil {
			return fmt.Errorf("setting mode of %q: %w", name, err)
		}
	}
	if !x.opts.Sync {
		return nil
	}
	if err := x.syncAll(append(x.files, dirs...)); err != nil {
		return err
	}
	if err := x.syncFile("."); err != nil {
		return fmt.Errorf("syncing destination: %w", err)
	}
	return nil
}

func (x *extractor) chmodDir(name string, mode fs.FileMode) error {
	f, err := x.root.OpenFile(name, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Chmod(mode)
}

// syncParallelism is how many fsyncs run at once. One at a time, a tree of 15,000 files takes minutes to flush;
// concurrent fsyncs share journal commits.
const syncParallelism = 32

// syncAll flushes the named files and directories, several at a time, and returns the first error.
func (x *extractor) syncAll(names []string) error {
	work := make(chan string)
	errs := make(chan error, syncParallelism)
	var wg sync.WaitGroup
	for range syncParallelism {
		wg.Go(func() {
			var first error
			for name := range work {
				if first != nil {
					continue // drain
				}
				if err := x.syncFile(name); err != nil {
					first = fmt.Errorf("syncing %q: %w", name, err)
				}
			}
			errs <- first
		})
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (x *extractor) syncFile(name string) error {
	f, err := x.root.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// IsSparse reports a GNU sparse entry, old-style or in PAX records: the tar reader fills its holes with zeros, so
// its data is not the bytes in the stream, and a few blocks can claim any size.
func IsSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}
