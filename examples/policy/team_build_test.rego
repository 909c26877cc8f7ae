# Tests of team_build.rego. `good` (build_test.rego, the same package) is a build of a pipeline a trusted key signed.
package ssf.build_test

import data.ssf.build

signed_by(signers) := object.union(good, {"pipeline": object.union(good.pipeline, {"signers": signers})})

test_unsigned_pipeline_denied if {
	some msg in build.deny with input as signed_by([])
	contains(msg, `pipeline "ssf.yaml" is not signed by a trusted key`)
	contains(msg, "ssf pipeline sign ssf.yaml --key KEY.pem")
}

test_pipeline_signed_by_another_key_denied if {
	other := "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	not other in build.trusted_signers
	some msg in build.deny with input as signed_by([other])
	contains(msg, other)
}

test_one_trusted_signature_of_several_allowed if {
	other := "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	count(build.deny) == 0 with input as signed_by([other, min(build.trusted_signers)])
}

# Every fingerprint listed is spelled as `ssf pipeline fingerprint` prints it; a typo would trust no key.
test_fingerprints_well_formed if {
	count(build.trusted_signers) > 0
	every fp in build.trusted_signers {
		regex.match(`^sha256:[0-9a-f]{64}$`, fp)
	}
}
