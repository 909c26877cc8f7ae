package tlog

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera"
)

// BenchmarkAppend measures durable appends per second (issue 9's goal: at least 5,000/s on 2 cores) with
// concurrent submitters: each op is one acknowledged Append (fsynced, proven against a signed checkpoint, SET
// signed). Entries are built beforehand; building a dsse entry (verifying its signature) is the caller's cost.
// Run: go test ./internal/tlog -run '^$' -bench Append -benchtime 20000x
func BenchmarkAppend(b *testing.B) {
	for _, submitters := range []int{1, 64, 512, 2048} {
		b.Run(fmt.Sprintf("submitters=%d", submitters), func(b *testing.B) {
			ctx := context.Background()
			l := openLog(b, b.TempDir(), newKey(b))
			k := newKey(b)
			entries := make([]Entry, b.N)
			for i := range entries {
				entries[i] = testEntry(b, k, i)
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range submitters {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						if _, err := l.Append(ctx, entries[i]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
		})
	}
}

// BenchmarkInclusionProof measures one inclusion proof from the tiles of a 1M-entry log (goal: at most 1 ms),
// for a random index at the published size (reading and checking the published checkpoint included).
// The log is built once per test binary, with the largest batches, in a temporary directory (about a minute).
// Run: go test ./internal/tlog -run '^$' -bench InclusionProof -benchtime 5000x
func BenchmarkInclusionProof(b *testing.B) {
	ctx := context.Background()
	l, err := million(b)
	if err != nil {
		b.Fatal(err)
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		i := rand.Uint64N(cp.Size)
		p, err := l.InclusionProof(ctx, i, cp.Size)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		leaf, _ := l.leafData(ctx, i, cp.Size)
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, cp.Size, rfc6962.DefaultHasher.HashLeaf(leaf), p, cp.Hash); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// bigLog is the 1M-entry log of BenchmarkInclusionProof, built once and removed by TestMain.
var bigLog struct {
	once sync.Once
	dir  string
	l    *Log
	err  error
}

func million(b *testing.B) (*Log, error) {
	bigLog.once.Do(func() {
		const size = 1 << 20
		ctx := context.Background()
		if bigLog.dir, bigLog.err = os.MkdirTemp("", "tlog-bench-"); bigLog.err != nil {
			return
		}
		if bigLog.l, bigLog.err = Open(ctx, bigLog.dir, newKey(b), WithBatching(4096, 50*time.Millisecond)); bigLog.err != nil {
			return
		}
		// Bulk-fill through tessera directly: the leaves' content does not change a proof's cost, and building
		// 1M signed dsse entries would dominate the run.
		var wg sync.WaitGroup
		var next atomic.Int64
		var failed atomic.Value
		start := time.Now()
		for range 8192 {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= size {
						return
					}
					if _, err := bigLog.l.appender.Add(ctx, benchLeaf(uint64(i)))(); err != nil {
						failed.Store(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			bigLog.err = err
			return
		}
		bigLog.err = bigLog.l.awaitPublished(ctx, size)
		b.Logf("built a %d-entry log in %v", size, time.Since(start))
	})
	return bigLog.l, bigLog.err
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bigLog.l != nil {
		bigLog.l.Close(context.Background())
	}
	if bigLog.dir != "" {
		os.RemoveAll(bigLog.dir)
	}
	os.Exit(code)
}

func benchLeaf(i uint64) *tessera.Entry {
	return tessera.NewEntry(binary.BigEndian.AppendUint64([]byte("bench leaf "), i))
}
