package tlog_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/ssf-dev/ssf/internal/tlog"
)

// Log a blob signature and check what the log answers with only its public key, as a verifier would.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "tlog-example-")
	defer os.RemoveAll(dir)
	logKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // in the factory: a 0600 file under $SSF_HOME
	l, err := tlog.Open(ctx, dir, logKey)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close(ctx)

	signer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	digest := sha256.Sum256([]byte("a blob"))
	sig, _ := ecdsa.SignASN1(rand.Reader, signer, digest[:])
	der, _ := x509.MarshalPKIXPublicKey(signer.Public())
	entry, err := tlog.NewHashedRekordEntry("sha256", digest[:], sig, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err != nil {
		fmt.Println(err)
		return
	}
	e, err := l.Append(ctx, entry)
	if err != nil {
		fmt.Println(err)
		return
	}

	v, _ := tlog.NewVerifier(logKey.Public(), "ssf.local")
	fmt.Println("index:", e.LogIndex, "kind:", e.Proto().GetKindVersion().GetKind())
	fmt.Println("verified:", v.VerifyEntry(e) == nil)
	// Output:
	// index: 0 kind: hashedrekord
	// verified: true
}
