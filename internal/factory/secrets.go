package factory

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/sandbox"
	"github.com/ssf-dev/ssf/internal/secret"
)

// Task secrets (docs/secrets.md). A task that lists `secrets: [NAME]` gets each value as the file
// /run/secrets/NAME: mode 0400, owned by the build's task uid, on a tmpfs the control plane mounts for that task
// alone (so a value is never written to a disk) and binds read-only into its container. Tasks that list no secret
// get no such mount. Values never reach a task's environment, its disk, the runtime spec or the provenance (which
// names the secrets a task was given, internalParameters.tasks.<task>.secrets); every task's log is redacted of
// every value of the build (and its base64 forms) before it reaches the terminal or the stored log.

// SecretsMountPoint is where a task finds its secrets, one file per name.
const SecretsMountPoint = "/run/secrets"

// Secrets opens the factory's secret store.
func (h Home) Secrets() *secret.Store {
	return secret.Open(h.layout().Secrets(), h.layout().SecretsKey())
}

// buildSecrets reads every secret the pipeline's tasks list, before anything runs. A secret that is not set is the
// pipeline author's or operator's to fix: a *pipeline.Error naming the task, the secret and the command that sets
// it. A file that does not authenticate is an error of the store, said as such.
func (h Home) buildSecrets(p *pipeline.Pipeline) (map[string][]byte, error) {
	values := map[string][]byte{}
	for i, t := range p.Tasks {
		for j, name := range t.Secrets {
			if _, ok := values[name]; ok {
				continue
			}
			v, err := h.Secrets().Get(name)
			if errors.Is(err, secret.ErrNotFound) {
				return nil, p.Errorf(t.Line, fmt.Sprintf("spec.tasks[%d].secrets[%d]", i, j),
					"task %q needs secret %q, which is not set in this factory (%s): set it with `ssf secret set %s` (the value on stdin); `ssf secret list` shows what is set",
					t.Name, name, h.Dir, name)
			} else if err != nil {
				return nil, fmt.Errorf("task %q: %w", t.Name, err)
			}
			values[name] = v
		}
	}
	return values, nil
}

// maxSecretsTmpfs bounds one task's secrets file system: every value is at most secret.MaxSize.
func secretsTmpfsSize(n int) int { return (n + 1) * (secret.MaxSize + 4096) }

// mountSecrets gives task t its secrets: see mountSecretsAt; the tmpfs is mounted on taskDir/secrets, beside the
// task's other directories and reached by no other mount.
func (b *build) mountSecrets(t *pipeline.Task, taskDir string) ([]sandbox.Mount, func() error, error) {
	if len(t.Secrets) == 0 {
		return nil, func() error { return nil }, nil
	}
	if err := checkSecretsMountPoint(b.rootfs); err != nil {
		return nil, nil, fmt.Errorf("task %q: %w", t.Name, err)
	}
	m, unmount, err := mountSecretsAt(t, b.secrets, filepath.Join(taskDir, "secrets"), b.lease.id)
	if err != nil {
		return nil, nil, err
	}
	return []sandbox.Mount{*m}, unmount, nil
}

// mountSecretsAt mounts a tmpfs on dir (created here), writes each of t's secrets into it as a 0400 file of uid,
// and returns the read-only mount of it at SecretsMountPoint and the function that unmounts it.
func mountSecretsAt(t *pipeline.Task, values map[string][]byte, dir string, uid int) (*sandbox.Mount, func() error, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, nil, err
	}
	opts := fmt.Sprintf("size=%d,nr_inodes=%d,mode=0700,uid=0,gid=0", secretsTmpfsSize(len(t.Secrets)), len(t.Secrets)+16)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, opts); err != nil {
		return nil, nil, fmt.Errorf("mounting the secrets tmpfs of task %q: %w", t.Name, err)
	}
	unmount := func() error {
		err := syscall.Unmount(dir, 0)
		if errors.Is(err, syscall.EBUSY) {
			err = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("unmounting the secrets of task %q: %w", t.Name, err)
		}
		return nil
	}
	for _, name := range t.Secrets {
		v, ok := values[name]
		if !ok { // buildSecrets read every listed secret
			unmount()
			return nil, nil, fmt.Errorf("task %q: secret %q was not read at admission", t.Name, name)
		}
		if err := writeSecret(filepath.Join(dir, name), v, uid); err != nil {
			unmount()
			return nil, nil, fmt.Errorf("task %q: writing secret %q to its tmpfs: %w", t.Name, name, err)
		}
	}
	// The directory is the task's to list, not to write; the bind mount is read-only as well.
	if err := os.Chown(dir, uid, uid); err != nil {
		unmount()
		return nil, nil, err
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		unmount()
		return nil, nil, err
	}
	return &sandbox.Mount{Source: dir, Destination: SecretsMountPoint, ReadOnly: true}, unmount, nil
}

func writeSecret(path string, v []byte, uid int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, 0o400)
	if err != nil {
		return err
	}
	if _, err := f.Write(v); err != nil {
		f.Close()
		return err
	}
	if err := f.Chown(uid, uid); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o400); err != nil { // whatever the umask
		f.Close()
		return err
	}
	return f.Close()
}

