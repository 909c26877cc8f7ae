// Command benchclient is the client side of scripts/bench-registry.sh: it pushes and pulls blobs over the OCI
// distribution API the way common clients do (POST to open an upload session, one streamed PATCH with the
// content, then PUT ?digest= to commit) and prints the wall time of each phase in seconds. It is not part of
// ssf; it exists so that the benchmark measures the registries rather than the start-up of a process per
// request.
//
//	benchclient freeport                          # prints a free port on 127.0.0.1
//	benchclient ping URL                          # exits 0 when URL/v2/ answers 200
//	benchclient push-file URL REPO FILE DIGEST    # one blob streamed from FILE; prints "push SECONDS"
//	benchclient pull URL REPO DIGEST SIZE         # GET to nowhere, checks the length; prints "pull SECONDS"
//	benchclient small-push URL REPO N SIZE PARALLEL SEED  # N distinct pseudo-random blobs made from SEED; prints "push SECONDS"
//	benchclient small-pull URL REPO N SIZE PARALLEL SEED  # the same blobs, each checked against its digest; prints "pull SECONDS"
//	benchclient sha256 MIB                        # hashes MIB MiB from memory on one goroutine; prints "sha256 SECONDS"
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"
)

var client = &http.Client{
	Timeout: 5 * time.Minute,
	Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	},
	// Registries answer uploads with a Location; nothing here should follow redirects on its own.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchclient:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: benchclient freeport | ping | push-file | pull | small-push | small-pull | sha256 (see the source)")
	}
	switch cmd, a := args[0], args[1:]; {
	case cmd == "freeport" && len(a) == 0:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		return nil
	case cmd == "ping" && len(a) == 1:
		c := &http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(a[0] + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s/v2/: %s", a[0], resp.Status)
		}
		return nil
	case cmd == "push-file" && len(a) == 4:
		f, err := os.Open(a[2])
		if err != nil {
			return err
		}
		defer f.Close()
		start := time.Now()
		// The file's own reader hides its size, so the PATCH goes out chunked, as from a streaming client.
		if err := push(a[0], a[1], a[3], struct{ io.Reader }{f}); err != nil {
			return err
		}
		fmt.Printf("push %.4f\n", time.Since(start).Seconds())
		return nil
	case cmd == "pull" && len(a) == 4:
		size, err := strconv.ParseInt(a[3], 10, 64)
		if err != nil {
			return err
		}
		start := time.Now()
		if err := pull(a[0], a[1], a[2], size, false); err != nil {
			return err
		}
		fmt.Printf("pull %.4f\n", time.Since(start).Seconds())
		return nil
	case cmd == "sha256" && len(a) == 1:
		// One core's SHA-256 rate: the limit of a registry that verifies every byte it stores. The same 64 MiB
		// of pseudo-random data (made before the clock starts) is hashed over and over, as Go's crypto/sha256,
		// which both ssf and distribution use, does it.
		mib, err := strconv.Atoi(a[0])
		if err != nil || mib < 64 {
			return fmt.Errorf("sha256: bad size %q (want at least 64 MiB)", a[0])
		}
		buf := make([]byte, 64<<20)
		rand.NewChaCha8([32]byte{}).Read(buf)
		h := sha256.New()
		start := time.Now()
		for range mib / 64 {
			h.Write(buf)
		}
		h.Sum(nil)
		fmt.Printf("sha256 %.4f\n", time.Since(start).Seconds())
		return nil
	case (cmd == "small-push" || cmd == "small-pull") && len(a) == 6:
		n, err1 := strconv.Atoi(a[2])
		size, err2 := strconv.Atoi(a[3])
		par, err3 := strconv.Atoi(a[4])
		if err := errors.Join(err1, err2, err3); err != nil || n < 1 || size < 1 || par < 1 {
			return fmt.Errorf("%s: bad numbers %q", cmd, a[2:5])
		}
		return small(a[0], a[1], n, size, par, a[5], cmd == "small-push")
	}
	return fmt.Errorf("bad arguments %q", args)
}

func do(req *http.Request, want int) (*http.Response, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %s (want %d): %s", req.Method, req.URL.Path, resp.Status, want, bytes.TrimSpace(b))
	}
	return resp, nil
}

// location resolves an upload session's Location header against the registry's base URL.
func location(base string, resp *http.Response) (*url.URL, error) {
	b, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	l, err := b.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		return nil, fmt.Errorf("upload answer without a usable Location: %q", resp.Header.Get("Location"))
	}
	return l, nil
}

// push uploads one blob: POST, one PATCH carrying body, PUT ?digest= with no body.
func push(base, repo, digest string, body io.Reader) error {
	req, _ := http.NewRequest(http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil)
	resp, err := do(req, http.StatusAccepted)
	if err != nil {
		return err
	}
	resp.Body.Close()
	loc, err := location(base, resp)
	if err != nil {
		return err
	}
	req, _ = http.NewRequest(http.MethodPatch, loc.String(), body)
	req.Header.Set("Content-Type", "application/octet-stream")
	if resp, err = do(req, http.StatusAccepted); err != nil {
		return err
	}
	resp.Body.Close()
	if loc, err = location(base, resp); err != nil {
		return err
	}
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	req, _ = http.NewRequest(http.MethodPut, loc.String(), nil)
	if resp, err = do(req, http.StatusCreated); err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// pull downloads one blob, checks its length and, when verify is set, its sha256 digest.
func pull(base, repo, digest string, size int64, verify bool) error {
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/"+repo+"/blobs/"+digest, nil)
	resp, err := do(req, http.StatusOK)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := sha256.New()
	// The body is read 32 KiB at a time, as io.Copy into a file or a hash does in Go clients such as crane.
	// io.Discard is hidden behind a plain Writer because its own ReadFrom reads only 8 KiB at a time: then the
	// client's reads dominate a 1 GiB pull, from either registry, and hide the registries' difference.
	var w io.Writer = struct{ io.Writer }{io.Discard}
	if verify {
		w = h
	}
	n, err := io.CopyBuffer(w, resp.Body, make([]byte, 32<<10))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("GET %s: %d bytes, want %d", digest, n, size)
	}
	if verify && "sha256:"+hex.EncodeToString(h.Sum(nil)) != digest {
		return fmt.Errorf("GET %s: content has another digest", digest)
	}
	return nil
}

// small pushes (or pulls and verifies) n blobs of size bytes with par requests in flight. The blobs come from a
// ChaCha8 stream seeded by seed, so a pull run sees the blobs of the push run with the same seed; the blobs are
// made before the clock starts.
func small(base, repo string, n, size, par int, seed string, pushing bool) error {
	src := rand.NewChaCha8(sha256.Sum256([]byte(seed)))
	blobs := make([][]byte, n)
	digests := make([]string, n)
	for i := range blobs {
		blobs[i] = make([]byte, size)
		src.Read(blobs[i])
		sum := sha256.Sum256(blobs[i])
		digests[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	op, verb := func(i int) error { return pull(base, repo, digests[i], int64(size), true) }, "pull"
	if pushing {
		// A reader that hides its length: the PATCH goes out chunked, as from ggcr (crane) or docker.
		op, verb = func(i int) error {
			return push(base, repo, digests[i], struct{ io.Reader }{bytes.NewReader(blobs[i])})
		}, "push"
	}
	start := time.Now()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := op(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	fmt.Printf("%s %.4f\n", verb, time.Since(start).Seconds())
	return nil
}
