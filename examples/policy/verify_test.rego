package ssf.verify_test

import data.ssf.verify

hex := "5555555555555555555555555555555555555555555555555555555555555555"

artifact := {"uri": "out/app", "digest": concat(":", ["sha256", hex])}

prov(builder) := {"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "app", "digest": {"sha256": hex}}], "predicateType": "https://slsa.dev/provenance/v1", "predicate": {"buildDefinition": {"buildType": "https://ssf.dev/buildtypes/pipeline/v1"}, "runDetails": {"builder": {"id": builder}}}, "signer": {"key": "sha256:ab"}}

test_factory_provenance_allowed if {
	count(verify.deny) == 0 with input as {"artifact": artifact, "statements": [prov("https://ssf.dev/factory/host")]}
}

test_other_builder_denied if {
	some msg in verify.deny with input as {"artifact": artifact, "statements": [prov("https://github.com/actions/runner")]}
	contains(msg, "no verified SLSA provenance")
}

test_no_statements_denied if count(verify.deny) == 1 with input as {"artifact": artifact, "statements": []}
