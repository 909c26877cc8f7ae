package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ssfhome "github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/tlog"
)

// ssfRun runs ssf in-process and returns its exit status, stdout and stderr.
func ssfRun(t *testing.T, ctx context.Context, a ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(ctx, a, &out, &errb)
	return code, out.String(), errb.String()
}

// initHome makes a factory home in a temporary directory and returns its layout.
func initHome(t *testing.T) ssfhome.Layout {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "home")
	t.Setenv("SSF_HOME", dir)
	if code, _, errs := ssfRun(t, context.Background(), "init"); code != 0 {
		t.Fatalf("ssf init: %d %s", code, errs)
	}
	return ssfhome.Layout{Dir: dir}
}

// appendEntries opens the log in dir with key and host, appends n distinct DSSE entries (numbered from first), and
// closes it, which publishes a checkpoint covering them.
func appendEntries(t *testing.T, dir string, key *ecdsa.PrivateKey, host string, first, n int) {
	t.Helper()
	ctx := context.Background()
	l, err := tlog.Open(ctx, dir, key, tlog.WithHost(host))
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := sign.PublicKeyPEM(signer.Public())
	// Appended concurrently, so that they share batches (and fsyncs).
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := first; i < first+n; i++ {
		payload := fmt.Appendf(nil, `{"n":%d}`, i)
		pae := fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len("application/vnd.in-toto+json"), "application/vnd.in-toto+json", len(payload), payload)
		h := sha256.Sum256(pae)
		sig, _ := ecdsa.SignASN1(rand.Reader, signer, h[:])
		env, _ := json.Marshal(map[string]any{"payloadType": "application/vnd.in-toto+json", "payload": base64.StdEncoding.EncodeToString(payload),
			"signatures": []map[string]string{{"keyid": "", "sig": base64.StdEncoding.EncodeToString(sig)}}})
		e, err := tlog.NewDSSEEntry(env, pub)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if _, err := l.Append(ctx, e); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// mirror copies the published files of the log in dir (checkpoint and tiles, not .ssf) to a new directory and
// serves it with a plain static file server, as any web server of a copy would.
func mirror(t *testing.T, dir string, change func(copyDir string)) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == ".ssf" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(dst)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dst)))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestLogVerify: ssf log verify against static copies of the log: a first run and an extension verify; a mirror
// serving an older tree (rollback), a changed entry, a fork signed with the same key and a bad checkpoint signature
// each exit 1 naming what is wrong, and leave the state as it was.
func TestLogVerify(t *testing.T) {
	lay := initHome(t)
	key, err := sign.LoadKey(lay.TLogKey())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	appendEntries(t, lay.Log(), key, "ssf.local", 0, 300)
	old := mirror(t, lay.Log(), nil)

	code, out, errs := ssfRun(t, ctx, "log", "verify", "--log", old)
	if code != 0 || !strings.Contains(out, "300 entries (300 new)") {
		t.Fatalf("first run: %d\n%s%s", code, out, errs)
	}
	statePath := strings.TrimSpace(out[strings.Index(out, "state: ")+len("state: "):])
	if !strings.HasPrefix(statePath, filepath.Join(lay.Dir, "log-monitor")+"/") {
		t.Fatalf("state kept in %q, want under $SSF_HOME/log-monitor", statePath)
	}
	state := func() string {
		b, err := os.ReadFile(statePath)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	// A fork made with the same key (another directory, other entries) before the log grows.
	forkDir := t.TempDir()
	appendEntries(t, forkDir, key, "ssf.local", 1000, 330)

	appendEntries(t, lay.Log(), key, "ssf.local", 300, 20)
	code, out, errs = ssfRun(t, ctx, "log", "verify", "--log", mirror(t, lay.Log(), nil))
	if code != 0 || !strings.Contains(out, "320 entries (20 new)") {
		t.Fatalf("second run: %d\n%s%s", code, out, errs)
	}
	good := state()

	pubFile := filepath.Join(t.TempDir(), "log.pub")
	pub, _ := sign.PublicKeyPEM(key.Public())
	if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		url  string
		args []string
		want string
	}{
		{"rollback", old, nil, "rolled back: the checkpoint has 300 entries, 320 were verified before"},
		{"fork with the same key", mirror(t, forkDir, nil), nil, "forked or changed"},
		{"bad signature", mirror(t, lay.Log(), func(d string) {
			p := filepath.Join(d, "checkpoint")
			b, _ := os.ReadFile(p)
			i := bytes.LastIndexByte(b, ' ') + 10
			b[i] ^= 1
			os.WriteFile(p, b, 0o644)
		}), []string{"--key", pubFile}, "bad checkpoint"},
		{"another log's key", old, []string{"--key", otherKeyFile(t)}, "bad checkpoint"},
		{"changed entry", mirror(t, lay.Log(), func(d string) {
			// An entry not verified yet (a fresh state) is changed, but still parses: a flipped payload hash digit.
			p := filepath.Join(d, "tile", "entries", "001.p", "64")
			b, _ := os.ReadFile(p)
			i := bytes.Index(b, []byte(`"payloadHash":{"algorithm":"sha256","value":"`)) + 45
			if b[i] == '0' {
				b[i] = '1'
			} else {
				b[i] = '0'
			}
			os.WriteFile(p, b, 0o644)
		}), []string{"--state", filepath.Join(t.TempDir(), "fresh.json")}, "forked or changed: the entries up to 320"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := ssfRun(t, ctx, append([]string{"log", "verify", "--log", c.url}, c.args...)...)
			if code != 1 || !strings.Contains(errs, c.want) || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errs, c.want)
			}
			if state() != good {
				t.Fatalf("a failed run changed the state")
			}
		})
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"log", "verify"}, "--log URL is required"},
		{[]string{"log", "verify", "--log", "file:///etc"}, "not an http(s) URL"},
		{[]string{"log", "verify", "--log", old, "--key", "/nonexistent"}, "reading --key"},
		{[]string{"log", "serve", "--addr", "nonsense"}, "--addr"},
		{[]string{"log", "serve", "--addr", "0.0.0.0:0"}, "not loopback"},
		// A bad port is bad usage too (it was exit 1, "listening on ...: invalid port").
		{[]string{"log", "serve", "--addr", "127.0.0.1:99999"}, `port "99999" is not a number from 0 to 65535`},
		{[]string{"log", "serve", "--addr", "127.0.0.1:30x"}, `port "30x" is not a number`},
	} {
		if code, _, errs := ssfRun(t, ctx, c.args...); code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("ssf %s: exit %d %q, want 2 and %q", strings.Join(c.args, " "), code, errs, c.want)
		}
	}
}

