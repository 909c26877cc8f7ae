package trust

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"time"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	prototrustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/tlog"
)

// TrustedRootMediaType is the media type of the trusted root Export writes (the one cosign v2.6 and v3 and
// sigstore-go v1.3 read): sigstore-go's own constant, so the spelling has one home.
const TrustedRootMediaType = root.TrustedRootMediaType01

// Public is the public half of a factory trust: what a verifier needs and nothing that signs.
type Public struct {
	TrustDomain  string
	Root         *x509.Certificate
	Intermediate *x509.Certificate
	TSA          *x509.Certificate
	CTLogKey     crypto.PublicKey
	TLogKey      crypto.PublicKey
	Retired      []Retired // what `ssf trust rotate` ended, oldest first
}

// LoadPublic reads the public half of the factory trust under l (the log keys' public halves from their key
// files, which the factory's owner can read; the root key is not read).
func LoadPublic(l home.Layout, trustDomain string) (*Public, error) {
	p := &Public{TrustDomain: trustDomain}
	var err error
	for _, c := range []struct {
		path string
		to   **x509.Certificate
	}{{l.CARootCert(), &p.Root}, {l.CAIntermediateCert(), &p.Intermediate}, {l.TSACert(), &p.TSA}} {
		if *c.to, err = readCert(c.path); err != nil {
			return nil, fmt.Errorf("%w (run `ssf init`)", err)
		}
	}
	for _, k := range []struct {
		path string
		to   *crypto.PublicKey
	}{{l.CTLogKey(), &p.CTLogKey}, {l.TLogKey(), &p.TLogKey}} {
		key, err := sign.LoadKey(k.path)
		if err != nil {
			return nil, fmt.Errorf("%w (run `ssf init`)", err)
		}
		*k.to = key.Public()
	}
	if p.Retired, err = LoadRetired(l, trustDomain); err != nil {
		return nil, err
	}
	if n := len(p.Retired); n > 0 && p.Retired[n-1].Intermediate.Equal(p.Intermediate) {
		return nil, fmt.Errorf("a rotation of the factory trust (%s) did not finish: run `ssf trust rotate` again to finish it", p.Retired[n-1].Dir)
	}
	return p, nil
}

// TrustedRoot is p as a Sigstore trusted root (JSON): the CA chain [intermediate, root], the transparency log and
// the CT log with their log IDs (sha256 of the PKIX DER key), and the TSA chain [TSA, root]. Every validity starts
// at the certificate or key's start: the logs' at the root's (they are made with it at init), so it is at or
// before every integrated time and SCT. After rotations, each retired intermediate and log key comes first, valid
// until its rotation's end; the current log key is valid from the last rotation's end (whole seconds, as
// integrated times are).
func (p *Public) TrustedRoot() ([]byte, error) {
	base := "https://" + p.TrustDomain
	ctDER, err := x509.MarshalPKIXPublicKey(p.CTLogKey)
	if err != nil {
		return nil, fmt.Errorf("encoding the CT log key: %w", err)
	}
	ctID := sha256.Sum256(ctDER)
	tv, err := tlog.NewVerifier(p.TLogKey, p.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("the transparency log key: %w", err)
	}
	org := orgOf(p.Root)
	var tlogs []*prototrustroot.TransparencyLogInstance
	var cas []*prototrustroot.CertificateAuthority
	start := p.Root.NotBefore
	for _, r := range p.Retired {
		rv, err := tlog.NewVerifier(r.TLogKey, p.TrustDomain)
		if err != nil {
			return nil, fmt.Errorf("the retired transparency log key of %s: %w", r.Dir, err)
		}
		e := rv.TrustedRootEntry(base, start)
		e.PublicKey.ValidFor.End = timestamppb.New(r.End)
		tlogs = append(tlogs, e)
		cas = append(cas, &prototrustroot.CertificateAuthority{
			Subject:   &protocommon.DistinguishedName{Organization: org, CommonName: p.Root.Subject.CommonName},
			Uri:       base + "/ca",
			CertChain: chain(r.Intermediate, p.Root),
			ValidFor:  &protocommon.TimeRange{Start: timestamppb.New(r.Intermediate.NotBefore), End: timestamppb.New(r.End)},
		})
		start = r.End
	}
	tr := &prototrustroot.TrustedRoot{
		MediaType: TrustedRootMediaType,
		Tlogs:     append(tlogs, tv.TrustedRootEntry(base, start)),
		CertificateAuthorities: append(cas, &prototrustroot.CertificateAuthority{
			Subject:   &protocommon.DistinguishedName{Organization: org, CommonName: p.Root.Subject.CommonName},
			Uri:       base + "/ca",
			CertChain: chain(p.Intermediate, p.Root),
			ValidFor:  validFor(p.Intermediate.NotBefore),
		}),
		Ctlogs: []*prototrustroot.TransparencyLogInstance{{
			BaseUrl:       base + "/ct",
			HashAlgorithm: protocommon.HashAlgorithm_SHA2_256,
			PublicKey: &protocommon.PublicKey{
				RawBytes:   ctDER,
				KeyDetails: protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256,
				ValidFor:   validFor(p.Root.NotBefore),
			},
			LogId: &protocommon.LogId{KeyId: ctID[:]},
		}},
		TimestampAuthorities: []*prototrustroot.CertificateAuthority{{
			Subject:   &protocommon.DistinguishedName{Organization: org, CommonName: p.TSA.Subject.CommonName},
			Uri:       base + "/tsa",
			CertChain: chain(p.TSA, p.Root),
			ValidFor:  validFor(p.TSA.NotBefore),
		}},
	}
	b, err := protojson.Marshal(tr)
	if err != nil {
		return nil, fmt.Errorf("encoding the trusted root: %w", err)
	}
	// protojson varies its whitespace on purpose; indent it the same way every time, for people and diffs.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, fmt.Errorf("encoding the trusted root: %w", err)
	}
	return append(out.Bytes(), '\n'), nil
}

func chain(certs ...*x509.Certificate) *protocommon.X509CertificateChain {
	c := &protocommon.X509CertificateChain{}
	for _, x := range certs {
		c.Certificates = append(c.Certificates, &protocommon.X509Certificate{RawBytes: x.Raw})
	}
	return c
}

func validFor(start time.Time) *protocommon.TimeRange {
	return &protocommon.TimeRange{Start: timestamppb.New(start)}
}

// Export returns the trusted root of the factory under l.
func Export(l home.Layout, trustDomain string) ([]byte, error) {
	p, err := LoadPublic(l, trustDomain)
	if err != nil {
		return nil, err
	}
	return p.TrustedRoot()
}
