# Tests of team_deploy.rego. hex, artifact, prov (built by the pipeline "release") and admission are
# deploy_test.rego's (the same package).
package ssf.deploy_test

import data.ssf.deploy

built_by(pipeline) := object.union(prov, {"predicate": {"buildDefinition": {"externalParameters": {"pipeline": {"name": pipeline}}}}})

in_namespace(ns, statements) := {"artifact": artifact, "statements": statements, "admission": object.union(admission(artifact.uri), {"namespace": ns})}

test_release_pipeline_admitted_in_prod if count(deploy.deny) == 0 with input as in_namespace("prod", [built_by("release")])

test_other_pipeline_denied_in_prod if {
	count(deploy.deny) == 1 with input as in_namespace("prod", [built_by("nightly")])
	some msg in deploy.deny with input as in_namespace("prod", [built_by("nightly")])
	contains(msg, `Pod prod/web: container "app" runs registry.local/app@sha256:6666`)
	contains(msg, `not built by a pipeline allowed in namespace prod (["release"]; built by ["nightly"])`)
}

test_other_pipeline_admitted_elsewhere if count(deploy.deny) == 0 with input as in_namespace("dev", [built_by("nightly")])

# A provenance from a builder the default rules do not trust names no pipeline, however it is named.
test_release_from_another_builder_denied_in_prod if {
	foreign := object.union(built_by("release"), {"predicate": {"runDetails": {"builder": {"id": "https://github.com/actions/runner"}}}})
	some msg in deploy.deny with input as in_namespace("prod", [foreign])
	contains(msg, "built by []")
}

# A provenance of another image does not lend its pipeline to this one.
test_provenance_of_another_image_denied_in_prod if {
	other := object.union(built_by("release"), {"subject": [{"name": "x", "digest": {"sha256": "7777777777777777777777777777777777777777777777777777777777777777"}}]})
	some msg in deploy.deny with input as in_namespace("prod", [other])
	contains(msg, "not built by a pipeline allowed")
}
