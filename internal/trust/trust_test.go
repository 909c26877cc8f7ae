package trust

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/sign"
)

// TestInitKeepsWhatExists: a second Init makes nothing and changes no byte; a key that no longer matches its
// certificate is refused, not replaced; a missing certificate is made for the key that is there.
func TestInitKeepsWhatExists(t *testing.T) {
	l := home.Layout{Dir: t.TempDir()}
	created, err := Init(l, Options{Host: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != 10 {
		t.Fatalf("created %d files: %v", len(created), created)
	}
	files := []string{l.CARootKey(), l.CARootCert(), l.CAIntermediateKey(), l.CAIntermediateCert(), l.CTLogKey(), l.TLogKey(),
		l.TSAKey(), l.TSACert(), l.NodeKey(), l.NodeCert()}
	before := map[string][]byte{}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".key") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", f, fi.Mode().Perm())
		}
		before[f], _ = os.ReadFile(f)
	}
	again, err := Init(l, Options{Host: "node-1"})
	if err != nil || len(again) != 0 {
		t.Fatalf("second init: created %v, err %v", again, err)
	}
	for _, f := range files {
		if after, _ := os.ReadFile(f); !bytes.Equal(after, before[f]) {
			t.Errorf("%s changed", f)
		}
	}

	// A certificate missing: made again for the existing key.
	if err := os.Remove(l.NodeCert()); err != nil {
		t.Fatal(err)
	}
	made, err := Init(l, Options{Host: "node-1"})
	if err != nil || len(made) != 1 || made[0] != l.NodeCert() {
		t.Fatalf("created %v, err %v; want only the node certificate", made, err)
	}

	// A key replaced under its certificate: refused, nothing replaced.
	if err := os.Remove(l.TSAKey()); err != nil {
		t.Fatal(err)
	}
	if err := sign.GenerateKey(l.TSAKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(l, Options{Host: "node-1"}); err == nil || !strings.Contains(err.Error(), "is not for the key") {
		t.Fatalf("init with a mismatched TSA key: %v", err)
	}
	if after, _ := os.ReadFile(l.TSACert()); !bytes.Equal(after, before[l.TSACert()]) {
		t.Fatal("the TSA certificate was replaced")
	}

	// Another trust domain on the same CA: refused.
	if _, err := Init(l, Options{TrustDomain: "other.example"}); err == nil || !strings.Contains(err.Error(), `trust domain "ssf.local", not "other.example"`) {
		t.Fatalf("init for another trust domain: %v", err)
	}
}

// TestExportShape pins the trusted root's shape: one CA with chain [intermediate, root], one tlog and one ctlog
// whose log IDs are sha256 of their keys, one TSA with chain [TSA, root], validity starts at or before now; and
// sigstore-go reads it.
func TestExportShape(t *testing.T) {
	l := home.Layout{Dir: t.TempDir()}
	if _, err := Init(l, Options{TrustDomain: "example.org"}); err != nil {
		t.Fatal(err)
	}
	tr, err := Export(l, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(tr, []byte("PRIVATE")) {
		t.Fatal("the trusted root holds a private key")
	}
	var got struct {
		MediaType string `json:"mediaType"`
		CAs       []struct {
			URI       string `json:"uri"`
			CertChain struct {
				Certificates []struct{ RawBytes []byte } `json:"certificates"`
			} `json:"certChain"`
		} `json:"certificateAuthorities"`
		TSAs []struct {
			CertChain struct {
				Certificates []struct{ RawBytes []byte } `json:"certificates"`
			} `json:"certChain"`
		} `json:"timestampAuthorities"`
		Tlogs  []json.RawMessage `json:"tlogs"`
		Ctlogs []struct {
			PublicKey struct{ RawBytes []byte } `json:"publicKey"`
			LogID     struct {
				KeyID []byte `json:"keyId"`
			} `json:"logId"`
		} `json:"ctlogs"`
	}
	if err := json.Unmarshal(tr, &got); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPublic(l, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if got.MediaType != TrustedRootMediaType || len(got.CAs) != 1 || len(got.TSAs) != 1 || len(got.Tlogs) != 1 || len(got.Ctlogs) != 1 {
		t.Fatalf("trusted root: %s", tr)
	}
	ca := got.CAs[0].CertChain.Certificates
	if len(ca) != 2 || !bytes.Equal(ca[0].RawBytes, p.Intermediate.Raw) || !bytes.Equal(ca[1].RawBytes, p.Root.Raw) {
		t.Error("certificateAuthorities[0].certChain is not [intermediate, root]")
	}
	ts := got.TSAs[0].CertChain.Certificates
	if len(ts) != 2 || !bytes.Equal(ts[0].RawBytes, p.TSA.Raw) || !bytes.Equal(ts[1].RawBytes, p.Root.Raw) {
		t.Error("timestampAuthorities[0].certChain is not [TSA, root]")
	}
	tr2, err := root.NewTrustedRootFromJSON(tr)
	if err != nil {
		t.Fatalf("sigstore-go cannot read it: %v", err)
	}
	for id, log := range tr2.CTLogs() {
		if log.ValidityPeriodStart.After(time.Now()) {
			t.Errorf("ctlog %s starts in the future", id)
		}
	}
	if len(tr2.RekorLogs()) != 1 || len(tr2.CTLogs()) != 1 || len(tr2.TimestampingAuthorities()) != 1 || len(tr2.FulcioCertificateAuthorities()) != 1 {
		t.Fatal("sigstore-go does not see one log, one CT log, one TSA and one CA")
	}
	if got.CAs[0].URI != "https://example.org/ca" {
		t.Errorf("CA uri %q", got.CAs[0].URI)
	}
}
