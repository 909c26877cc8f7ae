package registry

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

// crashFS mounts a fresh ext4 file system of its own and returns its directory and a function that simulates
// a power cut on it: EXT4_IOC_SHUTDOWN without flushing the journal drops everything not yet made durable by
// fsync, as a crash would (the method fstests uses), after which it is unmounted and mounted again. It needs
// root, a loop device and mkfs.ext4; the test is skipped otherwise.
func crashFS(t *testing.T) (string, func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a file system")
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("needs mkfs.ext4")
	}
	work := t.TempDir()
	img, mnt := filepath.Join(work, "fs.img"), filepath.Join(work, "mnt")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v: %s", err, out)
	}
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	mount := func() {
		if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a loop device here: %v: %s", err, out)
		}
	}
	mount()
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return mnt, func() {
		const ext4IOCShutdown = 0x8004587d // _IOR('X', 125, __u32)
		const noLogFlush = 2               // EXT4_GOING_FLAGS_NOLOGFLUSH
		d, err := os.Open(mnt)
		if err != nil {
			t.Fatal(err)
		}
		flag := uint32(noLogFlush)
		_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, d.Fd(), ext4IOCShutdown, uintptr(unsafe.Pointer(&flag)))
		d.Close()
		if errno != 0 {
			t.Skipf("EXT4_IOC_SHUTDOWN: %v", errno)
		}
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Fatalf("umount after the simulated crash: %v: %s", err, out)
		}
		mount()
	}
}

// TestAcknowledgedChunkSurvivesCrash: a PATCH answered 202 acknowledges its bytes, and the session's saved
// hash state covers them. The data must be on disk before that state is: otherwise a power cut left the
// session with an offset its data file no longer reached (every later request on it failed), or, where the
// size survived but not the bytes, a blob that hashes to its digest only in the saved state.
func TestAcknowledgedChunkSurvivesCrash(t *testing.T) {
	dir, crash := crashFS(t)
	open := func() *testRegistry {
		reg, err := New(filepath.Join(dir, "registry"), WithInsecureLocalPushUnsafe(), WithAnonymousPull(true))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(reg)
		return &testRegistry{t: t, reg: reg, srv: srv, dir: dir}
	}
	tr := open()
	blob := bytes.Repeat([]byte("chunked and acknowledged "), 400) // 10,000 bytes: the page-cache path
	resp := tr.do("POST", "/v2/r/blobs/uploads/", nil)
	expect(t, resp, http.StatusAccepted, "")
	loc := resp.Header.Get("Location")
	resp = tr.do("PATCH", loc, bytes.NewReader(blob[:6000]), "Content-Range", "0-5999")
	expect(t, resp, http.StatusAccepted, "")
	tr.srv.Close()

	crash()

	tr = open()
	defer tr.srv.Close()
	resp = tr.do("GET", loc, nil)
	expect(t, resp, http.StatusNoContent, "")
	if got := resp.Header.Get("Range"); got != "0-5999" {
		t.Fatalf("after the crash the session has Range %q, want 0-5999", got)
	}
	resp = tr.do("PUT", loc+"?digest="+sha(blob), bytes.NewReader(blob[6000:]), "Content-Range", "6000-9999")
	expect(t, resp, http.StatusCreated, "")
	resp = tr.do("GET", "/v2/r/blobs/"+sha(blob), nil)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, blob) {
		t.Fatalf("the blob pushed across a crash has %d bytes that differ from the %d pushed", len(got), len(blob))
	}
}

// TestAcknowledgedPushesSurviveCrash: every blob, manifest and tag answered 201 is there, with its bytes, after
// a power cut: monolithic and chunked pushes, small ones (the page cache), aligned multi-MiB ones (O_DIRECT)
// and ones with unaligned tails, a cross-repository mount, and a referrer.
func TestAcknowledgedPushesSurviveCrash(t *testing.T) {
	dir, crash := crashFS(t)
	open := func() *testRegistry {
		reg, err := New(filepath.Join(dir, "registry"), WithInsecureLocalPushUnsafe(), WithAnonymousPull(true))
		if err != nil {
			t.Fatal(err)
		}
		return &testRegistry{t: t, reg: reg, srv: httptest.NewServer(reg), dir: dir}
	}
	tr := open()
	var blobs [][]byte
	for i, n := range []int{1, 5000, 4 << 20, 3<<20 + 123} {
		blobs = append(blobs, bytes.Repeat([]byte{byte('a' + i)}, n))
	}
	for i, b := range blobs {
		if i%2 == 0 { // monolithic
			resp := tr.do("POST", "/v2/r/blobs/uploads/?digest="+sha(b), bytes.NewReader(b))
			expect(t, resp, http.StatusCreated, "")
			continue
		}
		resp := tr.do("POST", "/v2/r/blobs/uploads/", nil)
		expect(t, resp, http.StatusAccepted, "")
		loc := resp.Header.Get("Location")
		half := len(b) / 2
		resp = tr.do("PATCH", loc, bytes.NewReader(b[:half]))
		expect(t, resp, http.StatusAccepted, "")
		resp = tr.do("PUT", loc+"?digest="+sha(b), bytes.NewReader(b[half:]))
		expect(t, resp, http.StatusCreated, "")
	}
	resp := tr.do("POST", "/v2/other/blobs/uploads/?mount="+sha(blobs[2])+"&from=r", nil)
	expect(t, resp, http.StatusCreated, "")
	tr.srv.Close()

	crash()

	tr = open()
	defer tr.srv.Close()
	check := func(repo string, b []byte) {
		resp := tr.do("GET", "/v2/"+repo+"/blobs/"+sha(b), nil)
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, b) {
			t.Errorf("after the crash, blob %s of %d bytes in %s: status %d, %d bytes (equal: %v)",
				sha(b), len(b), repo, resp.StatusCode, len(got), bytes.Equal(got, b))
		}
	}
	for _, b := range blobs {
		check("r", b)
	}
	check("other", blobs[2])
}
