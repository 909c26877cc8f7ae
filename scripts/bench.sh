#!/bin/sh
# bench.sh: the numbers behind the README's performance section. Compares
#   a. `ssf build` of examples/hello with the same commands run directly on the host,
#   b. what one task costs in container handling with a bare `runc run` of the same container,
#   c. ssf's output hashing with `openssl dgst -sha256`,
# and prints a Markdown table to paste into the README. Needs root for a and b (the runc sandbox); `make bench`
# builds bin/ssf first. BENCH_RUNS sets how many timed runs of a (default 3).
set -eu
cd "$(dirname "$0")/.."
repo=$PWD
SSF=${SSF:-$repo/bin/ssf}
N=${BENCH_RUNS:-3}
SIZE=268435456 # 256 MiB, as in internal/factory's hashing benchmarks

work=$(mktemp -d "${TMPDIR:-/tmp}/ssf-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
# secs START END: END-START in seconds.
secs() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.3f", e - s }'; }
# median and least of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
least() { printf '%s\n' "$@" | sort -g | head -n 1; }
# calc EXPR: evaluate an awk expression.
calc() { awk "BEGIN { print $1 }"; }
# yesno CONDITION: yes or no as an awk condition holds (in parentheses: a bare > in print would redirect).
yesno() { if [ "$(calc "(($1) ? 1 : 0)")" = 1 ]; then echo yes; else echo no; fi; }
# benchfield FILE NAME UNIT: the value before UNIT on the result line of benchmark NAME in go test output.
benchfield() { awk -v n="$2" -v u="$3" '$1 ~ "^Benchmark" n "(-[0-9]+)?$" { for (i = 2; i < NF; i++) if ($(i + 1) == u) print $i }' "$1"; }

# benchfailed FILE: stop when go test output shows a failure (a skipped benchmark is not one).
benchfailed() {
  if grep -q -e '^FAIL' -e '^--- FAIL' -e '^panic:' "$1"; then
    echo "bench.sh: a benchmark failed (output above)" >&2
    exit 1
  fi
}

root=no
[ "$(id -u)" = 0 ] && root=yes
sha_ni=no
grep -qw sha_ni /proc/cpuinfo && sha_ni=yes

step "machine"
cat <<INFO
date        $(date -u +%Y-%m-%dT%H:%M:%SZ)
cpus        $(nproc)
cpu model   $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
sha-ni      $sha_ni (Go's crypto/sha256 and OpenSSL both use the SHA extensions when the CPU has them)
memory      $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
kernel      $(uname -sr)
go          $(go version)
runc        $(runc --version 2>/dev/null | head -n 1 || echo "not installed")
openssl     $(openssl version 2>/dev/null || echo "not installed")
load        $(cut -d ' ' -f 1-3 /proc/loadavg) (1, 5, 15 min; anything else running skews every figure below)
INFO

# The test binaries are built once, so compiling them is not part of anything timed.
step "compiling the benchmark binaries"
go test -c -o "$work/sandbox.test" ./internal/sandbox/
go test -c -o "$work/factory.test" ./internal/factory/

# ---------------------------------------------------------------------------------------------------------------
build_row="| \`ssf build\` examples/hello (median of $N) | skipped: needs root | | | under 1 s + 10 % | — |"
if [ "$root" = yes ]; then
  step "a. ssf build of examples/hello against the same commands on the host (set up as in scripts/demo.sh)"
  export SSF_HOME="$work/home"
  "$SSF" init >/dev/null
  examples/builder/mkrootfs.sh "$work/rootfs" >/dev/null
  ref=$("$SSF" builder import "$work/rootfs" --name go-builder | tail -n 1)
  sed "s|go-builder@sha256:[0-9a-f]*|$ref|" examples/hello/ssf.yaml > "$work/ssf.yaml"
  echo "builder $ref"

  ssf_build() { # ssf_build NAME: one build into a fresh output directory; its log goes to $work/NAME.log.
    # --no-cache: the host side starts from an empty Go cache each time; d. below measures the warm cache.
    if ! "$SSF" build --no-cache -f "$work/ssf.yaml" --source examples/hello --param greeting=hi --out "$work/$1" \
      >"$work/$1.log" 2>&1; then
      cat "$work/$1.log" >&2
      echo "bench.sh: ssf build failed" >&2
      exit 1
    fi
  }
  # The first build also unpacks the builder into the factory's cache; every later build finds it there.
  s=$(now); ssf_build warm-up; e=$(now)
  echo "warm-up build (unpacks the builder): $(secs "$s" "$e") s"
  # The host runs what the pipeline's two steps run, with the same environment and a fresh, empty Go cache each
  # time, as each task gets a fresh /tmp (its $HOME) in the container.
  host_build() { # host_build NAME: the same commands in $work/NAME; the log goes to $work/NAME.log.
    d="$work/$1"
    if ! (
      cd "$d/src" &&
        export CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=off GOFLAGS='-trimpath -buildvcs=false' &&
        export HOME="$d/home" GOCACHE="$d/home/.cache/go-build" GOPATH="$d/home/go" &&
        go version &&
        go build -o "$d/out/hello" . &&
        { "$d/out/hello" hi | tee "$d/out/greeting.txt"; } &&
        grep -q "from a hermetic build" "$d/out/greeting.txt"
    ) >"$d.log" 2>&1; then
      cat "$d.log" >&2
      echo "bench.sh: the host build failed" >&2
      exit 1
    fi
  }

  # The runs alternate, and each starts after a sync, so that neither side pays for the other's (or the builder
  # import's) writes being flushed to disk.
  ssf_times=""; host_times=""
  for i in $(seq "$N"); do
    sync
    s=$(now); ssf_build "ssf-$i"; e=$(now)
    t=$(secs "$s" "$e"); ssf_times="$ssf_times $t"
    printf 'run %s: ssf build %s s, ' "$i" "$t"

    mkdir -p "$work/host-$i/src" "$work/host-$i/out" "$work/host-$i/home"
    cp -R examples/hello/. "$work/host-$i/src/"
    sync
    s=$(now); host_build "host-$i"; e=$(now)
    t=$(secs "$s" "$e"); host_times="$host_times $t"
    echo "host $t s"
  done

  # shellcheck disable=SC2086 # word splitting of the lists of times is intended
  ssf_med=$(median $ssf_times)
  # shellcheck disable=SC2086
  host_med=$(median $host_times)
  over=$(calc "$ssf_med - $host_med")
  over_pct=$(calc "100 * ($ssf_med - $host_med) / $host_med")
  budget=$(calc "1 + 0.10 * $host_med")
  build_met=$(yesno "$over < $budget")
  printf 'median: ssf %.2f s, host %.2f s; overhead %.2f s (%.1f %%); budget 1 s + 10 %% = %.2f s: %s\n' \
    "$ssf_med" "$host_med" "$over" "$over_pct" "$budget" "$build_met"
  build_row=$(printf '| `ssf build` examples/hello (median of %s) | %.2f s | %.2f s (same commands on the host) | %+.2f s (%+.1f %%) | under 1 s + 10 %% (%.2f s) | %s |' \
    "$N" "$ssf_med" "$host_med" "$over" "$over_pct" "$budget" "$build_met")
fi

# ---------------------------------------------------------------------------------------------------------------
disk_row=""
step "b. container handling per task against a bare runc run of the same container"
(cd internal/sandbox && "$work/sandbox.test" -test.run '^$' -test.bench 'TaskContainer|BareRuncRun|TaskDisk' \
  -test.benchtime 20x) | tee "$work/sandbox.out"
benchfailed "$work/sandbox.out"
task_ns=$(benchfield "$work/sandbox.out" TaskContainer ns/op)
bare_ns=$(benchfield "$work/sandbox.out" BareRuncRun ns/op)
if [ -n "$task_ns" ] && [ -n "$bare_ns" ]; then
  task_ms=$(calc "$task_ns / 1e6")
  bare_ms=$(calc "$bare_ns / 1e6")
  diff_ms=$(calc "$task_ms - $bare_ms")
  ctr_met=$(yesno "$diff_ms <= 15")
  printf 'per task: ssf %.1f ms, runc run %.1f ms; difference %.1f ms (goal: within 15 ms): %s\n' \
    "$task_ms" "$bare_ms" "$diff_ms" "$ctr_met"
  ctr_row=$(printf '| container per task: `Start` + one step + `Close` (20 runs) | %.1f ms | %.1f ms (`runc run` of the same container) | %+.1f ms | within 15 ms | %s |' \
    "$task_ms" "$bare_ms" "$diff_ms" "$ctr_met")
  disk_ns=$(benchfield "$work/sandbox.out" TaskDisk ns/op)
  [ -z "$disk_ns" ] || disk_row=$(printf '| a task'"'"'s size-limited disk: mkfs, mount, unmount (informational) | %.1f ms | | | — | — |' "$(calc "$disk_ns / 1e6")")
else
  echo "the container benchmarks were skipped (they need root, runc and busybox-static)"
  ctr_row="| container per task | skipped: needs root, runc, busybox | | | within 15 ms | — |"
fi

# ---------------------------------------------------------------------------------------------------------------
step "c. hashing 256 MiB: ssf's code path against openssl dgst -sha256"
# Best of 3, as for openssl below: on a shared machine the best run is the one least disturbed.
(cd internal/factory && "$work/factory.test" -test.run '^$' -test.bench 'FileSHA256|CopyHashed' \
  -test.benchtime 5x -test.count 3) | tee "$work/factory.out"
benchfailed "$work/factory.out"
go_mbs=$(benchfield "$work/factory.out" FileSHA256 MB/s | sort -g | tail -n 1)
copy_mbs=$(benchfield "$work/factory.out" CopyHashed MB/s | sort -g | tail -n 1)
if [ -z "$go_mbs" ] || [ -z "$copy_mbs" ]; then
  echo "bench.sh: no result from the hashing benchmarks (output above)" >&2
  exit 1
fi
nosha_mbs=""; nosha_row=""
if [ "$sha_ni" = yes ]; then
  # What a CPU without the SHA extensions would see; the runtime's GODEBUG=cpu.sha=off turns them off in Go.
  (cd internal/factory && GODEBUG=cpu.sha=off "$work/factory.test" -test.run '^$' -test.bench 'FileSHA256' \
    -test.benchtime 3x -test.count 3) > "$work/factory-nosha.out" 2>&1 || true
  nosha_mbs=$(benchfield "$work/factory-nosha.out" FileSHA256 MB/s | sort -g | tail -n 1)
  [ -z "$nosha_mbs" ] || echo "Go without SHA-NI (GODEBUG=cpu.sha=off): $nosha_mbs MB/s"
fi

if command -v openssl >/dev/null; then
  f="$work/blob"
  head -c "$SIZE" /dev/urandom > "$f"
  cat "$f" > /dev/null # in the page cache, like the Go benchmark's file
  # openssl's start-up (about 4 ms) is taken off its times: the Go figures do not include starting a process.
  st=""; dg=""; cp_t=""; dg_nosha=""
  for _ in 1 2 3; do
    s=$(now); openssl dgst -sha256 /dev/null >/dev/null; e=$(now); st="$st $(secs "$s" "$e")"
  done
  for _ in 1 2 3; do
    s=$(now); openssl dgst -sha256 "$f" >/dev/null; e=$(now); dg="$dg $(secs "$s" "$e")"
  done
  if [ -n "$nosha_mbs" ]; then
    # Bit 29 of the second capability word is the SHA extensions; ~ masks it off.
    for _ in 1 2 3; do
      s=$(now); OPENSSL_ia32cap=":~0x20000000" openssl dgst -sha256 "$f" >/dev/null; e=$(now)
      dg_nosha="$dg_nosha $(secs "$s" "$e")"
    done
  fi
  for _ in 1 2 3; do
    sync
    s=$(now); cp "$f" "$f.copy" && openssl dgst -sha256 "$f.copy" >/dev/null; e=$(now); cp_t="$cp_t $(secs "$s" "$e")"
    rm -f "$f.copy"
  done
  # shellcheck disable=SC2086
  { st=$(least $st); dg=$(least $dg); cp_t=$(least $cp_t); }
  ossl_mbs=$(calc "$SIZE / 1e6 / ($dg - $st)")
  cp_mbs=$(calc "$SIZE / 1e6 / ($cp_t - $st)")
  printf 'openssl dgst -sha256: best of 3 %.3f s, start-up %.3f s: %.0f MB/s\n' "$dg" "$st" "$ossl_mbs"
  printf 'cp + openssl dgst -sha256: best of 3 %.3f s: %.0f MB/s\n' "$cp_t" "$cp_mbs"
  ratio=$(calc "100 * $go_mbs / $ossl_mbs")
  hash_met=$(yesno "$go_mbs >= 0.9 * $ossl_mbs")

  if [ -n "$dg_nosha" ]; then
    # shellcheck disable=SC2086
    dg_nosha=$(least $dg_nosha)
    ossl_nosha_mbs=$(calc "$SIZE / 1e6 / ($dg_nosha - $st)")
    printf 'without SHA-NI: Go %.0f MB/s, openssl %.0f MB/s (OPENSSL_ia32cap=:~0x20000000): %.1f %%\n' \
      "$nosha_mbs" "$ossl_nosha_mbs" "$(calc "100 * $nosha_mbs / $ossl_nosha_mbs")"
    nosha_row=$(printf '| hashing 256 MiB without SHA-NI (informational) | %.0f MB/s (`GODEBUG=cpu.sha=off`) | %.0f MB/s (`OPENSSL_ia32cap=:~0x20000000`) | %.1f %% of openssl | — | — |' \
      "$nosha_mbs" "$ossl_nosha_mbs" "$(calc "100 * $nosha_mbs / $ossl_nosha_mbs")")
  fi
  printf 'fileSHA256 %.0f MB/s = %.1f %% of openssl (goal: within 10 %%): %s\n' "$go_mbs" "$ratio" "$hash_met"
  hash_row=$(printf '| hashing 256 MiB, best of 3: `fileSHA256` | %.0f MB/s | %.0f MB/s (`openssl dgst -sha256`) | %.1f %% of openssl | within 10 %% | %s |' \
    "$go_mbs" "$ossl_mbs" "$ratio" "$hash_met")
  copy_row=$(printf '| copy and hash 256 MiB: `copyHashed` (informational) | %.0f MB/s | %.0f MB/s (`cp` then `openssl dgst`) | %.1f %% | — | — |' \
    "$copy_mbs" "$cp_mbs" "$(calc "100 * $copy_mbs / $cp_mbs")")
else
  echo "openssl not installed: no comparison (apt-get install openssl)"
  hash_row=$(printf '| hashing 256 MiB: `fileSHA256` | %.0f MB/s | openssl not installed | | within 10 %% | — |' "$go_mbs")
  copy_row=$(printf '| copy and hash 256 MiB: `copyHashed` (informational) | %.0f MB/s | | | — | — |' "$copy_mbs")
fi

# ---------------------------------------------------------------------------------------------------------------
rebuild_row="| second \`ssf build\` of examples/hello, Go cache warm | skipped: needs root, runc, busybox | | | floor + 2 × host | — |"
if [ "$root" = yes ]; then
  step "d. a second build of examples/hello with its Go cache warm (docs/caches.md), against a warm go build on the host"
  (cd internal/factory && "$work/factory.test" -test.run '^$' \
    -test.bench 'HelloRebuild/(ssf-warm-cache|ssf-floor|host-warm-go-build)' -test.benchtime 5x) | tee "$work/rebuild.out"
  benchfailed "$work/rebuild.out"
  warm_ns=$(benchfield "$work/rebuild.out" HelloRebuild/ssf-warm-cache ns/op)
  floor_ns=$(benchfield "$work/rebuild.out" HelloRebuild/ssf-floor ns/op)
  hostw_ns=$(benchfield "$work/rebuild.out" HelloRebuild/host-warm-go-build ns/op)
  if [ -n "$warm_ns" ] && [ -n "$floor_ns" ] && [ -n "$hostw_ns" ]; then
    warm_s=$(calc "$warm_ns / 1e9"); floor_s=$(calc "$floor_ns / 1e9"); hostw_s=$(calc "$hostw_ns / 1e9")
    goal_s=$(calc "$floor_s + 2 * $hostw_s")
    rebuild_met=$(yesno "$warm_s <= $goal_s")
    printf 'warm rebuild %.2f s; floor %.2f s + 2 × host warm go build %.2f s = %.2f s: %s\n' \
      "$warm_s" "$floor_s" "$hostw_s" "$goal_s" "$rebuild_met"
    rebuild_row=$(printf '| second `ssf build` of examples/hello, Go cache warm (5 runs) | %.2f s | %.2f s (warm `go build` on the host) + %.2f s (ssf floor: the same tasks doing nothing) | %+.2f s over the floor | floor + 2 × host (%.2f s) | %s |' \
      "$warm_s" "$hostw_s" "$floor_s" "$(calc "$warm_s - $floor_s")" "$goal_s" "$rebuild_met")
  fi
fi

# ---------------------------------------------------------------------------------------------------------------
# e. admission: /validate latency over HTTPS on loopback, 10 concurrent clients, against the embedded registry.
step "e. admission webhook latency (10 concurrent clients), warm and cold evidence cache (docs/admission.md)"
go test -c -o "$work/admission.test" ./internal/admission/
(cd internal/admission && "$work/admission.test" -test.run '^$' -test.bench 'AdmissionLatency/warm/users=10' \
  -test.benchtime 5000x && "$work/admission.test" -test.run '^$' -test.bench 'AdmissionLatency/cold/users=10' \
  -test.benchtime 300x) | tee "$work/admission.out"
benchfailed "$work/admission.out"
adm_rows=""
for c in warm:5 cold:50; do
  kind=${c%%:*}; goal=${c##*:}
  p50=$(benchfield "$work/admission.out" "AdmissionLatency/$kind/users=10" p50-ms)
  p99=$(benchfield "$work/admission.out" "AdmissionLatency/$kind/users=10" p99-ms)
  [ -n "$p99" ] || continue
  row=$(printf '| admission `/validate`, %s cache, 10 concurrent clients | p50 %.2f ms, p99 %.2f ms | Kyverno: ~100 ms p99 at 10 users | | p99 ≤ %s ms | %s |' \
    "$kind" "$p50" "$p99" "$goal" "$(yesno "$p99 <= $goal")")
  adm_rows="${adm_rows:+$adm_rows
}$row"
done

# ---------------------------------------------------------------------------------------------------------------
step "summary (Markdown)"
cat <<TABLE

Measured $(date -u +%Y-%m-%d) on $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), SHA-NI $sha_ni), $(uname -sr), $(go version | awk '{ print $3 }'), $(runc --version 2>/dev/null | head -n 1).

| benchmark | ssf | baseline | difference | goal | met |
|---|---|---|---|---|---|
$build_row
$rebuild_row
$ctr_row${disk_row:+
$disk_row}
$hash_row${nosha_row:+
$nosha_row}
$copy_row${adm_rows:+
$adm_rows}

Load average at the end: $(cut -d ' ' -f 1-3 /proc/loadavg).
TABLE
