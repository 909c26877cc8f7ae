# The team's rules at ssf.deps (beside the default rules of deps.rego): dependencies the team banned, by name.
package ssf.deps

# type -> name -> why. Names in lower case: npm names are, and Go module paths are compared in lower case below,
# since GitHub serves a module without a go.mod of its own under any spelling of its path (docs/policy.md).
banned := {
	"npm": {
		"event-stream": "its 3.3.6 pulled in flatmap-stream, which stole wallets (2018); nothing needs it",
		"flatmap-stream": "malicious package (the event-stream incident, 2018)",
	},
	"gomod": {"github.com/satori/go.uuid": "unmaintained, predictable UUIDs (CVE-2021-3538); use github.com/google/uuid"},
}

deny contains msg if {
	reason := banned[input.dependency.type][lower(input.dependency.name)]
	msg := sprintf("%s dependency %q %s is banned: %s", [input.dependency.type, input.dependency.name, input.dependency.version, reason])
}

# A ban by name holds only if the name is the package's: ssf checks that a lock entry resolved from a registry's
# layout names the package it downloads, but an entry whose URL is anything else (a tarball on some server, a git
# URL) is called what the lock's author says, and gets a download_url qualifier in its purl. So npm packages come
# from the registry alone.
deny contains msg if {
	input.dependency.type == "npm"
	contains(input.dependency.purl, "?download_url=")
	msg := sprintf("npm package %q is not fetched from the registry (%s): only registry packages are allowed", [input.dependency.name, input.dependency.url])
}
