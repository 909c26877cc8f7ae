package deps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// Where the control plane may connect when it fetches.
//
// Lock files name their own download URLs (npm's "resolved"), and any server may redirect: so the URLs ssf
// fetches are chosen by whoever wrote the source, and every byte is checked against a pin before it is used. What
// such a URL must not do is reach what only the control plane's host can reach. The default client therefore
// checks the address of every connection it opens (after DNS, so a name resolving to a private address, a
// redirect and DNS rebinding are all caught; connections are checked, not URLs) and refuses:
//
//   - link-local addresses (169.254.0.0/16, fe80::/10), where cloud metadata services answer with credentials,
//     the other well-known metadata addresses, the unspecified address and multicast: never a registry;
//   - loopback, unless the URL being fetched names a loopback address or "localhost" itself. A local mirror (an
//     Athens proxy, a Verdaccio registry on localhost) is a real set-up and plain to see in a config or lock
//     file; a public host redirecting to 127.0.0.1, or a name that resolves there, is not, and is refused.
//
// Through an HTTP proxy (from the environment) the control plane connects to the proxy only: URLs naming a refused
// address literally are refused before they are sent, and the proxy decides what names reach. Loopback is also
// allowed to the HTTP proxy the environment names. A kept-alive connection to an allowed loopback
// address may serve a later redirect there: one the same lock file could have named directly.
//
// Private (RFC 1918, ULA) addresses stay allowed: company registries and proxies live there. The fetch is a GET
// whose answer must match a pin, so what a URL to such an address can learn is a status code and a hash.
// Non-http(s) schemes never get this far: lock URLs are checked for http(s), and net/http follows redirects to
// http and https only.

// metadataAddrs are cloud metadata services outside the link-local ranges.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	netip.MustParseAddr("fd00:ec2::254"),   // AWS, over IPv6
}

type dialPolicyKey struct{}

// withDialPolicy says, for the connections of one fetch, whether loopback is allowed: when rawURL names it.
func withDialPolicy(ctx context.Context, rawURL string) context.Context {
	loopback := false
	if u, err := url.Parse(rawURL); err == nil {
		h := strings.ToLower(u.Hostname())
		if ip, err := netip.ParseAddr(h); err == nil {
			loopback = ip.Unmap().IsLoopback()
		} else {
			loopback = h == "localhost"
		}
	}
	return context.WithValue(ctx, dialPolicyKey{}, loopback)
}

// refusedAddr says why the control plane must not connect to ip, or returns "".
func refusedAddr(ip netip.Addr, loopbackOK bool) string {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid():
		return "not an IP address"
	case ip.IsUnspecified():
		return "the unspecified address"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "a link-local address (where cloud metadata services answer)"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return "a multicast address"
	case ip.IsLoopback() && !loopbackOK:
		return "a loopback address the URL does not name (a redirect or a host name leads there)"
	}
	for _, m := range metadataAddrs {
		if ip == m {
			return "a cloud metadata service"
		}
	}
	return ""
}

// defaultClient is the client used when Options.Client is nil: net/http's defaults (proxy from the environment,
// HTTP/2), timeouts, and every connection checked by refusedAddr.
func defaultClient() *http.Client { return newClient(http.ProxyFromEnvironment, envProxies()) }

// newClient is defaultClient with the HTTP proxy proxy, whose addresses (host:port) are proxies.
func newClient(proxy func(*http.Request) (*url.URL, error), proxies map[string]bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = proxy
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		loopbackOK, _ := ctx.Value(dialPolicyKey{}).(bool)
		// The operator's HTTP proxy (from the environment, as net/http uses it) may be a local one.
		loopbackOK = loopbackOK || proxies[addr]
		d := net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second,
			Control: func(_, address string, _ syscall.RawConn) error {
				host, _, err := net.SplitHostPort(address)
				if err != nil {
					return err
				}
				ip, err := netip.ParseAddr(host)
				if err != nil {
					return err
				}
				if why := refusedAddr(ip, loopbackOK); why != "" {
					return fmt.Errorf("refusing to connect to %s: %s", address, why)
				}
				return nil
			}}
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{Timeout: 10 * time.Minute, Transport: guardTransport{tr}}
}

// guardTransport refuses a request (the first or a redirect) whose URL names a refused address, before it is sent.
// Through an HTTP proxy the connection is the proxy's, so the check of each connection never sees the address the
// proxy will reach: this catches the literal ones (169.254.169.254, localhost), and the proxy decides for names.
type guardTransport struct{ rt http.RoundTripper }

func (g guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	loopbackOK, _ := req.Context().Value(dialPolicyKey{}).(bool)
	h := strings.ToLower(req.URL.Hostname())
	if h == "localhost" {
		h = "127.0.0.1"
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		if why := refusedAddr(ip, loopbackOK); why != "" {
			return nil, fmt.Errorf("refusing to connect to %s: %s", req.URL.Host, why)
		}
	}
	return g.rt.RoundTrip(req)
}

// envProxies are the host:port of the HTTP proxies the environment names, which net/http dials instead of the
// URL's host.
func envProxies() map[string]bool {
	out := map[string]bool{}
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"} {
		v := os.Getenv(k)
		if v == "" {
			continue
		}
		if !strings.Contains(v, "://") {
			v = "http://" + v
		}
		u, err := url.Parse(v)
		if err != nil || u.Hostname() == "" {
			continue
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"https": "443", "socks5": "1080"}[u.Scheme]
			if port == "" {
				port = "80"
			}
		}
		out[net.JoinHostPort(u.Hostname(), port)] = true
	}
	return out
}

// unwrapURLError drops net/http's *url.Error wrapper, which repeats the URL with its user name.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
