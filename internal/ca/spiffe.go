package ca

import (
	"fmt"
	"net/url"
	"strings"
)

// maxSPIFFEID is the SPIFFE spec's bound on an ID's length, in bytes.
const maxSPIFFEID = 2048

// CheckTrustDomain accepts a SPIFFE trust domain name: lower-case letters, digits, '.', '-' and '_'.
func CheckTrustDomain(td string) error {
	if td == "" {
		return fmt.Errorf("trust domain is empty: give a DNS-like name such as ssf.local")
	}
	if len(td) > 255 {
		return fmt.Errorf("trust domain %q is longer than 255 bytes", td)
	}
	for _, r := range td {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("trust domain %q: %q is not allowed (SPIFFE trust domains use a-z, 0-9, '.', '-' and '_')", td, r)
		}
	}
	return nil
}

// CheckIssuer accepts an absolute https (or http) URL, as OIDC issuers are.
func CheckIssuer(iss string) error {
	u, err := url.Parse(iss)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("issuer %q is not an absolute http(s) URL such as https://ssf.local/issuer", iss)
	}
	return nil
}

// parseSPIFFEID splits a SPIFFE ID into its trust domain and path segments, checking the SPIFFE ID syntax.
func parseSPIFFEID(id string) (td string, segments []string, err error) {
	if len(id) > maxSPIFFEID {
		return "", nil, fmt.Errorf("SPIFFE ID is longer than %d bytes", maxSPIFFEID)
	}
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return "", nil, fmt.Errorf("SPIFFE ID %q does not start with spiffe://", id)
	}
	td, path, _ := strings.Cut(rest, "/")
	if err := CheckTrustDomain(td); err != nil {
		return "", nil, fmt.Errorf("SPIFFE ID %q: %w", id, err)
	}
	if path == "" {
		return "", nil, fmt.Errorf("SPIFFE ID %q names no workload (it has no path)", id)
	}
	segments = strings.Split(path, "/")
	for _, s := range segments {
		if s == "" || s == "." || s == ".." {
			return "", nil, fmt.Errorf("SPIFFE ID %q: empty, '.' or '..' path segment", id)
		}
		for _, r := range s {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
				return "", nil, fmt.Errorf("SPIFFE ID %q: %q is not allowed in a path segment (use a-z, A-Z, 0-9, '.', '-', '_')", id, r)
			}
		}
	}
	return td, segments, nil
}

// CheckWorkloadID accepts the SPIFFE IDs the factory issues workload certificates for, in trust domain td:
// spiffe://TD/pipeline/<pipeline> (a run of the pipeline), spiffe://TD/pipeline/<pipeline>/task/<task>, and
// spiffe://TD/verifier (what signs `ssf verify --vsa` summaries).
func CheckWorkloadID(td, id string) error {
	got, seg, err := parseSPIFFEID(id)
	if err != nil {
		return err
	}
	if got != td {
		return fmt.Errorf("SPIFFE ID %q is in trust domain %q, not this factory's %q", id, got, td)
	}
	switch {
	case len(seg) == 2 && seg[0] == "pipeline", len(seg) == 4 && seg[0] == "pipeline" && seg[2] == "task":
		return nil
	case len(seg) == 1 && seg[0] == "verifier": // ssf verify --vsa signs its verification summaries as the factory's verifier
		return nil
	}
	return fmt.Errorf("SPIFFE ID %q is not a workload's: want spiffe://%s/pipeline/<pipeline>, spiffe://%s/pipeline/<pipeline>/task/<task> or spiffe://%s/verifier", id, td, td, td)
}

// NodeID is the SPIFFE ID of node host in trust domain td.
func NodeID(td, host string) string { return "spiffe://" + td + "/node/" + host }

// nodeHost returns the host a node SPIFFE ID of trust domain td names.
func nodeHost(td, id string) (string, error) {
	got, seg, err := parseSPIFFEID(id)
	if err != nil {
		return "", err
	}
	if got != td || len(seg) != 2 || seg[0] != "node" {
		return "", fmt.Errorf("SPIFFE ID %q is not a node of trust domain %q (spiffe://%s/node/<host>)", id, td, td)
	}
	return seg[1], nil
}
