package tlog

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"regexp"
	"strings"
)

// staticPath matches the files of the C2SP tlog-tiles layout and nothing else: the checkpoint, hash tiles
// `tile/<L>/<N>` and entry bundles `tile/entries/<N>`, where N is 3-digit groups `x001/x234/067` with an optional
// partial suffix `.p/<W>`. Everything else in the directory (`.ssf/` with the lock, integrated times and leaf index,
// tessera's own state) is never served.
var staticPath = regexp.MustCompile(`^(checkpoint|tile/(entries|[0-9]{1,2})/(x[0-9]{3}/)*[0-9]{3}(\.p/[0-9]{1,3})?)$`)

// StaticHandler serves the log directory dir read-only, as a static file server of the published files would:
// GET and HEAD of `/checkpoint` and `/tile/...`, with Range and conditional requests. It never lists a directory,
// never follows a symbolic link, and never serves a path outside the tlog-tiles layout or outside dir.
type StaticHandler struct{ root *os.Root }

// NewStaticHandler opens dir for serving. Close the handler's root with Close when done.
func NewStaticHandler(dir string) (*StaticHandler, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening log directory %q for serving: %w", dir, err)
	}
	return &StaticHandler{root: root}, nil
}

// Close releases the directory.
func (h *StaticHandler) Close() error { return h.root.Close() }

func (h *StaticHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the log's files are read-only", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	if !staticPath.MatchString(name) || path.Clean(name) != name {
		http.NotFound(w, r)
		return
	}
	f, err := h.open(name)
	if errors.Is(err, fs.ErrNotExist) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, "not served", http.StatusForbidden)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	switch {
	case name == "checkpoint":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
	case strings.Contains(name, ".p/"):
		// A partial tile is replaced by its full tile and then removed.
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Cache-Control", "no-cache")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// open opens name under the root, refusing a symbolic link anywhere on the way (os.Root alone would follow one
// that stays inside the directory).
func (h *StaticHandler) open(name string) (*os.File, error) {
	parts := strings.Split(name, "/")
	for i := range parts {
		fi, err := h.root.Lstat(strings.Join(parts[:i+1], "/"))
		if err != nil {
			return nil, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("%q is a symbolic link", strings.Join(parts[:i+1], "/"))
		}
	}
	return h.root.Open(name)
}

var _ http.Handler = (*StaticHandler)(nil)
