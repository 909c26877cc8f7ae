package tlog

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/client"
)

// ErrReadOnly is returned by Append on a Log opened with OpenReadOnly.
var ErrReadOnly = errors.New("transparency log is open read-only")

// ErrNotYet is wrapped when an entry is published but not completely stored yet (a read-only Log can see an entry
// a moment before its appender has stored its integrated time): retry.
var ErrNotYet = errors.New("not available yet; retry")

// logReader is what a Log reads the tree through: tessera's reader when it appends, the files when read-only.
type logReader interface {
	Fetcher
	IntegratedSize(ctx context.Context) (uint64, error)
}

// fileReader reads the published files of a log another process appends to. Its integrated size is the published
// checkpoint's: what lies beyond is not part of the log for a reader.
type fileReader struct {
	client.FileFetcher
	pub func(context.Context) (*Checkpoint, error)
}

func (r fileReader) IntegratedSize(ctx context.Context) (uint64, error) {
	cp, err := r.pub(ctx)
	if err != nil {
		return 0, err
	}
	return cp.Size, nil
}

// OpenReadOnly opens the log in dir for reading and serving only, beside the process that appends to it: it takes
// no lock and starts no appender, and Append returns ErrReadOnly. Everything it answers comes from the published
// files (checkpoint, tiles, entry bundles) and the integrated times, so it follows the log as it grows. signer is
// the log key (a fresh SET is signed for every entry read). Like Open, it refuses a published checkpoint not signed
// by the key, or tiles that do not hash to it; unlike Open, it refuses a directory that holds no log yet.
func OpenReadOnly(ctx context.Context, dir string, signer crypto.Signer, opts ...Option) (*Log, error) {
	cfg := config{host: defaultHost, batchSize: defaultBatchSize, batchAge: defaultBatchAge, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if signer == nil {
		return nil, fmt.Errorf("opening log %q read-only: no log key", dir)
	}
	key, err := newLogKey(signer.Public(), cfg.host)
	if err != nil {
		return nil, fmt.Errorf("opening log %q read-only: %w", dir, err)
	}
	l := &Log{dir: dir, key: key, signer: signer, cfg: cfg, readOnly: true}
	if err := l.openReadOnly(ctx); err != nil {
		l.release()
		return nil, fmt.Errorf("opening log %q read-only: %w", dir, err)
	}
	return l, nil
}

func (l *Log) openReadOnly(ctx context.Context) error {
	var err error
	if l.tiles, err = lru.New[tileKey, *api.HashTile](1024); err != nil {
		return err
	}
	if l.nodes, err = lru.New[compact.NodeID, []byte](1 << 16); err != nil {
		return err
	}
	files := client.FileFetcher{Root: l.dir}
	l.pub = &publication{key: l.key, read: files.ReadCheckpoint}
	l.reader = fileReader{FileFetcher: files, pub: l.pub.current}
	published, err := l.pub.current(ctx)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no published checkpoint: the log has not been created yet (%w)", err)
	}
	if err != nil {
		return fmt.Errorf("published checkpoint (was the log made with another key or host?): %w", err)
	}
	root, err := l.rootAt(ctx, published.Size)
	if err != nil {
		return fmt.Errorf("recomputing the root of the published tree: %w", err)
	}
	if string(root) != string(published.Hash) {
		return fmt.Errorf("the tiles on disk hash to %x at size %d, not to the published root %x: the published tree was changed", root, published.Size, published.Hash)
	}
	state := filepath.Join(l.dir, ".ssf")
	f, err := os.Open(filepath.Join(state, "integrated-time"))
	if err != nil {
		return err
	}
	l.times = &timeStore{f: f}
	// The leaf index is shared with the appending process: both only ever write the same 8 bytes for an index.
	if l.leaves, err = openLeafIndex(filepath.Join(state, "leaf-index")); err != nil {
		return err
	}
	return nil
}

// ReadOnly reports whether l was opened with OpenReadOnly.
func (l *Log) ReadOnly() bool { return l.readOnly }
