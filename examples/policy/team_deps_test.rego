# Tests of team_deps.rego.
package ssf.deps_test

import data.ssf.deps

npm(name, purl) := {"dependency": {"type": "npm", "name": name, "version": "3.3.6", "purl": purl, "url": "", "digest": "sha512-AAAA"}}

gomod(name) := {"dependency": {"type": "gomod", "name": name, "version": "v1.2.0", "purl": concat("", ["pkg:golang/", name, "@v1.2.0"]), "url": "", "digest": "h1:AAAA"}}

test_banned_npm_package_denied if {
	some msg in deps.deny with input as npm("event-stream", "pkg:npm/event-stream@3.3.6")
	contains(msg, `npm dependency "event-stream" 3.3.6 is banned: its 3.3.6 pulled in flatmap-stream`)
}

test_other_npm_package_allowed if count(deps.deny) == 0 with input as npm("is-number", "pkg:npm/is-number@3.3.6")

test_banned_go_module_denied_in_any_case if {
	some msg in deps.deny with input as gomod("github.com/satori/go.uuid")
	contains(msg, "CVE-2021-3538")
	some msg2 in deps.deny with input as gomod("github.com/Satori/go.uuid")
	contains(msg2, "is banned")
}

test_go_module_of_the_same_name_under_npm_allowed if {
	count(deps.deny) == 0 with input as npm("github.com/satori/go.uuid", "pkg:npm/github.com/satori/go.uuid@3.3.6")
}

test_npm_package_from_outside_the_registry_denied if {
	some msg in deps.deny with input as npm("harmless", "pkg:npm/harmless@3.3.6?download_url=https://evil.example/x.tgz")
	contains(msg, "not fetched from the registry")
}
