package factory

import (
	"errors"
	"fmt"

	"github.com/ssf-dev/ssf/internal/deps"
	"github.com/ssf-dev/ssf/internal/secret"
)

// CredentialConfig is one entry of config.yaml's credentials: the control plane's login to a dependency server
// (a private GOPROXY, an npm registry, a file server), for example
//
//	credentials:
//	  - {host: goproxy.corp.example, secret: GOPROXY_TOKEN}              # Authorization: Bearer <value>
//	  - {host: npm.corp.example:8443, secret: NPM_PASSWORD, username: ci} # HTTP basic auth
//
// The value is a factory secret (`ssf secret set NAME`). It is sent only to exactly that host (and port: without
// one, the scheme's default), over https or to a loopback IP, never on a redirect to another host; it is the
// control plane's and never reaches a task. Registry logins for `ssf publish` and `ssf builder pull` are not here:
// they come from the Docker config, as for docker, crane and cosign.
type CredentialConfig struct {
	Host     string `yaml:"host"`
	Secret   string `yaml:"secret"`
	Username string `yaml:"username,omitempty"`
}

// fetchCredentials checks config.yaml's credentials and reads their values from the secret store. A wrong entry,
// or a secret that is not set, is the operator's to fix: an InputError naming the entry.
func (h Home) fetchCredentials(cfg Config) ([]deps.Credential, error) {
	if err := h.checkCredentials(cfg); err != nil {
		return nil, err
	}
	var out []deps.Credential
	for i, c := range cfg.Credentials {
		where := fmt.Sprintf("%s: credentials[%d]", h.configPath(), i)
		v, err := h.Secrets().Get(c.Secret)
		if errors.Is(err, secret.ErrNotFound) {
			return nil, inputErrorf("%s: secret %q (the credential for %s) is not set: set it with `ssf secret set %s`", where, c.Secret, c.Host, c.Secret)
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, deps.Credential{Host: c.Host, Username: c.Username, Token: v})
	}
	return out, nil
}

// checkCredentials checks the form of config.yaml's credentials (not their secrets' values). Every build checks
// it at admission, so a wrong entry is reported when it is written, not first by the build that has dependencies
// to fetch.
func (h Home) checkCredentials(cfg Config) error {
	seen := map[string]bool{}
	for i, c := range cfg.Credentials {
		where := fmt.Sprintf("%s: credentials[%d]", h.configPath(), i)
		if err := deps.CheckCredentialHost(c.Host); err != nil {
			return inputErrorf("%s: %v", where, err)
		}
		if seen[c.Host] {
			return inputErrorf("%s: host %q has a credential already: give each host one", where, c.Host)
		}
		seen[c.Host] = true
		if secret.CheckName(c.Secret) != nil {
			// Not quoted: what is there instead of a name may be the value itself.
			return inputErrorf("%s: secret is not a secret's name (a letter followed by at most 63 letters, digits, '_' or '-'): give the NAME of a secret set with `ssf secret set NAME` (the value on stdin), never the value itself", where)
		}
	}
	return nil
}
