#!/bin/sh
# demo.sh: the main job end to end on the embedded default. Initialises a factory home in a temporary directory,
# imports a builder made from this machine's busybox and Go, builds examples/hello hermetically, verifies the
# result (with ssf, and with stock cosign when COSIGN names it; otherwise it says it skipped that check), then
# builds examples/uuid, whose third-party module ssf fetches and checks against go.sum before the build, shows its
# SBOM (verified by cosign too, when present), and prints where everything is.
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

step "ssf build examples/hello  (each task in a fresh runc container: no network, read-only root, an unprivileged uid of its own)"
"$SSF" build -f "$work/ssf.yaml" --source examples/hello --param greeting=hi --out "$work/out"

step "ssf verify the output hello against the provenance and the factory's public key"
"$SSF" keys public > "$work/provenance.pub"
"$SSF" verify "$work/out/hello" --bundle "$work/out/attestations/provenance.sigstore.json" --key "$work/provenance.pub"

if [ -n "$cosign_ok" ]; then
  step "stock cosign verifies the same bundle"
  echo '{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}' > "$work/trusted_root.json"
  "$COSIGN" verify-blob-attestation --bundle "$work/out/attestations/provenance.sigstore.json" \
    --key "$work/provenance.pub" --trusted-root "$work/trusted_root.json" --insecure-ignore-tlog \
    --type slsaprovenance1 "$work/out/hello"
else
  skip_cosign "verifying the provenance bundle"
fi

step "run the output: $work/out/hello hi"
"$work/out/hello" hi

step "ssf build --signer identity  (keyless: each task signs its own attestation with a 10-minute certificate of the factory's CA; every signature logged and timestamped)"
"$SSF" build --signer identity -f "$work/ssf.yaml" --source examples/hello --param greeting=hi --out "$work/keyless"
"$SSF" trust export --out "$work/factory_root.json"
"$SSF" verify "$work/keyless/hello" --bundle "$work/keyless/attestations/provenance.sigstore.json" \
  --trusted-root "$work/factory_root.json" \
  --certificate-identity spiffe://ssf.local/pipeline/hello --certificate-oidc-issuer https://ssf.local/issuer
if [ -n "$cosign_ok" ]; then
  step "stock cosign verifies the keyless provenance with every check on (chain, SCT, log entry, identity)"
  "$COSIGN" verify-blob-attestation --bundle "$work/keyless/attestations/provenance.sigstore.json" \
    --trusted-root "$work/factory_root.json" --certificate-identity spiffe://ssf.local/pipeline/hello \
    --certificate-oidc-issuer https://ssf.local/issuer --type slsaprovenance1 "$work/keyless/hello"
else
  skip_cosign "verifying the keyless provenance"
fi

step "ssf build examples/uuid  (its module is fetched by ssf, checked against go.sum, offered read-only at /deps)"
sed "s|go-builder@sha256:[0-9a-f]*|$ref|" examples/uuid/ssf.yaml > "$work/uuid.yaml"
"$SSF" build -f "$work/uuid.yaml" --source examples/uuid --out "$work/uuid"

step "ssf sbom  (made by ssf from the binary's build info, cross-checked against what was fetched, signed)"
"$SSF" sbom "$work/uuid/uuid"

if [ -n "$cosign_ok" ]; then
  step "stock cosign verifies the SBOM attestations (SPDX and CycloneDX)"
  "$COSIGN" verify-blob-attestation --bundle "$work/uuid/attestations/uuid.spdx.sigstore.json" \
    --key "$work/provenance.pub" --trusted-root "$work/trusted_root.json" --insecure-ignore-tlog \
    --type spdxjson "$work/uuid/uuid"
  "$COSIGN" verify-blob-attestation --bundle "$work/uuid/attestations/uuid.cdx.sigstore.json" \
    --key "$work/provenance.pub" --trusted-root "$work/trusted_root.json" --insecure-ignore-tlog \
    --type cyclonedx "$work/uuid/uuid"
else
  skip_cosign "verifying the SBOM attestations"
fi

step "where everything is"
cat <<INFO
factory home      $SSF_HOME   (config.yaml, keys/ (provenance key, CA, log, TSA), images/, cache/, log/, builds/)
pipeline          $work/ssf.yaml
outputs           $work/out/hello, $work/out/greeting.txt; $work/uuid/uuid, $work/uuid/uuid.txt
provenance        $work/out/attestations/provenance.sigstore.json, $work/uuid/attestations/provenance.sigstore.json
keyless           $work/keyless/attestations/ (provenance and <task>.task.sigstore.json), trust $work/factory_root.json
SBOMs             $work/uuid/attestations/uuid.spdx.sigstore.json, uuid.cdx.sigstore.json (and one pair per output)
dependency cache  $SSF_HOME/cache/deps
task logs         $work/out/attestations/logs/
public key        $work/provenance.pub
Remove it all with: rm -rf $work
INFO
