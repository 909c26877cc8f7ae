package factory

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// BenchmarkHelloRebuild is the cached-rebuild figure: a second `ssf build` of examples/hello with its Go
// build cache warm, against a warm-cache `go build` of the same program on the host and against the container
// floor (the same pipeline whose steps do no work: two tasks, their containers, disks, hashing and signing). The
// goal is warm <= floor + 2 × host. Run it with
//
//	go test -run '^$' -bench HelloRebuild -benchtime 5x ./internal/factory/
//
// It needs root, runc, busybox-static and Go (the builder packs this machine's Go, as examples/builder/mkrootfs.sh
// does), and takes about a minute to set up.
func BenchmarkHelloRebuild(b *testing.B) {
	for _, tool := range []string{"runc", "busybox", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is not installed", tool)
		}
	}
	if os.Geteuid() != 0 {
		b.Skip("the runc sandbox needs root")
	}
	ctx := context.Background()
	dir := b.TempDir()
	h := Home{Dir: filepath.Join(dir, "home")}
	if _, err := h.Init(); err != nil {
		b.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if out, err := exec.Command("../../examples/builder/mkrootfs.sh", rootfs).CombinedOutput(); err != nil {
		b.Fatalf("mkrootfs.sh: %v\n%s", err, out)
	}
	images, err := h.Images()
	if err != nil {
		b.Fatal(err)
	}
	img, err := images.Import(ctx, rootfs, "go-builder")
	if err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(rootfs)
	example, err := os.ReadFile("../../examples/hello/ssf.yaml")
	if err != nil {
		b.Fatal(err)
	}
	pin := regexp.MustCompile(`go-builder@sha256:[0-9a-f]{64}`)
	hello := filepath.Join(dir, "hello.yaml")
	if err := os.WriteFile(hello, pin.ReplaceAll(example, []byte("go-builder@"+img.Digest.String())), 0o644); err != nil {
		b.Fatal(err)
	}
	// The floor: the same two tasks and outputs, steps that do no work, no cache.
	floor := filepath.Join(dir, "floor.yaml")
	floorYAML := `apiVersion: ssf.dev/v1alpha1
kind: Pipeline
metadata: {name: floor}
spec:
  builder: {image: go-builder@` + img.Digest.String() + `}
  tasks:
    - name: build
      steps: [{name: compile, run: 'echo binary > "$SSF_OUTPUTS/hello"'}]
      outputs: [hello]
    - name: test
      needs: [build]
      steps: [{name: run, run: 'cat /inputs/build/hello > "$SSF_OUTPUTS/greeting.txt"'}]
      outputs: [greeting.txt]
`
	if err := os.WriteFile(floor, []byte(floorYAML), 0o644); err != nil {
		b.Fatal(err)
	}
	src, err := filepath.Abs("../../examples/hello")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "out"), 0o755); err != nil {
		b.Fatal(err)
	}
	n := 0
	build := func(b *testing.B, pipeline string, noCache bool) {
		n++
		out := filepath.Join(dir, "out", fmt.Sprint(n))
		if _, err := h.Build(ctx, BuildRequest{Pipeline: pipeline, Source: src, Out: out, Log: io.Discard, NoCache: noCache}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(out)
		b.StartTimer()
	}
	// Untimed: unpacks the builder and fills the cache.
	build(b, hello, false)

	b.Run("ssf-warm-cache", func(b *testing.B) {
		for b.Loop() {
			build(b, hello, false)
		}
	})
	b.Run("ssf-floor", func(b *testing.B) {
		for b.Loop() {
			build(b, floor, false)
		}
	})
	b.Run("ssf-no-cache", func(b *testing.B) {
		for b.Loop() {
			build(b, hello, true)
		}
	})
	b.Run("host-warm-go-build", func(b *testing.B) {
		work := b.TempDir()
		if out, err := exec.Command("cp", "-R", src+"/.", work).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v\n%s", err, out)
		}
		goBuild := func() {
			cmd := exec.Command("go", "build", "-o", filepath.Join(work, "hello.bin"), ".")
			cmd.Dir = work
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOPROXY=off",
				"GOFLAGS=-trimpath -buildvcs=false", "GOCACHE="+filepath.Join(work, ".gocache"))
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("go build: %v\n%s", err, out)
			}
		}
		goBuild() // warm
		for b.Loop() {
			// Like the task, which writes to an empty /outputs: without this go build would find the binary up to
			// date and skip the link, which is most of a warm build.
			b.StopTimer()
			os.Remove(filepath.Join(work, "hello.bin"))
			b.StartTimer()
			goBuild()
		}
	})
}
