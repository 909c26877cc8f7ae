package tlog

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	flog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// ErrClosed is returned by a Log's methods after Close.
var ErrClosed = errors.New("transparency log is closed")

// ErrNotFound is wrapped when an index or tree size is beyond the published checkpoint.
var ErrNotFound = errors.New("not in the published log")

// Log is a transparency log open for appending and reading. Its methods are safe for concurrent use.
type Log struct {
	dir    string
	key    *logKey
	signer crypto.Signer
	cfg    config

	readOnly bool // OpenReadOnly: no appender, no lock
	appender *tessera.Appender
	shutdown func(context.Context) error
	reader   logReader
	cancel   context.CancelFunc // stops tessera's and the publication watcher's goroutines
	lock     *os.File
	times    *timeStore
	leaves   *leafIndex
	pub      *publication
	ns       *noteSigner

	submissions chan submission // to the sequencer

	headMu sync.Mutex
	head   *Checkpoint                        // the last checkpoint signed for Append callers
	tiles  *lru.Cache[tileKey, *api.HashTile] // parsed tiles (immutable once committed)
	nodes  *lru.Cache[compact.NodeID, []byte] // hashes of perfect subtrees (immutable), see nodes.go

	mu     sync.RWMutex // held for reading by every operation, for writing by Close
	closed bool
}

type config struct {
	host      string
	batchSize uint
	batchAge  time.Duration
	now       func() time.Time
}

// Option configures Open.
type Option func(*config)

// WithHost sets the host part of the checkpoint origin ("<host> - <treeID>") and the checkpoint key name. The
// default is "ssf.local". A log keeps the host it was created with: Open refuses another.
func WithHost(host string) Option { return func(c *config) { c.host = host } }

// WithBatching bounds how many concurrent appends are sequenced together (at most maxSize, 1..4096) and how long
// tessera holds a batch before writing it (maxAge, 0..1s). Batches form by themselves: appends that arrive while one
// batch is being written make up the next.
func WithBatching(maxSize uint, maxAge time.Duration) Option {
	return func(c *config) { c.batchSize, c.batchAge = maxSize, maxAge }
}

// Defaults: batches of up to 1024 entries, written 1 ms after they are handed to tessera.
const (
	defaultHost      = "ssf.local"
	defaultBatchSize = 1024
	defaultBatchAge  = time.Millisecond
	// checkpointInterval is tessera's minimum: under load the log publishes a checkpoint at most this often.
	checkpointInterval = 100 * time.Millisecond
	maxPushback        = 1 << 16
)

