package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ssf-dev/ssf/internal/kubetest"
)

// packImage is a pipeline whose one output is an OCI image layout tarball from the source, which publish pushes
// as a runnable image.
const packImage = `
    - name: pack
      steps:
        - name: copy
          run: cp image.tar "$SSF_OUTPUTS/image.tar"
      outputs: [image.tar]
`

// The admission controller in a real cluster: a real kube-apiserver (and etcd) calls ssf admission serve over
// HTTPS, configured by what ssf admission install prints, for Pods and Deployments whose images live in ssf's
// embedded registry. One API server serves every case (it takes seconds to start).
func TestAdmissionInKubernetes(t *testing.T) {
	needSandbox(t)
	began := time.Now()
	cluster := kubetest.Start(t)
	t.Logf("etcd and kube-apiserver %s ready in %s", kubetest.KubeAPIServerVersion, time.Since(began).Round(time.Millisecond))
	reg := startRegistry(t)

	// The images: one this factory built, one another factory built (its own keys, the same builder), one pushed
	// with no provenance at all.
	good := publishImage(t, reg, homeDir, "team/app:v1")
	other := publishImage(t, reg, otherFactoryHome(t), "other/app:v1")
	// Every tag is resolved to its digest by the mutating webhook before the validating one sees it, so refusals
	// name images by digest.
	unsigned, unsignedDigest := pushUnsignedImage(t, reg, "team/unsigned:v1")
	goodTag := reg.host + "/team/app:v1"
	t.Logf("images built and published by %s", time.Since(began).Round(time.Millisecond))

	dir := t.TempDir()
	// The newcomer's policy set (examples/policy): the default rules, and the team's ssf.deploy rule mapping
	// namespaces to the pipelines allowed there. This factory's test pipelines are all named "test": it takes
	// the place of "release" in prod, and payments admits only a pipeline "payments-release", to show that an
	// ssf.deploy denial reaches the person creating the Pod with its message.
	policyDir := examplePolicy(t, map[string]string{`"release"`: `"test"`, "deploy_pipelines := {": `deploy_pipelines := {"payments": {"payments-release"}, `})
	url, caFile, stopAdmission := startAdmission(t, dir, policyDir)
	install := ssf(t, dir, "admission", "install", "--url", url, "--ca-file", caFile)
	if install.code != 0 {
		t.Fatalf("ssf admission install: exit %d\n%s%s", install.code, install.stdout, install.stderr)
	}
	kinds := cluster.CreateYAML(t, []byte(install.stdout))
	if !containsAll(kinds, "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration") {
		t.Fatalf("ssf admission install printed %v, want a validating and a mutating webhook configuration", kinds)
	}

	cluster.CreateNamespace(t, "prod", map[string]string{"ssf.dev/admission": "enforce"})
	cluster.CreateNamespace(t, "payments", map[string]string{"ssf.dev/admission": "enforce"})
	cluster.CreateNamespace(t, "staging", map[string]string{"ssf.dev/admission": "warn"})
	cluster.CreateNamespace(t, "sandbox", nil)
	cluster.CreateNamespace(t, "typo", map[string]string{"ssf.dev/admission": "Enforce"})
	waitInForce(t, cluster, unsigned, goodTag, good)
	t.Logf("webhooks in force %s after the start", time.Since(began).Round(time.Millisecond))

	create := func(t *testing.T, ns, resource string, obj map[string]any) *kubetest.Response {
		t.Helper()
		path := "/api/v1/namespaces/" + ns + "/" + resource
		if resource == "deployments" {
			path = "/apis/apps/v1/namespaces/" + ns + "/deployments"
		}
		resp, err := cluster.Do(context.Background(), http.MethodPost, path, obj)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// denied checks a 403 whose message names the webhook, the object and every wanted text.
	denied := func(t *testing.T, resp *kubetest.Response, want ...string) string {
		t.Helper()
		msg, _ := resp.Status()
		if resp.Code != http.StatusForbidden || !strings.Contains(msg, `admission webhook "`) || !strings.Contains(msg, "ssf admission denied") {
			t.Fatalf("got %d %q, want 403 from ssf's webhook\n%s", resp.Code, msg, resp.Body)
		}
		t.Logf("refused: %s", msg)
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("the refusal does not say %q:\n%s", w, msg)
			}
		}
		return msg
	}
	stored := func(t *testing.T, path string) bool {
		t.Helper()
		resp, err := cluster.Do(context.Background(), http.MethodGet, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Code == http.StatusOK
	}

	t.Run("unsigned image denied", func(t *testing.T) {
		resp := create(t, "prod", "pods", kubetest.Pod("unsigned", unsigned))
		denied(t, resp, `Pod prod/unsigned`, `container "c0" (image "`+unsignedDigest+`")`, "provenance")
		if stored(t, "/api/v1/namespaces/prod/pods/unsigned") {
			t.Errorf("the denied Pod was stored")
		}
	})

	t.Run("factory-built image admitted, its tag resolved to the digest", func(t *testing.T) {
		resp := create(t, "prod", "pods", kubetest.Pod("app", goodTag))
		if resp.Code != http.StatusCreated {
			msg, _ := resp.Status()
			t.Fatalf("Pod with %s: %d %s, want 201", goodTag, resp.Code, msg)
		}
		if got := podImages(t, resp.Body); len(got) != 1 || got[0] != good {
			t.Errorf("stored Pod runs %q, want the digest %s its tag %s named", got, good, goodTag)
		}
		if len(resp.Warnings) != 0 {
			t.Errorf("an admitted verified Pod carries warnings %q", resp.Warnings)
		}
		if resp := create(t, "prod", "pods", kubetest.Pod("by-digest", good)); resp.Code != http.StatusCreated {
			t.Errorf("Pod with %s: %d %s, want 201", good, resp.Code, resp.Body)
		}
	})

	t.Run("image signed by another factory denied", func(t *testing.T) {
		resp := create(t, "prod", "pods", kubetest.Pod("other", other))
		denied(t, resp, `Pod prod/other`, `container "c0" (image "`+other+`")`, "provenance")
	})

	t.Run("deployment with one bad container of three denied, naming it", func(t *testing.T) {
		resp := create(t, "prod", "deployments", kubetest.Deployment("web", goodTag, unsigned, good))
		msg := denied(t, resp, `Deployment prod/web`, `container "c1" (image "`+unsignedDigest+`")`)
		for _, fine := range []string{`container "c0"`, `container "c2"`} {
			if strings.Contains(msg, fine) {
				t.Errorf("the refusal names %s, whose image verified:\n%s", fine, msg)
			}
		}
		if stored(t, "/apis/apps/v1/namespaces/prod/deployments/web") {
			t.Errorf("the denied Deployment was stored")
		}
		resp = create(t, "prod", "deployments", kubetest.Deployment("web", goodTag, good, good))
		if resp.Code != http.StatusCreated {
			t.Fatalf("the Deployment with three verified containers: %d %s, want 201", resp.Code, resp.Body)
		}
		if got := podImages(t, resp.Body); strings.Join(got, " ") != strings.Join([]string{good, good, good}, " ") {
			t.Errorf("stored Deployment's pod template runs %q, want %s three times (its tag resolved)", got, good)
		}
	})

	t.Run("warn namespace admits with a warning", func(t *testing.T) {
		resp := create(t, "staging", "pods", kubetest.Pod("unsigned", unsigned))
		if resp.Code != http.StatusCreated {
			t.Fatalf("Pod with %s in a warn namespace: %d %s, want 201", unsigned, resp.Code, resp.Body)
		}
		want := `ssf admission (warn mode, not enforced): container "c0" (image "` + unsignedDigest + `")`
		if len(resp.Warnings) != 1 || !strings.HasPrefix(resp.Warnings[0], want) {
			t.Errorf("warnings %q, want one starting %q", resp.Warnings, want)
		}
	})

	t.Run("namespace without the label is not checked", func(t *testing.T) {
		resp := create(t, "sandbox", "pods", kubetest.Pod("unsigned", unsigned))
		if resp.Code != http.StatusCreated || len(resp.Warnings) != 0 {
			t.Errorf("Pod with %s in a namespace that did not opt in: %d, warnings %q, want 201 and none", unsigned, resp.Code, resp.Warnings)
		}
	})

	// A namespace that opted in with a value other than warn ("Enforce", "enforced", "true") is enforced: a typo
	// in the label must not leave a namespace its owner believes protected unchecked. Only no label opts out.
	t.Run("namespace labelled with another value is enforced", func(t *testing.T) {
		resp := create(t, "typo", "pods", kubetest.Pod("unsigned", unsigned))
		denied(t, resp, `Pod typo/unsigned`, `container "c0" (image "`+unsignedDigest+`")`, "provenance")
	})

	t.Run("tag the registry does not have denied", func(t *testing.T) {
		missing := reg.host + "/team/app:no-such-tag"
		resp := create(t, "prod", "pods", kubetest.Pod("missing", missing))
		denied(t, resp, `container "c0" (image "`+missing+`"): resolving the tag`)
	})

	// An UPDATE is reviewed as a CREATE is: the admitted Deployment cannot be switched to an unsigned image.
	t.Run("update of an admitted Deployment to an unsigned image denied", func(t *testing.T) {
		const path = "/apis/apps/v1/namespaces/prod/deployments/web"
		resp, err := cluster.Do(context.Background(), http.MethodGet, path, nil)
		if err != nil || resp.Code != http.StatusOK {
			t.Fatalf("GET %s: %v %+v", path, err, resp)
		}
		var d map[string]any
		if err := json.Unmarshal(resp.Body, &d); err != nil {
			t.Fatal(err)
		}
		containers := d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)
		containers[2].(map[string]any)["image"] = unsigned
		resp, err = cluster.Do(context.Background(), http.MethodPut, path, d)
		if err != nil {
			t.Fatal(err)
		}
		denied(t, resp, `Deployment prod/web`, `container "c2" (image "`+unsignedDigest+`")`)
	})

	t.Run("ssf.deploy denial shows its message", func(t *testing.T) {
		resp := create(t, "payments", "pods", kubetest.Pod("pay", goodTag))
		denied(t, resp, `container "c0" (image "`+good+`")`, "policy ssf.deploy",
			`Pod payments/pay: container "c0" runs `+good+`, which was not built by a pipeline allowed in namespace payments (["payments-release"]; built by ["test"])`)
		if stored(t, "/api/v1/namespaces/payments/pods/pay") {
			t.Errorf("the denied Pod was stored")
		}
	})

	// kubectl debug adds an ephemeral container to a running Pod through the pods/ephemeralcontainers subresource
	// (an UPDATE of the Pod): a way to run an image in a Pod that was admitted without it.
	t.Run("ephemeral container added by kubectl debug is checked", func(t *testing.T) {
		const path = "/api/v1/namespaces/prod/pods/app"
		addDebug := func(t *testing.T, name, image string) *kubetest.Response {
			t.Helper()
			resp, err := cluster.Do(context.Background(), http.MethodGet, path, nil)
			if err != nil || resp.Code != http.StatusOK {
				t.Fatalf("GET %s: %v %+v", path, err, resp)
			}
			var pod map[string]any
			if err := json.Unmarshal(resp.Body, &pod); err != nil {
				t.Fatal(err)
			}
			spec := pod["spec"].(map[string]any)
			eph, _ := spec["ephemeralContainers"].([]any)
			spec["ephemeralContainers"] = append(eph, map[string]any{"name": name, "image": image, "targetContainerName": "c0"})
			resp, err = cluster.Do(context.Background(), http.MethodPut, path+"/ephemeralcontainers", pod)
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		denied(t, addDebug(t, "shell", unsigned), `Pod prod/app`, `container "shell" (image "`+unsignedDigest+`")`, "provenance")
		resp := addDebug(t, "tools", goodTag)
		if resp.Code != http.StatusOK {
			msg, _ := resp.Status()
			t.Fatalf("ephemeral container of %s: %d %s, want 200", goodTag, resp.Code, msg)
		}
		var pod struct {
			Spec struct {
				EphemeralContainers []struct{ Name, Image string } `json:"ephemeralContainers"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(resp.Body, &pod); err != nil {
			t.Fatal(err)
		}
		if n := len(pod.Spec.EphemeralContainers); n != 1 || pod.Spec.EphemeralContainers[0].Image != good {
			t.Errorf("stored ephemeral containers %+v, want one, %q, its tag resolved", pod.Spec.EphemeralContainers, good)
		}
	})

	// An image volume (spec.volumes[].image, on in v1.37) mounts an OCI image's files into a container: a verified
	// image's shell or interpreter then runs what an unverified one holds. It was not looked at: a Pod mounting an
	// unsigned image, named by tag, was admitted. Now it is an image like any other: pinned, verified, denied.
	t.Run("image volume of an unsigned image denied, a factory one pinned to its digest", func(t *testing.T) {
		podWithVolume := func(name, ref string) map[string]any {
			pod := kubetest.Pod(name, good)
			spec := pod["spec"].(map[string]any)
			spec["volumes"] = []any{map[string]any{"name": "tools", "image": map[string]any{"reference": ref, "pullPolicy": "IfNotPresent"}}}
			spec["containers"].([]any)[0].(map[string]any)["volumeMounts"] = []any{map[string]any{"name": "tools", "mountPath": "/tools"}}
			return pod
		}
		denied(t, create(t, "prod", "pods", podWithVolume("imgvol", unsigned)), `Pod prod/imgvol`, `image volume "tools" (image "`+unsignedDigest+`")`, "provenance")
		resp := create(t, "prod", "pods", podWithVolume("imgvol", goodTag))
		if resp.Code != http.StatusCreated {
			msg, _ := resp.Status()
			t.Fatalf("image volume of %s: %d %s, want 201", goodTag, resp.Code, msg)
		}
		var pod struct {
			Spec struct {
				Volumes []struct {
					Image struct{ Reference string } `json:"image"`
				} `json:"volumes"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(resp.Body, &pod); err != nil {
			t.Fatal(err)
		}
		if len(pod.Spec.Volumes) != 1 || pod.Spec.Volumes[0].Image.Reference != good {
			t.Errorf("stored image volumes %+v, want %s (its tag resolved)", pod.Spec.Volumes, good)
		}
	})

	// Last, as it stops the webhook: an enforce namespace fails closed (failurePolicy Fail), a warn namespace
	// open (Ignore: warn mode never blocks).
	t.Run("webhook down: enforce fails closed, warn admits", func(t *testing.T) {
		stopAdmission()
		resp := create(t, "prod", "pods", kubetest.Pod("while-down", good))
		msg, _ := resp.Status()
		if resp.Code == http.StatusCreated || !strings.Contains(msg, `failed calling webhook "enforce.`) {
			t.Errorf("Pod in prod with the webhook down: %d %q, want a refusal saying the webhook call failed", resp.Code, msg)
		}
		t.Logf("refused: %s", msg)
		if resp := create(t, "staging", "pods", kubetest.Pod("while-down", unsigned)); resp.Code != http.StatusCreated {
			t.Errorf("Pod in staging (warn) with the webhook down: %d %s, want 201", resp.Code, resp.Body)
		}
	})
}

// publishImage builds a random image with the factory home home and publishes it to reg as repoTag; it returns
// the image's reference by digest.
func publishImage(t *testing.T, reg *embeddedRegistry, home, repoTag string) string {
	t.Helper()
	p := newProject(t, packImage)
	p.write()
	digest := p.addRandomImage("image.tar", 512)
	r := ssfEnv(t, p.tmp, append(reg.env(true), "SSF_HOME="+home),
		"build", "-f", p.pipeline, "--source", p.src, "--out", p.out, "--publish", reg.host+"/"+repoTag)
	ref := reg.host + "/" + strings.Split(repoTag, ":")[0] + "@" + digest.String()
	if r.code != 0 || !strings.Contains(r.stdout, ref) {
		t.Fatalf("build --publish %s: exit %d, want the image %s published\n%s%s", repoTag, r.code, ref, r.stdout, r.stderr)
	}
	return ref
}

// otherFactoryHome is a second factory: its own keys, and the same busybox builder (imported from the same files,
// so the pipelines' builder reference names it too).
func otherFactoryHome(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(rootfs, "scratch"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(rootfs, "scratch"), 0o1777); err != nil {
		t.Fatal(err)
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" {
			if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
				t.Fatal(err)
			}
		}
	}
	home := filepath.Join(dir, "home")
	env := []string{"SSF_HOME=" + home}
	if r := ssfEnv(t, dir, env, "init"); r.code != 0 {
		t.Fatalf("ssf init of another factory: exit %d\n%s", r.code, r.stderr)
	}
	r := ssfEnv(t, dir, env, "builder", "import", rootfs, "--name", "busybox")
	if r.code != 0 || lastLine(r.stdout) != builder {
		t.Fatalf("ssf builder import into another factory: exit %d, last line %q, want %s\n%s%s", r.code, lastLine(r.stdout), builder, r.stdout, r.stderr)
	}
	return home
}

