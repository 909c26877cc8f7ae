package main

// End-to-end test of ssf admission serve: a factory build publishes a signed image to a registry, and the built
// binary, serving HTTPS with the factory's own trust, mutates its tag to the digest and admits it, and denies an
// unsigned image, as the API server would ask it.

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	ssfregistry "github.com/ssf-dev/ssf/internal/registry"
)

// podReview is an AdmissionReview v1 request for a Pod with one container.
func podReview(uid, image string) string {
	obj, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "web", "namespace": "prod"},
		"spec": map[string]any{"containers": []map[string]any{{"name": "app", "image": image}}}})
	return fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":%q,"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"prod","name":"web","operation":"CREATE","object":%s}}`, uid, obj)
}

func TestAdmissionServe(t *testing.T) {
	p := newProject(t, `
    - name: pack
      steps:
        - name: copy
          run: cp image.tar "$SSF_OUTPUTS/image.tar"
      outputs: [image.tar]
`)
	reg, err := ssfregistry.New(t.TempDir(), ssfregistry.WithInsecureLocalPushUnsafe(), ssfregistry.WithAnonymousPull(true))
	if err != nil {
		t.Fatal(err)
	}
	rs := httptest.NewServer(reg)
	defer rs.Close()
	host := strings.TrimPrefix(rs.URL, "http://")

	p.write()
	digest := p.addRandomImage("image.tar", 1024)
	if r := p.build("--publish", host+"/team/image:v1"); r.code != 0 {
		t.Fatalf("build --publish: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	signed := host + "/team/image@" + digest.String() // signed keylessly (ssf build's default --signer identity)

	// The same factory's key-signed build of another image: the default trust is the key and the trusted root.
	kp := newProject(t, p.tasks)
	kp.write()
	kdigest := kp.addRandomImage("image.tar", 2048)
	if r := kp.build("--signer", "key", "--publish", host+"/team/keyed:v1"); r.code != 0 {
		t.Fatalf("build --signer key --publish: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	keyed := host + "/team/keyed@" + kdigest.String()

	unsignedImg, _ := random.Image(512, 1)
	unsignedRef, _ := name.NewTag(host+"/team/unsigned:v1", name.Insecure)
	if err := remote.Write(unsignedRef, unsignedImg); err != nil {
		t.Fatal(err)
	}
	ud, _ := unsignedImg.Digest()
	unsigned := host + "/team/unsigned@" + ud.String()

	certFile, keyFile, pool := selfSigned(t, p.dir) // tls_test.go
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	log := &lockedBuffer{}
	policyDir := filepath.Join(p.dir, "policy")
	if r := ssf(t, p.tmp, "policy", "init", policyDir); r.code != 0 {
		t.Fatalf("ssf policy init: exit %d\n%s", r.code, r.stderr)
	}
	serve := exec.Command(ssfBin, "admission", "serve", "--addr", addr, "--tls-cert", certFile, "--tls-key", keyFile,
		"--policy", policyDir, "--reload", "200ms")
	serve.Env = append(os.Environ(), "SSF_HOME="+homeDir, "TMPDIR="+p.tmp)
	serve.Stdout, serve.Stderr = log, log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	defer func() {
		serve.Process.Signal(syscall.SIGINT)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("ssf admission serve after SIGINT: %v, want exit 0\n%s", err, log.String())
			}
		case <-time.After(20 * time.Second):
			serve.Process.Kill()
			t.Errorf("ssf admission serve did not stop within 20s of SIGINT")
		}
		if t.Failed() {
			t.Logf("ssf admission serve log:\n%s", log.String())
		}
	}()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 20 * time.Second}
	base := "https://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("ssf admission serve exited before serving: %v\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssf admission serve did not answer on %s: %v\n%s", addr, err, log.String())
		}
		time.Sleep(50 * time.Millisecond) // polling a process's readiness, not synchronising goroutines
	}

	review := func(path, body string) (allowed bool, message string, patch []map[string]string) {
		t.Helper()
		resp, err := client.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rv struct {
			Response struct {
				Allowed bool
				Status  struct{ Message string }
				Patch   []byte
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&rv); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s %v", path, resp.Status, err)
		}
		if len(rv.Response.Patch) > 0 {
			json.Unmarshal(rv.Response.Patch, &patch)
		}
		return rv.Response.Allowed, rv.Response.Status.Message, patch
	}

	allowed, msg, patch := review("/mutate/enforce", podReview("m1", host+"/team/image:v1"))
	if !allowed || len(patch) != 1 || patch[0]["path"] != "/spec/containers/0/image" || patch[0]["value"] != signed {
		t.Errorf("mutate of the tag: allowed %v %q, patch %v; want %s", allowed, msg, patch, signed)
	}
	if allowed, msg, _ := review("/validate/enforce", podReview("v1", signed)); !allowed {
		t.Errorf("the factory's keyless image was denied: %s", msg)
	}
	if allowed, msg, _ := review("/validate/enforce", podReview("v1k", keyed)); !allowed {
		t.Errorf("the factory's key-signed image was denied: %s", msg)
	}
	allowed, msg, _ = review("/validate/enforce", podReview("v2", unsigned))
	if allowed || !strings.Contains(msg, `container "app" (image "`+unsigned+`"): provenance:`) {
		t.Errorf("the unsigned image: allowed %v, %q", allowed, msg)
	}
	if allowed, msg, _ := review("/validate/warn", podReview("v3", unsigned)); !allowed {
		t.Errorf("warn mode denied: %s", msg)
	}

	// A policy changed on disk applies at the next --reload, to the cached image too.
	extra := "package ssf.deploy\n\ndeny contains msg if {\n\tinput.admission.container == \"app\"\n\tmsg := \"no container may be called app\"\n}\n"
	if err := os.WriteFile(filepath.Join(policyDir, "extra.rego"), []byte(extra), 0o644); err != nil {
		t.Fatal(err)
	}
	reloadBy := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "policy changed") {
		if time.Now().After(reloadBy) {
			t.Fatalf("the changed policy was not read again within 30 s:\n%s", log.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("ssf admission serve exited: %v\n%s", err, log.String())
		case <-time.After(50 * time.Millisecond): // polling the server's log for the reload, as for readiness
		}
	}
	allowed, msg, _ = review("/validate/enforce", podReview("v4", signed))
	if allowed || !strings.Contains(msg, `container "app" (image "`+signed+`"): policy ssf.deploy: no container may be called app`) {
		t.Errorf("after the policy changed: allowed %v, %q", allowed, msg)
	}

	r := ssf(t, p.tmp, "admission", "install", "--url", base, "--ca-file", certFile)
	if r.code != 0 || !strings.Contains(r.stdout, "url: "+base+"/validate/enforce") || !strings.Contains(r.stdout, "kind: MutatingWebhookConfiguration") {
		t.Errorf("ssf admission install: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := ssf(t, p.tmp, "admission", "serve", "--addr", "127.0.0.1:0"); r.code != 2 || !strings.Contains(r.stderr, "--tls-cert") {
		t.Errorf("serve without TLS: exit %d, want 2\n%s", r.code, r.stderr)
	}
}
