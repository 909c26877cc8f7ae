package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns their paths and a pool trusting it.
func selfSigned(t *testing.T, dir string) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ssf test registry"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

// The registry serves HTTPS with a given certificate, and crane pushes to it with credentials, trusting the
// certificate through the standard SSL_CERT_FILE.
func TestRegistryServesTLS(t *testing.T) {
	crane := interopTool(t, "SSF_CRANE", "crane")
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	certPath, keyPath, pool := selfSigned(t, dir)
	env := []string{"SSF_HOME=" + home}
	if r := ssfEnv(t, dir, env, "init"); r.code != 0 {
		t.Fatalf("init: %s", r.stderr)
	}
	cmd := exec.Command(ssfBin, "registry", "user", "add", "bob")
	cmd.Env, cmd.Stdin = append(os.Environ(), env...), strings.NewReader("a-long-enough-password\n")
	if r := runCmd(t, cmd); r.code != 0 {
		t.Fatalf("user add: %s", r.stderr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := ln.Addr().String()
	ln.Close()
	log := &lockedBuffer{}
	serve := exec.Command(ssfBin, "registry", "serve", "--addr", host, "--tls-cert", certPath, "--tls-key", keyPath)
	serve.Env, serve.Stdout, serve.Stderr = append(os.Environ(), env...), log, log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		serve.Process.Signal(syscall.SIGINT)
		if err := serve.Wait(); err != nil {
			t.Errorf("registry serve after SIGINT: %v\n%s", err, log.String())
		}
	})

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	// A bounded start-up wait for the server to answer.
	var resp *http.Response
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err = client.Get("https://" + host + "/v2/"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no HTTPS answer from %s: %v\n%s", host, err, log.String())
		}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET https://%s/v2/ = %s, want 200", host, resp.Status)
	}
	if plain, err := http.Get("http://" + host + "/v2/"); err == nil {
		if plain.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP was answered 200 by the TLS listener")
		}
		plain.Body.Close()
	}

	layer := filepath.Join(dir, "layer.tar")
	if err := os.WriteFile(layer, layerTar(t, "hello.txt", []byte("over TLS\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	writeDockerConfig(t, filepath.Join(dir, "docker"), `{"auths":{"`+host+`":{"auth":"Ym9iOmEtbG9uZy1lbm91Z2gtcGFzc3dvcmQ="}}}`)
	push := exec.Command(crane, "append", "--oci-empty-base", "-f", layer, "-t", host+"/tls/app:v1")
	push.Env = append(os.Environ(), "HOME="+dir, "DOCKER_CONFIG="+filepath.Join(dir, "docker"), "SSL_CERT_FILE="+certPath)
	if r := runCmd(t, push); r.code != 0 {
		t.Fatalf("crane push over TLS: exit %d\n%s\n%s", r.code, r.stderr, log.String())
	}
	ls := exec.Command(crane, "ls", host+"/tls/app")
	ls.Env = push.Env
	if r := runCmd(t, ls); r.code != 0 || strings.TrimSpace(r.stdout) != "v1" {
		t.Errorf("crane ls over TLS: exit %d, tags %q\n%s", r.code, r.stdout, r.stderr)
	}
}

// --insecure-local (push without credentials) is refused with exit 2 on any address that is not loopback,
// even with TLS configured: the flag's safety rests on only local processes reaching the port (issue 6 A20).
func TestInsecureLocalNeedsLoopback(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	certPath, keyPath, _ := selfSigned(t, dir)
	env := []string{"SSF_HOME=" + home}
	if r := ssfEnv(t, dir, env, "init"); r.code != 0 {
		t.Fatalf("init: %s", r.stderr)
	}
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "192.0.2.1:5000"} {
		t.Run(addr, func(t *testing.T) {
			// A bound on a broken check, which would serve until killed; the refusal takes milliseconds.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, ssfBin, "registry", "serve", "--addr", addr, "--insecure-local",
				"--tls-cert", certPath, "--tls-key", keyPath)
			cmd.Env = append(os.Environ(), append(env, "TMPDIR="+dir)...)
			r := runCmd(t, cmd)
			if r.code != 2 || !strings.Contains(r.stderr, "--insecure-local needs a loopback --addr") ||
				!strings.Contains(r.stderr, addr) {
				t.Fatalf("registry serve --addr %s --insecure-local: exit %d, want 2 naming the flag and address\n%s%s",
					addr, r.code, r.stdout, r.stderr)
			}
		})
	}
}
