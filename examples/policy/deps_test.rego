package ssf.deps_test

import data.ssf.deps

file_dep(url) := {"dependency": {"type": "file", "name": "tool.tgz", "version": "", "purl": "", "url": url, "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333"}}

test_https_file_allowed if count(deps.deny) == 0 with input as file_dep("https://example.com/tool.tgz")

test_http_file_denied if {
	some msg in deps.deny with input as file_dep("HTTP://example.com/tool.tgz")
	contains(msg, "plain http")
}

test_loopback_http_file_allowed if {
	count(deps.deny) == 0 with input as file_dep("http://127.0.0.1:8080/tool.tgz")
	count(deps.deny) == 0 with input as file_dep("http://localhost/tool.tgz")
	count(deps.deny) == 0 with input as file_dep("http://[::1]:80/tool.tgz")
}

test_lookalike_loopback_denied if {
	some msg in deps.deny with input as file_dep("http://127.0.0.1.example.com/tool.tgz")
	contains(msg, "plain http")
	some msg2 in deps.deny with input as file_dep("http://localhost.evil/tool.tgz")
	contains(msg2, "plain http")
}

test_gomod_allowed if {
	count(deps.deny) == 0 with input as {"dependency": {"type": "gomod", "name": "github.com/google/uuid", "version": "v1.6.0", "purl": "pkg:golang/github.com/google/uuid@v1.6.0", "url": "http://proxy.local/github.com/google/uuid/@v/v1.6.0.zip", "digest": "h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0="}}
}

test_unpinned_denied if {
	some msg in deps.deny with input as {"dependency": {"type": "npm", "name": "left-pad", "version": "1.3.0", "purl": "pkg:npm/left-pad@1.3.0", "url": "", "digest": ""}}
	contains(msg, "no pinned digest")
}
