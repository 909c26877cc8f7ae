package policy

import (
	"encoding/json"
	"io"
)

// The input documents, one per gate. Their json tags are the names policies read (input.pipeline.fromSource); a
// digest is always "sha256:<hex>" (or "ALG:VALUE" for a source's git commit), except inside in-toto statements,
// which keep their own digest sets ({"sha256": hex}). docs/policy.md shows an example of each.

// BuildInput is ssf.build's input: once per build, before anything runs.
type BuildInput struct {
	Pipeline Pipeline          `json:"pipeline"`
	Params   map[string]string `json:"params"` // every param, defaults included
	Source   Source            `json:"source"`
	Builder  Builder           `json:"builder"`
}

// Pipeline is the pipeline file a build runs.
type Pipeline struct {
	Name   string `json:"name"`
	Digest string `json:"digest"` // sha256:<hex> of the file's bytes
	Path   string `json:"path"`   // as given, informative
	// FromSource is true when the file is committed at the source's git commit (byte for byte).
	FromSource bool `json:"fromSource"`
	// Signers are the fingerprints, sha256:<hex of the PKIX DER public key>, of the keys whose signatures over
	// the file (FILE.sig) verified; empty when it is unsigned.
	Signers []string `json:"signers"`
}

// Source is what a build is made from.
type Source struct {
	URI    string `json:"uri"`
	Digest string `json:"digest"` // gitCommit:<hex> for a git checkout, sha256:<hex> of the tree otherwise
}

// Builder is the factory and the builder image a build runs on.
type Builder struct {
	ID     string `json:"id"`     // the factory's builder id (runDetails.builder.id)
	Image  string `json:"image"`  // the builder image as the pipeline names it
	Digest string `json:"digest"` // sha256:<hex> of its manifest, as resolved by the factory
}

// DepsInput is ssf.deps's input: once per dependency, before it is fetched.
type DepsInput struct {
	Dependency Dependency `json:"dependency"`
}

// Dependency is one declared dependency, as its lock file or the pipeline pins it.
type Dependency struct {
	Type    string `json:"type"`    // gomod, npm or file
	Name    string `json:"name"`    // module path, npm package name, or a file's destination
	Version string `json:"version"` // "" for a file
	PURL    string `json:"purl"`    // pkg:golang/PATH@VERSION, pkg:npm/NAME@VERSION; "" for a file
	// URL is where it will be fetched from (for a file, the URL the pipeline gives).
	URL    string `json:"url"`
	Digest string `json:"digest"` // the pin: sha256:<hex> for files, the lock file's hash ("h1:…", "sha512-…") otherwise
}

// PublishInput is ssf.publish's input: before a push.
type PublishInput struct {
	Outputs    []Output    `json:"outputs"`
	Statements []Statement `json:"statements"` // the verified statements about the outputs
	Target     string      `json:"target"`     // REGISTRY/REPO[:TAG]
	// Tags is every tag the publish pushes, REGISTRY/REPO:TAG each: TAG of the target and those made from it and
	// the image outputs' names (TAG-<output>, TAG.files); [] without a tag.
	Tags []string `json:"tags"`
}

// Output is one artifact a build made.
type Output struct {
	Name   string `json:"name"`
	Digest string `json:"digest"` // sha256:<hex>
}

// VerifyInput is ssf.verify's input: in `ssf verify`, once per artifact.
type VerifyInput struct {
	Artifact   Artifact    `json:"artifact"`
	Statements []Statement `json:"statements"` // every verified statement about the artifact
}

// Artifact is what is being verified or admitted.
type Artifact struct {
	URI    string `json:"uri"`    // a file path, or REGISTRY/REPO@sha256:<hex>
	Digest string `json:"digest"` // sha256:<hex>
}

// DeployInput is ssf.deploy's input: in the admission controller, once per container.
type DeployInput struct {
	Artifact   Artifact    `json:"artifact"`
	Statements []Statement `json:"statements"`
	Admission  Admission   `json:"admission"`
}

// Admission is the Kubernetes object a container belongs to.
type Admission struct {
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"` // Pod, Deployment, ...
	Name      string `json:"name"`
	Container string `json:"container"` // the container's name
	Image     string `json:"image"`     // as the object names it (after mutation: by digest)
}

// Statement is one verified in-toto Statement v1 and who signed it.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
	Signer        Signer          `json:"signer"`
	// LinkedBy is "provenance" for a statement that is not about the artifact itself but in its evidence because
	// the verified provenance naming the artifact names it (a task attestation about the build's files); "" else.
	LinkedBy string `json:"linkedBy,omitempty"`
}

// Subject is an in-toto subject.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"` // {"sha256": hex}
}

// Signer is who signed a statement, as verification established: a key's fingerprint, or a certificate's
// identity and issuer.
type Signer struct {
	Key      string `json:"key,omitempty"`      // sha256:<hex of the PKIX DER public key>
	Identity string `json:"identity,omitempty"` // the certificate's first URI SAN (a SPIFFE ID)
	Issuer   string `json:"issuer,omitempty"`   // its OIDC issuer extension
}

func (BuildInput) gate() Gate   { return Build }
func (DepsInput) gate() Gate    { return Deps }
func (PublishInput) gate() Gate { return Publish }
func (VerifyInput) gate() Gate  { return Verify }
func (DeployInput) gate() Gate  { return Deploy }

func jsonEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}
