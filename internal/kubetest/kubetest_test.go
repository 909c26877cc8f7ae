package kubetest

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The harness itself: a real API server stores a namespace and a Pod, and calls a validating webhook over HTTPS
// with the caBundle of its configuration, which refuses a Pod in a labelled namespace with its message; the
// refusal reaches the client as the API server's 403 naming the webhook.
func TestClusterCallsAWebhook(t *testing.T) {
	start := time.Now()
	c := Start(t)
	t.Logf("etcd and kube-apiserver ready in %s", time.Since(start).Round(time.Millisecond))

	resp, err := c.Do(context.Background(), http.MethodGet, "/version", nil)
	if err != nil || resp.Code != http.StatusOK || !strings.Contains(string(resp.Body), `"gitVersion": "`+KubeAPIServerVersion+`"`) {
		t.Fatalf("GET /version: %v %+v, want %s", err, resp, KubeAPIServerVersion)
	}

	// The webhook: refuses every Pod it is asked about, with a warning, and counts the calls.
	dir := t.TempDir()
	ca := NewCA(t, dir, "webhook CA")
	certFile, keyFile := ca.Issue(t, "webhook")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var review struct {
			Request struct{ UID string } `json:"request"`
		}
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &review); err != nil || review.Request.UID == "" {
			http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
			"response": map[string]any{
				"uid": review.Request.UID, "allowed": false,
				"status":   map[string]any{"code": 403, "message": "kubetest says no"},
				"warnings": []string{"kubetest warns"},
			},
		})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	caPEM, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}

	c.CreateNamespace(t, "guarded", map[string]string{"kubetest.dev/guard": "on"})
	c.CreateNamespace(t, "open", nil)
	c.Create(t, "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", map[string]any{
		"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
		"metadata": map[string]any{"name": "kubetest"},
		"webhooks": []any{map[string]any{
			"name": "deny.kubetest.dev",
			"clientConfig": map[string]any{
				"url":      "https://" + ln.Addr().(*net.TCPAddr).String() + "/validate",
				"caBundle": base64.StdEncoding.EncodeToString(caPEM),
			},
			"rules": []any{map[string]any{
				"apiGroups": []string{""}, "apiVersions": []string{"v1"}, "resources": []string{"pods"},
				"operations": []string{"CREATE"},
			}},
			"namespaceSelector":       map[string]any{"matchLabels": map[string]string{"kubetest.dev/guard": "on"}},
			"failurePolicy":           "Fail",
			"sideEffects":             "None",
			"admissionReviewVersions": []string{"v1"},
			"timeoutSeconds":          10,
		}},
	})

	// The API server picks new webhook configurations up asynchronously: dry-run creates until it calls the
	// webhook (sideEffects None lets a dry run reach it), with a deadline.
	pod := Pod("p", "registry.example/app:v1")
	var denied *Response
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := c.Do(context.Background(), http.MethodPost, "/api/v1/namespaces/guarded/pods?dryRun=All", pod)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Code == http.StatusForbidden {
			denied = resp
			break
		}
		if resp.Code != http.StatusCreated || time.Now().After(deadline) {
			t.Fatalf("dry-run Pod create: %d, want 201 until the webhook is in force, then 403\n%s", resp.Code, resp.Body)
		}
		time.Sleep(100 * time.Millisecond) // polling the API server's own state, with a deadline
	}
	msg, _ := denied.Status()
	if want := `admission webhook "deny.kubetest.dev" denied the request: kubetest says no`; msg != want {
		t.Errorf("refusal says %q, want %q", msg, want)
	}
	if len(denied.Warnings) != 1 || denied.Warnings[0] != "kubetest warns" {
		t.Errorf("refusal warnings %q, want [kubetest warns]", denied.Warnings)
	}

	// Outside the selector the webhook is not asked and the Pod is stored.
	before := calls.Load()
	c.Create(t, "/api/v1/namespaces/open/pods", pod)
	if got := calls.Load(); got != before {
		t.Errorf("the webhook was called %d times for a namespace without the label", got-before)
	}
	resp, err = c.Do(context.Background(), http.MethodGet, "/api/v1/namespaces/open/pods/p", nil)
	if err != nil || resp.Code != http.StatusOK {
		t.Fatalf("GET the stored Pod: %v %+v", err, resp)
	}
	c.Create(t, "/apis/apps/v1/namespaces/open/deployments", Deployment("d", "a:1", "b:2"))
}