func otherKeyFile(t *testing.T) string {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := sign.PublicKeyPEM(k.Public())
	p := filepath.Join(t.TempDir(), "other.pub")
	if err := os.WriteFile(p, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLogServe runs ssf log serve on the factory's log: its files and API answer, .ssf/ is not served, tessera's
// klog lines stay off stderr, ssf log verify passes against it, and Ctrl-C stops it with status 0. A home without
// the log key is told to run ssf init.
func TestLogServe(t *testing.T) {
	lay := initHome(t)
	// klog writes to the process's stderr, not to the command's: catch it there. The log does not exist yet, so
	// tessera has something to say (it logs the creation of a log directory).
	caught, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	realStderr := os.Stderr
	os.Stderr = caught
	defer func() { os.Stderr = realStderr }()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- Main(ctx, []string{"log", "serve", "--addr", addr, "--accept-entries"}, &out, &errb) }()
	base := "http://" + addr
	info := waitServing(t, base, done, &errb)
	if info["treeSize"] != float64(0) {
		t.Fatalf("/api/v1/log: %v", info)
	}
	signer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for i := range 3 {
		d := sha256.Sum256([]byte{byte(i)})
		sig, _ := ecdsa.SignASN1(rand.Reader, signer, d[:])
		pub, _ := sign.PublicKeyPEM(signer.Public())
		body, _ := json.Marshal(map[string]any{"kind": "hashedrekord", "apiVersion": "0.0.1", "spec": map[string]any{
			"data":      map[string]any{"hash": map[string]string{"algorithm": "sha256", "value": fmt.Sprintf("%x", d)}},
			"signature": map[string]any{"content": sig, "publicKey": map[string]any{"content": pub}}}})
		resp, err := http.Post(base+"/api/v1/log/entries", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST /api/v1/log/entries: %d", resp.StatusCode)
		}
	}
	// An acknowledged entry is served at once (the server waits the moment until a checkpoint covers it).
	resp, err := http.Get(base + "/api/v1/log/entries?logIndex=2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET entry 2: %d", resp.StatusCode)
	}
	for p, want := range map[string]int{"/checkpoint": 200, "/tile/entries/000.p/3": 200, "/.ssf/lock": 404, "/.ssf/leaf-index": 404, "/tile/": 404} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", p, resp.StatusCode, want)
		}
	}
	if code, vout, verr := ssfRun(t, context.Background(), "log", "verify", "--log", base); code != 0 || !strings.Contains(vout, "3 entries") {
		t.Errorf("ssf log verify against ssf log serve: %d %s %s", code, vout, verr)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("ssf log serve exited %d after Ctrl-C: %s", code, errb.String())
	}
	os.Stderr = realStderr
	if b, _ := os.ReadFile(caught.Name()); len(b) != 0 {
		t.Errorf("tessera wrote to stderr: %s", b)
	}
	if s := errb.String(); !strings.Contains(s, "log serving") || strings.Contains(s, "files.go") {
		t.Errorf("stderr of ssf log serve: %s", s)
	}

	// By default the server is read-only: it refuses appends, and a build appending meanwhile (here, the log
	// opened directly) is served as it goes.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	var errb2 syncBuffer
	go func() { done <- Main(ctx, []string{"log", "serve", "--addr", addr}, io.Discard, &errb2) }()
	waitServing(t, base, done, &errb2)
	key, err := sign.LoadKey(lay.TLogKey())
	if err != nil {
		t.Fatal(err)
	}
	appendEntries(t, lay.Log(), key, "ssf.local", 0, 2)
	resp, err = http.Get(base + "/api/v1/log/entries?logIndex=4")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET entry 4, appended while a read-only server ran: %d", resp.StatusCode)
	}
	resp, err = http.Post(base+"/api/v1/log/entries", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST to a read-only server: %d", resp.StatusCode)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("ssf log serve exited %d after Ctrl-C: %s", code, errb2.String())
	}

	if err := os.Remove(lay.TLogKey()); err != nil {
		t.Fatal(err)
	}
	code, _, errs := ssfRun(t, context.Background(), "log", "serve", "--addr", addr)
	if code != 2 || !strings.Contains(errs, "no transparency log key") || !strings.Contains(errs, "ssf init") {
		t.Fatalf("without the log key: %d %s", code, errs)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitServing waits until the ssf log serve started in the background answers /api/v1/log, and returns that.
func waitServing(t *testing.T, base string, done <-chan int, errb *syncBuffer) map[string]any {
	t.Helper()
	var info map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(base + "/api/v1/log")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&info)
			resp.Body.Close()
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssf log serve did not answer: %v\n%s", err, errb.String())
		}
		select {
		case code := <-done:
			t.Fatalf("ssf log serve exited %d: %s", code, errb.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
