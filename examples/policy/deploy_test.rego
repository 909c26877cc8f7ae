package ssf.deploy_test

import data.ssf.deploy

hex := "6666666666666666666666666666666666666666666666666666666666666666"

artifact := {"uri": concat("", ["registry.local/app@sha256:", hex]), "digest": concat(":", ["sha256", hex])}

# As `ssf policy init` writes it, but built by the pipeline "release", which may deploy to prod (team_deploy.rego).
prov := {"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "registry.local/app", "digest": {"sha256": hex}}], "predicateType": "https://slsa.dev/provenance/v1", "predicate": {"buildDefinition": {"buildType": "https://ssf.dev/buildtypes/pipeline/v1", "externalParameters": {"pipeline": {"name": "release"}}}, "runDetails": {"builder": {"id": "https://ssf.dev/factory/host"}}}, "signer": {"key": "sha256:ab"}}

admission(image) := {"namespace": "prod", "kind": "Pod", "name": "web", "container": "app", "image": image}

test_verified_image_admitted if {
	count(deploy.deny) == 0 with input as {"artifact": artifact, "statements": [prov], "admission": admission(artifact.uri)}
}

# Three with the team's rule: no provenance also means no allowed pipeline in prod.
test_unverified_tag_denied_thrice if {
	count(deploy.deny) == 3 with input as {"artifact": artifact, "statements": [], "admission": admission("registry.local/app:latest")}
}