// pushUnsignedImage pushes a random image with no provenance to reg as repoTag and returns it by tag and by
// digest.
func pushUnsignedImage(t *testing.T, reg *embeddedRegistry, repoTag string) (tag, digest string) {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: reg.user, Password: reg.pass})); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref.String(), ref.Context().Digest(d.String()).String()
}

// startAdmission serves ssf admission on a free loopback port with a serving certificate from a CA of its own,
// trusting this factory (the shared home) and the policy set in policyDir, until the test ends or stop is
// called. It returns the webhook's base URL and the CA's PEM file.
func startAdmission(t *testing.T, dir, policyDir string) (url, caFile string, stop func()) {
	t.Helper()
	ca := kubetest.NewCA(t, dir, "ssf admission test CA")
	cert, key := ca.Issue(t, "ssf-admission")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	log := &lockedBuffer{}
	cmd := exec.Command(ssfBin, "admission", "serve", "--addr", addr, "--tls-cert", cert, "--tls-key", key, "--policy", policyDir)
	cmd.Env = append(os.Environ(), "SSF_HOME="+homeDir, "TMPDIR="+dir)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // gone with the test binary, however it ends
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Errorf("ssf admission serve did not stop within 20 s of SIGTERM")
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("ssf admission serve log:\n%s", log.String())
		}
	})

	// Up when it answers TLS with the certificate of its CA (a bounded start-up wait).
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url = "https://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := client.Get(url + "/")
		if err == nil {
			resp.Body.Close()
			return url, ca.CertFile, stop
		}
		select {
		case err := <-done:
			t.Fatalf("ssf admission serve exited before serving: %v\n%s", err, log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssf admission serve did not answer on %s: %v\n%s", addr, err, log.String())
		}
	}
}

