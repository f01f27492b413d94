#!/usr/bin/env bash
# Router benchmark: what `hangar serve` adds in front of an instance, how long an
# instance takes to start, and what 200 active users cost. One run, 127.0.0.1 only.
#
#   cargo build --release --workspace --bins     # hangar, hangar-everything
#   bench/router.sh                              # this script (bubblewrap, wrk, curl, python3)
#
# 1. proxy: a warm per-user instance of hangar-everything reached through the router
#    (http://127.0.0.1:P/mcp/everything, API token, sandbox = "required")  vs  the same kind
#    of instance reached directly: `hangar wrap --listen 127.0.0.1:P --shared-child --
#    hangar-everything` (an instance is exactly that, on a Unix socket and under bwrap).
#    wrk -t2 -c8 (load) and wrk -t1 -c1 (one request at a time: the fair figure for the
#    latency the router adds), bench/mcp_call.lua (tools/call echo), one MCP session opened
#    with bench/mcp_init.sh per measurement; contenders interleaved, median of the rounds.
#    Diagnostic third contender: the same router with its data dir on tmpfs (/dev/shm), where
#    SQLite's fsync costs nothing: the difference is what the store's disk syncs cost. And at
#    -c1, `ping` instead of tools/call (bench/mcp_ping.lua), direct and through the router:
#    the router audits tool calls only, so this tells the audit log's cost apart.
# 2. cold: BENCH_COLD_STARTS starts, each for a fresh user (idle_timeout = "1s", and each
#    start waits until the previous instance has idled out): time from sending `initialize`
#    to its answer through the router  vs  hangar-everything's own start (spawn on stdio →
#    its initialize answer), and the same under bwrap alone (the sandbox's share).
# 3. density: BENCH_USERS users registered (with a token each), BENCH_ACTIVE of them with
#    an initialized session (and one tools/call) on their own instance: processes, RSS and
#    PSS from /proc, per instance.
# 4. profile (when perf is there): under wrk -t1 -c1 load, the router's syscalls and disk
#    writes per request, and perf record of the router (data dir on disk and on tmpfs) and of
#    an instance's `hangar wrap`, samples split by what their stacks are doing.
#
# Environment (all optional):
#   BENCH_DURATION      wrk measuring time per contender and round            (default 10s)
#   BENCH_WARMUP        wrk warm-up before each measurement, discarded        (default 3s)
#   BENCH_ROUNDS        rounds of part 1                                      (default 5)
#   BENCH_COLD_STARTS   starts in part 2                                      (default 50)
#   BENCH_USERS / BENCH_ACTIVE   users registered / with an instance, part 3  (default 1000 / 200)
#   BENCH_PARTS         which parts to run                        (default "proxy cold density profile")
#   BENCH_PORT_BASE     first of 5 consecutive loopback ports                 (default 18800)
#   BENCH_BIN_DIR       where hangar and hangar-everything are     (default target/release; e.g. the
#                       target/release of a clean `git worktree` of the commit to measure)
#   BENCH_WAIT_IDLE     seconds to wait, at most, for the machine to go idle before each
#                       measurement (other work on a 2-core box skews everything) (default 30)
#
# Every process started here is stopped on exit, and the temporary data dirs removed.
# The routers' data dirs (SQLite) are on the file system of $TMPDIR (default /tmp), except
# the diagnostic one on /dev/shm.
# Raw output goes to bench/results/router-<UTC timestamp>/, the tables to summary.md there.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
ROUNDS=${BENCH_ROUNDS:-5}
COLD_STARTS=${BENCH_COLD_STARTS:-50}
USERS=${BENCH_USERS:-1000}
ACTIVE=${BENCH_ACTIVE:-200}
PARTS=${BENCH_PARTS:-proxy cold density profile}
PORT_BASE=${BENCH_PORT_BASE:-18800}
WAIT_IDLE=${BENCH_WAIT_IDLE:-30}
REL=${BENCH_BIN_DIR:-$ROOT/target/release}
HANGAR=$REL/hangar
EVERYTHING=$REL/hangar-everything

die() { echo "bench/router.sh: $*" >&2; exit 1; }
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
part() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------- checks (install nothing)
missing=()
for c in wrk curl python3 ss setsid bwrap; do
  command -v "$c" >/dev/null 2>&1 || missing+=("$c")
