#!/usr/bin/env bash
# bench-registry.sh: push and pull throughput of `ssf registry serve` against Debian's docker-registry
# (distribution 2.8) and distribution v3.1.2 (the registry most public registries run) in the same run, one
# core's SHA-256 rate (the limit of a registry that verifies what it stores), and the registries' peak RSS
# while a 1 GiB blob is pushed. Prints a Markdown table for the README, and a "GOAL MISSED: ..." line for each
# goal not met. The goals: at least as fast as distribution 2.8 on every row; the 1 GiB push at least 1.5x
# distribution v3.1.2 and at least 0.6x the SHA-256 rate measured in the same run; ssf's peak RSS under
# 100 MiB. It is a measurement: it exits 0 when the goals are missed, and non-zero only when something fails.
#
# The registries run from temporary directories on free 127.0.0.1 ports: ssf with --insecure-local (push
# without credentials, loopback only), distribution with no auth, filesystem storage and the in-memory blob
# descriptor cache of Debian's shipped config. Each logs every request, as it does by default. ssf fsyncs a
# blob (and its upload state) before acknowledging it; distribution fsyncs nothing, which favours it on pushes.
# distribution v3.1.2 is built once with `go install` into .tools/distribution-v3.1.2/ (a few minutes).
#
# The client is internal/registry/benchclient, built here. It pushes each blob as common clients do (crane /
# ggcr, docker): POST to open a session, one streamed (chunked) PATCH with the content, PUT ?digest= to commit.
# A Go client rather than curl, so that 1,000 blobs measure the registries, not 3,000 process start-ups.
#
#   a. one 1 GiB blob of random data: push, then pull (GET, the bytes counted and dropped). Pushes: median of
#      BENCH_RUNS runs, ssf and distribution alternating; before each push the blob pushed by the previous run
#      is removed from the registry's storage, so every push stores new bytes, and each run starts after a sync.
#      Pulls: median of 2 x BENCH_RUNS + 1 runs (each takes well under a second), served from the page cache
#      (the blob was just written). The client reads 32 KiB at a time, as io.Copy does in Go clients. Client
#      and registries share the CPUs; the registry CPU time printed with each figure is the registry's own cost.
#   b. 1,000 distinct random 4 KiB blobs, 8 requests in flight: push all, then pull all (each verified against
#      its digest). Median of BENCH_RUNS runs, each with fresh blobs in a new repository.
#   c. peak RSS (VmHWM) of each registry process during the 1 GiB pushes: the peak is reset before each push
#      (echo 5 > /proc/PID/clear_refs, which needs root or the same user) and read after it.
#   d. one core's SHA-256 rate: benchclient hashes BENCH_BIG_MIB MiB from memory with Go's crypto/sha256, once
#      before each round of pushes; the median is the figure.
#
# Environment: SSF (default bin/ssf), DOCKER_REGISTRY (default /usr/bin/docker-registry), DIST3_REGISTRY
# (default .tools/distribution-v3.1.2/registry, built when missing), GO (default go),
# BENCH_RUNS (default 3), BENCH_BIG_MIB (default 1024), BENCH_SMALL_N (default 1000), BENCH_SMALL_KIB
# (default 4), BENCH_PARALLEL (default 8); BENCH_KEEP_LOGS=DIR copies the registries' logs (ssf.log,
# dist.log, dist3.log) to DIR at the end. Takes about two minutes on 2 CPUs; every step has a time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
SSF=${SSF:-$root/bin/ssf}
DOCKER_REGISTRY=${DOCKER_REGISTRY:-/usr/bin/docker-registry}
DIST3_VERSION=v3.1.2
DIST3_REGISTRY=${DIST3_REGISTRY:-$root/.tools/distribution-$DIST3_VERSION/registry}
GO=${GO:-go}
RUNS=${BENCH_RUNS:-3}
BIG_MIB=${BENCH_BIG_MIB:-1024}
SMALL_N=${BENCH_SMALL_N:-1000}
SMALL_KIB=${BENCH_SMALL_KIB:-4}
PAR=${BENCH_PARALLEL:-8}
STEP_LIMIT=180 # seconds any one client step may take before the benchmark gives up
RSS_GOAL_MIB=100
DIST3_GOAL=1.5 # the 1 GiB push, ssf over distribution v3.1.2
SHA_GOAL=0.6   # the 1 GiB push, ssf over one core's SHA-256 rate
REGS="ssf dist dist3"

BIG=$((BIG_MIB * 1048576))
SMALL=$((SMALL_KIB * 1024))

