package admission

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// WebhookName prefixes the names of the webhook configurations and of their webhooks.
const WebhookName = "ssf-admission"

// The webhook configurations' YAML, as the API server reads it (admissionregistration.k8s.io/v1).
type webhookConfiguration struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   map[string]string `yaml:"metadata"`
	Webhooks   []webhook         `yaml:"webhooks"`
}

type webhook struct {
	Name                    string            `yaml:"name"`
	ClientConfig            clientConfig      `yaml:"clientConfig"`
	Rules                   []rule            `yaml:"rules"`
	FailurePolicy           string            `yaml:"failurePolicy"`
	MatchPolicy             string            `yaml:"matchPolicy"`
	SideEffects             string            `yaml:"sideEffects"`
	AdmissionReviewVersions []string          `yaml:"admissionReviewVersions"`
	TimeoutSeconds          int               `yaml:"timeoutSeconds"`
	NamespaceSelector       namespaceSelector `yaml:"namespaceSelector"`
	ReinvocationPolicy      string            `yaml:"reinvocationPolicy,omitempty"`
}

type clientConfig struct {
	URL      string            `yaml:"url,omitempty"`
	Service  *serviceReference `yaml:"service,omitempty"`
	CABundle string            `yaml:"caBundle"` // base64 of the PEM, as the API's []byte field reads it
}

type serviceReference struct {
	Namespace string `yaml:"namespace"`
	Name      string `yaml:"name"`
	Path      string `yaml:"path"`
	Port      int    `yaml:"port"`
}

// Service names the in-cluster Service the API server reaches the webhook through (clientConfig.service), the
// alternative to a URL: the API server resolves it itself, where a cluster DNS name in a URL may not resolve.
type Service struct {
	Namespace, Name string
	Port            int // 443 when 0
}

type rule struct {
	APIGroups   []string `yaml:"apiGroups"`
	APIVersions []string `yaml:"apiVersions"`
	Operations  []string `yaml:"operations"`
	Resources   []string `yaml:"resources"`
	Scope       string   `yaml:"scope"`
}

type namespaceSelector struct {
	MatchLabels      map[string]string  `yaml:"matchLabels,omitempty"`
	MatchExpressions []labelRequirement `yaml:"matchExpressions,omitempty"`
}

type labelRequirement struct {
	Key      string   `yaml:"key"`
	Operator string   `yaml:"operator"`
	Values   []string `yaml:"values,omitempty"`
}

// selectorFor is the namespaceSelector of a mode's webhooks. Warn is the label's value warn, exactly; enforce is
// the label with any other value: a namespace labelled Enforce, enforced or true opted in, and must not be left
// unchecked (neither webhook matching) because of how it was spelled. Only a namespace without the label is out.
func selectorFor(m Mode) namespaceSelector {
	if m == Warn {
		return namespaceSelector{MatchLabels: map[string]string{NamespaceLabel: string(Warn)}}
	}
	return namespaceSelector{MatchExpressions: []labelRequirement{
		{Key: NamespaceLabel, Operator: "Exists"},
		{Key: NamespaceLabel, Operator: "NotIn", Values: []string{string(Warn)}},
	}}
}

