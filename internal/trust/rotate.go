package trust

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ssf-dev/ssf/internal/ca"
	"github.com/ssf-dev/ssf/internal/durable"
	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/tlog"
)

// ErrRootKeyOffline is wrapped when an operation that signs with the CA root (rotation) finds no root key.
var ErrRootKeyOffline = errors.New("the CA root key is not there")

// ErrBusy is wrapped when rotation finds the transparency log in use (an identity build, `ssf log serve
// --accept-entries`).
var ErrBusy = errors.New("the transparency log is in use")

// Retired is what one rotation ended: the intermediate CA and the transparency log key in use until End. Files of
// keys/retired/<dir>/: ca-intermediate.crt, tlog.pub, rotation.json.
type Retired struct {
	Dir          string
	End          time.Time // whole seconds: integrated times are, and the next log starts at End
	Intermediate *x509.Certificate
	TLogKey      crypto.PublicKey
	LogArchive   string // the retired log's directory, relative to $SSF_HOME (log-<keyid>); "" if it had no log
}

// rotationRecord is rotation.json.
type rotationRecord struct {
	End                string `json:"end"` // RFC 3339, UTC, whole seconds
	IntermediateSHA256 string `json:"intermediateSha256"`
	LogArchive         string `json:"logArchive,omitempty"`
}

// RotateResult says what Rotate did.
type RotateResult struct {
	Retired         Retired
	NewIntermediate *x509.Certificate
	NewTLogKey      crypto.PublicKey
	Resumed         bool // a rotation interrupted before was finished
}

// logKeyID names a log by its key: the first 8 bytes of the log ID, hex.
func logKeyID(pub crypto.PublicKey, host string) (string, error) {
	v, err := tlog.NewVerifier(pub, host)
	if err != nil {
		return "", err
	}
	id := v.LogID()
	return hex.EncodeToString(id[:8]), nil
}