die() { echo "bench-registry.sh: $*" >&2; exit 1; }
for t in "$SSF" "$DOCKER_REGISTRY"; do
  [ -x "$t" ] || die "$t is missing (make build; apt-get install docker-registry)"
done
command -v "$GO" >/dev/null || die "$GO is missing"
if [ ! -x "$DIST3_REGISTRY" ]; then
  echo "building distribution $DIST3_VERSION into $(dirname "$DIST3_REGISTRY") (a few minutes, once)"
  GOBIN=$(dirname "$DIST3_REGISTRY") GOTOOLCHAIN=local GOFLAGS=-mod=mod \
    "$GO" install "github.com/distribution/distribution/v3/cmd/registry@$DIST3_VERSION" || die "building distribution $DIST3_VERSION failed"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ssf-bench-registry.XXXXXX")
ssf_pid=""
dist_pid=""
dist3_pid=""
stop() { # stop PID: end a server this script started, and reap it.
  if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
cleanup() {
  stop "$ssf_pid"
  stop "$dist_pid"
  stop "$dist3_pid"
  if [ -n "${BENCH_KEEP_LOGS:-}" ]; then
    mkdir -p "$BENCH_KEEP_LOGS" && cp "$work"/*.log "$BENCH_KEEP_LOGS/" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The space needed: the 1 GiB input, a stored copy per registry and an upload in flight.
need_kib=$(((BIG / 1024) * 5 + 262144))
free_kib=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
[ "$free_kib" -ge "$need_kib" ] || die "$work has $((free_kib / 1024)) MiB free; the benchmark needs $((need_kib / 1024)) MiB"

calc() { awk "BEGIN { print $1 }"; }
# median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# field NAME TEXT: the number after NAME on benchclient's output line "NAME SECONDS".
field() { printf '%s\n' "$2" | awk -v n="$1" '$1 == n { print $2 }'; }

printf '== machine\n'
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
cat <<INFO
date         $(date -u +%Y-%m-%dT%H:%M:%SZ)
cpus         $(nproc) ($cpu_model)
memory       $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
kernel       $(uname -sr)
file system  $(df -PT "$work" | awk 'NR == 2 { print $2 " on " $1 }') ($work)
ssf          $("$SSF" version 2>/dev/null | head -n 1)
distribution $("$DOCKER_REGISTRY" --version 2>/dev/null | head -n 1)
distribution $("$DIST3_REGISTRY" --version 2>/dev/null | head -n 1)
go           $("$GO" version)
load         $(cut -d ' ' -f 1-3 /proc/loadavg) (1, 5, 15 min; other work on the machine skews every figure)
INFO

printf '\n== setting up\n'
GOTOOLCHAIN=local "$GO" build -o "$work/benchclient" ./internal/registry/benchclient
client() { timeout --foreground "$STEP_LIMIT" "$work/benchclient" "$@"; }

# wait_ready NAME PID URL: wait up to 10 s for the registry's /v2/ to answer 200.
wait_ready() {
  local i
  for i in $(seq 100); do
    kill -0 "$2" 2>/dev/null || { tail -n 20 "$work/$1.log" >&2; die "$1 exited during start-up"; }
    "$work/benchclient" ping "$3" 2>/dev/null && return 0
    sleep 0.1
  done
  tail -n 20 "$work/$1.log" >&2
  "$work/benchclient" ping "$3" || true
  die "$1 did not answer on $3/v2/ within 10 s"
}

ssf_port=$(client freeport)
mkdir -p "$work/ssf-home"
SSF_HOME="$work/ssf-home" "$SSF" init >/dev/null
SSF_HOME="$work/ssf-home" "$SSF" registry serve --addr "127.0.0.1:$ssf_port" --insecure-local 2>"$work/ssf.log" &
ssf_pid=$!
ssf_url="http://127.0.0.1:$ssf_port"

# dist_config NAME PORT: the same configuration for both distribution versions.
dist_config() {
  mkdir -p "$work/$1-data"
  cat >"$work/$1.yml" <<CONFIG
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $work/$1-data
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$2
  secret: $(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
CONFIG
}
dist_port=$(client freeport)
dist_config dist "$dist_port"
"$DOCKER_REGISTRY" serve "$work/dist.yml" 2>"$work/dist.log" >&2 &
dist_pid=$!
dist_url="http://127.0.0.1:$dist_port"
dist3_port=$(client freeport)
dist_config dist3 "$dist3_port"
# v3 exports OpenTelemetry traces to localhost:4318 by default; off, as 2.8 has none.
OTEL_TRACES_EXPORTER=none OTEL_SDK_DISABLED=true "$DIST3_REGISTRY" serve "$work/dist3.yml" 2>"$work/dist3.log" >&2 &
dist3_pid=$!
dist3_url="http://127.0.0.1:$dist3_port"

wait_ready ssf "$ssf_pid" "$ssf_url"
wait_ready dist "$dist_pid" "$dist_url"
wait_ready dist3 "$dist3_pid" "$dist3_url"
echo "ssf registry serve:  $ssf_url (pid $ssf_pid, $(cat "/proc/$ssf_pid/comm"), RSS at rest $(($(rss_kib "$ssf_pid") / 1024)) MiB)"
echo "docker-registry:     $dist_url (pid $dist_pid, $(cat "/proc/$dist_pid/comm"), RSS at rest $(($(rss_kib "$dist_pid") / 1024)) MiB)"
echo "distribution v3:     $dist3_url (pid $dist3_pid, $(cat "/proc/$dist3_pid/comm"), RSS at rest $(($(rss_kib "$dist3_pid") / 1024)) MiB)"

echo "writing $BIG_MIB MiB of random data"
head -c "$BIG" /dev/urandom >"$work/big"
big_digest="sha256:$(sha256sum "$work/big" | cut -d ' ' -f 1)"

reset_hwm=yes
for p in "$ssf_pid" "$dist_pid" "$dist3_pid"; do
  echo 5 >"/proc/$p/clear_refs" 2>/dev/null || reset_hwm=no
done
[ "$reset_hwm" = yes ] || echo "cannot reset the peak RSS (/proc/PID/clear_refs): the peak is since start-up"

# stored_blob REG: where REG keeps the big blob's bytes.
stored_blob() {
  local hex=${big_digest#sha256:}
  case $1 in
    ssf) echo "$work/ssf-home/registry/blobs/sha256/$hex" ;;
    dist | dist3) echo "$work/$1-data/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data" ;;
  esac
}
url_of() { case $1 in ssf) echo "$ssf_url" ;; dist) echo "$dist_url" ;; dist3) echo "$dist3_url" ;; esac; }
pid_of() { case $1 in ssf) echo "$ssf_pid" ;; dist) echo "$dist_pid" ;; dist3) echo "$dist3_pid" ;; esac; }

HZ=$(getconf CLK_TCK)
# cpu_ticks PID: the user and system CPU time the process has used, in clock ticks (fields 14 and 15 of stat,
# counted after the command name, which ends with the last ")").
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

declare -A times cpus peak
sha_times=""
for r in $REGS; do
  for k in bigpush bigpull smallpush smallpull; do times[$r.$k]=""; cpus[$r.$k]=""; done
  peak[$r]=0
done
# measure REG KEY VERB BENCHCLIENT-ARGS...: one timed client run against REG; records the client's time (its
# output line VERB SECONDS) and the CPU time the registry process spent meanwhile, and leaves them in t and c.
measure() {
  local r=$1 key=$2 verb=$3 pid c0 c1 out
  shift 3
  pid=$(pid_of "$r")
  c0=$(cpu_ticks "$pid")
  out=$(client "$@")
  c1=$(cpu_ticks "$pid")
  t=$(field "$verb" "$out")
  [ -n "$t" ] || die "benchclient $1 printed no time: $out"
  c=$(calc "($c1 - $c0) / $HZ")
  times[$r.$key]="${times[$r.$key]} $t"
  cpus[$r.$key]="${cpus[$r.$key]} $c"
}

printf '\n== a. one %s MiB blob: push (POST, streamed PATCH, PUT), %s runs\n' "$BIG_MIB" "$RUNS"
for i in $(seq "$RUNS"); do
  out=$(client sha256 "$BIG_MIB")
  t=$(field sha256 "$out")
  [ -n "$t" ] || die "benchclient sha256 printed no time: $out"
  sha_times="$sha_times $t"
  printf 'run %s sha256 (one core, from memory) %6.3f s %6.0f MB/s\n' "$i" "$t" "$(calc "$BIG / 1e6 / $t")"
  for r in $REGS; do
    pid=$(pid_of "$r")
    rm -f "$(stored_blob "$r")"
    sync
    [ "$reset_hwm" = no ] || echo 5 >"/proc/$pid/clear_refs"
    measure "$r" bigpush push push-file "$(url_of "$r")" bench/big "$work/big" "$big_digest"
    hwm=$(hwm_kib "$pid")
    [ "$hwm" -le "${peak[$r]}" ] || peak[$r]=$hwm
    [ -s "$(stored_blob "$r")" ] || die "$r did not store the blob at $(stored_blob "$r")"
    printf 'run %s %-5s push %6.3f s %6.0f MB/s  registry CPU %5.2f s  peak RSS %4.0f MiB\n' "$i" "$r" "$t" \
      "$(calc "$BIG / 1e6 / $t")" "$c" "$(calc "$hwm / 1024")"
  done
done

# A pull from the page cache takes well under a second, so it is run more often than a push.
PULL_RUNS=$((2 * RUNS + 1))
printf '\n== a. the same blob: pull (GET, bytes counted and dropped), %s runs\n' "$PULL_RUNS"
sync
for i in $(seq "$PULL_RUNS"); do
  for r in $REGS; do
    measure "$r" bigpull pull pull "$(url_of "$r")" bench/big "$big_digest" "$BIG"
    printf 'run %s %-5s pull %6.3f s %6.0f MB/s  registry CPU %5.2f s\n' "$i" "$r" "$t" "$(calc "$BIG / 1e6 / $t")" "$c"
  done
done
rm -f "$work/big"

printf '\n== b. %s blobs of %s KiB, %s in flight: push all, then pull all (each checked), %s runs\n' \
  "$SMALL_N" "$SMALL_KIB" "$PAR" "$RUNS"
for i in $(seq "$RUNS"); do
  for r in $REGS; do
    # The same blobs go to both registries in run i (seed run-i), and new ones in every run.
    sync
    measure "$r" smallpush push small-push "$(url_of "$r")" "bench/small$i" "$SMALL_N" "$SMALL" "$PAR" "run-$i"
    printf 'run %s %-5s push %6.3f s %6.0f blobs/s  registry CPU %5.2f s' "$i" "$r" "$t" "$(calc "$SMALL_N / $t")" "$c"
    measure "$r" smallpull pull small-pull "$(url_of "$r")" "bench/small$i" "$SMALL_N" "$SMALL" "$PAR" "run-$i"
    printf '   pull %6.3f s %6.0f blobs/s  registry CPU %5.2f s\n' "$t" "$(calc "$SMALL_N / $t")" "$c"
  done
done

for r in $REGS; do
  kill -0 "$(pid_of "$r")" 2>/dev/null || die "$r exited during the benchmark"
  if grep -qi 'level=error' "$work/$r.log"; then
    echo "$r logged errors:" >&2
    { grep -i 'level=error' "$work/$r.log" || true; } | head -n 5 >&2 || true
  fi
done

# Throughput from the medians; the ratio is ssf's throughput over distribution's (at least 1: as fast or faster).
declare -A rate cpu
for r in $REGS; do
  for k in bigpush bigpull smallpush smallpull; do
    # shellcheck disable=SC2086 # the list of CPU times is split on purpose
    cpu[$r.$k]=$(median ${cpus[$r.$k]})
  done
  # shellcheck disable=SC2086 # the lists of times are split on purpose
  {
    rate[$r.bigpush]=$(calc "$BIG / 1e6 / $(median ${times[$r.bigpush]})")
    rate[$r.bigpull]=$(calc "$BIG / 1e6 / $(median ${times[$r.bigpull]})")
    rate[$r.smallpush]=$(calc "$SMALL_N / $(median ${times[$r.smallpush]})")
    rate[$r.smallpull]=$(calc "$SMALL_N / $(median ${times[$r.smallpull]})")
  }
done

missed=()
row() { # row KEY LABEL UNIT
  local s=${rate[ssf.$1]} d=${rate[dist.$1]} d3=${rate[dist3.$1]} ratio ratio3
  ratio=$(calc "$s / $d")
  ratio3=$(calc "$s / $d3")
  printf '| %s | %.0f %s | %.0f %s | %.0f %s | %.2f | %.2f | %.2f s / %.2f s / %.2f s |\n' "$2" "$s" "$3" "$d" "$3" "$d3" "$3" \
    "$ratio" "$ratio3" "${cpu[ssf.$1]}" "${cpu[dist.$1]}" "${cpu[dist3.$1]}"
  if [ "$(calc "($ratio >= 1) ? 1 : 0")" != 1 ]; then
    missed+=("$(printf '%s: ssf %.0f %s is %.2f x distribution 2.8 (%.0f %s); goal: at least as fast' "$2" "$s" "$3" "$ratio" "$d" "$3")")
  fi
}
peak_note="reset before each push"
[ "$reset_hwm" = yes ] || peak_note="since start-up"
ssf_peak_mib=$(calc "${peak[ssf]} / 1024")
dist_peak_mib=$(calc "${peak[dist]} / 1024")
dist3_peak_mib=$(calc "${peak[dist3]} / 1024")
# shellcheck disable=SC2086 # the list of times is split on purpose
sha_rate=$(calc "$BIG / 1e6 / $(median $sha_times)")
push_vs_dist3=$(calc "${rate[ssf.bigpush]} / ${rate[dist3.bigpush]}")
push_vs_sha=$(calc "${rate[ssf.bigpush]} / $sha_rate")

printf '\n== summary (Markdown)\n\n'
cat <<HEAD
Measured $(date -u +%Y-%m-%d) on $(nproc) CPUs ($cpu_model), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr), $(df -PT "$work" | awk 'NR == 2 { print $2 }'); ssf $("$SSF" version 2>/dev/null | head -n 1 | awk '{ print $NF }') against Debian's $("$DOCKER_REGISTRY" --version 2>/dev/null | awk '{ print $2, $3 }') and distribution $DIST3_VERSION. Medians of $RUNS runs ($PULL_RUNS for the $BIG_MIB MiB pull); client: internal/registry/benchclient (POST, one streamed PATCH, PUT per blob), on the same machine.

| operation | ssf | distribution 2.8 | distribution $DIST3_VERSION | ssf / 2.8 | ssf / $DIST3_VERSION | registry CPU time (ssf / 2.8 / $DIST3_VERSION) |
|---|---|---|---|---|---|---|
HEAD
row bigpush "push one $BIG_MIB MiB blob" "MB/s"
row bigpull "pull one $BIG_MIB MiB blob (page cache)" "MB/s"
row smallpush "push $SMALL_N blobs of $SMALL_KIB KiB, $PAR in flight" "blobs/s"
row smallpull "pull $SMALL_N blobs of $SMALL_KIB KiB, $PAR in flight" "blobs/s"
printf '| peak RSS during the %s MiB push (%s) | %.0f MiB | %.0f MiB | %.0f MiB | goal for ssf: under %s MiB | | |\n' \
  "$BIG_MIB" "$peak_note" "$ssf_peak_mib" "$dist_peak_mib" "$dist3_peak_mib" "$RSS_GOAL_MIB"
echo
printf 'One core'"'"'s SHA-256 rate (Go crypto/sha256, from memory): %.0f MB/s. The %s MiB push runs at %.2fx distribution %s (goal: %s) and %.2fx the SHA-256 rate (goal: %s).\n' \
  "$sha_rate" "$BIG_MIB" "$push_vs_dist3" "$DIST3_VERSION" "$DIST3_GOAL" "$push_vs_sha" "$SHA_GOAL"
echo
echo "Load average at the end: $(cut -d ' ' -f 1-3 /proc/loadavg)."
echo

if [ "$(calc "($ssf_peak_mib < $RSS_GOAL_MIB) ? 1 : 0")" != 1 ]; then
  missed+=("$(printf 'peak RSS of ssf during the %s MiB push is %.0f MiB; goal: under %s MiB' "$BIG_MIB" "$ssf_peak_mib" "$RSS_GOAL_MIB")")
fi
if [ "$(calc "($push_vs_dist3 >= $DIST3_GOAL) ? 1 : 0")" != 1 ]; then
  missed+=("$(printf 'the %s MiB push is %.2fx distribution %s; goal: at least %s' "$BIG_MIB" "$push_vs_dist3" "$DIST3_VERSION" "$DIST3_GOAL")")
fi
if [ "$(calc "($push_vs_sha >= $SHA_GOAL) ? 1 : 0")" != 1 ]; then
  missed+=("$(printf 'the %s MiB push is %.2fx one core'"'"'s SHA-256 rate (%.0f MB/s); goal: at least %s' "$BIG_MIB" "$push_vs_sha" "$sha_rate" "$SHA_GOAL")")
fi
if [ "${#missed[@]}" -eq 0 ]; then
  echo "all goals met: at least as fast as distribution 2.8 on every row, the push at least ${DIST3_GOAL}x distribution $DIST3_VERSION and ${SHA_GOAL}x the SHA-256 rate, peak RSS under $RSS_GOAL_MIB MiB"
else
  for m in "${missed[@]}"; do echo "GOAL MISSED: $m"; done
fi
