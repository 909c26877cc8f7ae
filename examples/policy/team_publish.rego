# The team's rule at ssf.publish (beside the default rule of publish.rego): the factory publishes only into the
# team's repositories.
package ssf.publish

# Where the team publishes. input.target is spelled one way (host in lower case, no trailing dot, no :443 for
# https, Docker Hub as index.docker.io), so a prefix cannot be passed by writing the host otherwise. Each prefix
# ends with "/", so registry.example.com/team-evil/app does not pass as registry.example.com/team.
allowed_prefixes := {"registry.example.com/team/"}

deny contains msg if {
	not allowed_target
	msg := sprintf("publishing to %s is not allowed: this factory publishes under %v only", [input.target, sort(allowed_prefixes)])
}

allowed_target if {
	some prefix in allowed_prefixes
	startswith(input.target, prefix)
}
