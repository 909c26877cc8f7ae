#!/bin/sh
# demo.sh: the main job end to end on the embedded default. Initialises a factory home in a temporary directory,
# imports a builder made from this machine's busybox and Go, builds examples/hello hermetically, each task signing
# its own attestation and the run its provenance with short-lived certificates of the factory's CA (the default
# signer), verifies the result by identity (with ssf, and with stock cosign, every check on, when COSIGN names it;
# otherwise it says it skipped that check), writes a signed verification summary of it under the factory's policy
# (checked by cosign too), then builds examples/uuid, whose third-party module ssf fetches and
# checks against go.sum before the build, shows its SBOM (verified by cosign too, when present), builds hello once
# more with --signer key (the factory's provenance key) and verifies that with the key, and prints where
# everything is.
set -eu
cd "$(dirname "$0")/.."
SSF=${SSF:-bin/ssf}
if [ "$(id -u)" != 0 ]; then
  echo "demo.sh: ssf build needs root (it runs each task in a runc container it creates as root): run sudo make demo" >&2
  exit 2
fi
cosign_ok=
if [ -n "${COSIGN:-}" ] && [ -x "$COSIGN" ]; then
  cosign_ok=1
fi
skip_cosign() {
  step "SKIPPED: $1 with stock cosign (${COSIGN:-COSIGN is not set}${COSIGN:+ is not installed}; make tools installs it)"
}
work=$(mktemp -d "${TMPDIR:-/tmp}/ssf-demo.XXXXXX")
export SSF_HOME="$work/home"
step() { printf '\n== %s\n' "$*"; }

step "ssf init  (SSF_HOME=$SSF_HOME)"
"$SSF" init

step "make a builder root file system from busybox-static and this machine's Go, and import it"
examples/builder/mkrootfs.sh "$work/rootfs" >/dev/null
ref=$("$SSF" builder import "$work/rootfs" --name go-builder | tail -n 1)
echo "builder: $ref"
"$SSF" builder list

step "pin the builder by digest in the pipeline"
sed "s|go-builder@sha256:[0-9a-f]*|$ref|" examples/hello/ssf.yaml > "$work/ssf.yaml"
grep 'image:' "$work/ssf.yaml"

# Who signs: ssf init's defaults (config.yaml's trustDomain and issuer), as ssf verify and cosign take them.
id=spiffe://ssf.local/pipeline
issuer=https://ssf.local/issuer
verifier=spiffe://ssf.local/verifier

step "ssf build examples/hello  (each task in a fresh runc container: no network, read-only root, an unprivileged uid of its own; each task then signs its own attestation with a 10-minute certificate of the factory's CA, and the run signs the provenance; every signature logged and timestamped)"
"$SSF" build -f "$work/ssf.yaml" --source examples/hello --param greeting=hi --out "$work/out"

step "ssf verify the output hello against the provenance, signed by the pipeline's identity, and against the build task's own attestation"
"$SSF" verify "$work/out/hello" --bundle "$work/out/attestations/provenance.sigstore.json" \
  --certificate-identity "$id/hello" --certificate-oidc-issuer "$issuer"
"$SSF" verify "$work/out/hello" --bundle "$work/out/attestations/build.task.sigstore.json" \
  --certificate-identity "$id/hello/task/build" --certificate-oidc-issuer "$issuer"

step "ssf trust export  (the factory's CA, CT log, transparency log and TSA keys, as a Sigstore trusted root)"
"$SSF" trust export --out "$work/trusted_root.json"

if [ -n "$cosign_ok" ]; then
  step "stock cosign verifies the same provenance with every check on (chain, SCT, log entry, identity)"
  "$COSIGN" verify-blob-attestation --bundle "$work/out/attestations/provenance.sigstore.json" \
    --trusted-root "$work/trusted_root.json" --certificate-identity "$id/hello" \
    --certificate-oidc-issuer "$issuer" --type slsaprovenance1 "$work/out/hello"
