# Tests of team_publish.rego. outputs, prov and sbom are publish_test.rego's (the same package).
package ssf.publish_test

import data.ssf.publish

to(target) := {"outputs": outputs, "statements": [prov, sbom], "target": target}

test_publish_under_the_prefix_allowed if count(publish.deny) == 0 with input as to("registry.example.com/team/app:v1.2.0")

test_publish_elsewhere_denied if {
	some msg in publish.deny with input as to("registry.example.com/other/app:v1")
	contains(msg, "publishing to registry.example.com/other/app:v1 is not allowed")
	contains(msg, `["registry.example.com/team/"]`)
}

test_lookalike_repository_denied if {
	count(publish.deny) == 1 with input as to("registry.example.com/team-evil/app:v1")
	count(publish.deny) == 1 with input as to("registry.example.com.evil.example/team/app:v1")
	count(publish.deny) == 1 with input as to("index.docker.io/registry.example.com/team/app:v1")
}
