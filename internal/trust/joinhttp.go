package trust

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ssf-dev/ssf/internal/ca"
	"github.com/ssf-dev/ssf/internal/home"
)

// The join endpoint (`ssf node serve`, `ssf node join --ca URL`): HTTPS, its certificate made at start by the
// current intermediate for a key held in memory; a joining node pins the CA root by its sha256 (printed by
// `ssf node token`), as kubeadm's --discovery-token-ca-cert-hash does, so that nobody between it and the CA can
// read its token or hand it a certificate of another CA.

// JoinPath is the join endpoint's path.
const JoinPath = "/v1/node/join"

// maxJoinResponse bounds what a joining node reads from the CA.
const maxJoinResponse = 64 << 10

// RootPin is the CA root's pin, "sha256:" and the hex sha256 of its DER certificate.
func RootPin(l home.Layout) (string, error) {
	root, err := readCert(l.CARootCert())
	if err != nil {
		return "", err
	}
	return pinOf(root), nil
}

func pinOf(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ServerCertificate is the join endpoint's TLS certificate for hosts: a fresh key held in memory, certified for a
// day by the current intermediate, with the chain [leaf, intermediate, root] that joining nodes check against their
// pin.
func ServerCertificate(l home.Layout, o Options, hosts []string) (*tls.Certificate, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	a, err := loadCA(l, o, ca.WithClock(o.Now))
	if err != nil {
		return nil, fmt.Errorf("loading the factory CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf, err := a.IssueServer(hosts, key.Public(), ca.MaxServerValidity)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}
	for _, x := range a.Chain() {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

// JoinHandler answers POST JoinPath with admit's answer (200, JSON). A refusal (ErrJoinRefused) is 403 with
// {"error": why}; a body over 16 KiB 413, not JSON 415, another method 405, another path 404; anything else 500
// without details (they stay in the server's log, through logf).
func JoinHandler(admit func([]byte) ([]byte, error), logf func(format string, args ...any)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(code int, msg string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(map[string]string{"error": msg})
		}
		if r.URL.Path != JoinPath {
			fail(http.StatusNotFound, fmt.Sprintf("no such endpoint %q: joins go to POST %s", r.URL.Path, JoinPath))
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			fail(http.StatusMethodNotAllowed, "joins are POST requests")
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			fail(http.StatusUnsupportedMediaType, "a join request is application/json")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJoinRequest))
		if err != nil {
			fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("a join request is at most %d bytes", maxJoinRequest))
			return
		}
		resp, err := admit(body)
		if errors.Is(err, ErrJoinRefused) {
			logf("refused a node join from %s: %v", r.RemoteAddr, err)
			fail(http.StatusForbidden, err.Error())
			return
		}
		if err != nil {
			logf("node join from %s failed: %v", r.RemoteAddr, err)
			fail(http.StatusInternalServerError, "the CA could not answer the join; its log says why")
			return
		}
		logf("admitted a node from %s", r.RemoteAddr)
		w.Header().Set("Content-Type", "application/json")
		w.Write(resp)
	})
}

// refusedError is the CA's refusal as the joining node reports it: the CA's words, matching ErrJoinRefused.
type refusedError struct{ msg string }

func (e *refusedError) Error() string        { return e.msg }
func (e *refusedError) Is(target error) bool { return target == ErrJoinRefused }

// HTTPJoin returns what sends a join request to the CA at caURL (https://HOST:PORT), accepting only a server
// whose certificate chains to the root pinned by pin (sha256:HEX), and only an answer whose chain ends in it.
func HTTPJoin(ctx context.Context, caURL, pin string) (func([]byte) ([]byte, error), error) {
	u, err := url.Parse(caURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("%w: --ca %q is not a URL https://HOST:PORT", ErrJoinRefused, caURL)
	}
	want, ok := strings.CutPrefix(pin, "sha256:")
	if b, err := hex.DecodeString(want); !ok || err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("%w: --ca-cert-hash %q is not sha256: and 64 hex digits (ssf node token prints it)", ErrJoinRefused, pin)
	}
	host := u.Hostname()
	verify := func(cs tls.ConnectionState) error {
		certs := cs.PeerCertificates
		if len(certs) < 2 {
			return errors.New("the server sent no chain up to a root")
		}
		root := certs[len(certs)-1]
		if pinOf(root) != pin {
			return fmt.Errorf("the server's root is %s, not the pinned %s", pinOf(root), pin)
		}
		return verifyServer(certs[0], certs[1:len(certs)-1], root, host)
	}
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			// The usual verification is replaced, not dropped: VerifyConnection checks the chain against the
			// pinned root (there is no system root to check it against).
			InsecureSkipVerify: true,
			VerifyConnection:   verify,
		}},
	}
	endpoint := u.Scheme + "://" + u.Host + JoinPath
	return func(req []byte) ([]byte, error) {
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(req))
		if err != nil {
			return nil, err
		}
		hr.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(hr)
		if err != nil {
			return nil, fmt.Errorf("sending the join request to %s: %w", endpoint, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxJoinResponse+1))
		if err != nil {
			return nil, fmt.Errorf("reading the CA's answer from %s: %w", endpoint, err)
		}
		if len(body) > maxJoinResponse {
			return nil, fmt.Errorf("the CA's answer from %s is over %d bytes", endpoint, maxJoinResponse)
		}
		if resp.StatusCode != http.StatusOK {
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(body, &e) != nil || e.Error == "" {
				e.Error = "no reason given"
			}
			if resp.StatusCode == http.StatusForbidden {
				return nil, &refusedError{msg: e.Error}
			}
			return nil, fmt.Errorf("the CA at %s answered %s: %s", endpoint, resp.Status, e.Error)
		}
		var jr JoinResponse
		if err := json.Unmarshal(body, &jr); err != nil || len(jr.Chain) == 0 {
			return nil, fmt.Errorf("the CA's answer from %s is not a join response", endpoint)
		}
		root, err := x509.ParseCertificate(jr.Chain[len(jr.Chain)-1])
		if err != nil || pinOf(root) != pin {
			return nil, fmt.Errorf("the CA's answer from %s names another root than the pinned %s", endpoint, pin)
		}
		return body, nil
	}, nil
}
