// Package kubetest runs a real Kubernetes API server for end-to-end tests: etcd and kube-apiserver, built from the
// Go module proxy by scripts/kube-tools.sh into .tools/ (make test does it), started on loopback with a temporary
// data directory, free ports, a serving certificate of their own and one admin token, and stopped when the test
// ends. Tests talk to it with plain HTTPS and JSON ([Cluster.Do]); no client-go.
//
// No controller manager or scheduler runs: objects are stored and admitted (which is what admission tests need),
// never reconciled, scheduled or run. So [Cluster.CreateNamespace] creates the namespace's "default"
// ServiceAccount itself, which the ServiceAccount admission plugin looks up for every Pod.
//
// # What it must never do
//
// It is for tests only: nothing outside a _test.go file imports it. It never downloads or builds a binary (make
// tools does that), never listens on anything but 127.0.0.1, never leaves a process running after its test ends,
// and never waits by sleeping a fixed time: it polls /readyz (and the callers' own conditions) with a deadline.
package kubetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ssf-dev/ssf/internal/interoptest"
)

// The versions scripts/kube-tools.sh builds (the Makefile pins the same): the binaries are found as
// $SSF_KUBE_APISERVER and $SSF_ETCD, else .tools/kube-apiserver-<version> and .tools/etcd-<version>.
const (
	KubeAPIServerVersion = "v1.37.2"
	EtcdVersion          = "v3.6.16"
)

// startTimeout bounds how long etcd and the API server may take to answer ready: a few seconds on an idle machine,
// much longer on a loaded CI runner.
const startTimeout = 90 * time.Second

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// URL is the API server's base URL, https://127.0.0.1:PORT.
	URL string
	// CAFile is the PEM file of the CA that signed the API server's serving certificate.
	CAFile string
	// Token is a bearer token of a member of system:masters.
	Token string

	client *http.Client
	logs   *logBuffer
}

// Start starts etcd and kube-apiserver for the test and stops both when it ends. Without the binaries the test is
// skipped, or fails under SSF_REQUIRE_INTEROP=1 (make test builds them into .tools/).
func Start(t testing.TB) *Cluster {
	t.Helper()
	apiserver := interoptest.Tool(t, "SSF_KUBE_APISERVER", "kube-apiserver-"+KubeAPIServerVersion)
	etcd := interoptest.Tool(t, "SSF_ETCD", "etcd-"+EtcdVersion)
	dir := t.TempDir()
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("etcd and kube-apiserver logs (last %d bytes):\n%s", maxLog, logs.String())
		}
	})

	etcdURL := startEtcd(t, etcd, filepath.Join(dir, "etcd"), logs)

	pki := filepath.Join(dir, "pki")
	if err := os.Mkdir(pki, 0o700); err != nil {
		t.Fatal(err)
	}
	ca := NewCA(t, pki, "kubetest apiserver CA")
	cert, key := ca.Issue(t, "kube-apiserver")
	saKey, saPub := filepath.Join(pki, "service-account.key"), filepath.Join(pki, "service-account.pub")
	sa := writeKeyPEM(t, saKey)
	// kube-apiserver reads the verifying key only as a public key (or a PKCS #1/SEC 1 private key), not PKCS #8.
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, saPub, "PUBLIC KEY", pub)
	token := randomHex(t, 16)
	tokens := filepath.Join(pki, "tokens.csv")
	// token,user,uid,"group,...": system:masters is bound to cluster-admin by the bootstrap RBAC policy.
	if err := os.WriteFile(tokens, []byte(token+`,kubetest-admin,kubetest-admin,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + pki,
		"--tls-cert-file=" + cert,
		"--tls-private-key-file=" + key,
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		// One API server and no controller manager: nothing would ever remove the endpoint it records.
		"--endpoint-reconciler-type=none",
		// The default plugins, with the two webhook plugins named so a change of defaults cannot drop them.
		"--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
		"--profiling=false",
	}
	c := &Cluster{URL: "https://127.0.0.1:" + strconv.Itoa(port), CAFile: ca.CertFile, Token: token, logs: logs}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	c.client = &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Proxy: nil},
		Timeout:   30 * time.Second,
	}
	exited := startProcess(t, "kube-apiserver", apiserver, args, logs)
	c.waitReady(t, exited)
	return c
}

// waitReady polls /readyz until the API server answers 200 (every post-start hook, the bootstrap RBAC roles
// among them, has run) or the deadline passes or it exits.
func (c *Cluster) waitReady(t testing.TB, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	var last string
	for {
		resp, err := c.Do(context.Background(), http.MethodGet, "/readyz", nil)
		if err == nil && resp.Code == http.StatusOK {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d %s", resp.Code, resp.Body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver was not ready within %s: %s", startTimeout, last)
		}
		select {
		case err := <-exited:
			t.Fatalf("kube-apiserver exited before it was ready: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startEtcd starts a one-member etcd on loopback ports with its data in dir and returns its client URL once it
// answers /health.
func startEtcd(t testing.TB, bin, dir string, logs *logBuffer) string {
	t.Helper()
	client := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	peer := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	args := []string{
		"--name=kubetest",
		"--data-dir=" + dir,
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=kubetest=" + peer,
		"--log-level=warn",
		// The data lives as long as the test: durability across a power cut is not what these tests are about,
		// and fsyncs on a shared CI disk cost seconds.
		"--unsafe-no-fsync",
	}
	exited := startProcess(t, "etcd", bin, args, logs)
	deadline := time.Now().Add(startTimeout)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	for {
		resp, err := hc.Get(client + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"health":"true"`)) {
				return client
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not answer /health on %s within %s: %v", client, startTimeout, err)
		}
		select {
		case err := <-exited:
			t.Fatalf("etcd exited before it was healthy: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startProcess starts bin with args, its output into logs, and stops it with SIGTERM (then SIGKILL after 20 s)
// when the test ends. The returned channel receives its exit once.
func startProcess(t testing.TB, name, bin string, args []string, logs *logBuffer) <-chan error {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logs.prefixed(name), logs.prefixed(name)
	// Killed with the test binary, whatever ends it (a go test -timeout panic, ^C, SIGKILL), since the cleanup
	// below then never runs; its own process group, so a ^C reaches the test rather than racing its cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		exited <- err
		done <- err
	}()
	t.Cleanup(func() {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("stopping %s: %v", name, err)
		}
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("%s did not stop within 20 s of SIGTERM", name)
		}
	})
	return exited
}

