package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/ssf-dev/ssf/internal/ca"
)

// A node asks the factory CA for a workload certificate for a key the workload made in memory.
func Example() {
	now := time.Now()
	key := func() *ecdsa.PrivateKey { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k }
	// At `ssf init` (in the factory: files of mode 0600 under $SSF_HOME/keys, package trust).
	rootKey, interKey, ctKey, nodeKey := key(), key(), key(), key()
	root, _ := ca.NewRoot("ssf.local", rootKey, now)
	inter, _ := ca.NewIntermediate(root, rootKey, interKey.Public(), now)
	ct, _ := ca.NewCTLog(ctKey)
	authority, err := ca.New(ca.Config{TrustDomain: "ssf.local", Issuer: "https://ssf.local/issuer",
		Root: root, Intermediate: inter, IntermediateKey: interKey, CTLog: ct})
	if err != nil {
		fmt.Println(err)
		return
	}
	nodeCert, _ := authority.IssueNode("node-1", nodeKey.Public())
	node, _ := ca.NewNode(nodeCert, nodeKey)

	// For each workload: a fresh key, a request the node signs, a certificate for at most 10 minutes.
	workloadKey := key()
	der, _ := x509.MarshalPKIXPublicKey(workloadKey.Public())
	req, _ := node.Request(ca.Request{SPIFFEID: "spiffe://ssf.local/pipeline/hello/task/build", PublicKey: der})
	cert, err := authority.Issue(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(nodeCert.URIs[0])
	fmt.Println(cert.URIs[0], cert.NotAfter.Sub(cert.NotBefore), cert.ExtKeyUsage[0] == x509.ExtKeyUsageCodeSigning)
	// Output:
	// spiffe://ssf.local/node/node-1
	// spiffe://ssf.local/pipeline/hello/task/build 10m0s true
}