// waitInForce polls, with dry-run creates in the enforce namespace, until the API server has loaded both webhook
// configurations (it watches them and applies new ones a moment later): an unsigned image is denied, and a tag is
// resolved to its digest. Dry runs reach the webhooks, whose sideEffects are None, and store nothing.
func waitInForce(t *testing.T, c *kubetest.Cluster, unsigned, tag, digest string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, probe := range []struct {
		image string
		ready func(*kubetest.Response) bool
	}{
		{unsigned, func(r *kubetest.Response) bool { return r.Code == http.StatusForbidden }},
		{tag, func(r *kubetest.Response) bool {
			imgs := podImages(t, r.Body)
			return r.Code == http.StatusCreated && len(imgs) == 1 && imgs[0] == digest
		}},
	} {
		for {
			resp, err := c.Do(context.Background(), http.MethodPost, "/api/v1/namespaces/prod/pods?dryRun=All", kubetest.Pod("probe", probe.image))
			if err != nil {
				t.Fatal(err)
			}
			if probe.ready(resp) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the webhooks were not in force within a minute: a dry-run Pod with %s got %d\n%s", probe.image, resp.Code, resp.Body)
			}
			time.Sleep(100 * time.Millisecond) // polling the API server's state, with a deadline
		}
	}
}

// podImages reads the images of the containers of a Pod, or of a Deployment's pod template, from the API
// server's answer.
func podImages(t *testing.T, body []byte) []string {
	t.Helper()
	type podSpec struct {
		Containers []struct{ Image string } `json:"containers"`
	}
	var obj struct {
		Spec struct {
			podSpec
			Template struct {
				Spec podSpec `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil
	}
	cs := obj.Spec.Containers
	if len(cs) == 0 {
		cs = obj.Spec.Template.Spec.Containers
	}
	var out []string
	for _, c := range cs {
		out = append(out, c.Image)
	}
	return out
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}
