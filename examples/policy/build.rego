# ssf.build: decided once per build, before anything runs. docs/policy.md documents input.
package ssf.build

# The builder image must be pinned by its manifest digest, so the provenance names exactly what ran. (ssf resolves
# every builder to a digest itself, so this holds today; it guards against a future input that does not.)
deny contains msg if {
	not regex.match(`^sha256:[0-9a-f]{64}$`, input.builder.digest)
	msg := sprintf("builder %q is not pinned by a sha256 digest (got %q)", [input.builder.image, input.builder.digest])
}

# The source must be identified by a digest (a git commit or the tree's sha256), or the build cannot be traced
# back to it.
deny contains msg if {
	input.source.digest == ""
	msg := sprintf("source %q has no digest", [input.source.uri])
}

# To require signed pipelines, uncomment and list the fingerprints (sha256:<hex of the PKIX DER public key>) of
# the keys you trust:
#
# trusted_signers := {"sha256:..."}
#
# deny contains msg if {
# 	count({s | some s in input.pipeline.signers; s in trusted_signers}) == 0
# 	msg := sprintf("pipeline %q is not signed by a trusted key", [input.pipeline.path])
# }