// Response is what the API server answered.
type Response struct {
	Code int
	Body []byte
	// Warnings are the texts of the response's Warning headers (admission webhooks' warnings among them).
	Warnings []string
}

// Status is the response body read as a metav1.Status (for a refusal: its message and reason).
func (r *Response) Status() (message, reason string) {
	var s struct{ Message, Reason string }
	json.Unmarshal(r.Body, &s)
	return s.Message, s.Reason
}

// Do sends one request to path (e.g. /api/v1/namespaces) with body marshalled as JSON unless it is nil or already
// []byte, as the admin. Only a failure to get an answer is an error: every status comes back in the Response.
func (c *Cluster) Do(ctx context.Context, method, path string, body any) (*Response, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encoding the body of %s %s: %w", method, path, err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, r)
	if err != nil {
		return nil, fmt.Errorf("making %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer to %s %s: %w", method, path, err)
	}
	out := &Response{Code: resp.StatusCode, Body: data}
	for _, w := range resp.Header.Values("Warning") {
		out.Warnings = append(out.Warnings, warningText(w))
	}
	return out, nil
}

// warningText is the text of an RFC 7234 Warning header as the API server writes it: `299 - "text"`.
func warningText(h string) string {
	_, rest, ok := strings.Cut(h, " - ")
	if !ok {
		return h
	}
	if s, err := strconv.Unquote(rest); err == nil {
		return s
	}
	return rest
}

// Create POSTs obj to path and fails the test unless the API server answers 201.
func (c *Cluster) Create(t testing.TB, path string, obj any) *Response {
	t.Helper()
	resp, err := c.Do(context.Background(), http.MethodPost, path, obj)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code != http.StatusCreated {
		t.Fatalf("POST %s: %d, want 201\n%s", path, resp.Code, resp.Body)
	}
	return resp
}

// CreateNamespace creates a namespace with labels and its "default" ServiceAccount, which no controller manager
// creates here.
func (c *Cluster) CreateNamespace(t testing.TB, name string, labels map[string]string) {
	t.Helper()
	c.Create(t, "/api/v1/namespaces", map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": name, "labels": labels},
	})
	c.Create(t, "/api/v1/namespaces/"+url.PathEscape(name)+"/serviceaccounts", map[string]any{
		"apiVersion": "v1", "kind": "ServiceAccount",
		"metadata": map[string]any{"name": "default"},
	})
}

