# ssf.deps: decided once per dependency, before it is fetched. docs/policy.md documents input.
package ssf.deps

# A file must not come over plain http: its sha256 pin protects the bytes, but the URL (and so which server
# learns what you build) travels in the clear. Use https. A server on the factory's own loopback address is
# exempt: that traffic never leaves the host (ssf allows plain http to loopback only, everywhere).
deny contains msg if {
	input.dependency.type == "file"
	startswith(lower(input.dependency.url), "http://")
	not loopback(lower(input.dependency.url))
	msg := sprintf("dependency %q is fetched over plain http (%s); use https", [input.dependency.name, input.dependency.url])
}

# Every dependency must be pinned.
deny contains msg if {
	input.dependency.digest == ""
	msg := sprintf("dependency %q has no pinned digest", [input.dependency.name])
}

loopback(url) if regex.match(`^http://(localhost|127\.[0-9]+\.[0-9]+\.[0-9]+|\[::1\])(:[0-9]+)?(/|$)`, url)