// rules are the resources whose pod specs the webhook decides, as Containers reads them.
var rules = []rule{
	{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods", "pods/ephemeralcontainers", "replicationcontrollers"}},
	{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments", "statefulsets", "daemonsets", "replicasets"}},
	{APIGroups: []string{"batch"}, APIVersions: []string{"v1"}, Resources: []string{"jobs", "cronjobs"}},
}

// Configurations returns the MutatingWebhookConfiguration and the ValidatingWebhookConfiguration, as one YAML stream,
// that send reviews to the webhook at base (https://HOST[:PORT][/PATH], as the API server reaches it) with caPEM (the
// CA that signed its serving certificate) as caBundle. Each has an entry per mode: namespaces labelled
// ssf.dev/admission=enforce (or any value but warn: see selectorFor) are sent to BASE/mutate/enforce and
// BASE/validate/enforce with failurePolicy Fail (a webhook that does not answer denies), namespaces labelled =warn to
// .../warn with failurePolicy Ignore (warn mode never blocks, not even when the webhook is down). timeoutSeconds is at
// most 30 (the API's limit).
func Configurations(base string, caPEM []byte, timeoutSeconds int) ([]byte, error) {
	return configurations(base, nil, caPEM, timeoutSeconds)
}

// ServiceConfigurations is Configurations for a webhook reached through an in-cluster Service.
func ServiceConfigurations(svc Service, caPEM []byte, timeoutSeconds int) ([]byte, error) {
	if svc.Port == 0 {
		svc.Port = 443
	}
	if !dnsLabel.MatchString(svc.Namespace) || !dnsLabel.MatchString(svc.Name) || svc.Port < 1 || svc.Port > 65535 {
		return nil, fmt.Errorf("service %q/%q port %d: want NAMESPACE/NAME[:PORT], each name a DNS label", svc.Namespace, svc.Name, svc.Port)
	}
	return configurations("", &svc, caPEM, timeoutSeconds)
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func configurations(base string, svc *Service, caPEM []byte, timeoutSeconds int) ([]byte, error) {
	u, err := url.Parse(base)
	switch {
	case svc != nil:
	case err != nil:
		return nil, fmt.Errorf("webhook URL %q: %w", base, err)
	case u.Scheme != "https" || u.Host == "":
		return nil, fmt.Errorf("webhook URL %q: want https://HOST[:PORT][/PATH]: the API server calls webhooks over TLS only", base)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, fmt.Errorf("webhook URL %q: the API server allows no query, fragment or user in a webhook URL", base)
	}
	switch {
	case timeoutSeconds < 1 || timeoutSeconds > 30:
		return nil, fmt.Errorf("timeout %d s: the API server allows 1 to 30", timeoutSeconds)
	}
	if err := checkCA(caPEM); err != nil {
		return nil, err
	}
	base = strings.TrimSuffix(base, "/")
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		path := "validate"
		if kind == "MutatingWebhookConfiguration" {
			path = "mutate"
		}
		c := webhookConfiguration{APIVersion: "admissionregistration.k8s.io/v1", Kind: kind,
			Metadata: map[string]string{"name": WebhookName}}
		for _, m := range []struct {
			mode    Mode
			failure string
		}{{Enforce, "Fail"}, {Warn, "Ignore"}} {
			w := webhook{
				Name:                    fmt.Sprintf("%s.%s.%s.ssf.dev", m.mode, path, WebhookName),
				ClientConfig:            clientConfig{CABundle: base64.StdEncoding.EncodeToString(caPEM)},
				FailurePolicy:           m.failure,
				MatchPolicy:             "Equivalent", // other versions of the kinds arrive converted to the v1 Containers reads
				SideEffects:             "None",
				AdmissionReviewVersions: []string{"v1"},
				TimeoutSeconds:          timeoutSeconds,
				NamespaceSelector:       selectorFor(m.mode),
			}
			if svc != nil {
				w.ClientConfig.Service = &serviceReference{Namespace: svc.Namespace, Name: svc.Name, Path: "/" + path + "/" + string(m.mode), Port: svc.Port}
			} else {
				w.ClientConfig.URL = base + "/" + path + "/" + string(m.mode)
			}
			for _, r := range rules {
				r.Operations = []string{"CREATE", "UPDATE"}
				r.Scope = "Namespaced"
				w.Rules = append(w.Rules, r)
			}
			if kind == "MutatingWebhookConfiguration" {
				// Called again when a later mutating webhook changes the object, so a tag it sets is resolved too.
				w.ReinvocationPolicy = "IfNeeded"
			}
			c.Webhooks = append(c.Webhooks, w)
		}
		if err := enc.Encode(c); err != nil {
			return nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// checkCA requires caPEM to be one or more PEM certificates and nothing else.
func checkCA(caPEM []byte) error {
	rest := caPEM
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("CA file: a %q PEM block, want only CERTIFICATE blocks", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("CA file: certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 || len(bytes.TrimSpace(rest)) > 0 {
		return errors.New("CA file: want one or more PEM certificates (the CA that signed the webhook's serving certificate)")
	}
	return nil
}
