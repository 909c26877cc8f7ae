// Package admission is ssf's Kubernetes admission webhook: it admits into a cluster only images the factory
// verifiably built, as the last gate of the factory's chain.
//
// # What it serves
//
// AdmissionReview v1 over HTTPS, at two paths the webhook configurations (ssf admission install) point at:
//
//   - /mutate resolves every container image named by tag (containers, initContainers and ephemeralContainers of
//     Pods and of the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers,
//     Jobs and CronJobs) to the digest the registry holds for it now, as a JSONPatch, so that what runs is what
//     was verified.
//   - /validate requires of every image, by digest, factory provenance that verifies with the trust given (the
//     same internal/verify as ssf verify, offline: bundles come from the image's referrers, trust from files) and
//     passing the ssf.deploy policy gate, once per container. An image named by tag alone is denied (the kubelet
//     would pull the tag later, whatever it names then). Every failing container is named, with its image and the
//     check that failed.
//
// Image volumes (volumes[].image.reference) are images too: their files reach what runs, so both paths treat each
// like a container's image (a denial names it image volume "NAME"; ssf.deploy sees the container volume:NAME).
//
// On UPDATE both paths look only at the containers the update starts: one whose name and image the stored object
// (oldObject) has runs already, and is left alone (see started).
//
// Namespaces opt in with the label ssf.dev/admission=enforce (deny) or =warn (admit, with a warning per
// failure). The review does not carry the namespace's labels: each webhook configuration has one entry per mode,
// whose namespaceSelector picks the namespaces and whose URL path says the mode (/validate/enforce, /validate/warn; the
// same for /mutate).
//
// # Cache
//
// Evidence (the verified statements and the provenance verdict) is cached per image by digest and trust digest:
// a bounded LRU, each entry kept DefaultTTL when provenance verified and DefaultNegativeTTL when it did not.
// Concurrent reviews of one uncached image share one registry fetch. Policy is not cached: it is evaluated per
// container on every review (the admission fields differ per container, and an evaluation costs tens of
// microseconds), so a new policy set applies at once; a new trust changes the key, so nothing verified with the
// old one is reused.
//
// # What it must never do
//
//   - It must never admit an image whose provenance did not verify, or that the policy denies, in enforce mode.
//   - It must never fail open: an error (a registry that does not answer, a review it cannot read, a policy that
//     fails to evaluate, a timeout) denies in enforce mode, or is answered with an HTTP error that the API server,
//     under failurePolicy Fail, turns into a denial.
//   - It must never reach anything but the image's registry (a tag's HEAD, the referrers listing and the bundles
//     it names): trust and policy are files, verification is offline.
//   - It must never let a cached verdict outlive a change of trust, or serve a verdict for one image to another.
//   - It must never read more of a request than MaxReviewBytes, or more of a registry than internal/oci bounds.
package admission