// checkSecretsMountPoint makes sure the builder's root file system has a real /run/secrets directory to mount
// on: without one the runtime would create it inside the shared, read-only-by-contract root file system cache.
func checkSecretsMountPoint(rootfs string) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, p := range []string{"run", "run/secrets"} {
		fi, err := root.Lstat(p)
		if err != nil || !fi.IsDir() {
			return fmt.Errorf("the builder's unpacked root file system %s has no directory /%s to mount secrets on (it was unpacked by an earlier ssf, or the image has a file or link there): remove %s so that ssf unpacks it again, or fix the image",
				rootfs, p, rootfs)
		}
	}
	return nil
}

// redactor replaces, in a step's output stream, every occurrence of a secret value, each of its lines and its
// base64 forms with "***", before the stream is split into lines for the terminal and the stored log. It works on
// the stream, not on lines, so a value split over two writes, or one that holds a newline, is caught; it holds
// back only the bytes that may be the start of a value (a partial match), so ordinary output is not delayed.
//
// Every occurrence of every pattern is marked, overlapping ones included, and each run of marked bytes is written
// as one "***". Values shorter than secret.MinSize are refused by the store, so none is too short to look for.
type redactor struct {
	next  io.Writer
	pats  [][]byte
	fail  [][]int // the KMP failure function of each pattern
	state []int   // length of the longest prefix of each pattern that ends the stream so far
	// starts holds the first two bytes of every pattern: while no pattern is partly matched, the bytes up to the
	// next such pair cannot start one and are passed over without the per-pattern work.
	starts  *[1 << 16]bool
	pending []byte   // bytes held back: a value may start in them
	marks   [][2]int // ranges of pending that are part of a value
	inRun   bool     // the last byte written was part of a value: a run continuing it is not marked again
}

// newRedactor returns next itself when there is nothing to redact.
func newRedactor(next io.Writer, values map[string][]byte) io.Writer {
	return compileRedaction(values).writer(next)
}

// redaction is what a redactor needs of a build's values, computed once: the patterns, their failure functions
// and their starting pairs. Computing it costs time and memory in the size of the values (each has a dozen
// encodings), so a build compiles it once for its control-plane text and every step rather than per use.
type redaction struct {
	pats   [][]byte
	fail   [][]int
	starts *[1 << 16]bool
}

// compileRedaction returns the redaction of values; nil when there is nothing to redact.
func compileRedaction(values map[string][]byte) *redaction {
	pats := redactionPatterns(values)
	if len(pats) == 0 {
		return nil
	}
	rd := &redaction{pats: pats, starts: new([1 << 16]bool)}
	for _, p := range pats {
		rd.fail = append(rd.fail, failure(p))
		rd.starts[uint16(p[0])<<8|uint16(p[1])] = true // patterns are at least secret.MinSize bytes
	}
	return rd
}

// writer returns a redactor writing to next; next itself when rd is nil.
func (rd *redaction) writer(next io.Writer) io.Writer {
	if rd == nil {
		return next
	}
	return &redactor{next: next, pats: rd.pats, fail: rd.fail, starts: rd.starts, state: make([]int, len(rd.pats))}
}

// redactionPatterns are the byte strings redacted for values: each value, each of its lines (a step may print
// one line of a key), and its base64 encodings (standard and URL alphabets), as they appear whatever the value's
// offset in a larger base64 text (an HTTP basic Authorization header): only the characters the value alone
// determines, so a padded, unpadded or embedded encoding is caught.
func redactionPatterns(values map[string][]byte) [][]byte {
	var out [][]byte
	seen := map[string]bool{} // not a scan of out: a value of many lines has thousands of patterns
	add := func(p []byte) {
		if len(p) >= secret.MinSize && !seen[string(p)] {
			seen[string(p)] = true
			out = append(out, p)
		}
	}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		v := values[n]
		add(v)
		if t := strings.TrimSpace(string(v)); t != string(v) {
			add([]byte(t))
		}
		if strings.Contains(string(v), "\n") {
			for _, line := range strings.Split(string(v), "\n") {
				add([]byte(strings.TrimSpace(line)))
			}
		}
		// The whole encodings too, padding included, for the common case of a value encoded on its own.
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			add([]byte(enc.EncodeToString(v)))
		}
		// Other common encodings of the whole value: hex in one run, as xxd -p and hash tools print it (lower and upper
		// case); URL escaping (a token put in a query string or a path); a JSON string (a value with quotes,
		// backslashes, control bytes or <>& in a JSON document or log line). Each only adds a pattern where it
		// differs from the value.
		add([]byte(hex.EncodeToString(v)))
		add([]byte(strings.ToUpper(hex.EncodeToString(v))))
		add(terminalSafe(v)) // as ssf itself shows control bytes (\x01): a binary key printed in that form
		add([]byte(url.QueryEscape(string(v))))
		add([]byte(url.PathEscape(string(v))))
		for _, html := range []bool{true, false} {
			var j bytes.Buffer
			e := json.NewEncoder(&j)
			e.SetEscapeHTML(html)
			if e.Encode(string(v)) == nil {
				quoted := bytes.TrimSpace(j.Bytes()) // "…" and the encoder's newline
				add(quoted[1 : len(quoted)-1])
			}
		}
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			for shift := range 3 {
				s := enc.EncodeToString(append(make([]byte, shift), v...))
				first, end := (8*shift+5)/6, 8*(shift+len(v))/6
				add([]byte(s[first:end]))
			}
		}
	}
	return out
}

