package tlog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The crash test re-executes this test binary as a child that appends from several goroutines in a loop and
// prints one line per acknowledged entry; the parent kills it with SIGKILL in the middle of appending, reopens the
// log and checks that nothing acknowledged was lost or changed and that the tree only grew.
const (
	crashDirEnv = "SSF_TLOG_CRASH_DIR"
	crashKeyEnv = "SSF_TLOG_CRASH_KEY"
)

// TestCrashChild is the child of TestCrashRecovery; it does nothing when run directly.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrashRecovery")
	}
	der, err := os.ReadFile(os.Getenv(crashKeyEnv))
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(context.Background(), dir, key.(*ecdsa.PrivateKey))
	if err != nil {
		fmt.Printf("ERR %v\n", err)
		os.Exit(1)
	}
	signKey := newKey(t)
	envs := make(chan []byte, 64)
	go func() { // envelopes are signed ahead so the appenders keep the log busy
		for i := 0; ; i++ {
			envs <- signDSSE(t, signKey, "application/vnd.in-toto+json", fmt.Appendf(nil, `{"pid":%d,"n":%d}`, os.Getpid(), i))
		}
	}()
	verifier := pubPEM(t, signKey.Public())
	var mu sync.Mutex
	for range 16 {
		go func() {
			for env := range envs {
				e, err := NewDSSEEntry(env, verifier)
				if err != nil {
					panic(err)
				}
				le, err := l.Append(context.Background(), e)
				if err != nil {
					panic(err)
				}
				leaf := sha256.Sum256(le.Body)
				mu.Lock()
				fmt.Printf("ACK %d %s %s\n", le.LogIndex, hex.EncodeToString(leaf[:]), base64.StdEncoding.EncodeToString(le.Proof.Checkpoint.Raw))
				mu.Unlock()
			}
		}()
	}
	select {} // until killed
}

type ack struct {
	index      uint64
	bodySHA256 string
	checkpoint []byte
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process several times")
	}
	ctx := context.Background()
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "log")
	logKey := newKey(t)
	der, err := x509.MarshalPKCS8PrivateKey(logKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(tmp, "log.key")
	if err := os.WriteFile(keyFile, der, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(logKey.Public(), "")
	if err != nil {
		t.Fatal(err)
	}

	var acks []ack
	published := map[string][]byte{} // full tiles and bundles seen after a crash, which must never change
	const rounds, acksPerRound = 3, 600
	for round := range rounds {
		got := runAndKill(t, dir, keyFile, acksPerRound)
		acks = append(acks, got...)

		// What a crash left on disk, before anything reopens it: full tiles are committed by the acknowledged
		// checkpoints and must keep their bytes forever.
		if err := filepath.WalkDir(filepath.Join(dir, "tile"), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.Contains(p, ".p") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if old, ok := published[p]; ok && !bytes.Equal(old, b) {
				t.Errorf("round %d: published tile %s was rewritten", round, p)
			}
			published[p] = b
			return nil
		}); err != nil {
			t.Fatal(err)
		}

		l, err := Open(ctx, dir, logKey)
		if err != nil {
			t.Fatalf("round %d: reopening after SIGKILL: %v", round, err)
		}
		t.Cleanup(func() { l.Close(ctx) })
		cp, err := l.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range acks {
			e, err := l.Entry(ctx, a.index)
			if err != nil {
				t.Fatalf("round %d: acknowledged entry %d: %v", round, a.index, err)
			}
			if sum := sha256.Sum256(e.Body); hex.EncodeToString(sum[:]) != a.bodySHA256 {
				t.Fatalf("round %d: acknowledged entry %d has another body", round, a.index)
			}
			if err := v.VerifyEntry(e); err != nil {
				t.Fatalf("round %d: entry %d: %v", round, a.index, err)
			}
		}
		// Entries integrated but not acknowledged before the kill are in the log too, with a recovery time.
		for i := range cp.Size {
			e, err := l.Entry(ctx, i)
			if err != nil {
				t.Fatalf("round %d: entry %d of %d: %v", round, i, cp.Size, err)
			}
			if err := v.VerifyEntry(e); err != nil {
				t.Fatalf("round %d: entry %d: %v", round, i, err)
			}
		}
		// Every checkpoint ever acknowledged is consistent with the tree now.
		seen := map[string]bool{}
		for _, a := range acks {
			if seen[string(a.checkpoint)] {
				continue
			}
			seen[string(a.checkpoint)] = true
			old, err := v.VerifyCheckpoint(a.checkpoint)
			if err != nil {
				t.Fatal(err)
			}
			p, err := l.ConsistencyProof(ctx, old.Size, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.VerifyConsistency(old, cp, p); err != nil {
				t.Fatalf("round %d: the tree was rewritten: %v", round, err)
			}
		}
		t.Logf("round %d: %d entries acknowledged in all, %d checkpoints checked, tree size %d after recovery", round, len(acks), len(seen), cp.Size)
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// runAndKill starts the child on dir and SIGKILLs it once it has acknowledged n entries (its appenders are still
// busy then), returning what it acknowledged.
func runAndKill(t *testing.T, dir, keyFile string, n int) []ack {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashKeyEnv+"="+keyFile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acks []ack
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for len(acks) < n && sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "ACK" {
			continue
		}
		idx, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := base64.StdEncoding.DecodeString(f[3])
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack{index: idx, bodySHA256: f[2], checkpoint: cp})
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()
	if len(acks) < n {
		t.Fatalf("the child acknowledged %d entries before it stopped, want %d", len(acks), n)
	}
	return acks
}
