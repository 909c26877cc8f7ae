// Package ca is the factory's certificate authority: it gives each workload (a pipeline run, a task) a
// short-lived X.509 identity that Sigstore verifiers (sigstore-go, cosign) accept as if Fulcio had issued it.
//
// # Hierarchy
//
// A root CA (ECDSA P-256, self-signed, [RootValidity]) signs one intermediate ([IntermediateValidity], path
// length 0); the intermediate issues everything else. The root key is needed only to make or rotate an
// intermediate, so it can live offline. [NewRoot] and [NewIntermediate] make the two CA certificates.
//
// # Node and workload identities (node attestation, then workload attestation)
//
// A node (a machine that runs tasks) holds a long-lived certificate for spiffe://TD/node/<host>
// ([Authority.IssueNode], made at `ssf init`). A workload certificate is issued only on a [Request] signed by a
// node's key ([Node.Request]); [Authority.Issue] checks that the node certificate chains to this CA's
// intermediate, names a node of this trust domain and is valid, that the node's signature covers the request, and
// that the request is fresh. All of it is in-process: the node and the CA are the same binary today, and the
// signed request is what a remote node will send later. [Provider] plugs this into sigstore-go's signer as its
// sign.CertificateProvider.
//
// # Workload certificates (the Fulcio profile)
//
// A workload certificate has an empty subject and one critical URI SAN, the workload's SPIFFE ID
// (spiffe://TD/pipeline/<pipeline> or spiffe://TD/pipeline/<pipeline>/task/<task>; see [CheckWorkloadID]), key
// usage digitalSignature, the code-signing EKU only, a validity of at most [MaxWorkloadValidity], and Fulcio's
// extensions: the issuer as 1.3.6.1.4.1.57264.1.1 (raw bytes, the legacy form) and 1.3.6.1.4.1.57264.1.8 (DER
// UTF8String), and, when given, BuildSignerURI (.9), BuildSignerDigest (.10), SourceRepositoryURI (.12),
// SourceRepositoryDigest (.13), SourceRepositoryRef (.14), BuildConfigURI (.18), BuildConfigDigest (.19) and
// RunInvocationURI (.21) — the numbers sigstore-go v1.3.0 parses (pkg/fulcio/certificate). It carries an embedded
// SCT made as Fulcio makes it: a precertificate with the critical RFC 6962 poison extension is signed by the
// intermediate, the factory's CT log key ([CTLog]) signs an SCT over its precert entry, and the final certificate
// (same serial, same extensions in the same order, the poison replaced by the SCT list) is signed again.
//
// # What it must never do
//
//   - Never issue a workload certificate without a request signed by a node whose certificate this CA issued and
//     that is valid now; never for a SPIFFE ID outside the trust domain or not of a workload's form.
//   - Never issue a workload certificate valid for longer than [MaxWorkloadValidity] (10 minutes), or one whose
//     SCT and chain it has not checked right after making it.
//   - Never hold or write a key file itself: keys come in as crypto.Signer values (package trust stores them, mode
//     0600), so nothing here can write a key world-readable.
package ca
