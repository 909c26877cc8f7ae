# ssf.publish: decided before a push. docs/policy.md documents input.
package ssf.publish

# Nothing is published without its provenance: every output must be a subject of a verified SLSA provenance
# statement.
deny contains msg if {
	some out in input.outputs
	not has_provenance(out)
	msg := sprintf("output %q (%s) has no verified SLSA provenance", [out.name, out.digest])
}

has_provenance(out) if {
	some s in input.statements
	s.predicateType == "https://slsa.dev/provenance/v1"
	some subject in s.subject
	concat(":", ["sha256", subject.digest.sha256]) == out.digest
}
