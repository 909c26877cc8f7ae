package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// fakeHome makes a directory laid out like a factory home, with a key file, and returns it.
func fakeHome(t *testing.T) Protected {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "home")
	h := Protected{Home: dir, Key: filepath.Join(dir, "keys", "provenance.key")}
	writeT(t, h.Key, "-----BEGIN EC PRIVATE KEY-----\nsecret\n")
	writeT(t, filepath.Join(dir, "registry", "users"), "admin:$2a$...\n")
	return h
}

func snapshotEntries(t *testing.T, p string) []string {
	t.Helper()
	hdrs, _ := readSnapshot(t, p)
	var names []string
	for _, h := range hdrs {
		names = append(names, h.Name)
	}
	return names
}

// A hard link to a file of the factory home inside the source reaches every task if only paths are compared: it is
// refused as bad input, naming the link, for a plain tree and for a git work tree alike.
func TestSourceHardLinkIntoHomeIsRefused(t *testing.T) {
	for _, tc := range []struct{ name, target, want string }{
		{"key", "keys/provenance.key", "provenance signing key"},
		{"other home file", "registry/users", "registry/users"},
	} {
		for _, git := range []bool{false, true} {
			name := tc.name
			if git {
				name += " in git work tree"
			}
			t.Run(name, func(t *testing.T) {
				h := fakeHome(t)
				dir := t.TempDir()
				writeT(t, filepath.Join(dir, "README"), "hello\n")
				if git {
					sourceRepo(t, dir)
				}
				if err := os.Link(filepath.Join(h.Home, tc.target), filepath.Join(dir, "sub-key")); err != nil {
					t.Skipf("cannot make a hard link here: %v", err)
				}
				if git {
					gitT(t, dir, "add", "sub-key")
					gitT(t, dir, "commit", "-q", "-m", "key")
				}
				snapshot := filepath.Join(t.TempDir(), "source.tar")
				_, err := Take(context.Background(), dir, h, snapshot, 0)
				var ie *InputError
				if !errors.As(err, &ie) {
					t.Fatalf("snapshotSource = %v, want an InputError", err)
				}
				for _, w := range []string{`"sub-key"`, "hard link", tc.want} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if _, err := os.Stat(snapshot); err == nil {
					t.Error("a refused snapshot was left behind")
				}
			})
		}
	}
}

// A hard link between two files of the source itself is fine.
func TestSourceHardLinkWithinSourceIsKept(t *testing.T) {
	h := fakeHome(t)
	dir := t.TempDir()
	writeT(t, filepath.Join(dir, "a"), "a\n")
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	snapshot := filepath.Join(t.TempDir(), "source.tar")
	if _, err := Take(context.Background(), dir, h, snapshot, 0); err != nil {
		t.Fatal(err)
	}
	if got := snapshotEntries(t, snapshot); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("entries = %q", got)
	}
}

// A bind mount inside the source (here of the factory home) keeps the device number; the snapshot does not cross
// it and says so.
func TestSourceDoesNotCrossMountPoints(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root")
	}
	h := fakeHome(t)
	dir := t.TempDir()
	writeT(t, filepath.Join(dir, "README"), "hello\n")
	mnt := filepath.Join(dir, "sub", "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(h.Home, mnt, "", syscall.MS_BIND, ""); err != nil {
		t.Skipf("bind mount: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	snapshot := filepath.Join(t.TempDir(), "source.tar")
	src, err := Take(context.Background(), dir, h, snapshot, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := snapshotEntries(t, snapshot), []string{"README", "sub/"}; !slices.Equal(got, want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
	if !slices.ContainsFunc(src.LeftOut, func(s string) bool { return strings.Contains(s, `mount point`) && strings.Contains(s, `"sub/mnt"`) }) {
		t.Errorf("leftOut = %q, want the mount point named", src.LeftOut)
	}
}

// Fifos, sockets and devices are left out and named, not only counted.
func TestSourceSpecialFilesAreReported(t *testing.T) {
	h := fakeHome(t)
	dir := t.TempDir()
	writeT(t, filepath.Join(dir, "README"), "hello\n")
	for _, n := range []string{"pipe1", "pipe2"} {
		if err := syscall.Mkfifo(filepath.Join(dir, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	snapshot := filepath.Join(t.TempDir(), "source.tar")
	src, err := Take(context.Background(), dir, h, snapshot, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(src.LeftOut) != 1 || !strings.Contains(src.LeftOut[0], `left out 2 fifo(s)`) || !strings.Contains(src.LeftOut[0], `"pipe1", "pipe2"`) {
		t.Errorf("leftOut = %q", src.LeftOut)
	}
	if got := snapshotEntries(t, snapshot); !slices.Equal(got, []string{"README"}) {
		t.Errorf("entries = %q", got)
	}
}

func TestFirstFew(t *testing.T) {
	if got := firstFew([]string{"a", "b", "c", "d", "e", "f", "g"}); got != `"a", "b", "c", "d", "e" and 2 more` {
		t.Errorf("firstFew = %s", got)
	}
	if got := unescapeMountinfo(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Errorf("unescape = %q", got)
	}
}

// A bind mount shows the factory's files under another path with one link each: a source that is a bind mount of
// the home's parent (so the home is an ordinary directory inside it) or of the key's directory is refused.
func TestSourceBindMountOfHomeIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root")
	}
	h := fakeHome(t)
	for _, tc := range []struct{ name, target, want string }{
		{"parent of the home", filepath.Dir(h.Home), `"home" is the factory home`},
		{"key directory", filepath.Dir(h.Key), "is the directory of the signing key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := syscall.Mount(tc.target, dir, "", syscall.MS_BIND, ""); err != nil {
				t.Skipf("bind mount: %v", err)
			}
			t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
			_, err := Take(context.Background(), dir, h, filepath.Join(t.TempDir(), "source.tar"), 0)
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Take = %v, want an InputError saying %q", err, tc.want)
			}
		})
	}
}
