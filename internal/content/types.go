package content

// Media types and payload types that image-spec's specs-go/v1 does not define. OCI's own (manifest, index, empty
// config, layers, annotations) are used from there.
const (
	// ArtifactType is the artifactType of the OCI artifact manifest that holds a build's file outputs.
	ArtifactType = "application/vnd.ssf.build.v1"
	// FileMediaType is the media type of each output file in that artifact.
	FileMediaType = "application/octet-stream"
	// BundleMediaType is the media type of a Sigstore bundle (v0.3), and the artifactType of the referrer that
	// carries one, in the layout cosign reads.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// InTotoPayloadType is the DSSE payloadType of an in-toto statement.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// PipelineMediaType is the media type of a pipeline file, as recorded in provenance.
	PipelineMediaType = "application/yaml"
	// DockerManifestMediaType and DockerListMediaType are Docker's v2 schema 2 manifest and manifest list, which
	// registries accept and an OCI index may name for its children (buildx writes such layouts).
	DockerManifestMediaType = "application/vnd.docker.distribution.manifest.v2+json"
	DockerListMediaType     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// The SBOM attestations ssf writes beside each output: their in-toto predicate types (as cosign
// verify-blob-attestation --type spdxjson and --type cyclonedx expect them) and the suffixes of their bundles'
// file names in OUT/attestations (<output>.spdx.sigstore.json, <output>.cdx.sigstore.json).
const (
	SPDXPredicateType      = "https://spdx.dev/Document"
	CycloneDXPredicateType = "https://cyclonedx.org/bom"
	SPDXBundleSuffix       = ".spdx.sigstore.json"
	CycloneDXBundleSuffix  = ".cdx.sigstore.json"
)

// The per-task attestation ssf writes when tasks are signed by their own identities (ssf build --signer identity):
// its in-toto predicate type (docs/build-type.md) and the suffix of its bundle's file name in OUT/attestations
// (<task>.task.sigstore.json).
const (
	TaskPredicateType = "https://ssf.dev/attestations/task/v1"
	TaskBundleSuffix  = ".task.sigstore.json"
)

// NpmPackumentAccept is the Accept header npm sends for a package's registry metadata in its abbreviated form;
// npm's cache answers a request only from an entry stored under the same Accept.
const NpmPackumentAccept = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"

// Docker's v2 schema 2 layer and config media types, which builder images pulled from registries may carry.
const (
	DockerLayerMediaType     = "application/vnd.docker.image.rootfs.diff.tar"
	DockerLayerGzipMediaType = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	DockerConfigMediaType    = "application/vnd.docker.container.image.v1+json"
)
