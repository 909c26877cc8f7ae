package oci_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
	ssfregistry "github.com/ssf-dev/ssf/internal/registry"
)

// TestPublishSpeed times a publish of N output files, each with its two SBOM bundles, to ssf's registry (the
// referrers API), go-containerregistry's in-memory one and Debian's docker-registry (both without it: the
// fallback tag). It runs only with SSF_PUBLISH_SPEED=N (e.g. 200 or 1000): it is a measurement, not a check,
// beyond that every referrer is found again afterwards.
func TestPublishSpeed(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SSF_PUBLISH_SPEED"))
	if n <= 0 {
		t.Skip("set SSF_PUBLISH_SPEED=N to time a publish of N files")
	}
	files := map[string][]byte{}
	for i := range n {
		files[fmt.Sprintf("dir/f%04d", i)] = []byte(fmt.Sprintf("file %d\n", i))
	}
	f := newFixture(t, files, nil)
	for p := range files {
		f.writeSBOM(t, f.key, p, content.SPDXBundleSuffix, content.SPDXPredicateType)
		f.writeSBOM(t, f.key, p, content.CycloneDXBundleSuffix, content.CycloneDXPredicateType)
	}
	hosts := map[string]func(t *testing.T) string{
		"ssf registry": timedSSFRegistry,
		"ggcr memory":  func(t *testing.T) string { h, _ := newRegistry(t, false); return h },
		"docker-registry 2.8": func(t *testing.T) string {
			return dockerRegistry(t)
		},
	}
	for label, start := range hosts {
		t.Run(label, func(t *testing.T) {
			host := start(t)
			ctx := context.Background()
			repo, tag, err := oci.ParseTarget(host + "/team/app:v1")
			if err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			pub, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: tag,
				Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()})
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(begin)
			begin = time.Now()
			if _, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: tag,
				Verify: f.verifier(), VerifyAttestation: f.attestationVerifier()}); err != nil {
				t.Fatal(err)
			}
			again := time.Since(begin)
			att, err := oci.FetchBundles(ctx, pub.Artifact)
			if err != nil {
				t.Fatal(err)
			}
			if len(att.Bundles) != 1 || len(pub.Referrers) != 1+2*n {
				t.Fatalf("%d bundles fetched, %d referrers pushed; want 1 and %d", len(att.Bundles), len(pub.Referrers), 1+2*n)
			}
			t.Logf("%s: %d files: publish %.1fs, again %.1fs", label, n, took.Seconds(), again.Seconds())
		})
	}
}

// dockerRegistry starts Debian's docker-registry (distribution 2.8: no referrers API) on loopback, or skips.
func dockerRegistry(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("SSF_DOCKER_REGISTRY")
	if bin == "" {
		bin = "/usr/bin/docker-registry"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("docker-registry not found at %s", bin)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yml")
	cfg := fmt.Sprintf("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", config)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not come up on %s: %v\n%s", addr, err, logs.String())
		}
	}
}

// timedSSFRegistry starts ssf's registry and logs, when the test ends, how many requests of each kind it served
// and the time it spent on them: where a publish's time goes.
func timedSSFRegistry(t *testing.T) string {
	r, err := ssfregistry.New(t.TempDir(), ssfregistry.WithInsecureLocalPushUnsafe(), ssfregistry.WithAnonymousPull(true))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		count = map[string]int{}
		spent = map[string]time.Duration{}
	)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		kind := req.Method + " other"
		for _, k := range []string{"/blobs/uploads/", "/blobs/", "/manifests/sha256-", "/manifests/sha256:", "/manifests/", "/referrers/"} {
			if strings.Contains(req.URL.Path, k) {
				kind = req.Method + " " + k
				break
			}
		}
		begin := time.Now()
		r.ServeHTTP(w, req)
		mu.Lock()
		count[kind]++
		spent[kind] += time.Since(begin)
		mu.Unlock()
	}))
	t.Cleanup(func() {
		s.Close()
		for k, n := range count {
			t.Logf("%-28s %6d requests, %6.1fs in the registry", k, n, spent[k].Seconds())
		}
	})
	return strings.TrimPrefix(s.URL, "http://")
}
