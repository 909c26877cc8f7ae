package trust

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/transparency-dev/tessera/client"

	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/tlog"
)

// TestRotate: a bundle made before `ssf trust rotate` and one made after both verify, with sigstore-go and stock
// cosign, against the trusted root exported after the rotation; a bundle whose certificate the old intermediate
// issued after the rotation's end is refused by both; the old log stays verifiable in its archive; init then
// makes nothing.
func TestRotate(t *testing.T) {
	fx := newFixture(t)
	before := fx.bundle(t, issue(t, fx.factory, testIdentity, time.Time{}))
	oldFactory := fx.factory
	oldTLog := oldFactory.TLogKey.Public()
	oldKID, err := logKeyID(oldTLog, DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	res, err := Rotate(fx.layout, Options{Host: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Retired.LogArchive != "log-"+oldKID || res.NewTLogKey == nil || res.NewIntermediate.Equal(res.Retired.Intermediate) {
		t.Fatalf("rotation result: %+v", res)
	}
	end := res.Retired.End
	if again, err := Init(fx.layout, Options{Host: "node-1"}); err != nil || len(again) != 0 {
		t.Fatalf("init after rotate: created %v, err %v", again, err)
	}
	// The old intermediate's key is gone from the home; the old log is archived and still audits with the old key.
	if k, err := sign.LoadKey(fx.layout.CAIntermediateKey()); err != nil || k.PublicKey.Equal(res.Retired.Intermediate.PublicKey) {
		t.Fatalf("the intermediate key was not replaced (err %v)", err)
	}
	if _, err := os.Stat(filepath.Join(fx.layout.Dir, "log")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old log directory is still in place: %v", err)
	}
	v, err := tlog.NewVerifier(oldTLog, DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Monitor(context.Background(), client.FileFetcher{Root: fx.layout.LogArchive(oldKID)}, nil); err != nil {
		t.Fatalf("the archived log does not audit with the old key: %v", err)
	}

	trJSON, err := Export(fx.layout, DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRootFromJSON(trJSON)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.RekorLogs()) != 2 || len(tr.FulcioCertificateAuthorities()) != 2 {
		t.Errorf("the trusted root after rotation has %d logs and %d CAs, want 2 and 2", len(tr.RekorLogs()), len(tr.FulcioCertificateAuthorities()))
	}

	// After: the new trust, a new log.
	newFactory, err := Load(fx.layout, Options{})
	if err != nil {
		t.Fatal(err)
	}
	lg, err := tlog.Open(context.Background(), fx.layout.Log(), newFactory.TLogKey, tlog.WithHost(DefaultTrustDomain))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close(context.Background()) })
	fx.factory, fx.log = newFactory, lg
	after := fx.bundle(t, issue(t, newFactory, testIdentity, time.Time{}))

	// The old intermediate after its end: a CA made from its certificate and (saved) key issues a certificate
	// once the clock has passed the rotation's second (integrated times are whole seconds, and the end is
	// inclusive), logged in the new log and timestamped by the TSA as a thief holding the old key could.
	for !time.Now().After(end.Add(time.Second)) {
		time.Sleep(20 * time.Millisecond)
	}
	stale := oldFactory // its CA is the old intermediate with its key, loaded before the rotation
	late := fx.bundle(t, issue(t, stale, testIdentity, time.Time{}))

	for _, src := range []timeSource{integrated, signed} {
		if err := sigstoreGoVerify(t, trJSON, fx.artifact, before, src, testIdentity, testIssuer); err != nil {
			t.Errorf("sigstore-go (%s) refused the bundle made before the rotation: %v", src, err)
		}
		if err := sigstoreGoVerify(t, trJSON, fx.artifact, after, src, testIdentity, testIssuer); err != nil {
			t.Errorf("sigstore-go (%s) refused the bundle made after the rotation: %v", src, err)
		}
		if err := sigstoreGoVerify(t, trJSON, fx.artifact, late, src, testIdentity, testIssuer); err == nil {
			t.Errorf("sigstore-go (%s) accepted a certificate of the old intermediate issued after its end", src)
		} else {
			t.Logf("sigstore-go (%s) refused the late bundle: %v", src, err)
		}
	}
	for _, c := range []struct{ env, name string }{{"SSF_COSIGN", "cosign"}, {"SSF_COSIGN_V3", "cosign-v3.1.2"}} {
		t.Run(c.name, func(t *testing.T) {
			cosign := cosignTool(t, c.env, c.name)
			for _, src := range []timeSource{integrated, signed} {
				if _, err := cosignVerify(t, cosign, trJSON, fx.artifact, before, src, testIdentity, testIssuer); err != nil {
					t.Errorf("cosign (%s) refused the bundle made before the rotation", src)
				}
				if _, err := cosignVerify(t, cosign, trJSON, fx.artifact, after, src, testIdentity, testIssuer); err != nil {
					t.Errorf("cosign (%s) refused the bundle made after the rotation", src)
				}
				if _, err := cosignVerify(t, cosign, trJSON, fx.artifact, late, src, testIdentity, testIssuer); err == nil {
					t.Errorf("cosign (%s) accepted a certificate of the old intermediate issued after its end", src)
				}
			}
		})
	}
}

// TestRotateNeedsRootKey: without the root key, rotation changes nothing and says how to bring the key back.
func TestRotateNeedsRootKey(t *testing.T) {
	l := newFixture(t).layout
	inter, _ := os.ReadFile(l.CAIntermediateCert())
	offline := filepath.Join(t.TempDir(), "ca-root.key")
	if err := os.Rename(l.CARootKey(), offline); err != nil {
		t.Fatal(err)
	}
	_, err := Rotate(l, Options{Host: "node-1"})
	if !errors.Is(err, ErrRootKeyOffline) || !strings.Contains(err.Error(), "put it back") {
		t.Fatalf("rotate without the root key: %v", err)
	}
	if after, _ := os.ReadFile(l.CAIntermediateCert()); string(after) != string(inter) {
		t.Fatal("the intermediate changed")
	}
	if _, err := os.Stat(l.RetiredTrust()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("something was retired: %v", err)
	}
}

// TestRotateResumes: a rotation that stopped after recording what it retires (a crash) leaves a home whose export
// refuses, and the next rotate finishes it without retiring twice.
func TestRotateResumes(t *testing.T) {
	fx := newFixture(t)
	fx.log.Close(context.Background())
	l := fx.layout
	inter, err := readCert(l.CAIntermediateCert())
	if err != nil {
		t.Fatal(err)
	}
	tk, _ := sign.LoadKey(l.TLogKey())
	if _, err := writeRetired(l, DefaultTrustDomain, time.Now(), inter, tk.Public()); err != nil {
		t.Fatal(err)
	}
	if _, err := Export(l, DefaultTrustDomain); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("export after an interrupted rotation: %v", err)
	}
	// Nothing signs meanwhile: not a build (with the retired intermediate, into the retired log), not a join.
	if _, err := Load(l, Options{}); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("loading the trust for signing after an interrupted rotation: %v", err)
	}
	tok, _, err := NewJoinToken(l, DefaultTrustDomain, DefaultTokenTTL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Join(home.Layout{Dir: t.TempDir()}, tok, "worker-9", time.Now(), admitTo(l, Options{})); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("a join after an interrupted rotation: %v", err)
	}
	res, err := Rotate(l, Options{Host: "node-1"})
	if err != nil || !res.Resumed {
		t.Fatalf("rotate: %+v, %v", res, err)
	}
	retired, err := LoadRetired(l, DefaultTrustDomain)
	if err != nil || len(retired) != 1 {
		t.Fatalf("retired: %d, %v", len(retired), err)
	}
	if _, err := Export(l, DefaultTrustDomain); err != nil {
		t.Fatal(err)
	}
	f, err := Load(l, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The reissued node certificate works with the new intermediate (issue fails the test otherwise).
	issue(t, f, testIdentity, time.Time{})
}

// TestRotateRefusesWhileLogInUse: an identity build's turn on the log, or another appender holding the log (ssf
// log serve --accept-entries), makes rotation refuse before anything changes.
func TestRotateRefusesWhileLogInUse(t *testing.T) {
	fx := newFixture(t) // its log is open: the fixture holds the log's lock
	fx.bundle(t, issue(t, fx.factory, testIdentity, time.Time{}))
	l := fx.layout
	inter, _ := os.ReadFile(l.CAIntermediateCert())
	check := func(what string) {
		t.Helper()
		_, err := Rotate(l, Options{Host: "node-1"})
		if !errors.Is(err, ErrBusy) {
			t.Fatalf("rotate while %s: %v", what, err)
		}
		if after, _ := os.ReadFile(l.CAIntermediateCert()); string(after) != string(inter) {
			t.Fatalf("rotate while %s changed the intermediate", what)
		}
		if _, err := os.Stat(filepath.Join(l.Dir, "log", "checkpoint")); err != nil {
			t.Fatalf("rotate while %s moved the log: %v", what, err)
		}
		if _, err := os.Stat(l.RetiredTrust()); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("rotate while %s recorded a retirement: %v", what, err)
		}
	}
	check("another process holds the log")
	fx.log.Close(context.Background())
	turn, err := tryLock(l.LogTurn())
	if err != nil {
		t.Fatal(err)
	}
	defer turn.Close()
	check("an identity build holds the log's turn")
}
