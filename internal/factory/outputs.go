package factory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/verify"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// MaxOutputEntries bounds the entries (files and directories) the control plane reads in one task's declared
// directory outputs: a step can create millions of empty files in a second, and the walk and the copies grow with
// them. (What is published is bounded more tightly, by MaxSubjects; internal outputs only by this.)
const MaxOutputEntries = 10000

// MaxOutputDepth bounds how deep directories may nest in a declared directory output: the walk holds a descriptor
// per level, and tasks are collected side by side (maxParallelTasks, the number of CPUs by default), so 2048
// levels each (as deep as an output path's 4096 bytes allow) could take the control plane past its limit of open
// files and fail the other tasks. Real output trees nest a few dozen levels at most.
const MaxOutputDepth = 128

// MaxSubjects is the most subjects one provenance statement may have: sigstore-go (and so cosign and ssf verify)
// refuses to verify a statement with more ("too many subjects: 1025 > 1024"). A build's published output files,
// its OCI artifact and its image outputs together must fit.
const MaxSubjects = pipeline.MaxPublishedFiles + 1 // 1024

// checkSubjectCount refuses a build whose provenance would have more than MaxSubjects subjects, before anything is
// signed: nobody could verify it.
func checkSubjectCount(files, subjects int) error {
	if subjects <= MaxSubjects {
		return nil
	}
	return fmt.Errorf("the build publishes %d output files (%d provenance subjects with its OCI artifact and images), more than the %d subjects verifiers (sigstore-go, cosign, ssf verify) accept in one statement, so nothing was signed: publish fewer files, such as one archive of a directory (tar -czf \"$SSF_OUTPUTS/dist.tgz\" dist), or declare the files only later tasks need as internal ({path: P, internal: true})", files, subjects, MaxSubjects)
}

