#!/bin/sh
# Runs two versions of the OCI distribution-spec conformance suite against `ssf registry serve` and exits
# non-zero on any failure in either:
#   - the current suite (pinned below), with every API and data set enabled (pull, push, content discovery with
#     referrers, content management);
#   - the 2023 suite of the distribution-spec v1.1.0 era (a Ginkgo test binary), with all four workflows. Clients
#     and registries still test against it, so ssf must pass it too.
#
# Each suite is built once, at its pinned version, in a scratch module and cached in .tools/ under its version.
# Each runs against its own registry from a temporary SSF_HOME on a free loopback port with --insecure-local
# (push without credentials, loopback only). Environment: SSF (the ssf binary, default bin/ssf), GO (default go),
# SUITES (default "current 2023": which to run).
set -eu
cd "$(dirname "$0")/.."
root=$PWD
SSF=${SSF:-$root/bin/ssf}
GO=${GO:-go}
SUITES=${SUITES:-current 2023}
SUITE_VERSION=v0.0.0-20260831232431-97274622c111
SUITE=$root/.tools/oci-conformance-$SUITE_VERSION
SUITE2023_VERSION=v0.0.0-20231101194043-f2182352d4cc
SUITE2023=$root/.tools/oci-conformance-$SUITE2023_VERSION.test

# build_suite VERSION OUTPUT MODE: MODE "build" for a main package, "test" for a Ginkgo test binary.
build_suite() {
	[ -x "$2" ] && return 0
	echo "building the OCI conformance suite $1 into .tools/"
	build=$(mktemp -d)
	(
		cd "$build"
		printf 'module ssf.local/conformance\n\ngo 1.24\n' >go.mod
		GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" get -t "github.com/opencontainers/distribution-spec/conformance@$1"
		mkdir -p "$root/.tools"
		if [ "$3" = build ]; then
			# The current suite is a main package; `go build` is its supported form (`go test -c` runs the same
			# code in a deprecated "legacy" mode).
			GOTOOLCHAIN=local "$GO" build -o "$2.tmp" github.com/opencontainers/distribution-spec/conformance
		else
			GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" test -c -o "$2.tmp" github.com/opencontainers/distribution-spec/conformance
		fi
	) || { rm -rf "$build"; exit 1; }
	rm -rf "$build"
	mv "$2.tmp" "$2"
}

work=$(mktemp -d)
pid=
stop_registry() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	pid=
}
cleanup() {
	stop_registry
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

# start_registry DIR: a fresh SSF_HOME under DIR and a registry on a free port; sets addr and pid.
start_registry() {
	export SSF_HOME="$1/home"
	"$SSF" init >/dev/null
	# Port 0: the kernel picks a free port, and the registry logs the address once it is listening.
	"$SSF" registry serve --addr 127.0.0.1:0 --insecure-local 2>"$1/serve.log" &
	pid=$!
	addr=
	i=0
	while [ $i -lt 100 ]; do
		addr=$(sed -n 's|.*url=http://\([0-9.:]*\)/v2/.*|\1|p' "$1/serve.log" | head -n 1)
		[ -n "$addr" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
		i=$((i + 1))
	done
	if [ -z "$addr" ]; then
		echo "conformance: ssf registry serve did not start:" >&2
		cat "$1/serve.log" >&2
		exit 1
	fi
}

# keep DIR: copies a failed run's results into a directory that outlives this script.
keep() {
	[ -d "$1" ] || return 0
	kept=$(mktemp -d "${TMPDIR:-/tmp}/ssf-conformance.XXXXXX")
	cp -r "$1/." "$kept/"
	echo "conformance: full results in $kept" >&2
}

failed=
run_current() {
	build_suite "$SUITE_VERSION" "$SUITE" build
	w=$work/current
	mkdir -p "$w/run"
	start_registry "$w"
	status=0
	(
		cd "$w/run"
		env OCI_REGISTRY="$addr" OCI_TLS=disabled \
			OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/crossmount \
			OCI_RESULTS_DIR="$w/results" OCI_LOG=warn \
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
			"$SUITE" >"$w/out.txt" 2>&1
	) || status=$?
	# Data "sparse" (manifests naming blobs that were never pushed) stays off: ssf rejects such manifests with
	# MANIFEST_BLOB_UNKNOWN on purpose.
	stop_registry
	echo "== current suite ($SUITE_VERSION)"
	if [ "$status" -ne 0 ]; then
		grep 'msg="failed test"' "$w/out.txt" | head -n 100 || true
	fi
	sed -n '/^OCI Conformance Result/,$p' "$w/out.txt"
	if [ ! -s "$w/results/results.yaml" ]; then
		echo "conformance: the current suite wrote no results (configuration or start-up failure)" >&2
		status=1
	fi
	if [ "$status" -ne 0 ]; then
		keep "$w/results"
		echo "conformance: current suite FAILED (registry log follows)" >&2
		tail -n 50 "$w/serve.log" >&2
		failed="$failed current"
	fi
}

run_2023() {
	build_suite "$SUITE2023_VERSION" "$SUITE2023" test
	w=$work/2023
	mkdir -p "$w/run" "$w/results"
	start_registry "$w"
	status=0
	(
		cd "$w/run"
		env OCI_ROOT_URL="http://$addr" OCI_NAMESPACE=conformance/repo1 \
			OCI_CROSSMOUNT_NAMESPACE=conformance/crossmount \
			OCI_TEST_PULL=1 OCI_TEST_PUSH=1 OCI_TEST_CONTENT_DISCOVERY=1 OCI_TEST_CONTENT_MANAGEMENT=1 \
			OCI_HIDE_SKIPPED_WORKFLOWS=0 OCI_REPORT_DIR="$w/results" \
			"$SUITE2023" -ginkgo.no-color >"$w/out.txt" 2>&1
	) || status=$?
	stop_registry
	echo "== 2023 suite ($SUITE2023_VERSION)"
	# Ginkgo prints each failure in a "[FAIL]" block and a "Ran N of M Specs" summary.
	if [ "$status" -ne 0 ]; then
		grep -A 3 '\[FAIL\]' "$w/out.txt" | head -n 100 || true
	fi
	grep -E '^(Ran [0-9]+ of [0-9]+ Specs|SUCCESS!|FAIL!)' "$w/out.txt" || true
	if ! grep -q '^Ran [0-9]* of [0-9]* Specs' "$w/out.txt"; then
		echo "conformance: the 2023 suite did not run (configuration or start-up failure):" >&2
		tail -n 20 "$w/out.txt" >&2
		status=1
	fi
	if [ "$status" -ne 0 ]; then
		keep "$w/results"
		echo "conformance: 2023 suite FAILED (registry log follows)" >&2
		tail -n 50 "$w/serve.log" >&2
		failed="$failed 2023"
	fi
}

for s in $SUITES; do
	case $s in
	current) run_current ;;
	2023) run_2023 ;;
	*) echo "conformance: unknown suite $s in SUITES (want current and/or 2023)" >&2; exit 2 ;;
	esac
done
if [ -n "$failed" ]; then
	echo "conformance: FAILED:$failed" >&2
	exit 1
fi
echo "conformance: passed ($SUITES)"