done
for f in mcp_call.lua mcp_ping.lua mcp_init.sh router_probe.py; do
  [ -f "$BENCH/$f" ] || missing+=("bench/$f")
done
for b in "$HANGAR" "$EVERYTHING"; do
  [ -x "$b" ] || missing+=("$b (cargo build --release --workspace --bins)")
done
[ "$USERS" -ge "$ACTIVE" ] || missing+=("BENCH_USERS ($USERS) >= BENCH_ACTIVE ($ACTIVE)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/router.sh: missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
SRC=$(cd "$REL/../.." && pwd) # the checkout the binaries were built from
for b in "$HANGAR" "$EVERYTHING"; do
  if [ -n "$(find "$SRC"/crates/*/src "$SRC"/crates/*/Cargo.toml "$SRC/Cargo.toml" -newer "$b" -type f \( -name '*.rs' -o -name 'Cargo.toml' \) -print -quit)" ]; then
    log "WARNING: $b is older than the sources; rebuild with: cargo build --release --workspace --bins"
  fi
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$BENCH/results/router-$STAMP
mkdir -p "$OUT" || die "cannot create $OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hangar-bench-router.XXXXXX") || die "mktemp failed"
SHM=
if [ "$(df -PT /dev/shm 2>/dev/null | awk 'NR == 2 {print $2}')" = tmpfs ]; then
  SHM=$(mktemp -d /dev/shm/hangar-bench-router.XXXXXX) || SHM=
