package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// benchConfig is a task container as ssf starts one: the busybox root, the four bind mounts every task gets,
// the unprivileged user. Both benchmarks use it, so they differ only in how the container is driven.
func benchConfig(b *testing.B, id, rootfs string) Config {
	b.Helper()
	dir := b.TempDir()
	var mounts []Mount
	for _, m := range []struct {
		name     string
		readOnly bool
	}{{"workspace", false}, {"outputs", false}, {"tmp", false}, {"inputs", true}} {
		src := filepath.Join(dir, m.name)
		if err := os.Mkdir(src, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.Chown(src, 65532, 65532); err != nil {
			b.Fatal(err)
		}
		mounts = append(mounts, Mount{Source: src, Destination: "/" + m.name, ReadOnly: m.readOnly})
	}
	return Config{
		ID: id, Rootfs: rootfs, Mounts: mounts, Env: []string{"PATH=/bin", "HOME=/tmp"},
		Cwd: "/workspace", UID: 65532, GID: 65532, Hostname: "ssf",
	}
}

// BenchmarkTaskContainer measures what one ssf task costs in container handling: Start (the task's cgroup and
// config), one Exec of a step that does nothing (one `runc run`), and Close. SSF_TEST_RUNTIME=crun measures crun.
func BenchmarkTaskContainer(b *testing.B) {
	rootfs := busyboxRootfs(b)
	state := b.TempDir()
	r, err := NewRunc(testRuntime, state)
	if err != nil {
		b.Fatal(err)
	}
	r.features() // once per process in ssf too; keep it out of the per-task figure
	cfg := benchConfig(b, "", rootfs)
	bundles := b.TempDir()
	ctx := context.Background()
	var out bytes.Buffer
	i := 0
	for b.Loop() {
		i++
		c := cfg
		c.ID = fmt.Sprintf("ssf-bench-task-%d", i)
		bundle := filepath.Join(bundles, c.ID)
		if err := os.Mkdir(bundle, 0o700); err != nil {
			b.Fatal(err)
		}
		ctr, err := r.Start(ctx, bundle, c)
		if err != nil {
			b.Fatal(err)
		}
		out.Reset()
		code, err := ctr.Exec(ctx, []string{"/bin/sh", "-c", "true"}, &out)
		if cerr := ctr.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil || code != 0 {
			b.Fatalf("exec in %s: code %d, err %v, output %q", c.ID, code, err, out.String())
		}
	}
	assertNoContainers(b, state)
}

// BenchmarkBareRuncRun is the floor BenchmarkTaskContainer is compared with: one `runc run` of the same container
// config running the same command as its init. runc run waits for it to exit and then deletes the container.
func BenchmarkBareRuncRun(b *testing.B) {
	rootfs := busyboxRootfs(b)
	state := b.TempDir()
	r, err := NewRunc(testRuntime, state)
	if err != nil {
		b.Fatal(err)
	}
	spec, err := ociSpec(benchConfig(b, "", rootfs), []string{"/bin/sh", "-c", "true"}, r.Seccomp())
	if err != nil {
		b.Fatal(err)
	}
	data, err := json.Marshal(spec)
	if err != nil {
		b.Fatal(err)
	}
	bundle := b.TempDir()
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		b.Fatal(err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	var stderr bytes.Buffer
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("ssf-bench-bare-%d", i)
		stderr.Reset()
		cmd := exec.Command(r.binary, "--root", state, "run", "--bundle", bundle, id)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, &stderr
		if err := cmd.Run(); err != nil {
			// Whatever runc left behind must not outlive the benchmark.
			exec.Command(r.binary, "--root", state, "delete", "--force", id).Run()
			b.Fatalf("runc run %s: %v: %s", id, err, stderr.String())
		}
	}
	assertNoContainers(b, state)
}

// assertNoContainers fails the benchmark if runc still has state for any container, and deletes it.
func assertNoContainers(b *testing.B, state string) {
	b.Helper()
	entries, err := os.ReadDir(state)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		exec.Command("runc", "--root", state, "delete", "--force", e.Name()).Run()
		b.Errorf("container %s was left behind", e.Name())
	}
}

// BenchmarkTaskDisk measures what a task's size-limited disk costs: a 20 GiB (the default maxDiskBytes) sparse
// image, mkfs.ext4, the loop mount, and the unmount and removal at the end.
func BenchmarkTaskDisk(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("mounting needs root")
	}
	dir := b.TempDir()
	i := 0
	for b.Loop() {
		i++
		d := filepath.Join(dir, fmt.Sprint(i))
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		disk, err := MountDisk(context.Background(), d, d+".disk", 20<<30)
		if err != nil {
			b.Fatal(err)
		}
		if err := disk.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
