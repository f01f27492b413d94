#!/usr/bin/env bash
# Runs Hangar's cargo-fuzz targets (fuzz/, docs/fuzzing.md) one after the
# other, each for a bounded number of executions, within a total time
# budget, and writes a summary: target, executions, exec/s, findings.
#
#   scripts/fuzz.sh                      every target, 10,000,000 runs each
#   scripts/fuzz.sh message sse          only these
#   FUZZ_RUNS=100000 scripts/fuzz.sh     a quick pass
#
# Environment:
#   FUZZ_RUNS        executions per target (libFuzzer -runs), default 10000000
#   FUZZ_TOTAL_TIME  seconds for the whole run, default 21600 (6 h); each
#                    target gets what is left (-max_total_time), and targets
#                    not started in time are reported as skipped
#   FUZZ_SANITIZER   cargo fuzz -s: none (default; safe Rust, several times
#                    faster) or address
#   FUZZ_SUMMARY     where the summary goes, default fuzz/artifacts/summary.md
#   FUZZ_NICE        nice level, default 10 (the build box is shared)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and nightly features; on a
# stable toolchain RUSTC_BOOTSTRAP=1 enables them (set here). New corpus
# entries go to fuzz/corpus/TARGET (not committed), the committed seeds are
# read from fuzz/seeds/TARGET, a dictionary from fuzz/dict/TARGET.dict.
# Crashing inputs land in fuzz/artifacts/TARGET; reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -a TARGET fuzz/artifacts/TARGET/crash-…
# and turn it into a unit test in the crate concerned.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

runs=${FUZZ_RUNS:-10000000}
total=${FUZZ_TOTAL_TIME:-21600}
sanitizer=${FUZZ_SANITIZER:-none}
niceness=${FUZZ_NICE:-10}
summary=${FUZZ_SUMMARY:-artifacts/summary.md}
export RUSTC_BOOTSTRAP=1
# cargo fuzz builds into fuzz/target; a CARGO_TARGET_DIR meant for the
# workspace would mix instrumented and plain builds.
unset CARGO_TARGET_DIR

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is needed: cargo install cargo-fuzz" >&2
  exit 1
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

flags=(-s "$sanitizer" -a) # -a: debug assertions (overflow checks) on
nice -n "$niceness" cargo fuzz build "${flags[@]}"

mkdir -p artifacts "$(dirname "$summary")"
start=$(date +%s)
{
  echo "# Fuzzing summary, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
  echo
  echo "runs per target: $runs, total budget: ${total}s, sanitizer: $sanitizer"
  echo
  echo "| target | executions | exec/s | seconds | corpus | findings |"
  echo "|---|---:|---:|---:|---:|---|"
} >"$summary"

failed=0
for t in "${targets[@]}"; do
  left=$((total - ($(date +%s) - start)))
  if [ "$left" -le 0 ]; then
    echo "| $t | 0 | - | 0 | - | skipped: time budget spent |" >>"$summary"
    continue
  fi
  mkdir -p "corpus/$t" "artifacts/$t"
  corpora=("corpus/$t")
  [ -d "seeds/$t" ] && corpora+=("seeds/$t")
  extra=()
  [ -f "dict/$t.dict" ] && extra+=("-dict=dict/$t.dict")
  # Findings are crashes, timeouts (over -timeout), out-of-memory and leaks;
  # libFuzzer's slow-unit-* notes are not (a paused run makes them too).
  findings_in() { find "artifacts/$1" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l; }
  before=$(findings_in "$t")
  log="artifacts/$t.log"
  t0=$(date +%s)
  set +e
  nice -n "$niceness" cargo fuzz run "${flags[@]}" "$t" "${corpora[@]}" -- \
    -runs="$runs" -max_total_time="$left" -timeout=10 -print_final_stats=1 \
    "${extra[@]}" >"$log" 2>&1
  rc=$?
  set -e
  secs=$(($(date +%s) - t0))
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  corpus=$(find "corpus/$t" -type f | wc -l)
  after=$(findings_in "$t")
  if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
    failed=1
    what=$(grep -m1 -E '^(thread .* panicked|==[0-9]+== ERROR|SUMMARY)' "$log" | cut -c1-120 || true)
    art=$(grep -o 'artifacts/[^ ]*' "$log" | tail -1 || true)
    findings="**crash** ($what) $art"
  else
    findings="none"
  fi
  echo "| $t | ${execs:-?} | ${rate:-?} | $secs | $corpus | $findings |" >>"$summary"
done

cat "$summary"
exit "$failed"