// Open opens the log in dir, creating it if dir holds no log. signer is the log's ECDSA P-256 key; it signs
// checkpoints and SETs. Open verifies that the published checkpoint is signed by signer's key and that the tiles
// on disk hash to it, stores a recovery time for any integrated entry whose time a crash lost, and takes an
// exclusive lock on dir until Close.
func Open(ctx context.Context, dir string, signer crypto.Signer, opts ...Option) (*Log, error) {
	cfg := config{host: defaultHost, batchSize: defaultBatchSize, batchAge: defaultBatchAge, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.batchSize < 1 || cfg.batchSize > 4096 || cfg.batchAge < 0 || cfg.batchAge > time.Second {
		return nil, fmt.Errorf("opening log %q: batching (%d entries, %v) out of range (1..4096 entries, 0..1s)", dir, cfg.batchSize, cfg.batchAge)
	}
	if signer == nil {
		return nil, fmt.Errorf("opening log %q: no log key", dir)
	}
	key, err := newLogKey(signer.Public(), cfg.host)
	if err != nil {
		return nil, fmt.Errorf("opening log %q: %w", dir, err)
	}
	l := &Log{dir: dir, key: key, signer: signer, cfg: cfg}
	if err := l.open(ctx); err != nil {
		l.release()
		return nil, fmt.Errorf("opening log %q: %w", dir, err)
	}
	return l, nil
}

func (l *Log) open(ctx context.Context) error {
	state := filepath.Join(l.dir, ".ssf")
	if err := os.MkdirAll(state, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(state, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	l.lock = lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("the log is open in another process or Log (lock %q): %w", lock.Name(), err)
	}

	// The published checkpoint, if any, must be this log's before tessera touches anything.
	var published *Checkpoint
	raw, err := os.ReadFile(filepath.Join(l.dir, layout.CheckpointPath))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		if published, err = l.key.parseCheckpoint(raw); err != nil {
			return fmt.Errorf("published checkpoint (was the log made with another key or host?): %w", err)
		}
	}

	if l.tiles, err = lru.New[tileKey, *api.HashTile](1024); err != nil {
		return err
	}
	if l.nodes, err = lru.New[compact.NodeID, []byte](1 << 16); err != nil {
		return err
	}
	driver, err := posix.New(ctx, posix.Config{Path: l.dir})
	if err != nil {
		return err
	}
	ns := &noteSigner{key: l.key, signer: l.signer}
	l.ns = ns
	topts := tessera.NewAppendOptions().
		WithCheckpointSigner(ns).
		WithBatching(l.cfg.batchSize, l.cfg.batchAge).
		WithCheckpointInterval(checkpointInterval).
		WithPushback(maxPushback)
	ns.armed.Store(true) // tessera has taken the origin; from now on Name() is the key name (see noteSigner)
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	appender, shutdown, reader, err := tessera.NewAppender(bg, driver, topts)
	if err != nil {
		return err
	}
	l.appender, l.shutdown, l.reader = appender, shutdown, reader

	size, err := reader.IntegratedSize(ctx)
	if err != nil {
		return fmt.Errorf("reading the integrated tree size: %w", err)
	}
	if published != nil {
		if size < published.Size {
			return fmt.Errorf("the tree on disk has %d entries, fewer than the published checkpoint's %d (rolled back?)", size, published.Size)
		}
		root, err := l.rootAt(ctx, published.Size)
		if err != nil {
			return fmt.Errorf("recomputing the root of the published tree: %w", err)
		}
		if string(root) != string(published.Hash) {
			return fmt.Errorf("the tiles on disk hash to %x at size %d, not to the published root %x: the published tree was changed", root, published.Size, published.Hash)
		}
	}

	if l.times, err = openTimeStore(filepath.Join(state, "integrated-time")); err != nil {
		return err
	}
	// The times file and .ssf itself must survive a crash as names, not only as data.
	for _, d := range []string{state, l.dir} {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	if err := l.times.fill(size, l.cfg.now().Unix()); err != nil {
		return err
	}
	if l.leaves, err = openLeafIndex(filepath.Join(state, "leaf-index")); err != nil {
		return err
	}
	l.pub = &publication{key: l.key, read: l.reader.ReadCheckpoint}
	if err := l.awaitPublished(ctx, size); err != nil {
		return err
	}
	l.submissions = make(chan submission)
	stamp := make(chan sequenced, 1)
	go l.sequence(bg, stamp)
	go l.stampBatches(stamp)
	return nil
}

// awaitPublished waits until tessera has published a checkpoint of at least size entries. After a crash the
// published checkpoint may lag the durable tree that acknowledged entries were proven against; tessera publishes
// within checkpointInterval, and Open returns only then, so the read side covers every acknowledged entry.
func (l *Log) awaitPublished(ctx context.Context, size uint64) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		cp, err := l.pub.current(ctx)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("reading the published checkpoint: %w", err)
		}
		if err == nil && cp.Size >= size {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a checkpoint of the recovered tree (%d entries): %w", size, ctx.Err())
		case <-tick.C:
		}
	}
}

// release frees what a failed Open or a Close holds.
func (l *Log) release() {
	if l.cancel != nil {
		l.cancel()
	}
	if l.times != nil {
		l.times.close()
	}
	if l.leaves != nil {
		l.leaves.close()
	}
	if l.lock != nil {
		l.lock.Close() // drops the flock
	}
}

// Close waits for appends in flight, lets tessera publish a checkpoint covering everything it sequenced, and
// releases the directory.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var err error
	if l.shutdown != nil {
		err = l.shutdown(ctx)
	}
	l.release()
	if err != nil {
		return fmt.Errorf("closing log %q: %w", l.dir, err)
	}
	return nil
}

// LogID is sha256 of the log key's DER SubjectPublicKeyInfo, the ID Sigstore trusted roots and bundles use.
func (l *Log) LogID() [32]byte { return l.key.logID }

// Origin is the checkpoint origin, "<host> - <treeID>".
func (l *Log) Origin() string { return l.key.origin }

// PublicKey is the log's public key.
func (l *Log) PublicKey() crypto.PublicKey { return l.key.pub }

// Dir is the log's directory.
func (l *Log) Dir() string { return l.dir }

// LogEntry is an entry as integrated in the log, with everything a Rekor v1-shaped bundle entry carries.
type LogEntry struct {
	Kind           string
	Body           []byte // canonical body, the leaf
	LogIndex       uint64
	IntegratedTime int64    // unix seconds
	LogID          [32]byte // sha256 of the log key's DER
	SET            []byte   // signed entry timestamp (inclusion promise)
	Proof          InclusionProof
}