// Pod is a minimal Pod manifest: one container per image, named c0, c1, ... unless names are given.
func Pod(name string, images ...string) map[string]any {
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name},
		"spec":     podSpec(images),
	}
}

// Deployment is a minimal Deployment manifest whose pod template has one container per image (c0, c1, ...).
func Deployment(name string, images ...string) map[string]any {
	labels := map[string]any{"app": name}
	return map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{
			"replicas": 1,
			"selector": map[string]any{"matchLabels": labels},
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels},
				"spec":     podSpec(images),
			},
		},
	}
}

func podSpec(images []string) map[string]any {
	var containers []any
	for i, img := range images {
		containers = append(containers, map[string]any{"name": "c" + strconv.Itoa(i), "image": img})
	}
	// No token to mount: nothing runs, and without a controller manager there is no kube-root-ca.crt to
	// project.
	return map[string]any{"containers": containers, "automountServiceAccountToken": false}
}

// CA is a test certificate authority whose leaves serve on 127.0.0.1 and localhost.
type CA struct {
	Cert     *x509.Certificate
	CertFile string // PEM
	key      *ecdsa.PrivateKey
	dir      string
}

// NewCA makes a CA in dir (its certificate as CA.CertFile).
func NewCA(t testing.TB, dir, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Cert: cert, CertFile: filepath.Join(dir, "ca.pem"), key: key, dir: dir}
	writePEM(t, ca.CertFile, "CERTIFICATE", der)
	return ca
}

// Issue makes a serving certificate for 127.0.0.1 and localhost, written as dir/NAME.pem and dir/NAME.key.
func (ca *CA) Issue(t testing.TB, name string) (certFile, keyFile string) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	keyFile = filepath.Join(ca.dir, name+".key")
	key := writeKeyPEM(t, keyFile)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(ca.dir, name+".pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	return certFile, keyFile
}

// writeKeyPEM writes a new P-256 key as PKCS #8 PEM, which both ssf and kube-apiserver read.
func writeKeyPEM(t testing.TB, path string) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "PRIVATE KEY", der)
	return key
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freePort is a loopback port nothing listens on at the moment of asking (the process started with it may lose a
// race for it; the start then fails saying so, and the test fails rather than talking to a stranger: the API
// server's certificate comes from this test's own CA).
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// maxLog bounds the logs kept for a failing test's report.
const maxLog = 64 << 10

// logBuffer keeps the last maxLog bytes of the processes' output.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *logBuffer) write(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*maxLog {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-maxLog:]...)
	}
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf) > maxLog {
		return string(b.buf[len(b.buf)-maxLog:])
	}
	return string(b.buf)
}

// prefixed is a writer that tags each write with the process's name.
func (b *logBuffer) prefixed(name string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		b.write(append([]byte(name+": "), p...))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// clusterScoped maps the kinds CreateYAML knows to their API paths: the webhook configurations `ssf admission
// install` prints.
var clusterScoped = map[string]string{
	"admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration": "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
	"admissionregistration.k8s.io/v1/MutatingWebhookConfiguration":   "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
	"v1/Namespace": "/api/v1/namespaces",
}

// CreateYAML creates every document of a multi-document YAML stream, as kubectl create -f would, and returns the
// kinds created in order. Only the kinds of clusterScoped are known; another fails the test.
func (c *Cluster) CreateYAML(t testing.TB, data []byte) []string {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var kinds []string
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return kinds
		}
		if err != nil {
			t.Fatalf("reading YAML document %d: %v\n%s", len(kinds)+1, err, data)
		}
		if doc == nil { // an empty document between two ---
			continue
		}
		apiVersion, _ := doc["apiVersion"].(string)
		kind, _ := doc["kind"].(string)
		path, ok := clusterScoped[apiVersion+"/"+kind]
		if !ok {
			t.Fatalf("YAML document %d is %s %s, which kubetest does not know how to create", len(kinds)+1, apiVersion, kind)
		}
		c.Create(t, path, doc)
		kinds = append(kinds, kind)
	}
}
