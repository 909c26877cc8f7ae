package factory

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestOpenVerifierOnJoinedNode: a joined node is never given spiffe://TD/verifier (the node API refuses it), so
// `ssf verify --vsa` there with the identity signer is refused at once, as bad usage naming --vsa-signer key,
// before anything is verified; the node's key signs instead.
func TestOpenVerifierOnJoinedNode(t *testing.T) {
	ca := Home{Dir: t.TempDir()}
	if _, err := ca.Init(); err != nil {
		t.Fatal(err)
	}
	tok, _, err := ca.NodeToken(15 * time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	node := Home{Dir: t.TempDir()}
	if _, err := node.JoinNode(tok, "worker", ca.AdmitNode, "", ""); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = node.OpenVerifier(ctx, SignerIdentity, nil)
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "only the factory's own node signs as spiffe://ssf.local/verifier") ||
		!strings.Contains(err.Error(), "--vsa-signer key") {
		t.Fatalf("identity verifier on a joined node: %v, want an InputError naming --vsa-signer key", err)
	}
	v, err := node.OpenVerifier(ctx, SignerKey, nil)
	if err != nil || v.Attestor == nil {
		t.Fatalf("key verifier on a joined node: %v", err)
	}
	// The factory's own node signs as the verifier.
	v, err = ca.OpenVerifier(ctx, SignerIdentity, nil)
	if err != nil || v.Identity != "spiffe://ssf.local/verifier" {
		t.Fatalf("identity verifier on the factory: %v %+v", err, v)
	}
	v.Close(ctx)
}
