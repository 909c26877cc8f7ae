package factory

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/provenance"
)

// source is the build's source, taken once at an exact revision. Every task gets a fresh copy of the snapshot,
// so what was hashed is exactly what the tasks see, whatever happens to the directory during the build.
type source struct {
	dir      string // absolute
	snapshot string // deterministic tar of the tree
	sha256   string // hex digest of snapshot
	commit   string // git commit when dir is a clean git checkout
}

// descriptor is the source as a resolved dependency: the git commit when there is one, else the tree digest
// (the sha256 of the deterministic tar described in docs/build-type.md).
func (s *source) descriptor() provenance.ResourceDescriptor {
	u := url.URL{Scheme: "file", Path: s.dir}
	if s.commit != "" {
		return provenance.ResourceDescriptor{
			Name:   "source",
			URI:    "git+" + u.String() + "@" + s.commit,
			Digest: provenance.Digest{"gitCommit": s.commit},
		}
	}
	return provenance.ResourceDescriptor{
		Name:   "source",
		URI:    u.String(),
		Digest: provenance.Digest{"sha256": s.sha256},
	}
}

// snapshotSource writes the deterministic tar of dir to snapshotPath. A clean git checkout (dir is the top of
// the work tree, nothing modified or untracked) contributes exactly its tracked files and is recorded by commit;
// anything else contributes its whole tree except .git and is recorded by tree digest.
func snapshotSource(ctx context.Context, dir, snapshotPath string) (*source, error) {
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
	src := &source{dir: abs, snapshot: snapshotPath}
	files, commit := gitFiles(ctx, abs)

	f, err := os.OpenFile(snapshotPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	w := io.MultiWriter(f, h)
	if commit != "" {
		_, err = oci.WriteFiles(ctx, w, abs, files)
	} else {
		_, err = oci.WriteTree(ctx, w, abs, func(rel string, isDir bool) bool { return rel != ".git" })
	}
	if err != nil {
		return nil, fmt.Errorf("taking a snapshot of the source %q: %w", dir, err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	src.sha256 = hex.EncodeToString(h.Sum(nil))
	src.commit = commit
	return src, nil
}

// gitFiles returns the tracked files and HEAD commit of a clean git checkout whose top is dir, or no commit.
func gitFiles(ctx context.Context, dir string) ([]string, string) {
	git := func(args ...string) (string, bool) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
		var out bytes.Buffer
		cmd.Stdout = &out
		if cmd.Run() != nil {
			return "", false
		}
		return out.String(), true
	}
	top, ok := git("rev-parse", "--show-toplevel")
	if !ok || filepath.Clean(strings.TrimSpace(top)) != dir {
		return nil, ""
	}
	if status, ok := git("status", "--porcelain", "--untracked-files=normal"); !ok || status != "" {
		return nil, ""
	}
	commit, ok := git("rev-parse", "--verify", "HEAD^{commit}")
	if !ok {
		return nil, ""
	}
	list, ok := git("ls-files", "-z", "--recurse-submodules")
	if !ok {
		return nil, ""
	}
	var files []string
	for _, f := range strings.Split(list, "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	return files, strings.TrimSpace(commit)
}
