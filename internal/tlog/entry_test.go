package tlog

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"
)

func hashedRekord(t testing.TB, k *ecdsa.PrivateKey, artifact []byte) Entry {
	t.Helper()
	d := sha256.Sum256(artifact)
	sig, err := ecdsa.SignASN1(rand.Reader, k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewHashedRekordEntry("sha256", d[:], sig, pubPEM(t, k.Public()))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestNewEntryRefuses(t *testing.T) {
	k, other := newKey(t), newKey(t)
	env := signDSSE(t, k, "application/vnd.in-toto+json", []byte(`{}`))
	pub, otherPub := pubPEM(t, k.Public()), pubPEM(t, other.Public())
	d := sha256.Sum256([]byte("x"))
	sig, _ := ecdsa.SignASN1(rand.Reader, k, d[:])
	tests := []struct {
		name string
		make func() (Entry, error)
		want string
	}{
		{"dsse not JSON", func() (Entry, error) { return NewDSSEEntry([]byte("{"), pub) }, "parsing DSSE envelope"},
		{"dsse no signatures", func() (Entry, error) {
			return NewDSSEEntry([]byte(`{"payloadType":"t","payload":"e30=","signatures":[]}`), pub)
		}, "no signatures"},
		{"dsse no verifier", func() (Entry, error) { return NewDSSEEntry(env) }, "at least one verifier"},
		{"dsse wrong key", func() (Entry, error) { return NewDSSEEntry(env, otherPub) }, "does not verify"},
		{"dsse unused verifier", func() (Entry, error) { return NewDSSEEntry(env, pub, otherPub) }, "verifies none"},
		{"dsse two PEM blocks", func() (Entry, error) { return NewDSSEEntry(env, append(bytes.Clone(pub), otherPub...)) }, "more than one PEM block"},
		{"dsse not PEM", func() (Entry, error) { return NewDSSEEntry(env, []byte("key")) }, "not a PEM block"},
		{"dsse changed payload", func() (Entry, error) {
			return NewDSSEEntry(bytes.Replace(env, []byte(`"payload":"e30="`), []byte(`"payload":"e3g="`), 1), pub)
		}, "does not verify"},
		{"hashedrekord md5", func() (Entry, error) { return NewHashedRekordEntry("md5", d[:16], sig, pub) }, "not supported"},
		{"hashedrekord short digest", func() (Entry, error) { return NewHashedRekordEntry("sha256", d[:31], sig, pub) }, "hex digits"},
		{"hashedrekord wrong key", func() (Entry, error) { return NewHashedRekordEntry("sha256", d[:], sig, otherPub) }, "does not verify"},
		{"hashedrekord no signature", func() (Entry, error) { return NewHashedRekordEntry("sha256", d[:], nil, pub) }, "no signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.make()
			if !errors.Is(err, ErrBadEntry) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrBadEntry saying %q", err, tt.want)
			}
		})
	}
	if _, err := (&Log{}).Append(context.Background(), Entry{}); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("Append of the zero Entry: got %v", err)
	}
}

func TestParseEntry(t *testing.T) {
	k := newKey(t)
	dsse, hr := testEntry(t, k, 1), hashedRekord(t, k, []byte("blob"))
	for _, e := range []Entry{dsse, hr} {
		got, err := ParseEntry(e.Body())
		if err != nil {
			t.Fatalf("%s: %v", e.Kind(), err)
		}
		if got.Kind() != e.Kind() || !bytes.Equal(got.Body(), e.Body()) {
			t.Fatalf("%s: round trip changed the entry", e.Kind())
		}
	}
	bad := []struct {
		name string
		body string
		want string
	}{
		{"not JSON", "{", "parsing entry body"},
		{"unknown kind", strings.Replace(string(hr.body), `"kind":"hashedrekord"`, `"kind":"rekord"`, 1), "not supported"},
		{"other version", strings.Replace(string(hr.body), `"apiVersion":"0.0.1"`, `"apiVersion":"0.0.2"`, 1), "not supported"},
		{"unknown field", strings.Replace(string(hr.body), `"spec":{`, `"spec":{"x":1,`, 1), "unknown field"},
		{"not canonical", strings.Replace(string(dsse.body), `,"kind"`, `, "kind"`, 1), "canonical"},
		{"hashedrekord digest changed", strings.Replace(string(hr.body), `"value":"`, `"value":"0`, 1), "hex digits"},
		{"dsse payload hash not hex", strings.Replace(string(dsse.body), `"payloadHash":{"algorithm":"sha256","value":"`, `"payloadHash":{"algorithm":"sha256","value":"zz`, 1), "hex digits"},
		{"trailing data", string(hr.body) + "{}", "trailing"},
		{"oversized", strings.Repeat(" ", MaxBodySize+1), "limit"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEntry([]byte(tt.body))
			if !errors.Is(err, ErrBadEntry) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrBadEntry saying %q", err, tt.want)
			}
		})
	}
}

// FuzzParseEntry: ParseEntry never panics, and what it accepts is canonical (parsing its body gives it back).
func FuzzParseEntry(f *testing.F) {
	k := newKey(f)
	f.Add(testEntry(f, k, 1).Body())
	f.Add(hashedRekord(f, k, []byte("blob")).Body())
	f.Add([]byte(`{"apiVersion":"0.0.1","kind":"dsse","spec":{}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := ParseEntry(body)
		if err != nil {
			return
		}
		if !bytes.Equal(e.Body(), body) {
			t.Fatalf("accepted a body that is not its canonical form")
		}
		if _, err := ParseEntry(e.Body()); err != nil {
			t.Fatalf("accepted body does not parse again: %v", err)
		}
	})
}

// TestEntryWithCertificate: a certificate as verifier is stored as its canonical CERTIFICATE PEM, as Rekor does
// for keyless signatures.
func TestEntryWithCertificate(t *testing.T) {
	k := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(10 * time.Minute),
		URIs: []*url.URL{{Scheme: "spiffe", Host: "ssf.local", Path: "/pipeline/p/task/t"}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	env := signDSSE(t, k, "application/vnd.in-toto+json", []byte(`{}`))
	e, err := NewDSSEEntry(env, certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(e.Body(), []byte(base64.StdEncoding.EncodeToString(certPEM))) {
		t.Fatalf("dsse body does not carry the certificate PEM: %s", e.Body())
	}
	if _, err := ParseEntry(e.Body()); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("blob"))
	sig, _ := ecdsa.SignASN1(rand.Reader, k, d[:])
	hr, err := NewHashedRekordEntry("sha256", d[:], sig, certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseEntry(hr.Body()); err != nil {
		t.Fatal(err)
	}
}
