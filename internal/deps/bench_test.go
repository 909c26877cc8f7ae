package deps

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// benchProject is a go.mod and go.sum whose module graph holds about a hundred modules (221 go.sum lines: 96
// zips, 125 go.mod files of 103 module paths), made with the host's go mod tidy against the real proxy.
const benchProject = "testdata/gomod-bench"

// ingestBench ingests benchProject into a new tree with the given cache.
func ingestBench(b *testing.B, cache string, client *http.Client) []Dependency {
	b.Helper()
	tree, err := os.MkdirTemp("", "ssf-bench-tree-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(tree)
	deps, err := Ingest(context.Background(), os.DirFS(benchProject), []Spec{{Kind: Gomod, Path: "."}}, tree,
		Options{Cache: cache, GoProxy: testGoProxy(b), Client: client})
	if err != nil {
		b.Fatal(err)
	}
	return deps
}

// goModDownload runs the host's go mod download of benchProject with an empty module cache, through the same
// proxy, and returns how long it took.
func goModDownload(b *testing.B) time.Duration {
	b.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		b.Skip("no go command on this machine")
	}
	work, err := os.MkdirTemp("", "ssf-bench-go-")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { makeWritable(work); os.RemoveAll(work) }()
	cmd := exec.Command(gobin, "mod", "download")
	cmd.Dir = benchProject
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + work, "GOENV=off", "GOTOOLCHAIN=local",
		"GOMODCACHE=" + filepath.Join(work, "mod"), "GOFLAGS=-mod=mod", "GOPROXY=" + testGoProxy(b),
		// go.sum holds every hash; like ssf, go checks against it and asks no checksum database.
		"GOSUMDB=off",
	}
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go mod download: %v\n%s", err, out)
	}
	return time.Since(start)
}

// BenchmarkGomodCold ingests benchProject into an empty cache, and, alternating with it, runs go mod download of
// the same go.mod and go.sum into an empty module cache. It reports both (ssf-s/op, go-s/op) and their ratio; the
// goal is ssf at most 1.0x go mod download.
func BenchmarkGomodCold(b *testing.B) {
	var ssf, gomod time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		gomod += goModDownload(b)
		cache, err := os.MkdirTemp("", "ssf-bench-cache-")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		ingestBench(b, cache, nil)
		ssf += time.Since(start)
		b.StopTimer()
		os.RemoveAll(cache)
		b.StartTimer()
	}
	b.ReportMetric(ssf.Seconds()/float64(b.N), "ssf-s/op")
	b.ReportMetric(gomod.Seconds()/float64(b.N), "go-s/op")
	b.ReportMetric(ssf.Seconds()/gomod.Seconds(), "ssf/go")
}

// BenchmarkGomodWarm ingests benchProject with every file already in the cache: each one is verified again and
// laid out, and nothing is fetched (the client fails every request). Goal: under 1 s.
func BenchmarkGomodWarm(b *testing.B) {
	cache := b.TempDir()
	deps := ingestBench(b, cache, nil)
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		ingestBench(b, cache, &http.Client{Transport: offlineTransport{}})
	}
	// CPU time does not depend on what else the machine runs, wall time does: report both.
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(len(deps)), "modules")
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