// Rotate retires the intermediate CA and the transparency log key and makes new ones, signed by the root (whose
// key must be present). The old intermediate certificate and log public key are kept under keys/retired/ with the
// end of their validity, so the exported trusted root lists both, and bundles made before still verify; the old
// intermediate's key and log key are destroyed (replaced). The log directory moves to log-<keyid>/ and a new log
// (a new tree, under the new key) starts at the next append. This node's certificate is reissued by the new
// intermediate for its own key. The CT log key and the TSA are kept.
//
// The steps are ordered so that a crash leaves a state Rotate finishes when run again: the rotation record is
// written first, the intermediate certificate replaced last; until then LoadPublic refuses to export.
func Rotate(l home.Layout, o Options) (*RotateResult, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	now := o.Now().UTC()
	rootCert, err := readCert(l.CARootCert())
	if err != nil {
		return nil, fmt.Errorf("rotating: %w (run `ssf init`)", err)
	}
	if td := orgOf(rootCert); td != o.TrustDomain {
		return nil, fmt.Errorf("rotating: the factory CA in %s is for trust domain %q, not %q", l.Dir, td, o.TrustDomain)
	}
	rootKey, err := sign.LoadKey(l.CARootKey())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("rotating needs the CA root key %s to sign the new intermediate: %w (moved offline?); put it back (mode 0600) for this command, then move it away again (docs/keyless.md)", l.CARootKey(), ErrRootKeyOffline)
	}
	if err != nil {
		return nil, fmt.Errorf("rotating: %w", err)
	}
	if !rootKey.PublicKey.Equal(rootCert.PublicKey) {
		return nil, fmt.Errorf("rotating: the CA root key %s is not the key of %s: put back the root key that belongs to this factory", l.CARootKey(), l.CARootCert())
	}

	// Nothing may append to the log while it moves: take the identity builds' turn, then the log's own lock.
	turn, err := tryLock(l.LogTurn())
	if err != nil {
		return nil, fmt.Errorf("rotating: %w: an identity build holds %s; retry when it has ended", ErrBusy, l.LogTurn())
	}
	defer turn.Close()
	if _, err := os.Stat(l.Log()); err == nil {
		lock, err := tryLock(filepath.Join(l.Log(), ".ssf", "lock"))
		if err != nil {
			return nil, fmt.Errorf("rotating: %w: another process holds the log %s (`ssf log serve --accept-entries`?); stop it and retry", ErrBusy, l.Log())
		}
		defer lock.Close() // held until the log has moved: nothing appends to it meanwhile
	}

	inter, err := readCert(l.CAIntermediateCert())
	if err != nil {
		return nil, fmt.Errorf("rotating: %w", err)
	}
	retired, err := LoadRetired(l, o.TrustDomain)
	if err != nil {
		return nil, err
	}
	res := &RotateResult{}
	var rec Retired
	if n := len(retired); n > 0 && retired[n-1].Intermediate.Equal(inter) {
		// An earlier rotation wrote its record but did not replace the intermediate: finish it.
		rec, res.Resumed = retired[n-1], true
	} else {
		tlogKey, err := sign.LoadKey(l.TLogKey())
		if err != nil {
			return nil, fmt.Errorf("rotating: %w", err)
		}
		if rec, err = writeRetired(l, o.TrustDomain, now, inter, tlogKey.Public()); err != nil {
			return nil, err
		}
	}
	res.Retired = rec

	// The log: move it aside unless it was moved already.
	if rec.LogArchive != "" {
		if err := archiveLog(l, filepath.Join(l.Dir, rec.LogArchive)); err != nil {
			return nil, err
		}
	}

	// New keys, unless a resumed rotation made them already (then they differ from the retired ones).
	tlogPub, err := replaceKeyUnless(l.TLogKey(), rec.TLogKey)
	if err != nil {
		return nil, err
	}
	interKey, err := replaceKeyUnless(l.CAIntermediateKey(), rec.Intermediate.PublicKey)
	if err != nil {
		return nil, err
	}
	newInter, err := ca.NewIntermediate(rootCert, rootKey, interKey.Public(), now)
	if err != nil {
		return nil, fmt.Errorf("rotating: %w", err)
	}
	ctKey, err := sign.LoadKey(l.CTLogKey())
	if err != nil {
		return nil, fmt.Errorf("rotating: %w", err)
	}
	ctLog, err := ca.NewCTLog(ctKey)
	if err != nil {
		return nil, err
	}
	a, err := ca.New(ca.Config{TrustDomain: o.TrustDomain, Issuer: o.Issuer, Root: rootCert, Intermediate: newInter, IntermediateKey: interKey, CTLog: ctLog}, ca.WithClock(func() time.Time { return now }))
	if err != nil {
		return nil, fmt.Errorf("rotating: %w", err)
	}
	// This node keeps its key and name; its certificate must be the new intermediate's (the CA accepts requests
	// only from nodes its current intermediate certified).
	if nodeKey, err := sign.LoadKey(l.NodeKey()); err == nil {
		host := o.Host
		if old, err := readCert(l.NodeCert()); err == nil && len(old.URIs) == 1 {
			if h, ok := strings.CutPrefix(old.URIs[0].Path, "/node/"); ok && h != "" {
				host = h
			}
		}
		nc, err := a.IssueNode(host, nodeKey.Public())
		if err != nil {
			return nil, fmt.Errorf("rotating: reissuing this node's certificate: %w", err)
		}
		if err := durable.Replace(l.NodeCert(), certPEM(nc), 0o644); err != nil {
			return nil, fmt.Errorf("rotating: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("rotating: %w", err)
	}
	// Last: the intermediate certificate. Once it is replaced the rotation is done.
	if err := durable.Replace(l.CAIntermediateCert(), certPEM(newInter), 0o644); err != nil {
		return nil, fmt.Errorf("rotating: %w", err)
	}
	res.NewIntermediate, res.NewTLogKey = newInter, tlogPub
	return res, nil
}

// writeRetired records inter and the log key pub as retired at now (cut to whole seconds), atomically: a
// temporary directory renamed into keys/retired/.
func writeRetired(l home.Layout, td string, now time.Time, inter *x509.Certificate, pub crypto.PublicKey) (Retired, error) {
	end := now.Truncate(time.Second)
	kid, err := logKeyID(pub, td)
	if err != nil {
		return Retired{}, err
	}
	r := Retired{Dir: filepath.Join(l.RetiredTrust(), end.Format("20060102T150405Z")+"-"+kid), End: end, Intermediate: inter, TLogKey: pub}
	if _, err := os.Stat(filepath.Join(l.Log(), "checkpoint")); err == nil {
		r.LogArchive = filepath.Base(l.LogArchive(kid))
	}
	sum := sha256.Sum256(inter.Raw)
	rec, err := json.MarshalIndent(rotationRecord{End: end.Format(time.RFC3339), IntermediateSHA256: hex.EncodeToString(sum[:]), LogArchive: r.LogArchive}, "", "  ")
	if err != nil {
		return Retired{}, err
	}
	pubPEM, err := sign.PublicKeyPEM(pub)
	if err != nil {
		return Retired{}, err
	}
	if err := durable.MkdirAll(l.RetiredTrust(), 0o700); err != nil {
		return Retired{}, fmt.Errorf("rotating: %w", err)
	}
	tmp, err := os.MkdirTemp(l.RetiredTrust(), ".rotating-")
	if err != nil {
		return Retired{}, fmt.Errorf("rotating: %w", err)
	}
	defer os.RemoveAll(tmp)
	for name, data := range map[string][]byte{"ca-intermediate.crt": certPEM(inter), "tlog.pub": pubPEM, "rotation.json": append(rec, '\n')} {
		if err := durable.WriteNew(filepath.Join(tmp, name), data, 0o644); err != nil {
			return Retired{}, fmt.Errorf("rotating: %w", err)
		}
	}
	if err := os.Rename(tmp, r.Dir); err != nil {
		return Retired{}, fmt.Errorf("rotating: recording the retired intermediate and log key: %w", err)
	}
	if err := durable.SyncDir(l.RetiredTrust()); err != nil {
		return Retired{}, err
	}
	return r, nil
}

// archiveLog moves the log directory to dir (the caller holds the log's lock, so no appender has it open). A log
// already moved (a resumed rotation) is left where it is.
func archiveLog(l home.Layout, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.Rename(l.Log(), dir); err != nil {
		return fmt.Errorf("rotating: archiving the transparency log: %w", err)
	}
	return durable.SyncDir(l.Dir)
}

// replaceKeyUnless replaces the key at path with a fresh one unless its public key already differs from old.
func replaceKeyUnless(path string, old crypto.PublicKey) (*ecdsa.PrivateKey, error) {
	k, err := sign.LoadKey(path)
	if err == nil && !k.PublicKey.Equal(old) {
		return k, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("rotating: %w", err)
	}
	nk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("rotating: generating a key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(nk)
	if err != nil {
		return nil, err
	}
	if err := durable.Replace(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("rotating: %w", err)
	}
	return nk, nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// tryLock takes an exclusive flock on path (created 0600) without waiting; the lock goes with the file.
func tryLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// LoadRetired reads keys/retired/, oldest first. A missing directory means no rotation yet.
func LoadRetired(l home.Layout, trustDomain string) ([]Retired, error) {
	entries, err := os.ReadDir(l.RetiredTrust())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the retired trust: %w", err)
	}
	var out []Retired
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(l.RetiredTrust(), e.Name())
		r, err := loadRetired(dir, trustDomain)
		if err != nil {
			return nil, fmt.Errorf("retired trust %s: %w", dir, err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].End.Before(out[j].End) })
	return out, nil
}

func loadRetired(dir, trustDomain string) (Retired, error) {
	r := Retired{Dir: dir}
	data, err := os.ReadFile(filepath.Join(dir, "rotation.json"))
	if err != nil {
		return r, err
	}
	var rec rotationRecord
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return r, fmt.Errorf("rotation.json: %w", err)
	}
	if r.End, err = time.Parse(time.RFC3339, rec.End); err != nil {
		return r, fmt.Errorf("rotation.json: end: %w", err)
	}
	if r.Intermediate, err = readCert(filepath.Join(dir, "ca-intermediate.crt")); err != nil {
		return r, err
	}
	if sum := sha256.Sum256(r.Intermediate.Raw); hex.EncodeToString(sum[:]) != rec.IntermediateSHA256 {
		return r, errors.New("ca-intermediate.crt is not the certificate rotation.json names")
	}
	pubPEM, err := os.ReadFile(filepath.Join(dir, "tlog.pub"))
	if err != nil {
		return r, err
	}
	if r.TLogKey, err = sign.ParsePublicKeyPEM(pubPEM); err != nil {
		return r, fmt.Errorf("tlog.pub: %w", err)
	}
	if rec.LogArchive != "" {
		kid, err := logKeyID(r.TLogKey, trustDomain)
		if err != nil {
			return r, err
		}
		if rec.LogArchive != "log-"+kid {
			return r, fmt.Errorf("rotation.json: logArchive %q is not log-%s, the log of tlog.pub", rec.LogArchive, kid)
		}
	}
	r.LogArchive = rec.LogArchive
	return r, nil
}
