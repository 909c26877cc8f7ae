package verify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"time"

	godigest "github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

// Sign the provenance of a build with the factory key, then verify it for one of the build's outputs.
func ExampleArtifact() {
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // ssf keeps this in $SSF_HOME/keys (sign.GenerateKey)
	if err != nil {
		panic(err)
	}

	binary := []byte("the bytes of out/app")
	digest := godigest.FromBytes(binary)

	statement, err := provenance.Statement(provenance.Build{
		BuilderID:      "https://ssf.dev/builders/local@v1",
		InvocationID:   "run-42",
		StartedOn:      time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC),
		FinishedOn:     time.Date(2026, 1, 1, 12, 1, 0, 0, time.UTC),
		PipelineName:   "app",
		PipelineDigest: digest, // the digest of ssf.yaml in a real build
		SourceURI:      "git+https://example.com/app",
		Dependencies: []provenance.ResourceDescriptor{{
			Name: provenance.SourceDependencyName, URI: "git+https://example.com/app",
			Digest: provenance.Digest{"gitCommit": "0123456789abcdef0123456789abcdef01234567"},
		}},
		Subjects: []provenance.Subject{{Name: "out/app", Digest: digest}},
	})
	if err != nil {
		panic(err)
	}
	bundle, err := sign.NewSigner(key).Statement(ctx, statement)
	if err != nil {
		panic(err)
	}

	res, err := verify.Artifact(ctx, digest, bundle, verify.Options{
		Trusted:      verify.KeyMaterial(&key.PublicKey),
		BuilderID:    "https://ssf.dev/builders/local@v1",
		SourceDigest: "gitCommit:0123456789abcdef0123456789abcdef01234567",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("verified", res.Subject.Name, "from pipeline", res.Provenance.PipelineName)
	for _, c := range res.Checks[len(res.Checks)-6 : len(res.Checks)-4] {
		fmt.Println("-", c)
	}
	fmt.Println("not checked:")
	for _, u := range res.Unchecked {
		fmt.Println("-", u)
	}

	// The same bundle says nothing about other bytes.
	other := godigest.FromBytes([]byte("tampered"))
	_, err = verify.Artifact(ctx, other, bundle, verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)})
	fmt.Println("other artifact rejected:", err != nil)
	// Output:
	// verified out/app from pipeline app
	// - builder id is "https://ssf.dev/builders/local@v1"
	// - source dependency has digest gitCommit:0123456789abcdef0123456789abcdef01234567
	// not checked:
	// - builder image (the statement says nothing)
	// - pipeline digest (the statement says "app" sha256:5d892b240fd0aac340c7de2a929817cfbff193c2b647ecf6973a722b3a66fce4)
	// - params (the statement has 0)
	// other artifact rejected: true
}
