# ssf.verify: decided in `ssf verify`, once per artifact. docs/policy.md documents input.
package ssf.verify

# Builder ids whose provenance is accepted. Statements reach the policy only after their signatures verified
# against the trusted root (or key) given to ssf, so this prefix accepts any ssf factory that root trusts. Pin your
# own factory by its builder id (ssf prints it in `ssf verify`), e.g.:
#
# trusted_builder(id) if id == "https://ssf.dev/factory/build-1"
trusted_builder(id) if startswith(id, "https://ssf.dev/factory/")

# The artifact must carry SLSA provenance of an ssf pipeline build, from a trusted builder, naming the artifact.
deny contains msg if {
	not factory_provenance
	msg := sprintf("%s (%s) has no verified SLSA provenance from a trusted ssf builder", [input.artifact.uri, input.artifact.digest])
}

factory_provenance if {
	some s in input.statements
	s.predicateType == "https://slsa.dev/provenance/v1"
	s.predicate.buildDefinition.buildType == "https://ssf.dev/buildtypes/pipeline/v1"
	trusted_builder(s.predicate.runDetails.builder.id)
	some subject in s.subject
	concat(":", ["sha256", subject.digest.sha256]) == input.artifact.digest
}
