# The team's rule at ssf.build (beside the default rules of build.rego): only pipelines signed by a key the team
# trusts are built. docs/policy.md, "Signed pipelines", says what a signature vouches for.
package ssf.build

# The fingerprints of the keys allowed to sign pipelines: `ssf pipeline fingerprint KEY.pem` prints one (it also
# takes the PEM public key, so a signer need not hand over the private key). Data files (.json, .yaml) are refused
# in a policy set, so the list lives here, in Rego, where a reviewer reads it. To rotate a key, add the new one,
# sign the pipelines again, then remove the old one: a signature never expires, so removing the key is what
# retires every file it signed.
trusted_signers := {
	"sha256:875a69472f169115ef1a463dfd8ef816c49c3cf9caeafc80ffb2d392138f72fd", # release key of the platform team (replace with yours)
}

deny contains msg if {
	count({s | some s in input.pipeline.signers; s in trusted_signers}) == 0
	msg := sprintf("pipeline %q is not signed by a trusted key (signed by %v; trusted: %v): sign it with `ssf pipeline sign %s --key KEY.pem`", [input.pipeline.path, input.pipeline.signers, sort(trusted_signers), input.pipeline.path])
}