fi
RAW=$OUT/proxy.tsv
printf 'round\tname\tconns\trps\tp50_us\tp99_us\terrors_non200\tbad_body\trequests\tsocket_errors\tfront_cpu_s\ttotal_cpu_s\tmachine_busy_pct\tbusy_before_pct\n' >"$RAW"
CLK_TCK=$(getconf CLK_TCK)
SUMMARY=$OUT/summary.md # the sections, in order, from summary.{1,2,3,4}.md

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
stop_tree() { # PID...: SIGTERM the trees (the router stops its instances), then SIGKILL after 10 s
  local pids p i alive
  pids=$(descendants "$@")
  for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
  for i in $(seq 1 100); do
    alive=0
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for p in $pids; do kill -KILL "$p" 2>/dev/null; done
}
cleanup() {
  trap - EXIT INT TERM
  [ ${#ROOT_PIDS[@]} -gt 0 ] && stop_tree "${ROOT_PIDS[@]}"
  wait 2>/dev/null
  rm -rf "$WORK" ${SHM:+"$SHM"}
  log "stopped every process this run started; removed $WORK${SHM:+ and $SHM}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { [ -n "$(ss -Hltn "sport = :$1")" ]; }
# start NAME PORT CMD... : start CMD in its own session, wait for its port, check it is loopback-only
start() {
  local name=$1 port=$2; shift 2
  port_in_use "$port" && die "port $port is already in use (set BENCH_PORT_BASE)"
  HANGAR_LOG=${HANGAR_LOG:-warn} setsid "$@" >"$OUT/$name.log" 2>&1 &
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

# router_config NAME PORT IDLE_TIMEOUT [DATA_BASE] -> path of a fresh config with its own data dir
router_config() {
  local name=$1 port=$2 idle=$3 base=${4:-$WORK} cfg=$WORK/$1.toml
  cat >"$cfg" <<EOF
listen = "127.0.0.1:$port"
data_dir = "$base/$name-data"
sandbox = "required"
[servers.everything]
command = ["$EVERYTHING"]
tenancy = "per-user"
idle_timeout = "$idle"
EOF
  echo "$cfg"
}
# add_users CONFIG PREFIX N TOKENS_FILE: N users PREFIX-0000…, one token each, tokens in order
add_users() {
  local cfg=$1 prefix=$2 n=$3 file=$4 i name
  : >"$file"
  for i in $(seq 0 $((n - 1))); do
    name=$(printf '%s-%04d' "$prefix" "$i")
    "$HANGAR" user add "$name" --config "$cfg" >/dev/null 2>>"$OUT/admin.log" || die "hangar user add $name failed; see $OUT/admin.log"
    "$HANGAR" token create --user "$name" --config "$cfg" >>"$file" 2>>"$OUT/admin.log" || die "hangar token create failed; see $OUT/admin.log"
  done
}

proc_ticks() { # utime+stime of one PID, in clock ticks
  local t
  t=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}')
  echo "${t:-0}"
}
cpu_ticks() { # total utime+stime, in clock ticks, of PID and its live descendants
  local p sum=0
  for p in $(descendants "$1"); do sum=$((sum + $(proc_ticks "$p"))); done
  echo "$sum"
}
proc_stat() { awk '/^cpu /{ idle = $5 + $6; tot = 0; for (i = 2; i <= 9; i++) tot += $i; print tot, idle }' /proc/stat; }
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
ECHO_CALL='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}'
# echo_call URL TOKEN SID: one tools/call echo; fails unless it answers as expected
echo_call() {
  local reply
  reply=$(curl -s --max-time 10 "${MCP_HDRS[@]}" ${2:+-H "Authorization: Bearer $2"} ${3:+-H "Mcp-Session-Id: $3"} -d "$ECHO_CALL" "$1")
  case $reply in
    *'"result"'*'Echo: hello'*) return 0 ;;
    *) echo "$reply"; return 1 ;;
  esac
}

# measure ROUND NAME FRONT_PID URL TOKEN THREADS CONNS [WRK_SCRIPT (default mcp_call.lua)]
measure() {
  local round=$1 name=$2 pid=$3 url=$4 token=$5 threads=$6 conns=$7 script=$BENCH/${8:-mcp_call.lua}
  local sid reply before t0 t1 c0 c1 s0 s1 line file=$OUT/$2.c$7.r$1
  sid=$("$BENCH/mcp_init.sh" "$url" "$token")
  [ -n "$sid" ] || die "$name: initialize gave no session id"
  reply=$(echo_call "$url" "$token" "$sid") || die "$name: echo tools/call did not answer as expected: $reply"
  MCP_SESSION=$sid MCP_TOKEN=$token wrk -t"$threads" -c"$conns" -d"$WARMUP" -s "$script" "$url" >"$file.warmup.txt" 2>&1
  before=$(wait_idle)
  c0=$(cpu_ticks "$pid"); s0=$(proc_ticks "$pid"); t0=$(proc_stat)
  MCP_SESSION=$sid MCP_TOKEN=$token wrk -t"$threads" -c"$conns" -d"$DURATION" --timeout 10s --latency -s "$script" "$url" >"$file.txt" 2>&1
  t1=$(proc_stat); c1=$(cpu_ticks "$pid"); s1=$(proc_ticks "$pid")
  curl -s --max-time 5 -o /dev/null -X DELETE "${MCP_HDRS[@]}" ${token:+-H "Authorization: Bearer $token"} -H "Mcp-Session-Id: $sid" "$url"
  line=$(grep '^RESULT ' "$file.txt") || die "$name: wrk printed no RESULT; see $file.txt"
  local -A f; local kv
  for kv in ${line#RESULT }; do f[${kv%%=*}]=${kv#*=}; done
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$conns" "${f[rps]}" "${f[p50_us]}" "${f[p99_us]}" \
    "${f[errors_non200]}" "${f[bad_body]}" "${f[requests]}" "${f[socket_errors]}" \
    "$(awk -v a="$s0" -v b="$s1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')" \
    "$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')" \
    "$(busy_pct "$t0" "$t1")" "$before" >>"$RAW"
  log "round $round  $(printf '%-8s c%-2s' "$name" "$conns") ${f[rps]} req/s  p50 ${f[p50_us]} µs  p99 ${f[p99_us]} µs  non200 ${f[errors_non200]}  bad ${f[bad_body]}"
}

# ---------------------------------------------------------------- machine facts
{
  echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc=$(nproc)"
  echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | sed 's/^[^:]*: *//')"
  echo "kernel=$(uname -r)"
  echo "mem_total=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "wrk=$(wrk -v 2>&1 | head -1)"
  echo "bwrap=$(bwrap --version 2>&1 | head -1)"
  echo "data_fs=$(df -PT "$WORK" | awk 'NR == 2 {print $2 " on " $1}') ($WORK: the routers' data dirs, SQLite included)"
  echo "diagnostic_data_fs=${SHM:+tmpfs ($SHM)}"
  echo "binaries=$REL"
  echo "hangar_commit=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null)$(git -C "$SRC" diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo '+dirty')"
  echo "parts=$PARTS"
  echo "proxy: wrk -t2 -c8 and -t1 -c1, -d$DURATION (warm-up $WARMUP), rounds=$ROUNDS"
  echo "cold: starts=$COLD_STARTS; density: users=$USERS active=$ACTIVE"
} >"$OUT/machine.txt"
log "results in $OUT"
sed 's/^/    /' "$OUT/machine.txt" >&2

P_DIRECT=$PORT_BASE; P_ROUTER=$((PORT_BASE + 1)); P_COLD=$((PORT_BASE + 2)); P_DENSE=$((PORT_BASE + 3))
P_SHM=$((PORT_BASE + 4))

# ---------------------------------------------------------------- 1. proxy
if part proxy || part profile; then
  start direct "$P_DIRECT" "$HANGAR" wrap --listen "127.0.0.1:$P_DIRECT" --shared-child -- "$EVERYTHING"
  CFG=$(router_config proxy "$P_ROUTER" 10m)
  add_users "$CFG" bench 1 "$WORK/proxy.tokens"
  TOKEN=$(head -1 "$WORK/proxy.tokens")
  start router "$P_ROUTER" "$HANGAR" serve --config "$CFG"
  grep -q 'sandboxed (bubblewrap)' "$OUT/router.log" || die "the router does not sandbox its instances; see $OUT/router.log"
  U_DIRECT=http://127.0.0.1:$P_DIRECT/mcp
  U_ROUTER=http://127.0.0.1:$P_ROUTER/mcp/everything
  # Warm the instance up (started by this first initialize), and check it runs under bwrap.
  sid=$("$BENCH/mcp_init.sh" "$U_ROUTER" "$TOKEN")
  [ -n "$sid" ] || die "router: initialize gave no session id; see $OUT/router.log"
  reply=$(echo_call "$U_ROUTER" "$TOKEN" "$sid") || die "router: echo failed: $reply"
  INSTANCE_PID=$(pgrep -P "$PID_router" -f 'hangar wrap' | head -1)
  [ -n "$INSTANCE_PID" ] || die "router: no instance process"
  pgrep -P "$INSTANCE_PID" -x bwrap >/dev/null || die "router: the instance's server does not run under bwrap"
  log "router instance: hangar wrap pid $INSTANCE_PID, server under bwrap"
  if [ -n "$SHM" ]; then
    CFG_SHM=$(router_config shm "$P_SHM" 10m "$SHM")
    add_users "$CFG_SHM" bench 1 "$WORK/shm.tokens"
    TOKEN_SHM=$(head -1 "$WORK/shm.tokens")
    start router-shm "$P_SHM" "$HANGAR" serve --config "$CFG_SHM"
    U_SHM=http://127.0.0.1:$P_SHM/mcp/everything
    sid=$("$BENCH/mcp_init.sh" "$U_SHM" "$TOKEN_SHM")
    reply=$(echo_call "$U_SHM" "$TOKEN_SHM" "$sid") || die "router-shm: echo failed: $reply"
  else
    log "/dev/shm is not a tmpfs: no diagnostic router with its data dir on tmpfs"
  fi
fi
if part proxy; then
  for round in $(seq 1 "$ROUNDS"); do
    log "---- proxy round $round of $ROUNDS"
    for load in "2 8" "1 1"; do
      measure "$round" direct "$PID_direct" "$U_DIRECT" "" $load
      measure "$round" router "$PID_router" "$U_ROUTER" "$TOKEN" $load
      [ -n "$SHM" ] && measure "$round" router-shm "$PID_router_shm" "$U_SHM" "$TOKEN_SHM" $load
    done
    measure "$round" direct-ping "$PID_direct" "$U_DIRECT" "" 1 1 mcp_ping.lua
    measure "$round" router-ping "$PID_router" "$U_ROUTER" "$TOKEN" 1 1 mcp_ping.lua
  done
  python3 - "$RAW" "$DURATION" >>"$OUT/summary.1.md" <<'PY'
import csv, statistics, sys
raw, dur = sys.argv[1:]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
def sel(name, conns): return [r for r in rows if r["name"] == name and r["conns"] == conns]
def med(rs, key): return statistics.median(float(r[key]) for r in rs)
dsec = float(dur.rstrip("s"))
print("### 1. Proxy: router vs the instance reached directly\n")
print("| load | path | req/s (median of %d) | req/s per round | p50 µs | p99 µs | front CPU µs/req | all CPU µs/req | non-200 / bad |" % len(sel("router", "8")))
print("|---|---|---:|---|---:|---:|---:|---:|---:|")
figures = {}
for conns, load in (("8", "wrk -t2 -c8"), ("1", "wrk -t1 -c1")):
    for name, text in (("direct", "direct: `hangar wrap --shared-child` on TCP"), ("router", "router → instance (Unix socket, bwrap)"),
                       ("router-shm", "(diagnostic) the same router, data dir on tmpfs"),
                       ("direct-ping", "(diagnostic) direct, `ping` instead of tools/call"),
                       ("router-ping", "(diagnostic) router, `ping` (not audited)")):
        rs = sel(name, conns)
        if not rs: continue
        rps, p50, p99 = med(rs, "rps"), med(rs, "p50_us"), med(rs, "p99_us")
        front = statistics.median(float(r["front_cpu_s"]) / float(r["requests"]) * 1e6 for r in rs)
        total = statistics.median(float(r["total_cpu_s"]) / float(r["requests"]) * 1e6 for r in rs)
        bad = sum(int(r["errors_non200"]) + int(r["bad_body"]) + int(r["socket_errors"]) for r in rs)
        figures[(name, conns)] = (rps, p50, p99)
        print("| %s | %s | **%.0f** | %s | %.0f | %.0f | %.0f | %.0f | %d |" % (
            load, text, rps, ", ".join("%.0f" % float(r["rps"]) for r in rs), p50, p99, front, total, bad))
print()
print("| figure | value | target | |")
print("|---|---:|---:|---|")
for name, base, note in (("router", "direct", ""), ("router-shm", "direct", " (diagnostic: tmpfs data dir)"),
                         ("router-ping", "direct-ping", " (diagnostic: ping, not audited)")):
    for conns, load in (("8", "-c8"), ("1", "-c1")):
        if (name, conns) in figures and (base, conns) in figures:
            r, d = figures[(name, conns)], figures[(base, conns)]
            ratio = r[0] / d[0]
            added = r[1] - d[1]
            # the rounds interleave the contenders: pair them round by round
            rr, dd = sel(name, conns), sel(base, conns)
            pairs = [float(a["p50_us"]) - float(b["p50_us"]) for a, b in zip(rr, dd)]
            print("| throughput %s / %s (%s)%s | %.1f %% | ≥ 85 %% | %s |" % (name, base, load, note, 100 * ratio, "met" if ratio >= 0.85 else "MISSED"))
            print("| added median latency (%s)%s | %.0f µs (per round: %s) | ≤ 50 µs | %s |" % (
                load, note, added, ", ".join("%.0f" % p for p in pairs), "met" if added <= 50 else "MISSED"))
busy = [float(r["busy_before_pct"]) for r in rows]
print("\nfront CPU: the router process alone (router rows) or the direct `hangar wrap` alone (direct rows); all CPU: that process and its descendants (instance, bwrap, server).")
print("Machine busy just before a measurement (other work): max %.0f %%.\n" % max(busy))
PY
fi

# ---------------------------------------------------------------- 4. profile (before the other parts, with the proxy setup)
# profile_under_load NAME ROUTER_PID URL TOKEN INSTANCE_PID: wrk -t1 -c1 for 14 s; meanwhile the
# router's syscalls and disk writes per request (5 s), then perf record of the router and of
# its instance's `hangar wrap` (3 s each, DWARF call graphs).
profile_under_load() {
  local name=$1 pid=$2 url=$3 token=$4 ipid=$5 sid wrk_pid io0 io1 r0 r1 port
  port=${url#http://127.0.0.1:}; port=${port%%/*}
  sid=$("$BENCH/mcp_init.sh" "$url" "$token")
  MCP_SESSION=$sid MCP_TOKEN=$token wrk -t1 -c1 -d14s -s "$BENCH/mcp_call.lua" "$url" >"$OUT/profile.$name.wrk.txt" 2>&1 &
  wrk_pid=$!
  sleep 2
  io0=$(awk '/^(syscr|syscw|write_bytes)/ {print $2}' "/proc/$pid/io" | paste -sd' ')
  r0=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^hangar_requests_total/ {s += $2} END {print s + 0}')
  timeout 20 perf stat -e 'syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_pwrite64,syscalls:sys_enter_futex' \
    -p "$pid" -o "$OUT/profile.$name.syscalls.txt" -- sleep 5 2>>"$OUT/profile.log" || log "perf stat ($name) failed; see $OUT/profile.log"
  io1=$(awk '/^(syscr|syscw|write_bytes)/ {print $2}' "/proc/$pid/io" | paste -sd' ')
  r1=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^hangar_requests_total/ {s += $2} END {print s + 0}')
  echo "$io0 $io1 $r0 $r1" >"$OUT/profile.$name.io.txt"
  timeout 30 perf record -F 999 --call-graph dwarf,16384 -p "$pid" -o "$OUT/perf.$name.data" -- sleep 3 >>"$OUT/profile.log" 2>&1 \
    || log "perf record ($name) failed; see $OUT/profile.log"
  [ -n "$ipid" ] && { timeout 30 perf record -F 999 --call-graph dwarf,16384 -p "$ipid" -o "$OUT/perf.$name-instance.data" -- sleep 3 >>"$OUT/profile.log" 2>&1 \
    || log "perf record ($name instance) failed; see $OUT/profile.log"; }
  wait "$wrk_pid"
  curl -s --max-time 5 -o /dev/null -X DELETE "${MCP_HDRS[@]}" -H "Authorization: Bearer $token" -H "Mcp-Session-Id: $sid" "$url"
}
if part profile; then
  if ! command -v perf >/dev/null 2>&1; then
    log "perf is not installed: no profile"
    printf '### 4. Profile\n\nperf is not installed; skipped.\n\n' >>"$OUT/summary.4.md"
  else
    log "---- profile: syscalls per request and perf record under wrk -t1 -c1"
    wait_idle >/dev/null
    profile_under_load router "$PID_router" "$U_ROUTER" "$TOKEN" "$INSTANCE_PID"
    [ -n "$SHM" ] && profile_under_load router-shm "$PID_router_shm" "$U_SHM" "$TOKEN_SHM" ""
    {
      printf '### 4. Profile under wrk -t1 -c1\n\n'
      printf '| router | requests | fsync / req | fdatasync / req | pwrite64 / req | futex / req | bytes written to storage / req | wrk req/s |\n'
      printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
      for name in router router-shm; do
        [ -f "$OUT/profile.$name.io.txt" ] || continue
        python3 - "$name" "$OUT" <<'PY'
import re, sys
name, out = sys.argv[1:]
v = open("%s/profile.%s.io.txt" % (out, name)).read().split()
sr0, sw0, wb0, sr1, sw1, wb1, r0, r1 = (float(x) for x in v)
n = max(1.0, r1 - r0)
text = open("%s/profile.%s.syscalls.txt" % (out, name)).read()
c = {k: float(x.replace(",", "")) for x, k in re.findall(r"^\s*([\d,]+)\s+syscalls:sys_enter_(\w+)", text, re.M)}
wrk = re.search(r"RESULT rps=(\d+)", open("%s/profile.%s.wrk.txt" % (out, name)).read())
print("| %s | %d | %.2f | %.2f | %.1f | %.1f | %.0f | %s |" % (
    name, n, c.get("fsync", 0) / n, c.get("fdatasync", 0) / n, c.get("pwrite64", 0) / n, c.get("futex", 0) / n,
    (wb1 - wb0) / n, wrk.group(1) if wrk else "?"))
PY
      done
      printf '\nSyscalls counted with `perf stat -e syscalls:sys_enter_*` on the router process for 5 s; requests in the same window from its `hangar_requests_total`; bytes from `/proc/PID/io` `write_bytes`.\n\n'
      for data in router router-instance router-shm; do
        [ -f "$OUT/perf.$data.data" ] || continue
        printf '`perf record -F 999 --call-graph dwarf` of %s, 3 s, on-CPU samples split by what their stack is doing (first match, top to bottom):\n\n' \
          "$(case $data in router) echo 'the router (data dir on disk)' ;; router-instance) echo "its instance's \`hangar wrap\`" ;; router-shm) echo 'the router with its data dir on tmpfs' ;; esac)"
        perf script -i "$OUT/perf.$data.data" 2>/dev/null | python3 "$BENCH/router_probe.py" perf-split
        perf report -i "$OUT/perf.$data.data" --no-children --stdio --sort dso,sym --percent-limit 2 -g none 2>/dev/null \
          | grep -v '^#' | grep -v '^$' | head -25 >"$OUT/profile.$data.top.txt"
        printf '\nTop self-time symbols (≥ 2 %%; all of them in %s):\n\n```\n%s\n```\n\n' "profile.$data.top.txt" "$(head -12 "$OUT/profile.$data.top.txt" | cut -c1-160)"
      done
    } >>"$OUT/summary.4.md"
  fi
fi
if part proxy || part profile; then
  stop_tree "$PID_router" "$PID_direct" ${PID_router_shm:+"$PID_router_shm"}
fi

# ---------------------------------------------------------------- 2. cold start
if part cold; then
  log "---- cold start: $COLD_STARTS starts through the router, and hangar-everything's own"
  CFG=$(router_config cold "$P_COLD" 1s)
  add_users "$CFG" cold "$COLD_STARTS" "$WORK/cold.tokens"
  start router-cold "$P_COLD" "$HANGAR" serve --config "$CFG"
  wait_idle >/dev/null
  t0=$(proc_stat)
  python3 "$BENCH/router_probe.py" router-cold "http://127.0.0.1:$P_COLD/mcp/everything" "$PID_router_cold" "$WORK/cold.tokens" \
    >"$OUT/cold.router.txt" || die "router cold starts failed; see $OUT/cold.router.txt and $OUT/router-cold.log"
  t1=$(proc_stat)
  curl -s "http://127.0.0.1:$P_COLD/metrics" >"$OUT/cold.metrics.txt"
  echo "router $(busy_pct "$t0" "$t1")" >"$OUT/cold.busy.txt"
  stop_tree "$PID_router_cold"
  wait_idle >/dev/null
  t0=$(proc_stat)
  python3 "$BENCH/router_probe.py" stdio "$COLD_STARTS" -- "$EVERYTHING" >"$OUT/cold.stdio.txt" \
    || die "hangar-everything stdio starts failed"
  t1=$(proc_stat)
  echo "stdio $(busy_pct "$t0" "$t1")" >>"$OUT/cold.busy.txt"
  # (the sandbox binds a server that lives under /tmp back in read-only: so does this)
  python3 "$BENCH/router_probe.py" stdio "$COLD_STARTS" -- bwrap --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp \
    --ro-bind "$REL" "$REL" --unshare-pid --unshare-ipc --unshare-uts --die-with-parent --new-session -- "$EVERYTHING" >"$OUT/cold.bwrap.txt" \
    || die "hangar-everything under bwrap starts failed"
  python3 - "$OUT" >>"$OUT/summary.2.md" <<'PY'
import re, sys
out = sys.argv[1]
def result(name):
    line = [l for l in open("%s/%s" % (out, name)) if l.startswith("RESULT ")][0]
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
router, stdio, bwrap = result("cold.router.txt"), result("cold.stdio.txt"), result("cold.bwrap.txt")
m = open("%s/cold.metrics.txt" % out).read()
def metric(name):
    v = re.findall(r"^%s\{[^}]*\} ([\d.e+-]+)$" % name, m, re.M)
    return sum(map(float, v)) if v else None
s, c = metric("hangar_cold_start_seconds_sum"), metric("hangar_cold_start_seconds_count")
print("### 2. Cold start (%d starts each)\n" % router["n"])
print("| what | p50 ms | p95 ms | min ms | max ms |")
print("|---|---:|---:|---:|---:|")
for text, r in (("through the router: POST initialize → answer, new user each time (instance start included)", router),
                ("hangar-everything alone: spawn on stdio → initialize answer", stdio),
                ("hangar-everything under bwrap (the sandbox's flags) → initialize answer", bwrap)):
    print("| %s | %.2f | %.2f | %.2f | %.2f |" % (text, r["p50_ms"], r["p95_ms"], r["min_ms"], r["max_ms"]))
print()
print("| figure | value | target | |")
print("|---|---:|---:|---|")
add50, add95 = router["p50_ms"] - stdio["p50_ms"], router["p95_ms"] - stdio["p95_ms"]
print("| added by the router, p50 | %.2f ms | ≤ 15 ms | %s |" % (add50, "met" if add50 <= 15 else "MISSED"))
print("| added by the router, p95 | %.2f ms | (info) | |" % add95)
print("| of which the bwrap sandbox (p50, bwrap − alone) | %.2f ms | (info) | |" % (bwrap["p50_ms"] - stdio["p50_ms"]))
if s is not None and c:
    print("| router's own metric: spawn of `hangar wrap` → its ready line (mean of %d) | %.2f ms | (info) | |" % (c, 1e3 * s / c))
busy = dict(l.split() for l in open("%s/cold.busy.txt" % out))
print("\nThe router's starts include waiting for the previous instance to idle out between starts (not timed); the machine was %s %% busy on average during them (mostly our own router, instances and their stops), %s %% during the stdio starts.\n" % (busy.get("router", "?"), busy.get("stdio", "?")))
PY
fi

# ---------------------------------------------------------------- 3. density
if part density; then
  log "---- density: $USERS users registered, $ACTIVE with an instance"
  CFG=$(router_config dense "$P_DENSE" 30m)
  add_users "$CFG" dense "$USERS" "$WORK/dense.tokens"
  start router-dense "$P_DENSE" "$HANGAR" serve --config "$CFG"
  U_DENSE=http://127.0.0.1:$P_DENSE/mcp/everything
  sleep 1
  python3 "$BENCH/router_probe.py" mem "$PID_router_dense" >"$OUT/density.before.txt"
  i=0
  while read -r token; do
    [ "$i" -ge "$ACTIVE" ] && break
    sid=$("$BENCH/mcp_init.sh" "$U_DENSE" "$token")
    [ -n "$sid" ] || die "density: initialize $i gave no session id; see $OUT/router-dense.log"
    reply=$(echo_call "$U_DENSE" "$token" "$sid") || die "density: echo $i failed: $reply"
    i=$((i + 1))
  done <"$WORK/dense.tokens"
  [ "$i" -eq "$ACTIVE" ] || die "density: only $i sessions opened"
  sleep 2
  python3 "$BENCH/router_probe.py" mem "$PID_router_dense" >"$OUT/density.after.txt"
  running=$(curl -s "http://127.0.0.1:$P_DENSE/metrics" | awk '/^hangar_instances_running/ {print $2}')
  python3 - "$OUT" "$USERS" "$ACTIVE" "$running" >>"$OUT/summary.3.md" <<'PY'
import sys
out, users, active, running = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def result(name):
    text = open("%s/%s" % (out, name)).read()
    res = dict(kv.split("=") for kv in [l for l in text.splitlines() if l.startswith("RESULT ")][0].split()[1:])
    root = dict(kv.split("=") for kv in [l for l in text.splitlines() if l.startswith("RESULT_ROOT ")][0].split()[1:])
    table = "\n".join(l for l in text.splitlines() if not l.startswith("RESULT"))
    return res, root, table
b_res, b_root, _ = result("density.before.txt")
a_res, a_root, table = result("density.after.txt")
procs = int(a_res["processes"])
print("### 3. Density: %d users registered, %d with an initialized session on their own instance\n" % (users, active))
print("Instances running (router metric): %s; processes under the router: %d (%.1f per instance), plus the router itself.\n" % (running, procs, procs / active))
print("| | RSS | PSS |")
print("|---|---:|---:|")
print("| router, %d users, no instance | %.1f MiB | %.1f MiB |" % (users, int(b_root["rss_kib"]) / 1024, int(b_root["pss_kib"]) / 1024))
print("| router, %d instances | %.1f MiB | %.1f MiB |" % (active, int(a_root["rss_kib"]) / 1024, int(a_root["pss_kib"]) / 1024))
print("| all %d instances (every process under the router) | %.1f MiB | %.1f MiB |" % (active, int(a_res["rss_kib"]) / 1024, int(a_res["pss_kib"]) / 1024))
print("| **per instance** (instances' processes / %d) | **%.2f MiB** | **%.2f MiB** |" % (active, int(a_res["rss_kib"]) / 1024 / active, int(a_res["pss_kib"]) / 1024 / active))
print("| router growth per instance | %.1f KiB | (PSS not comparable: the router shares its binary with the instances' `hangar wrap`) |" % ((int(a_root["rss_kib"]) - int(b_root["rss_kib"])) / active))
print("| total, router included | %.1f MiB | %.1f MiB |" % ((int(a_res["rss_kib"]) + int(a_root["rss_kib"])) / 1024, (int(a_res["pss_kib"]) + int(a_root["pss_kib"])) / 1024))
print("\nBy program (processes under the router):\n")
print("```")
print(table)
print("```")
print("RSS counts shared pages (the binaries' text, shared libraries) once per process; PSS splits them among the processes that share them, so the PSS sum is what the instances really take.\n")
PY
  stop_tree "$PID_router_dense"
fi

for n in 1 2 3 4; do
  [ -f "$OUT/summary.$n.md" ] && cat "$OUT/summary.$n.md"
done >"$SUMMARY"
log "summary: $SUMMARY"
cat "$SUMMARY"
