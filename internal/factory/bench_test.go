package factory

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// benchOutputSize is the size of the output the hashing benchmarks read: big enough that the cost of opening
// files and of the first read is lost in the noise, small enough to sit in the page cache.
const benchOutputSize = 256 << 20

// benchOutput writes benchOutputSize bytes of pseudo-random data to a file in a temporary directory.
func benchOutput(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "output")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{'s', 's', 'f'})
	buf := make([]byte, 1<<20)
	for range benchOutputSize / len(buf) {
		rng.Read(buf)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	// One read first, so every timed iteration finds the file in the page cache, as ssf finds a task's fresh
	// output.
	if _, err := fileSHA256(path); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkFileSHA256 is hashing alone (the sha256 inside copyHashed without the write); compare with
// `openssl dgst -sha256`.
func BenchmarkFileSHA256(b *testing.B) {
	path := benchOutput(b)
	b.SetBytes(benchOutputSize)
	for b.Loop() {
		if _, err := fileSHA256(path); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCopyHashed is how ssf collects an output: read it from the task's outputs directory, write the copy
// and hash the bytes in one pass.
func BenchmarkCopyHashed(b *testing.B) {
	path := benchOutput(b)
	dest := b.TempDir()
	syscall.Sync()
	b.SetBytes(benchOutputSize)
	i := 0
	for b.Loop() {
		i++
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		target := filepath.Join(dest, fmt.Sprint(i))
		if _, _, err := copyHashed(f, target, 0o644); err != nil {
			b.Fatal(err)
		}
		f.Close()
		// Each copy starts with nothing waiting to be written back, as a build's single collection does.
		b.StopTimer()
		if err := os.Remove(target); err != nil {
			b.Fatal(err)
		}
		syscall.Sync()
		b.StartTimer()
	}
}

// fileSHA256 returns the hex sha256 of a file's contents.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
