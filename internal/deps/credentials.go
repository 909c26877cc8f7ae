package deps

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// Credential is the control plane's login to one dependency server (a private GOPROXY, an npm registry, a file
// server): sent as "Authorization: Bearer TOKEN", or as HTTP basic auth when Username is set, only in requests to
// exactly Host over https (or plain http to a loopback IP, for a local mirror or a test), and never on a redirect to
// any other host. Tasks never see it: fetching is the control plane's, and only checked bytes reach a task.
type Credential struct {
	Host     string // host or host:port, as in the URLs fetched; without a port it matches the scheme's default port only
	Username string // "" for a bearer token
	Token    []byte
}

// CheckCredentialHost says what is wrong with a credential's host, or returns nil.
func CheckCredentialHost(host string) error {
	if strings.Contains(host, "@") {
		// Not quoted: what precedes the '@' is likely a password.
		return errors.New("host holds user information (USER@ or USER:PASSWORD@): give only HOST or HOST:PORT, and the token as the entry's secret (`ssf secret set NAME`)")
	}
	h := host
	if hh, port, err := net.SplitHostPort(host); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("host %q has no valid port", host)
		}
		h = hh
	}
	if h == "" || strings.ContainsAny(host, "/@?#*\\ \t") || strings.ToLower(host) != host {
		return fmt.Errorf("host %q is not a lower-case HOST or HOST:PORT (no scheme, path or user)", host)
	}
	return nil
}

// withCredentials returns a client like c whose requests carry the matching credential's Authorization header.
// The header is added by the transport to each request it sends, the first and each redirect alike, according to
// that request's own URL: net/http copies headers onto a redirect from the request the caller made, which holds
// none, so a redirect to another host (or from https to http) goes without it.
func withCredentials(c *http.Client, creds []Credential) *http.Client {
	if len(creds) == 0 {
		return c
	}
	cc := *c
	rt := cc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	cc.Transport = credentialTransport{rt: rt, creds: creds}
	return &cc
}

type credentialTransport struct {
	rt    http.RoundTripper
	creds []Credential
}

func (t credentialTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	cred := t.match(req)
	if cred == nil || req.Header.Get("Authorization") != "" {
		return t.rt.RoundTrip(req)
	}
	r := req.Clone(req.Context()) // a RoundTripper must not change the caller's request
	if cred.Username != "" {
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred.Username+":"+string(cred.Token))))
	} else {
		r.Header.Set("Authorization", "Bearer "+string(cred.Token))
	}
	return t.rt.RoundTrip(r)
}

// match returns the credential for req's URL: exactly its host (and port, the scheme's default when the
// credential names none), over https or to a loopback IP.
func (t credentialTransport) match(req *http.Request) *Credential {
	u := req.URL
	host, port := strings.ToLower(u.Hostname()), u.Port()
	defaultPort := map[string]string{"https": "443", "http": "80"}[u.Scheme]
	if port == "" {
		port = defaultPort
	}
	switch u.Scheme {
	case "https":
	case "http":
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Unmap().IsLoopback() {
			return nil // never in the clear over a network
		}
	default:
		return nil
	}
	for i := range t.creds {
		c := &t.creds[i]
		ch, cp, err := net.SplitHostPort(c.Host)
		if err != nil {
			ch, cp = strings.Trim(c.Host, "[]"), defaultPort
		}
		if ch == host && cp == port {
			return c
		}
	}
	return nil
}