func failure(p []byte) []int {
	f := make([]int, len(p))
	for i, k := 1, 0; i < len(p); i++ {
		for k > 0 && p[i] != p[k] {
			k = f[k-1]
		}
		if p[i] == p[k] {
			k++
		}
		f[i] = k
	}
	return f
}

func (r *redactor) Write(p []byte) (int, error) {
	buf := append(r.pending, p...)
	active := slices.Max(r.state) > 0
	for i := len(r.pending); i < len(buf); i++ {
		if !active {
			for i+1 < len(buf) && !r.starts[uint16(buf[i])<<8|uint16(buf[i+1])] {
				i++
			}
		}
		active = r.step(buf, i)
	}
	if err := r.emit(buf, len(buf)-slices.Max(r.state)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// step advances every pattern over buf[i], marks the values that end there, and says whether any pattern is
// partly matched.
func (r *redactor) step(buf []byte, i int) bool {
	c, active := buf[i], false
	for k, pat := range r.pats {
		s := r.state[k]
		for s > 0 && pat[s] != c {
			s = r.fail[k][s-1]
		}
		if pat[s] == c {
			s++
		}
		if s == len(pat) {
			r.marks = append(r.marks, [2]int{i + 1 - len(pat), i + 1})
			s = r.fail[k][s-1]
		}
		r.state[k] = s
		active = active || s > 0
	}
	return active
}

// Flush writes what is held back: the stream has ended, so no partial match can complete.
func (r *redactor) Flush() error {
	clear(r.state)
	return r.emit(r.pending, len(r.pending))
}

// emit writes buf[:n], each run of marked bytes as one "***", and keeps buf[n:] and its marks as pending.
func (r *redactor) emit(buf []byte, n int) error {
	slices.SortFunc(r.marks, func(a, b [2]int) int { return a[0] - b[0] })
	out := make([]byte, 0, n)
	var rest [][2]int
	cursor := 0
	for _, m := range r.marks {
		if m[0] >= n {
			rest = append(rest, [2]int{m[0] - n, m[1] - n})
			continue
		}
		if m[1] <= cursor {
			continue // inside a run already written
		}
		if m[0] > cursor {
			out = append(out, buf[cursor:m[0]]...)
			r.inRun = false
		}
		if !r.inRun {
			out = append(out, "***"...)
			r.inRun = true
		}
		cursor = min(m[1], n)
		if m[1] > n {
			rest = append(rest, [2]int{0, m[1] - n})
		}
	}
	if cursor < n {
		out = append(out, buf[cursor:n]...)
		r.inRun = false
	}
	r.marks = rest
	r.pending = append([]byte(nil), buf[n:]...)
	if len(out) == 0 {
		return nil
	}
	_, err := r.next.Write(out)
	return err
}

// redactBytes returns b with every value of values (and its encodings, as the redactor knows them) replaced by
// "***": for the control plane's own text that can quote what a step made.
func redactBytes(values map[string][]byte, b []byte) []byte {
	return compileRedaction(values).bytes(b)
}

// bytes returns b redacted; b itself when rd is nil.
func (rd *redaction) bytes(b []byte) []byte {
	if rd == nil {
		return b
	}
	var out bytes.Buffer
	w := rd.writer(&out)
	w.Write(b) // a bytes.Buffer does not fail
	flushRedactor(w)
	return out.Bytes()
}

// redactedError is an error whose message was redacted of the build's secrets; errors.As and errors.Is still see
// what it wraps (a TaskError's exit code, an InputError's exit status).
type redactedError struct {
	err error
	msg string
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactError returns err with its message, and a TaskError's reason and hint (which the CLI prints on their own),
// redacted of the build's secret values. A step given a secret can name an output file after it, and the error
// that refuses that output quotes its name: that must not carry the value to the terminal, --output json or the
// build history.
func redactError(rd *redaction, err error) error {
	if err == nil || rd == nil {
		return err
	}
	if te := (*TaskError)(nil); errors.As(err, &te) {
		te.Reason = string(rd.bytes([]byte(te.Reason)))
		te.Hint = string(rd.bytes([]byte(te.Hint)))
	}
	msg := string(rd.bytes([]byte(err.Error())))
	if msg == err.Error() {
		return err
	}
	return &redactedError{err: err, msg: msg}
}

// flushRedactor flushes w when it is a redactor.
func flushRedactor(w io.Writer) {
	if r, ok := w.(*redactor); ok {
		r.Flush()
	}
}
