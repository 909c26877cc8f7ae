package ssf.build_test

import data.ssf.build

# As `ssf policy init` writes it, but signed by a trusted key (team_build.rego demands one).
good := {
	"pipeline": {"name": "app", "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "path": "ssf.yaml", "fromSource": true, "signers": [min(build.trusted_signers)]},
	"params": {},
	"source": {"uri": "git+file:///src/app", "digest": "gitCommit:0123456789abcdef0123456789abcdef01234567"},
	"builder": {"id": "https://ssf.dev/factory/host", "image": "go", "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222"},
}

test_pinned_build_allowed if count(build.deny) == 0 with input as good

test_unpinned_builder_denied if {
	some msg in build.deny with input as object.union(good, {"builder": {"image": "go", "digest": "latest"}})
	contains(msg, "not pinned")
}

test_source_without_digest_denied if {
	some msg in build.deny with input as object.union(good, {"source": {"uri": "dir:///src", "digest": ""}})
	contains(msg, "has no digest")
}
