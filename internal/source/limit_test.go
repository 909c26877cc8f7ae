package source

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A source larger than a task's disk can never build, and every task gets a whole copy of it: a sparse file of
// 1 TiB in a hostile tree (a few bytes on disk) must be refused as bad input once the bound is passed, not written
// out in full to TMPDIR first. Without the bound the snapshot grows until the host's disk is full.
func TestSourceLargerThanBoundIsRefusedEarly(t *testing.T) {
	for _, git := range []bool{false, true} {
		name := "tree"
		if git {
			name = "git work tree"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeT(t, filepath.Join(dir, "README"), "hello\n")
			if git {
				sourceRepo(t, dir)
			}
			big := filepath.Join(dir, "big")
			f, err := os.Create(big)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(1 << 40); err != nil {
				t.Skipf("no sparse files here: %v", err)
			}
			f.Close()
			if git {
				// A commit that names the big file, without git ever reading it: its blob id is written by hand
				// (the snapshot is bounded before it is compared with the commit).
				// Trees and commits by plumbing: git commit would hash the whole file.
				mktree := exec.Command("git", "-C", dir, "mktree", "--missing")
				mktree.Stdin = strings.NewReader(gitT(t, dir, "ls-tree", "HEAD") + "\n100644 blob " + strings.Repeat("ab", 20) + "\tbig\n")
				tree, err := mktree.Output()
				if err != nil {
					t.Fatalf("git mktree: %v", err)
				}
				commit := gitT(t, dir, "commit-tree", "-p", "HEAD", "-m", "big", strings.TrimSpace(string(tree)))
				gitT(t, dir, "update-ref", "HEAD", commit)
			}
			snapshot := filepath.Join(t.TempDir(), "source.tar")
			const limit = 8 << 20
			// Without the bound the snapshot would be written until the disk is full; the deadline stops it.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err = Take(ctx, dir, Protected{Home: t.TempDir()}, snapshot, limit)
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), "holds more than 8388608 bytes") || !strings.Contains(err.Error(), "maxDiskBytes") {
				t.Fatalf("Take of a source with a 1 TiB sparse file under an 8 MiB bound: %v, want an InputError naming the bound", err)
			}
			if _, err := os.Stat(snapshot); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the refused snapshot %s was left behind (%v)", snapshot, err)
			}
		})
	}
}

// Within the bound nothing changes: the snapshot is taken.
func TestSourceWithinBoundIsTaken(t *testing.T) {
	dir := t.TempDir()
	writeT(t, filepath.Join(dir, "README"), strings.Repeat("x", 100<<10))
	src, err := Take(context.Background(), dir, Protected{Home: t.TempDir()}, filepath.Join(t.TempDir(), "source.tar"), 1<<20)
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	if fi, err := os.Stat(src.Path); err != nil || fi.Size() > 1<<20 {
		t.Fatalf("snapshot: %v, %v", fi, err)
	}
}

// Ignore files are the source's, so anyone's: 8 MiB of 1024-byte patterns full of stars, each matched against
// every path, took about 8 seconds a file (a millisecond per pattern and path), hours for a source of thousands
// of files. The matching work of one snapshot is bounded, and a source past it is refused as bad input.
func TestIgnorePatternsCannotHoldTheBuild(t *testing.T) {
	defer func(n int64) { maxMatchSteps = n }(maxMatchSteps)
	maxMatchSteps = 100_000_000 // 2e9 in earnest: a few seconds
	dir := t.TempDir()
	pattern := strings.Repeat("*a", 511) + "b\n"
	writeT(t, filepath.Join(dir, ".ssfignore"), strings.Repeat(pattern, (8<<20)/len(pattern)))
	for i := range 200 {
		writeT(t, filepath.Join(dir, "d", strings.Repeat("a", 250)+strconv.Itoa(i)), "x")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Take(ctx, dir, Protected{Home: t.TempDir()}, filepath.Join(t.TempDir(), "source.tar"), 1<<30)
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "the source's ignore patterns (.gitignore, .git/info/exclude, .ssfignore) take more than 100000000 steps to match") {
		t.Fatalf("Take of a source with hostile ignore patterns: %v; want an InputError naming the bound (within 20 s)", err)
	}
}

// A .gitignore may ignore itself, so the snapshot's bound does not count it, and the walk holds the patterns of
// every directory above the one it is in: a chain of directories each with 8 MiB of patterns held gigabytes in
// the control plane. The patterns one snapshot reads are bounded together, and a source past it is bad input.
func TestIgnoreFilesAreBoundedTogether(t *testing.T) {
	defer func(n int) { maxIgnoreTotal = n }(maxIgnoreTotal)
	maxIgnoreTotal = 1 << 20
	dir := t.TempDir()
	writeT(t, filepath.Join(dir, "README"), "hello\n")
	sourceRepo(t, dir)
	patterns := ".gitignore\n" + strings.Repeat(strings.Repeat("p", 1000)+"\n", 400) // 400 kB, ignoring itself
	sub := dir
	for i := range 4 {
		writeT(t, filepath.Join(sub, ".gitignore"), patterns)
		sub = filepath.Join(sub, "d"+strconv.Itoa(i))
		writeT(t, filepath.Join(sub, "f"), "x")
	}
	_, err := Take(context.Background(), dir, Protected{Home: t.TempDir()}, filepath.Join(t.TempDir(), "source.tar"), 1<<30)
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), `the .gitignore files of the source hold more than 1048576 bytes of patterns together (reached at "d0/d1/.gitignore")`) {
		t.Fatalf("Take: %v; want an InputError naming the bound and where it was reached", err)
	}
}
