package admission_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ssf-dev/ssf/internal/admission"
)

func testCA(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestConfigurations(t *testing.T) {
	ca := testCA(t)
	out, err := admission.Configurations("https://ssf-admission.ssf-system.svc:443/", ca, 10)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	var kinds []string
	for {
		var c struct {
			Kind     string
			Webhooks []struct {
				Name         string
				ClientConfig struct {
					URL      string
					CABundle string `yaml:"caBundle"`
				} `yaml:"clientConfig"`
				FailurePolicy           string   `yaml:"failurePolicy"`
				SideEffects             string   `yaml:"sideEffects"`
				AdmissionReviewVersions []string `yaml:"admissionReviewVersions"`
				TimeoutSeconds          int      `yaml:"timeoutSeconds"`
				NamespaceSelector       struct {
					MatchLabels      map[string]string `yaml:"matchLabels"`
					MatchExpressions []struct {
						Key, Operator string
						Values        []string
					} `yaml:"matchExpressions"`
				} `yaml:"namespaceSelector"`
				Rules []struct{ Resources []string }
			}
		}
		if err := dec.Decode(&c); err != nil {
			break
		}
		kinds = append(kinds, c.Kind)
		path := map[string]string{"MutatingWebhookConfiguration": "mutate", "ValidatingWebhookConfiguration": "validate"}[c.Kind]
		if len(c.Webhooks) != 2 {
			t.Fatalf("%s: %d webhooks, want enforce and warn", c.Kind, len(c.Webhooks))
		}
		for i, mode := range []string{"enforce", "warn"} {
			w := c.Webhooks[i]
			if w.ClientConfig.URL != "https://ssf-admission.ssf-system.svc:443/"+path+"/"+mode {
				t.Errorf("%s url %q", w.Name, w.ClientConfig.URL)
			}
			if got, err := base64.StdEncoding.DecodeString(w.ClientConfig.CABundle); err != nil || !bytes.Equal(got, ca) {
				t.Errorf("%s caBundle is not the CA", w.Name)
			}
			if want := map[string]string{"enforce": "Fail", "warn": "Ignore"}[mode]; w.FailurePolicy != want {
				t.Errorf("%s failurePolicy %q, want %q", w.Name, w.FailurePolicy, want)
			}
			if w.SideEffects != "None" || len(w.AdmissionReviewVersions) != 1 || w.AdmissionReviewVersions[0] != "v1" || w.TimeoutSeconds != 10 {
				t.Errorf("%s: %+v", w.Name, w)
			}
			// warn: the label is warn; enforce: the label is there with any other value (a typo enforces).
			sel := fmt.Sprintf("%v %v", w.NamespaceSelector.MatchLabels, w.NamespaceSelector.MatchExpressions)
			if want := map[string]string{"enforce": "map[] [{ssf.dev/admission Exists []} {ssf.dev/admission NotIn [warn]}]",
				"warn": "map[ssf.dev/admission:warn] []"}[mode]; sel != want {
				t.Errorf("%s selector %s, want %s", w.Name, sel, want)
			}
			var res []string
			for _, r := range w.Rules {
				res = append(res, r.Resources...)
			}
			if got := strings.Join(res, ","); got != "pods,pods/ephemeralcontainers,replicationcontrollers,deployments,statefulsets,daemonsets,replicasets,jobs,cronjobs" {
				t.Errorf("%s resources %s", w.Name, got)
			}
		}
	}
	if strings.Join(kinds, ",") != "MutatingWebhookConfiguration,ValidatingWebhookConfiguration" {
		t.Errorf("kinds %v", kinds)
	}
	for _, tc := range []struct {
		url  string
		ca   []byte
		secs int
		want string
	}{
		{"http://x", ca, 10, "https"},
		{"https://x/?a=b", ca, 10, "no query"},
		{"https://x", ca, 31, "1 to 30"},
		{"https://x", []byte("junk"), 10, "PEM certificates"},
		{"https://x", append(ca, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")...), 10, "PRIVATE KEY"},
	} {
		if _, err := admission.Configurations(tc.url, tc.ca, tc.secs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Configurations(%q, %d): %v, want an error saying %q", tc.url, tc.secs, err, tc.want)
		}
	}
}

func TestServiceConfigurations(t *testing.T) {
	ca := testCA(t)
	out, err := admission.ServiceConfigurations(admission.Service{Namespace: "ssf-system", Name: "ssf-admission"}, ca, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"service:\n", "namespace: ssf-system\n", "name: ssf-admission\n", "path: /validate/enforce\n", "path: /mutate/warn\n", "port: 443\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("configurations lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "url:") {
		t.Errorf("a service configuration has a url:\n%s", out)
	}
	if _, err := admission.ServiceConfigurations(admission.Service{Namespace: "Bad_NS", Name: "x"}, ca, 10); err == nil {
		t.Error("a namespace that is not a DNS label was accepted")
	}
}
