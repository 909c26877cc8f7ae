package tlog

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
)

// newKey makes an ECDSA P-256 key.
func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pubPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// signDSSE makes a DSSE envelope (JSON) of payload signed by k.
func signDSSE(t testing.TB, k *ecdsa.PrivateKey, payloadType string, payload []byte) []byte {
	t.Helper()
	h := sha256.Sum256(dssePAE(payloadType, payload))
	sig, err := ecdsa.SignASN1(rand.Reader, k, h[:])
	if err != nil {
		t.Fatal(err)
	}
	env, err := json.Marshal(map[string]any{
		"payloadType": payloadType,
		"payload":     base64.StdEncoding.EncodeToString(payload),
		"signatures":  []map[string]string{{"keyid": "", "sig": base64.StdEncoding.EncodeToString(sig)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// testEntry makes a distinct dsse entry for n.
func testEntry(t testing.TB, k *ecdsa.PrivateKey, n int) Entry {
	t.Helper()
	env := signDSSE(t, k, "application/vnd.in-toto+json", fmt.Appendf(nil, `{"n":%d}`, n))
	e, err := NewDSSEEntry(env, pubPEM(t, k.Public()))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func openLog(t testing.TB, dir string, key crypto.Signer, opts ...Option) *Log {
	t.Helper()
	l, err := Open(context.Background(), dir, key, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func TestAppendConcurrentAndRead(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logKey, signKey := newKey(t), newKey(t)
	l := openLog(t, dir, logKey)
	v, err := NewVerifier(logKey.Public(), "")
	if err != nil {
		t.Fatal(err)
	}

	const n = 300
	entries := make([]*LogEntry, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			e, err := l.Append(ctx, testEntry(t, signKey, i))
			if err != nil {
				errs <- err
				return
			}
			entries[i] = e
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for i, e := range entries {
		if seen[e.LogIndex] {
			t.Fatalf("index %d handed out twice", e.LogIndex)
		}
		seen[e.LogIndex] = true
		if err := v.VerifyEntry(e); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if e.Proof.TreeSize <= e.LogIndex {
			t.Fatalf("entry %d: proof at size %d does not cover index %d", i, e.Proof.TreeSize, e.LogIndex)
		}
	}

	// The published checkpoint follows the integrated tree within tessera's checkpoint interval: wait for the one
	// that covers every acknowledged entry, as a reader of an entry does.
	cp, err := l.awaitIntegrated(ctx, n-1)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != n {
		t.Fatalf("checkpoint size %d, want %d", cp.Size, n)
	}
	if want := fmt.Sprintf("ssf.local - %d\n", TreeID(l.LogID())); !strings.HasPrefix(string(cp.Raw), want) {
		t.Fatalf("checkpoint %q does not start with origin line %q", cp.Raw, want)
	}
	if !strings.Contains(string(cp.Raw), "\n\n\u2014 ssf.local ") {
		t.Fatalf("checkpoint %q: signature line is not named by the host", cp.Raw)
	}

	// The read side gives the same leaves and proofs that verify at the current size.
	for _, i := range []uint64{0, 1, 255, 256, n - 1} {
		got, err := l.Entry(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		var want *LogEntry
		for _, e := range entries {
			if e.LogIndex == i {
				want = e
			}
		}
		if !bytes.Equal(got.Body, want.Body) || got.IntegratedTime != want.IntegratedTime {
			t.Fatalf("entry %d read back differs", i)
		}
		if err := v.VerifyEntry(got); err != nil {
			t.Fatalf("entry %d read back: %v", i, err)
		}
	}
	if _, err := l.Entry(ctx, n); !errors.Is(err, ErrNotFound) {
		t.Fatalf("entry past the checkpoint: got %v, want ErrNotFound", err)
	}

	// Consistency from every earlier checkpoint handed out to the current one.
	for _, e := range entries[:10] {
		old := e.Proof.Checkpoint
		p, err := l.ConsistencyProof(ctx, old.Size, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.VerifyConsistency(&old, cp, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.InclusionProof(ctx, 0, n+1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("proof past the checkpoint: got %v, want ErrNotFound", err)
	}
}

func TestOpenRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logKey := newKey(t)
	l := openLog(t, dir, logKey)
	if _, err := l.Append(ctx, testEntry(t, newKey(t), 1)); err != nil {
		t.Fatal(err)
	}

	t.Run("second opener", func(t *testing.T) {
		if _, err := Open(ctx, dir, logKey); err == nil || !strings.Contains(err.Error(), "open in another process") {
			t.Fatalf("got %v, want a lock error", err)
		}
	})
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("another key", func(t *testing.T) {
		if _, err := Open(ctx, dir, newKey(t)); !errors.Is(err, ErrBadCheckpoint) {
			t.Fatalf("got %v, want ErrBadCheckpoint", err)
		}
	})
	t.Run("another host", func(t *testing.T) {
		if _, err := Open(ctx, dir, logKey, WithHost("other.example")); !errors.Is(err, ErrBadCheckpoint) {
			t.Fatalf("got %v, want ErrBadCheckpoint", err)
		}
	})
	t.Run("not P-256", func(t *testing.T) {
		k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if _, err := Open(ctx, t.TempDir(), k); err == nil || !strings.Contains(err.Error(), "P-256") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("changed tile", func(t *testing.T) {
		// A published leaf changed on disk: the tiles no longer hash to the checkpoint.
		tile := filepath.Join(dir, "tile", "0", "000.p", "1")
		b, err := os.ReadFile(tile)
		if err != nil {
			t.Fatal(err)
		}
		orig := bytes.Clone(b)
		b[0] ^= 1
		if err := os.WriteFile(tile, b, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(tile, orig, 0o644)
		if _, err := Open(ctx, dir, logKey); err == nil || !strings.Contains(err.Error(), "published tree was changed") {
			t.Fatalf("got %v, want a changed-tree error", err)
		}
	})
	l2 := openLog(t, dir, logKey)
	if _, err := l2.Entry(ctx, 0); err != nil {
		t.Fatalf("reopened log: %v", err)
	}
}

func TestAppendLatency(t *testing.T) {
	// One lone append (the factory's usual case) must not wait for a batch to fill or a checkpoint interval.
	ctx := context.Background()
	l := openLog(t, t.TempDir(), newKey(t))
	k := newKey(t)
	if _, err := l.Append(ctx, testEntry(t, k, 0)); err != nil {
		t.Fatal(err)
	}
	var worst time.Duration
	for i := 1; i <= 5; i++ {
		time.Sleep(checkpointInterval) // let the checkpoint interval pass, as between two tasks
		start := time.Now()
		if _, err := l.Append(ctx, testEntry(t, k, i)); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("worst lone append: %v", worst)
	if worst > 500*time.Millisecond {
		t.Fatalf("a lone append took %v", worst)
	}
}

func TestLeafHashIsBodyHash(t *testing.T) {
	ctx := context.Background()
	l := openLog(t, t.TempDir(), newKey(t))
	e, err := l.Append(ctx, testEntry(t, newKey(t), 0))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := l.awaitIntegrated(ctx, 0) // the published checkpoint trails the append by up to an interval
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 1 || !bytes.Equal(cp.Hash, rfc6962.DefaultHasher.HashLeaf(e.Body)) {
		t.Fatalf("root of a one-entry tree is not HashLeaf(body)")
	}
}

func TestSETPayloadIsCanonical(t *testing.T) {
	body := []byte(`{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{}}` + "\x00<>&\u2028")
	id := sha256.Sum256([]byte("log"))
	for _, tc := range []struct {
		t     int64
		index uint64
	}{{0, 0}, {1764480000, 12345}, {-1, 1<<53 - 1}} {
		got, err := newSETPayload(body, tc.t, id, tc.index)
		if err != nil {
			t.Fatal(err)
		}
		want, err := canonicalJSON(struct {
			Body           []byte `json:"body"`
			IntegratedTime int64  `json:"integratedTime"`
			LogID          string `json:"logID"`
			LogIndex       uint64 `json:"logIndex"`
		}{body, tc.t, fmt.Sprintf("%x", id), tc.index})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("SET payload\n got %s\nwant %s", got, want)
		}
	}
}

// TestRecoveryTime: an entry integrated by tessera whose integrated time a crash lost (the window between
// integration and the times' fdatasync) gets the recovery time when the log is reopened, never an earlier one.
func TestRecoveryTime(t *testing.T) {
	ctx := context.Background()
	dir, logKey := t.TempDir(), newKey(t)
	l, err := Open(ctx, dir, logKey)
	if err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	for i := range 3 {
		if _, err := l.Append(ctx, testEntry(t, k, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// As if the last entry's time had not reached the disk.
	if err := os.Truncate(filepath.Join(dir, ".ssf", "integrated-time"), 8*2); err != nil {
		t.Fatal(err)
	}
	reopened := time.Now().Unix()
	l = openLog(t, dir, logKey)
	e, err := l.Entry(ctx, 2)
	if err != nil {
		t.Fatalf("entry whose time was lost: %v", err)
	}
	if e.IntegratedTime < reopened {
		t.Fatalf("recovered integrated time %d is before the recovery (%d)", e.IntegratedTime, reopened)
	}
	v, _ := NewVerifier(logKey.Public(), "")
	if err := v.VerifyEntry(e); err != nil {
		t.Fatal(err)
	}
}
