package ssf.publish_test

import data.ssf.publish

hex := "4444444444444444444444444444444444444444444444444444444444444444"

outputs := [{"name": "app", "digest": concat(":", ["sha256", hex])}]

prov := {"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "app", "digest": {"sha256": hex}}], "predicateType": "https://slsa.dev/provenance/v1", "predicate": {}, "signer": {"key": "sha256:ab"}}

sbom := object.union(prov, {"predicateType": "https://spdx.dev/Document"})

# As `ssf policy init` writes it, but to a target under the team's prefix (team_publish.rego).
test_with_provenance_allowed if count(publish.deny) == 0 with input as {"outputs": outputs, "statements": [prov, sbom], "target": "registry.example.com/team/app"}

test_without_provenance_denied if {
	some msg in publish.deny with input as {"outputs": outputs, "statements": [sbom], "target": "localhost:5000/app"}
	contains(msg, "no verified SLSA provenance")
}