// collectOutputs hashes each declared output of a finished task and copies it to dest. Every path component
// must be a real directory and each output file a regular file: a symlink anywhere fails the task, so nothing
// outside the outputs directory can be hashed or copied. A directory output (declared with a trailing '/') is
// walked without following anything: each regular file under it becomes an output of its own, named by its path
// relative to $SSF_OUTPUTS; a symlink, fifo, socket or device in it fails the task, as do more than
// MaxOutputEntries entries, and a directory that holds no regular file (a declared output must produce
// something; a task that may produce nothing should not declare it).
//
// The outputs of one task may add up to at most limit bytes (by their sizes, so a sparse file cannot make the
// control plane write more than that to disk).
func collectOutputs(ctx context.Context, t *pipeline.Task, outDir, dest string, limit int64) ([]Output, error) {
	root, err := os.OpenRoot(outDir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	c := &collector{ctx: ctx, task: t, root: root, dest: dest, limit: limit}
	for _, o := range t.Outputs {
		if o.Dir {
			err = c.dir(o)
		} else {
			err = c.file(o, o.Path)
		}
		if err != nil {
			return nil, err
		}
	}
	return c.outs, nil
}

// collector is the state of one task's collection.
type collector struct {
	ctx     context.Context
	task    *pipeline.Task
	root    *os.Root // the task's $SSF_OUTPUTS
	dest    string
	limit   int64
	total   int64 // bytes collected
	entries int   // entries read in directory outputs
	outs    []Output
}

// fail is a task failure about the declared output o (and, in a directory output, its file rel).
func (c *collector) fail(o pipeline.Output, rel, format string, args ...any) error {
	what := fmt.Sprintf("output %q ", o.String())
	if rel != o.Path {
		what = fmt.Sprintf("output %q: %q ", o.String(), rel)
	}
	return &TaskError{Task: c.task.Name, ExitCode: -1, Reason: what + fmt.Sprintf(format, args...)}
}

// file collects the regular file rel, the declared output o.
func (c *collector) file(o pipeline.Output, rel string) error {
	f, err := oci.OpenRegular(c.root, rel)
	if err != nil {
		return outputRefused(err, func(format string, args ...any) error { return c.fail(o, rel, format, args...) })
	}
	defer f.Close()
	return c.take(o, rel, f)
}

// take hashes and copies the opened regular file rel of the output o.
func (c *collector) take(o pipeline.Output, rel string, f *os.File) error {
	fail := func(format string, args ...any) error { return c.fail(o, rel, format, args...) }
	fi, err := f.Stat()
	if err != nil {
		return fail("cannot be read: %v", err)
	}
	if c.total += fi.Size(); c.total > c.limit {
		return fail("takes the task's outputs past %d bytes (maxOutputBytes in config.yaml)", c.limit)
	}
	target := filepath.Join(c.dest, filepath.FromSlash(rel))
	digest, size, err := copyHashed(ctxReader{c.ctx, io.LimitReader(f, c.limit)}, target, execBit(f))
	if err != nil {
		return fmt.Errorf("collecting output %q of task %q: %w", rel, c.task.Name, err)
	}
	c.outs = append(c.outs, Output{File: oci.File{Path: rel, Digest: digest, Size: size}, Task: c.task.Name, Internal: o.Internal})
	return nil
}

// dir collects every regular file under the directory output o, in path order.
//
// Each directory and file is opened relative to its parent directory's descriptor, one name at a time with
// O_NOFOLLOW, never by its path from the outputs root: resolving every file's path again component by component
// (as os.Root does, in user space) costs the square of its depth, and a step nesting 1500 directories made 20 files
// take 36 seconds, so 10000 would hold the build for hours, past any task timeout.
func (c *collector) dir(o pipeline.Output) error {
	if err := c.checkDirPath(o); err != nil {
		return err
	}
	first := len(c.outs)
	top, err := c.root.OpenFile(o.Path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if err != nil {
		return c.fail(o, o.Path, "cannot be read as a directory: %v", err)
	}
	err = c.walk(o, top, o.Path)
	top.Close()
	if err != nil {
		return err
	}
	if len(c.outs) == first {
		return c.fail(o, o.Path, "holds no regular file: a declared directory must produce at least one (a task that may produce nothing should not declare it)")
	}
	added := c.outs[first:]
	slices.SortFunc(added, func(a, b Output) int { return strings.Compare(a.Path, b.Path) })
	return nil
}

// walk collects the regular files under the open directory d, the directory rel of the output o. It holds one
// descriptor per level, at most MaxOutputDepth.
func (c *collector) walk(o pipeline.Output, d *os.File, rel string) error {
	entries, err := c.readDir(o, d, rel)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		name := rel + "/" + e.Name()
		// The names are the step's choice and become subject names people read: the declared paths' rules.
		if msg := pipeline.OutputPathProblem(name); msg != "" {
			return c.fail(o, name, "cannot be an output: %s", msg)
		}
		switch typ := e.Type(); {
		case typ&fs.ModeSymlink != 0:
			return c.fail(o, name, "is a symlink; outputs must be regular files (symlinks are never followed)")
		case typ.IsDir():
			if strings.Count(name, "/")-strings.Count(o.Path, "/") > MaxOutputDepth {
				return c.fail(o, name, "is nested more than %d directories deep in the output; ssf walks at most that deep: flatten the tree, or publish it as one archive", MaxOutputDepth)
			}
			sub, err := openAt(d, e.Name(), syscall.O_NOFOLLOW|syscall.O_DIRECTORY)
			if err != nil {
				return c.fail(o, name, "cannot be read as a directory: %v", err)
			}
			err = c.walk(o, sub, name)
			sub.Close()
			if err != nil {
				return err
			}
		case typ.IsRegular():
			// O_NONBLOCK: a fifo swapped in after the directory was read must not block the open; it is refused
			// by its own FileInfo.
			f, err := openAt(d, e.Name(), syscall.O_NOFOLLOW|syscall.O_NONBLOCK)
			if err != nil {
				return c.fail(o, name, "cannot be opened: %v", err)
			}
			if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
				f.Close()
				return c.fail(o, name, "is not a regular file")
			}
			err = c.take(o, name, f)
			f.Close()
			if err != nil {
				return err
			}
		default:
			return c.fail(o, name, "is not a regular file (%s); a directory output may hold only regular files and directories", typ.Type())
		}
	}
	return nil
}