else
  skip_cosign "verifying the provenance"
fi

step "ssf verify --policy --vsa  (every statement about hello: provenance, task attestations, SBOMs; the policy set's ssf.verify gate over them; a signed SLSA verification summary)"
"$SSF" verify "$work/out/hello" --policy "$SSF_HOME/policy" --vsa "$work/hello.vsa.json" \
  --certificate-identity-regexp "^$id/hello(/task/[^/]+)?\$" --certificate-oidc-issuer "$issuer"

if [ -n "$cosign_ok" ]; then
  step "stock cosign verifies the summary, signed by the factory's verifier identity $verifier"
  "$COSIGN" verify-blob-attestation --bundle "$work/hello.vsa.json" \
    --trusted-root "$work/trusted_root.json" --certificate-identity "$verifier" \
    --certificate-oidc-issuer "$issuer" --type https://slsa.dev/verification_summary/v1 "$work/out/hello"
else
  skip_cosign "verifying the verification summary"
fi

step "run the output: $work/out/hello hi"
"$work/out/hello" hi

step "ssf build examples/uuid  (its module is fetched by ssf, checked against go.sum, offered read-only at /deps)"
sed "s|go-builder@sha256:[0-9a-f]*|$ref|" examples/uuid/ssf.yaml > "$work/uuid.yaml"
"$SSF" build -f "$work/uuid.yaml" --source examples/uuid --out "$work/uuid"

step "ssf sbom  (made by ssf from the binary's build info, cross-checked against what was fetched, signed by the pipeline's identity)"
"$SSF" sbom "$work/uuid/uuid"

if [ -n "$cosign_ok" ]; then
  step "stock cosign verifies the SBOM attestations (SPDX and CycloneDX), every check on"
  for t in spdx:spdxjson cdx:cyclonedx; do
    "$COSIGN" verify-blob-attestation --bundle "$work/uuid/attestations/uuid.${t%%:*}.sigstore.json" \
      --trusted-root "$work/trusted_root.json" --certificate-identity "$id/uuid" \
      --certificate-oidc-issuer "$issuer" --type "${t#*:}" "$work/uuid/uuid"
  done
else
  skip_cosign "verifying the SBOM attestations"
fi

step "ssf build --signer key  (the alternative: the factory's long-lived provenance key signs; no task attestations, no log entries)"
"$SSF" build --signer key -f "$work/ssf.yaml" --source examples/hello --param greeting=hi --out "$work/keyed"
"$SSF" keys public > "$work/provenance.pub"
"$SSF" verify "$work/keyed/hello" --bundle "$work/keyed/attestations/provenance.sigstore.json" --key "$work/provenance.pub"

step "where everything is"
cat <<INFO
factory home      $SSF_HOME   (config.yaml, keys/ (CA, CT log, transparency log, TSA, node, provenance key), images/, cache/, log/, builds/)
pipeline          $work/ssf.yaml
outputs           $work/out/hello, $work/out/greeting.txt; $work/uuid/uuid, $work/uuid/uuid.txt
provenance        $work/out/attestations/provenance.sigstore.json, $work/uuid/attestations/provenance.sigstore.json (signed by $id/hello and $id/uuid)
task attestations $work/out/attestations/<task>.task.sigstore.json (each signed by $id/hello/task/<task>)
SBOMs             $work/uuid/attestations/uuid.spdx.sigstore.json, uuid.cdx.sigstore.json (and one pair per output)
verification      $work/hello.vsa.json (a SLSA verification summary of hello, signed by $verifier; policy $SSF_HOME/policy; a team's set: examples/policy)
trusted root      $work/trusted_root.json (for cosign --trusted-root); issuer $issuer
transparency log  $SSF_HOME/log (ssf log serve; ssf log verify audits it)
dependency cache  $SSF_HOME/cache/deps
task logs         $work/out/attestations/logs/
key-signed build  $work/keyed (--signer key), public key $work/provenance.pub
Remove it all with: rm -rf $work
INFO
