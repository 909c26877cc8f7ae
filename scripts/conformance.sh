#!/bin/sh
# Runs the OCI distribution-spec conformance suite against `ssf registry serve`, with every API and data set
# enabled (pull, push, content discovery with referrers, content management), prints its summary and exits
# non-zero on any failure.
#
# The suite is built once, at a pinned version, in a scratch module and cached in .tools/. The registry runs
# from a temporary SSF_HOME on a free loopback port with --insecure-local (push without credentials, loopback
# only). Environment: SSF (the ssf binary, default bin/ssf), GO (default go).
set -eu
cd "$(dirname "$0")/.."
root=$PWD
SSF=${SSF:-$root/bin/ssf}
GO=${GO:-go}
SUITE_VERSION=v0.0.0-20260831232431-97274622c111
SUITE=$root/.tools/oci-conformance-$SUITE_VERSION

if [ ! -x "$SUITE" ]; then
	echo "building the OCI conformance suite $SUITE_VERSION into .tools/"
	build=$(mktemp -d)
	(
		cd "$build"
		printf 'module ssf.local/conformance\n\ngo 1.24\n' >go.mod
		GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" get -t "github.com/opencontainers/distribution-spec/conformance@$SUITE_VERSION"
		mkdir -p "$root/.tools"
		# This version of the suite is a main package; `go build` is its supported form (`go test -c` runs the same
		# code in a deprecated "legacy" mode).
		GOTOOLCHAIN=local "$GO" build -o "$SUITE.tmp" github.com/opencontainers/distribution-spec/conformance
	) || { rm -rf "$build"; exit 1; }
	rm -rf "$build"
	mv "$SUITE.tmp" "$SUITE"
fi

work=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

export SSF_HOME="$work/home"
"$SSF" init >/dev/null
# Port 0: the kernel picks a free port, and the registry logs the address once it is listening.
"$SSF" registry serve --addr 127.0.0.1:0 --insecure-local 2>"$work/serve.log" &
pid=$!
addr=
i=0
while [ $i -lt 100 ]; do
	addr=$(sed -n 's|.*url=http://\([0-9.:]*\)/v2/.*|\1|p' "$work/serve.log" | head -n 1)
	[ -n "$addr" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
	i=$((i + 1))
done
if [ -z "$addr" ]; then
	echo "conformance: ssf registry serve did not start:" >&2
	cat "$work/serve.log" >&2
	exit 1
fi

mkdir -p "$work/run"
status=0
(
	cd "$work/run"
	env OCI_REGISTRY="$addr" OCI_TLS=disabled \
		OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/crossmount \
		OCI_RESULTS_DIR="$work/results" OCI_LOG=warn \
		OCI_API_PULL=true OCI_API_PUSH=true \
		OCI_API_BLOBS_ATOMIC=true OCI_API_BLOBS_DELETE=true OCI_API_BLOBS_DIGEST_HEADER=true \
		OCI_API_BLOBS_MOUNT_ANONYMOUS=true OCI_API_BLOBS_UPLOAD_CANCEL=true \
		OCI_API_MANIFESTS_ATOMIC=true OCI_API_MANIFESTS_DELETE=true OCI_API_MANIFESTS_DIGEST_HEADER=true \
		OCI_API_MANIFESTS_TAG_PARAM=true \
		OCI_API_TAGS_ATOMIC=true OCI_API_TAGS_DELETE=true OCI_API_TAGS_LIST=true OCI_API_REFERRER=true \
		OCI_DATA_IMAGE=true OCI_DATA_INDEX=true OCI_DATA_INDEX_LIST=true OCI_DATA_ARTIFACT=true \
		OCI_DATA_SUBJECT=true OCI_DATA_SUBJECT_MISSING=true OCI_DATA_ARTIFACT_LIST=true OCI_DATA_SUBJECT_LIST=true \
		OCI_DATA_DATA_FIELD=true OCI_DATA_NONDISTRIBUTABLE=true OCI_DATA_CUSTOM_FIELDS=true \
		OCI_DATA_NO_LAYERS=true OCI_DATA_EMPTY_BLOB=true OCI_DATA_SHA512=true \
		OCI_DATA_SPARSE=false \
		"$SUITE" >"$work/out.txt" 2>&1
) || status=$?
# Data "sparse" (manifests naming blobs that were never pushed) stays off: ssf rejects such manifests with
# MANIFEST_BLOB_UNKNOWN on purpose.

# The suite's summary; on failure also its first failures (it logs them before the summary) and the full
# results (report.html, results.yaml, junit.xml) kept in a directory that outlives this script.
if [ "$status" -ne 0 ]; then
	grep 'msg="failed test"' "$work/out.txt" | head -n 100 || true
fi
sed -n '/^OCI Conformance Result/,$p' "$work/out.txt"
if [ "$status" -ne 0 ] && [ -d "$work/results" ]; then
	kept=$(mktemp -d "${TMPDIR:-/tmp}/ssf-conformance.XXXXXX")
	cp -r "$work/results/." "$kept/"
	echo "conformance: full results in $kept" >&2
fi
if [ ! -s "$work/results/results.yaml" ]; then
	echo "conformance: the suite wrote no results (configuration or start-up failure)" >&2
	status=1
fi
if [ "$status" -ne 0 ]; then
	echo "conformance: FAILED (registry log follows)" >&2
	tail -n 50 "$work/serve.log" >&2
	exit 1
fi
echo "conformance: passed"