// InclusionProof proves LogIndex is in the tree the checkpoint signs.
type InclusionProof struct {
	TreeSize   uint64
	RootHash   []byte
	Hashes     [][]byte
	Checkpoint Checkpoint
}

// Append adds e to the log and returns once it is durable, with its index, integrated time, SET, and an inclusion
// proof against a checkpoint signed for the durable tree that covers it. Concurrent calls are sequenced together in
// bounded batches. When ctx ends first the entry may still be appended, but is not acknowledged.
func (l *Log) Append(ctx context.Context, e Entry) (*LogEntry, error) {
	if len(e.body) == 0 {
		return nil, fmt.Errorf("%w: empty entry (make entries with NewDSSEEntry, NewHashedRekordEntry or ParseEntry)", ErrBadEntry)
	}
	if l.readOnly {
		return nil, ErrReadOnly
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	index, t, err := l.submit(ctx, e.body)
	if err != nil {
		return nil, fmt.Errorf("appending a %s entry: %w", e.kind, err)
	}
	l.leaves.record(e.body, index)
	cp, err := l.headCovering(ctx, index)
	if err != nil {
		return nil, fmt.Errorf("signing a checkpoint covering entry %d: %w", index, err)
	}
	return l.logEntry(ctx, e.kind, e.body, index, t, cp)
}

// submission is one Append's body on its way to the sequencer.
type submission struct {
	body []byte
	done chan submitted // buffered: the sequencer never blocks on a caller that gave up
}

type submitted struct {
	index uint64
	time  int64 // integrated time, unix seconds
	err   error
}

// submit hands body to the sequencer and waits until tessera has durably integrated it and its integrated time is
// stored.
func (l *Log) submit(ctx context.Context, body []byte) (uint64, int64, error) {
	s := submission{body: body, done: make(chan submitted, 1)}
	select {
	case l.submissions <- s:
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	select {
	case r := <-s.done:
		return r.index, r.time, r.err
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

// sequenced is a batch tessera has integrated, on its way to the stamper.
type sequenced struct {
	subs    []submission
	indices []uint64
	errs    []error
}

// sequence feeds tessera one batch at a time: everything submitted while the previous batch was being written
// (up to batchSize) goes in the next. tessera would otherwise cut a batch every maxAge and queue the small batches
// behind each other, each paying the same dozen fsyncs; waiting for the previous batch makes the batch size follow
// the load, so one lone append waits for nobody and many share each fsync.
func (l *Log) sequence(ctx context.Context, stamp chan<- sequenced) {
	defer close(stamp)
	futures := make([]tessera.IndexFuture, 0, l.cfg.batchSize)
	for {
		var batch []submission
		select {
		case <-ctx.Done():
			return
		case s := <-l.submissions:
			batch = append(make([]submission, 0, l.cfg.batchSize), s)
		}
	drain:
		for uint(len(batch)) < l.cfg.batchSize {
			select {
			case s := <-l.submissions:
				batch = append(batch, s)
			default:
				break drain
			}
		}
		futures = futures[:0]
		for _, s := range batch {
			futures = append(futures, l.appender.Add(ctx, tessera.NewEntry(s.body)))
		}
		done := sequenced{subs: batch, indices: make([]uint64, len(batch)), errs: make([]error, len(batch))}
		for i, f := range futures {
			idx, err := f()
			done.indices[i], done.errs[i] = idx.Index, err
		}
		stamp <- done
	}
}

// stampBatches stores the integrated time of each sequenced batch (one write and one fdatasync per batch) and only
// then answers its callers. It runs beside the sequencer, so the next batch is being written meanwhile.
func (l *Log) stampBatches(stamp <-chan sequenced) {
	for b := range stamp {
		t := l.cfg.now().Unix()
		ok := make([]uint64, 0, len(b.indices))
		for i, err := range b.errs {
			if err == nil {
				ok = append(ok, b.indices[i])
			}
		}
		err := l.times.put(ok, t)
		for i, s := range b.subs {
			r := submitted{index: b.indices[i], time: t, err: b.errs[i]}
			if r.err == nil && err != nil {
				r.err = fmt.Errorf("storing the integrated time of entry %d: %w", r.index, err)
			}
			s.done <- r
		}
	}
}

// headCovering returns a checkpoint, signed now, of the durable tree, which covers index. tessera resolves an
// entry's index only after its bundle, the tiles and the tree state are fsynced, and after a crash it resumes from
// that tree state: the tree of this size can never be rewritten, so it may be signed before tessera publishes a
// checkpoint for it (at most checkpointInterval later). One checkpoint serves every caller of a batch.
func (l *Log) headCovering(ctx context.Context, index uint64) (*Checkpoint, error) {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	if l.head != nil && l.head.Size > index {
		return l.head, nil
	}
	size, err := l.reader.IntegratedSize(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the integrated tree size: %w", err)
	}
	if size <= index {
		return nil, fmt.Errorf("the integrated tree has %d entries, which does not cover entry %d", size, index)
	}
	root, err := l.rootAt(ctx, size)
	if err != nil {
		return nil, fmt.Errorf("computing the root at size %d: %w", size, err)
	}
	text := flog.Checkpoint{Origin: l.key.origin, Size: size, Hash: root}.Marshal()
	raw, err := note.Sign(&note.Note{Text: string(text)}, l.ns)
	if err != nil {
		return nil, err
	}
	cp, err := l.key.parseCheckpoint(raw)
	if err != nil {
		return nil, err
	}
	l.head = cp
	return cp, nil
}

// logEntry completes an entry with its SET and an inclusion proof against cp, which it checks before returning.
func (l *Log) logEntry(ctx context.Context, kind string, body []byte, index uint64, t int64, cp *Checkpoint) (*LogEntry, error) {
	hashes, err := l.inclusionProof(ctx, index, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("building the inclusion proof of entry %d at size %d: %w", index, cp.Size, err)
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(body)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, cp.Size, leaf, hashes, cp.Hash); err != nil {
		return nil, fmt.Errorf("the inclusion proof of entry %d does not verify against the checkpoint at size %d: %w", index, cp.Size, err)
	}
	set, err := l.signSET(body, t, index)
	if err != nil {
		return nil, err
	}
	return &LogEntry{
		Kind: kind, Body: body, LogIndex: index, IntegratedTime: t, LogID: l.key.logID, SET: set,
		Proof: InclusionProof{TreeSize: cp.Size, RootHash: cp.Hash, Hashes: hashes, Checkpoint: *cp},
	}, nil
}

// newSETPayload is what the SET signs: the RFC 8785 JSON of {"body","integratedTime","logID","logIndex"} (Rekor's
// names). It is written directly: the keys are already in RFC 8785 order and the values are a base64 string, a hex
// string and two integers, which need no escaping, so this is the canonical form without a generic canonicaliser
// (which would cost more than the signature). TestSETPayloadIsCanonical checks it against one.
func newSETPayload(body []byte, t int64, logID [32]byte, index uint64) ([]byte, error) {
	// RFC 8785 writes numbers as IEEE doubles: integers are exact, and written as here, below 2^53 only.
	if index >= 1<<53 || t >= 1<<53 || t <= -1<<53 {
		return nil, fmt.Errorf("log index %d or integrated time %d is beyond the SET's exact integers", index, t)
	}
	p := make([]byte, 0, base64.StdEncoding.EncodedLen(len(body))+160)
	p = append(p, `{"body":"`...)
	p = base64.StdEncoding.AppendEncode(p, body)
	p = append(p, `","integratedTime":`...)
	p = strconv.AppendInt(p, t, 10)
	p = append(p, `,"logID":"`...)
	p = hex.AppendEncode(p, logID[:])
	p = append(p, `","logIndex":`...)
	p = strconv.AppendUint(p, index, 10)
	p = append(p, '}')
	return p, nil
}

func (l *Log) signSET(body []byte, t int64, index uint64) ([]byte, error) {
	p, err := newSETPayload(body, t, l.key.logID, index)
	if err != nil {
		return nil, fmt.Errorf("encoding the SET payload of entry %d: %w", index, err)
	}
	return signSHA256(l.signer, p)
}

// tileKey names a tile as stored: level, index, and width when partial (0 when full).
type tileKey struct {
	level, index uint64
	partial      uint8
}

// readTile reads and parses a tile, keeping it in memory: a tile file of a given width never changes once the
// durable tree covers it, and tiles are read only for durable tree sizes.
func (l *Log) readTile(ctx context.Context, level, index uint64, p uint8) (*api.HashTile, error) {
	k := tileKey{level, index, p}
	if t, ok := l.tiles.Get(k); ok {
		return t, nil
	}
	raw, err := l.reader.ReadTile(ctx, level, index, p)
	if err != nil {
		return nil, fmt.Errorf("reading tile %d/%d: %w", level, index, err)
	}
	t := &api.HashTile{}
	if err := t.UnmarshalText(raw); err != nil {
		return nil, fmt.Errorf("parsing tile %d/%d: %w", level, index, err)
	}
	l.tiles.Add(k, t)
	return t, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %q: %w", dir, err)
	}
	return nil
}

func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