// openAt opens the single name in the directory d, read-only, with flags added.
func openAt(d *os.File, name string, flags int) (*os.File, error) {
	raw, err := d.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var oerr error
	if err := raw.Control(func(dfd uintptr) {
		for {
			fd, oerr = syscall.Openat(int(dfd), name, syscall.O_RDONLY|syscall.O_CLOEXEC|flags, 0)
			if oerr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return nil, err
	}
	if oerr != nil {
		return nil, oerr
	}
	return os.NewFile(uintptr(fd), name), nil
}

// checkDirPath checks that every component of the directory output's path is a real directory.
func (c *collector) checkDirPath(o pipeline.Output) error {
	parts := strings.Split(o.Path, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := c.root.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return c.fail(o, o.Path, "was not created (the task must create the directory $SSF_OUTPUTS/%s/)", o.Path)
		case err != nil:
			return c.fail(o, o.Path, "cannot be read: %v", err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return c.fail(o, o.Path, "is or passes through a symlink (%s); outputs must be real directories and regular files", p)
		case !fi.IsDir() && p == o.Path:
			return c.fail(o, o.Path, "is declared as a directory but is not one (%s)", fileType(fi.Mode()))
		case !fi.IsDir():
			return c.fail(o, o.Path, "passes through %s, which is not a directory", p)
		}
	}
	return nil
}

// readDir reads the open directory d (the directory rel of the output o), sorted by name, counting its entries
// against MaxOutputEntries. It reads in batches, so a directory of millions of entries costs no more than the
// bound before it fails.
func (c *collector) readDir(o pipeline.Output, d *os.File, rel string) ([]fs.DirEntry, error) {
	var all []fs.DirEntry
	for {
		if err := c.ctx.Err(); err != nil {
			return nil, err
		}
		batch, err := d.ReadDir(256)
		c.entries += len(batch)
		if c.entries > MaxOutputEntries {
			return nil, c.fail(o, o.Path, "holds more than %d entries (files and directories) in the task's directory outputs: a task may publish at most that many", MaxOutputEntries)
		}
		all = append(all, batch...)
		if errors.Is(err, io.EOF) || (err == nil && len(batch) == 0) {
			break
		}
		if err != nil {
			return nil, c.fail(o, rel, "cannot be read: %v", err)
		}
	}
	slices.SortFunc(all, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return all, nil
}

func fileType(m fs.FileMode) string {
	if m.IsRegular() {
		return "a regular file"
	}
	return m.Type().String()
}

// outputRefused says, for the task's log, why oci.OpenRegular refused a declared output.
func outputRefused(err error, fail func(format string, args ...any) error) error {
	var oe *oci.OutputError
	switch {
	case !errors.As(err, &oe):
		return fail("cannot be read: %v", err)
	case oe.Open:
		return fail("cannot be opened: %v", oe.Err)
	case errors.Is(oe.Err, fs.ErrNotExist):
		return fail("was not created (the task must write it to $SSF_OUTPUTS/%s)", oe.Path)
	case oe.Err != nil:
		return fail("cannot be read: %v", oe.Err)
	case oe.Mode&fs.ModeSymlink != 0:
		return fail("is or passes through a symlink (%s); outputs must be regular files", oe.At)
	case oe.At != oe.Path:
		return fail("passes through %s, which is not a directory", oe.At)
	default:
		return fail("is not a regular file (%s)", oe.Mode.Type())
	}
}

// published returns the outputs that are subjects of the provenance, are copied to OUT and get SBOMs: all but
// the internal ones.
func published(outs []Output) []Output {
	var pub []Output
	for _, o := range outs {
		if !o.Internal {
			pub = append(pub, o)
		}
	}
	return pub
}

// checkProvenanceSize refuses a provenance bundle larger than verifiers read (verify.MaxBundleSize): signing it
// would give a build nobody can verify. Directory outputs of many files with long names can get there (each is a
// subject and has two SBOM byproducts), within MaxOutputEntries per task when there are several tasks.
func checkProvenanceSize(bundle []byte) error {
	if len(bundle) > verify.MaxBundleSize {
		return fmt.Errorf("the provenance would be %d bytes, more than the %d a verifier reads: the build publishes too many output files (or names too long); publish fewer files, such as one archive of a directory, or mark outputs that only later tasks need internal", len(bundle), verify.MaxBundleSize)
	}
	return nil
}

// published returns every task's published outputs.
func (b *build) published() []Output {
	var all []Output
	for _, t := range b.p.Order() {
		all = append(all, published(b.verified[t.Name])...)
	}
	return all
}

// checkSBOMNames refuses published outputs whose SBOM bundles would need another's as a directory. The parser
// checks the declared paths; the names of files found in directory outputs are known only now.
func checkSBOMNames(outs []Output) error {
	all := make(map[string]bool, len(outs))
	for _, o := range outs {
		all[o.Path] = true
	}
	for _, o := range outs {
		if msg := pipeline.SBOMClash(o.Path, all); msg != "" {
			return &TaskError{Task: o.Task, ExitCode: -1, Reason: msg}
		}
	}
	// Names that differ only in case or Unicode normalization ("dist/App.js" and "dist/app.js"; "é" composed or
	// not) are two subjects, but one file on a case-insensitive or normalizing file system (macOS, Windows): a
	// consumer who pulls or copies the outputs there finds under one name the bytes the statement gives for the
	// other, and their SBOM bundles overwrite each other too.
	folded := make(map[string]string, len(outs))
	for _, o := range outs {
		key := cases.Fold().String(norm.NFC.String(o.Path))
		if other, ok := folded[key]; ok {
			return &TaskError{Task: o.Task, ExitCode: -1, Reason: fmt.Sprintf("output %q and output %q differ only in case or Unicode normalization: on a case-insensitive file system (macOS, Windows) one would overwrite the other when the outputs are pulled or copied; rename one", other, o.Path)}
		}
		folded[key] = o.Path
	}
	return nil
}

// inputsOf lists what task t was given at /inputs: every output, internal or not, of each task it needs, with
// the digest the control plane computed. The caller holds b.mu or owns b alone.
func (b *build) inputsOf(t *pipeline.Task) []provenance.TaskInput {
	var in []provenance.TaskInput
	for _, n := range t.Needs {
		for _, o := range b.verified[n] {
			in = append(in, provenance.TaskInput{Task: n, Path: o.Path, Digest: provenance.DigestSet(o.Digest), Internal: o.Internal})
		}
	}
	return in
}
