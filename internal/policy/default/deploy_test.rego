package ssf.deploy_test

import data.ssf.deploy

hex := "6666666666666666666666666666666666666666666666666666666666666666"

artifact := {"uri": concat("", ["registry.local/app@sha256:", hex]), "digest": concat(":", ["sha256", hex])}

prov := {"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "registry.local/app", "digest": {"sha256": hex}}], "predicateType": "https://slsa.dev/provenance/v1", "predicate": {"buildDefinition": {"buildType": "https://ssf.dev/buildtypes/pipeline/v1"}, "runDetails": {"builder": {"id": "https://ssf.dev/factory/host"}}}, "signer": {"key": "sha256:ab"}}

admission(image) := {"namespace": "prod", "kind": "Pod", "name": "web", "container": "app", "image": image}

test_verified_image_admitted if {
	count(deploy.deny) == 0 with input as {"artifact": artifact, "statements": [prov], "admission": admission(artifact.uri)}
}

test_unverified_tag_denied_twice if {
	count(deploy.deny) == 2 with input as {"artifact": artifact, "statements": [], "admission": admission("registry.local/app:latest")}
}
