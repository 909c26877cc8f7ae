package ca

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"net"
	"time"
)

// MaxServerValidity bounds the TLS certificates of the CA's own endpoints (`ssf node serve`): they are made for
// one run of the server, from a key it holds in memory.
const MaxServerValidity = 24 * time.Hour

// IssueServer issues a TLS server certificate (serverAuth only, not a CA, no SPIFFE ID) for hosts (DNS names or IP
// addresses) and pub, valid for at most MaxServerValidity. Only the factory's operator calls it, for the CA's own
// join endpoint; joining nodes check it against the root they pin.
func (a *Authority) IssueServer(hosts []string, pub crypto.PublicKey, validity time.Duration) (*x509.Certificate, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%w: a server certificate needs at least one host name or address", ErrRefused)
	}
	if validity <= 0 || validity > MaxServerValidity {
		return nil, fmt.Errorf("%w: server certificate validity %v is not between 0 and %v", ErrRefused, validity, MaxServerValidity)
	}
	if err := checkP256(pub); err != nil {
		return nil, fmt.Errorf("%w: server key: %w", ErrRefused, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := a.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-Backdate).UTC(),
		NotAfter:              minTime(now.Add(validity), a.inter.NotAfter).UTC(),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return create(tmpl, a.inter, pub, a.interKey)
}
