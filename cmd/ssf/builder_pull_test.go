package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// busyboxLayer writes a tarball of a root file system holding busybox-static, its applets and /etc/pulled (so a
// build can tell the pulled builder from the imported one), and returns its path.
func busyboxLayer(t *testing.T, marker string) string {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox is not installed")
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "cat", "printf"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "pulled"), []byte(marker), 0o644); err != nil {
		t.Fatal(err)
	}
	layer := filepath.Join(dir, "layer.tar")
	if out, err := exec.Command("tar", "-C", rootfs, "-cf", layer, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	return layer
}

// pushBuilder pushes a one-layer linux/GOARCH image of layer to ref (a tag) with crane, as a user would, and
// returns its digest.
func pushBuilder(t *testing.T, run func(args ...string) string, layer, ref, platform string) string {
	t.Helper()
	run("append", "--insecure", "--oci-empty-base", "-f", layer, "-t", ref)
	run("mutate", "--insecure", "--set-platform", platform, "-t", ref, ref)
	return strings.TrimSpace(run("digest", "--insecure", ref))
}

// builder pull fetches a busybox image pushed with crane to the embedded registry (with credentials from the
// Docker config) and to Debian's docker-registry, and a build runs in it; the image layout crane pulls imports
// as the same builder; hostile and unusable references are refused with exit 2 and store nothing.
func TestBuilderPull(t *testing.T) {
	needSandbox(t)
	crane := interopTool(t, "SSF_CRANE", "crane")
	reg := startRegistry(t)
	dist := distributionRegistry(t)
	layer := busyboxLayer(t, "from a registry\n")
	platform := "linux/" + runtime.GOARCH

	embedded := func(args ...string) string { return reg.must(t, reg.dir, crane, args...) }
	plain := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(crane, args...).Output()
		if err != nil {
			t.Fatalf("crane %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	regDigest := pushBuilder(t, embedded, layer, reg.host+"/builders/busybox:v1", platform)
	distDigest := pushBuilder(t, plain, layer, dist+"/tools/pulled-bb:v1", platform)
	if regDigest != distDigest {
		t.Fatalf("crane pushed the same image as %s and %s", regDigest, distDigest)
	}

	tmp := t.TempDir()
	creds := reg.env(true)
	r := ssfEnv(t, tmp, creds, "builder", "pull", reg.host+"/builders/busybox@"+regDigest, "--name", "pulled-busybox")
	if r.code != 0 {
		t.Fatalf("builder pull from the embedded registry: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	pulled := lastLine(r.stdout)
	if !strings.HasPrefix(pulled, "pulled-busybox@sha256:") || !strings.Contains(r.stderr, regDigest) {
		t.Fatalf("builder pull printed %q (stderr %q), want pulled-busybox@sha256:... last and the registry digest %s", pulled, r.stderr, regDigest)
	}
	digest := strings.TrimPrefix(pulled, "pulled-busybox@")

	// NAME defaults to the repository's last element; the same image gives the same builder digest.
	r = ssf(t, tmp, "builder", "pull", dist+"/tools/pulled-bb@"+distDigest)
	if r.code != 0 || lastLine(r.stdout) != "pulled-bb@"+digest {
		t.Fatalf("builder pull from docker-registry: exit %d, last line %q, want pulled-bb@%s\n%s", r.code, lastLine(r.stdout), digest, r.stderr)
	}
	// An OCI image layout of it, as crane pulls it, imports as the same builder.
	layoutDir := filepath.Join(t.TempDir(), "layout")
	plain("pull", "--insecure", "--format", "oci", dist+"/tools/pulled-bb@"+distDigest, layoutDir)
	r = ssf(t, tmp, "builder", "import", "--oci-layout", layoutDir, "--name", "layout-bb")
	if r.code != 0 || lastLine(r.stdout) != "layout-bb@"+digest {
		t.Fatalf("builder import --oci-layout: exit %d, last line %q, want layout-bb@%s\n%s", r.code, lastLine(r.stdout), digest, r.stderr)
	}
	r = ssf(t, tmp, "builder", "list")
	if !strings.Contains(r.stdout, pulled) {
		t.Errorf("builder list does not show %s:\n%s", pulled, r.stdout)
	}

	// A build runs in the pulled builder.
	p := newProject(t, `
    - name: probe
      steps:
        - name: read
          run: cat /etc/pulled > "$SSF_OUTPUTS/marker"
      outputs: [marker]
`)
	p.write()
	y, err := os.ReadFile(p.pipeline)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.pipeline, []byte(strings.Replace(string(y), builder, pulled, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	r = ssf(t, p.tmp, "build", "-f", p.pipeline, "--source", p.src, "--out", p.out)
	if r.code != 0 {
		t.Fatalf("build with the pulled builder: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := p.output("marker"); got != "from a registry\n" {
		t.Errorf("the step read /etc/pulled = %q, want the pulled image's", got)
	}

	// Refused as bad input (exit 2): a tag, an index without this platform, a tree without /bin/sh.
	other := "linux/s390x"
	if runtime.GOARCH == "s390x" {
		other = "linux/amd64"
	}
	pushBuilder(t, plain, layer, dist+"/tools/foreign:v1", other)
	plain("index", "append", "--insecure", "-m", dist+"/tools/foreign:v1", "-t", dist+"/tools/foreign:index")
	foreignIndex := strings.TrimSpace(plain("digest", "--insecure", dist+"/tools/foreign:index"))
	noShell := t.TempDir()
	if err := os.WriteFile(filepath.Join(noShell, "README"), []byte("no shell here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"builder", "pull", dist + "/tools/pulled-bb:v1"}, "has no digest: builders are pinned by digest"},
		{[]string{"builder", "pull", dist + "/tools/foreign@" + foreignIndex}, "has no image for " + platform},
		{[]string{"builder", "import", noShell, "--name", "noshell"}, "no /bin/sh"},
		{[]string{"builder", "import", noShell, "--name", "Bad_Name"}, "invalid builder name"},
		{[]string{"builder", "rm", "nothing-here"}, "not found"},
	} {
		r := ssf(t, tmp, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("ssf %s: exit %d, stderr %q; want exit 2 saying %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}

	// rm by NAME@digest and by NAME; the digest's blobs and tree go once no name is left.
	for _, ref := range []string{"pulled-bb@" + digest, "layout-bb", "pulled-busybox"} {
		if r := ssf(t, tmp, "builder", "rm", ref); r.code != 0 {
			t.Fatalf("builder rm %s: exit %d\n%s", ref, r.code, r.stderr)
		}
	}
	if r := ssf(t, tmp, "builder", "list"); strings.Contains(r.stdout, digest) {
		t.Errorf("builder list after rm still shows %s:\n%s", digest, r.stdout)
	}
	if _, err := os.Stat(filepath.Join(homeDir, "cache", "rootfs", strings.TrimPrefix(digest, "sha256:"))); !os.IsNotExist(err) {
		t.Errorf("the removed builder's unpacked tree: %v, want it gone", err)
	}
}
