#!/usr/bin/env bash
# Router benchmark: what `hangar serve` adds in front of an instance, how long an
# instance takes to start, and what 1,000 active users cost. One run, 127.0.0.1 only.
#
#   cargo build --release --workspace --bins     # hangar, hangar-everything
#   bench/router.sh                              # this script (bubblewrap, wrk, curl, python3)
#
# An instance is its server's process under bubblewrap (`bwrap ... -- hangar-everything`, a
# child of the router; with --unshare-pid a second bwrap is the namespace's init), and the
# router speaks to its stdio itself, in its own process (crates/hangar-machines/src/process.rs).
#
# 1. proxy: a warm per-user instance of hangar-everything reached through the router
#    (http://127.0.0.1:P/mcp/everything, API token, sandbox = "required")  vs  the server
#    served directly: `hangar wrap --listen 127.0.0.1:P --shared-child -- hangar-everything`
#    on TCP. Targets: throughput router/direct at wrk -t2 -c8 >= 90 %; added median latency
#    at wrk -t1 -c1 (one request at a time: the fair figure for the latency the router adds)
#    <= 30 µs. bench/mcp_call.lua (tools/call echo), one MCP session opened with
#    bench/mcp_init.sh per measurement; contenders interleaved, median of the rounds.
#    Diagnostic third contender: the same router with its data dir on tmpfs (/dev/shm), where
#    SQLite's fsync costs nothing: the difference is what the store's disk syncs cost. And at
#    -c1, `ping` instead of tools/call (bench/mcp_ping.lua), direct and through the router:
#    the router audits tool calls only, so this tells the audit log's cost apart.
# 2. cold: BENCH_COLD_STARTS starts, each for a fresh user (idle_timeout = "1s", and each
#    start waits until the previous instance has idled out): time from sending `initialize`
#    to its answer through the router  vs  hangar-everything's own start (spawn on stdio →
#    its initialize answer), and the same under bwrap alone with the very command line and
#    environment of the router's first instance (checked against sandbox.rs wrap_command).
#    Target: added by Hangar (router − server alone) <= 5 ms at p50, broken down into bwrap's
#    share and the router's own (its hangar_cold_start_seconds, a warm initialize, a token's
#    first verification).
# 3. density: BENCH_USERS users registered (a token each), BENCH_ACTIVE of them active at
#    once, each with a session on its own instance calling `echo` every 3–5 s
#    (bench/router_density.py: asyncio, one keep-alive connection per user; starts with
#    BENCH_START_CONCURRENCY in flight): time to start them all, p50/p99 of a call over
#    BENCH_STEADY s with all active, PSS per instance (and beyond the server's own), router
#    RSS growth per instance (target <= 100 KiB), the router's open files, processes.
# 4. profile (when perf is there): under wrk -t1 -c1 load, the router's syscalls and disk
#    writes per request, and perf record of the router (data dir on disk and on tmpfs),
#    samples split by what their stacks are doing.
#
# Environment (all optional):
#   BENCH_DURATION      wrk measuring time per contender and round            (default 10s)
#   BENCH_WARMUP        wrk warm-up before each measurement, discarded        (default 3s)
#   BENCH_ROUNDS        rounds of part 1                                      (default 5)
#   BENCH_COLD_STARTS   starts in part 2                                      (default 50)
#   BENCH_USERS / BENCH_ACTIVE   users registered / active at once, part 3   (default 1000 / 1000)
#   BENCH_STEADY        seconds of steady state measured with all active, part 3 (default 60)
#   BENCH_START_CONCURRENCY      instance starts in flight at once, part 3    (default 16)
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
ACTIVE=${BENCH_ACTIVE:-1000}
STEADY=${BENCH_STEADY:-60}
START_CONCURRENCY=${BENCH_START_CONCURRENCY:-16}
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
for f in mcp_call.lua mcp_ping.lua mcp_init.sh router_probe.py router_density.py; do
  [ -f "$BENCH/$f" ] || missing+=("bench/$f")
done
for b in "$HANGAR" "$EVERYTHING"; do
  [ -x "$b" ] || missing+=("$b (cargo build --release --workspace --bins)")
done
numbers=1
for v in ROUNDS COLD_STARTS USERS ACTIVE STEADY START_CONCURRENCY PORT_BASE WAIT_IDLE; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { missing+=("BENCH_$v=${!v}: a whole number"); numbers=0; }
done
[ $numbers -eq 0 ] || [ "$USERS" -ge "$ACTIVE" ] || missing+=("BENCH_USERS ($USERS) >= BENCH_ACTIVE ($ACTIVE)")
if [ $numbers -eq 1 ] && part density; then
  [ "$ACTIVE" -ge 1 ] || missing+=("BENCH_ACTIVE >= 1 for the density part")
  # The router holds ~3 files per active instance (its server's stdin and stdout, the
  # user's connection) and raises its soft limit to the hard one; so does the driver.
  need=$((ACTIVE * 4 + 1024)); hard=$(ulimit -Hn)
  [ "$hard" = unlimited ] || [ "$hard" -ge "$need" ] \
    || missing+=("open-files hard limit $hard < $need for BENCH_ACTIVE=$ACTIVE (ulimit -Hn; /etc/security/limits.conf)")
  # Each instance is 3 processes (2 bwrap, the server) and ~7 tasks (the server's threads).
  need=$((ACTIVE * 8)); have=$(ps -e -L --no-headers | wc -l)
  for lim in "kernel.pid_max $(cat /proc/sys/kernel/pid_max)" "kernel.threads-max $(cat /proc/sys/kernel/threads-max)" "ulimit -u $(ulimit -u)"; do
    [ "${lim##* }" = unlimited ] || [ $((${lim##* } - have)) -ge "$need" ] \
      || missing+=("${lim% *} = ${lim##* } leaves $((${lim##* } - have)) tasks (with $have running); BENCH_ACTIVE=$ACTIVE needs about $need")
  done
  pmax=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || echo max)
  [ "$pmax" = max ] || [ "$pmax" -ge $((need + have)) ] || missing+=("cgroup pids.max $pmax < $((need + have))")
  need=$((ACTIVE * 4 + 512)); have=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
  [ "$have" -ge "$need" ] || missing+=("MemAvailable ${have} MiB < ${need} MiB for BENCH_ACTIVE=$ACTIVE")
fi
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

SUMMARY_FAILED=() # parts whose summary could not be written (their raw output is still in $OUT)
summary_failed() { SUMMARY_FAILED+=("$1"); log "ERROR: the $1 summary could not be written; its raw output is in $OUT"; }

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

# router_config NAME PORT IDLE_TIMEOUT [DATA_BASE [TOP_LEVEL_LINE]] -> path of a fresh config
# with its own data dir
router_config() {
  local name=$1 port=$2 idle=$3 base=${4:-$WORK} extra=${5:-} cfg=$WORK/$1.toml
  cat >"$cfg" <<EOF
listen = "127.0.0.1:$port"
data_dir = "$base/$name-data"
sandbox = "required"
$extra
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
# add_tokens CONFIG PREFIX N TOKENS_FILE: one more token for each of the users PREFIX-0000…
add_tokens() {
  local cfg=$1 prefix=$2 n=$3 file=$4 i
  : >"$file"
  for i in $(seq 0 $((n - 1))); do
    "$HANGAR" token create --user "$(printf '%s-%04d' "$prefix" "$i")" --config "$cfg" >>"$file" 2>>"$OUT/admin.log" \
      || die "hangar token create failed; see $OUT/admin.log"
  done
}
# metric_sum FILE NAME: the sum over its label sets of a metric in a /metrics text (0 if absent)
metric_sum() { awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $NF} END {printf "%.9g\n", s + 0}' "$1"; }

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

# check_instance NAME ROUTER_PID CONFIG DATA_DIR: the router's one instance is its bwrap child
# (bound to DATA_DIR/instances/ID), with hangar-everything under it, and `hangar instances`
# lists that bwrap's pid (its record is written off the request path: wait up to 5 s)
check_instance() {
  local name=$1 rpid=$2 cfg=$3 data=$4 ipid cmd p server= i listed= exe
  exe=$(realpath "$EVERYTHING")
  ipid=$(pgrep -P "$rpid" -x bwrap | head -1)
  [ -n "$ipid" ] || die "$name: the router has no bwrap child (instance not sandboxed, or not started); see $OUT/$name.log"
  cmd=$(tr '\0' ' ' <"/proc/$ipid/cmdline")
  [[ " $cmd " == *" --bind $data/instances/"* ]] || die "$name: bwrap $ipid does not bind an instance dir of $data: $cmd"
  for p in $(descendants "$ipid"); do
    [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$exe" ] && server=$p
  done
  [ -n "$server" ] || die "$name: no $EVERYTHING under the instance's bwrap ($ipid)"
  for i in $(seq 1 50); do
    listed=$("$HANGAR" instances --config "$cfg" 2>>"$OUT/admin.log" | awk -F'\t' -v p="$ipid" 'NR > 1 && $4 == "running" && $5 == p {print $1}')
    [ -n "$listed" ] && break
    sleep 0.1
  done
  [ -n "$listed" ] || die "$name: \`hangar instances\` does not list bwrap pid $ipid as running"
  [[ " $cmd " == *" --bind $data/instances/$listed "* ]] || die "$name: instance $listed is not the one bwrap $ipid binds"
  log "$name instance $listed: bwrap pid $ipid (child of the router), hangar-everything pid $server under it"
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
  echo "cold: starts=$COLD_STARTS; density: users=$USERS active=$ACTIVE steady=${STEADY}s start_concurrency=$START_CONCURRENCY"
  echo "limits: open files soft $(ulimit -Sn) hard $(ulimit -Hn); ulimit -u $(ulimit -u); pid_max $(cat /proc/sys/kernel/pid_max)"
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
  check_instance router "$PID_router" "$CFG" "$WORK/proxy-data"
  if [ -n "$SHM" ]; then
    CFG_SHM=$(router_config shm "$P_SHM" 10m "$SHM")
    add_users "$CFG_SHM" bench 1 "$WORK/shm.tokens"
    TOKEN_SHM=$(head -1 "$WORK/shm.tokens")
    start router-shm "$P_SHM" "$HANGAR" serve --config "$CFG_SHM"
    U_SHM=http://127.0.0.1:$P_SHM/mcp/everything
    sid=$("$BENCH/mcp_init.sh" "$U_SHM" "$TOKEN_SHM")
    reply=$(echo_call "$U_SHM" "$TOKEN_SHM" "$sid") || die "router-shm: echo failed: $reply"
    check_instance router-shm "$PID_router_shm" "$CFG_SHM" "$SHM/shm-data"
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
  python3 - "$RAW" "$DURATION" >>"$OUT/summary.1.md" <<'PY' || summary_failed proxy
import csv, statistics, sys
raw, dur = sys.argv[1:]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
def sel(name, conns): return [r for r in rows if r["name"] == name and r["conns"] == conns]
def med(rs, key): return statistics.median(float(r[key]) for r in rs)
dsec = float(dur.rstrip("s"))
print("### 1. Proxy: router → in-process instance vs the server served directly\n")
print("| load | path | req/s (median of %d) | req/s per round | p50 µs | p99 µs | front CPU µs/req | all CPU µs/req | non-200 / bad |" % len(sel("router", "8")))
print("|---|---|---:|---|---:|---:|---:|---:|---:|")
figures = {}
for conns, load in (("8", "wrk -t2 -c8"), ("1", "wrk -t1 -c1")):
    for name, text in (("direct", "direct: `hangar wrap --shared-child -- hangar-everything` on TCP"),
                       ("router", "router → in-process instance (bwrap)"),
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
# Targets: throughput at -c8 (load), added median latency at -c1 (one request at a time);
# the other combinations and the diagnostics are shown for information.
for name, base, note, targets in (("router", "direct", "", True), ("router-shm", "direct", " (diagnostic: tmpfs data dir)", False),
                                  ("router-ping", "direct-ping", " (diagnostic: ping, not audited)", False)):
    for conns, load in (("8", "-t2 -c8"), ("1", "-t1 -c1")):
        if (name, conns) in figures and (base, conns) in figures:
            r, d = figures[(name, conns)], figures[(base, conns)]
            ratio = r[0] / d[0]
            added = r[1] - d[1]
            # the rounds interleave the contenders: pair them round by round
            rr, dd = sel(name, conns), sel(base, conns)
            pairs = [float(a["p50_us"]) - float(b["p50_us"]) for a, b in zip(rr, dd)]
            if targets and conns == "8":
                t, v = "≥ 90 %", "met" if ratio >= 0.90 else "MISSED"
            else:
                t, v = "(info)", ""
            print("| throughput %s / %s (%s)%s | %.1f %% (%.0f / %.0f req/s) | %s | %s |" % (name, base, load, note, 100 * ratio, r[0], d[0], t, v))
            if targets and conns == "1":
                t, v = "≤ 30 µs", "met" if added <= 30 else "MISSED"
            else:
                t, v = "(info)", ""
            print("| added median latency (%s)%s | %.0f µs (%.0f vs %.0f; per round: %s) | %s | %s |" % (
                load, note, added, r[1], d[1], ", ".join("%.0f" % p for p in pairs), t, v))
busy = [float(r["busy_before_pct"]) for r in rows]
print("\nfront CPU: the router process alone (router rows: its HTTP server, the proxy and the instance's endpoint, in-process) or the direct `hangar wrap` alone (direct rows); all CPU: that process and its descendants (bwrap, the server).")
print("Machine busy just before a measurement (other work): max %.0f %%.\n" % max(busy))
PY
fi

# ---------------------------------------------------------------- 4. profile (before the other parts, with the proxy setup)
# profile_under_load NAME ROUTER_PID URL TOKEN: wrk -t1 -c1 for 14 s; meanwhile the router's
# syscalls and disk writes per request (5 s), then perf record of the router (3 s, DWARF call
# graphs; the instance's endpoint runs in the router's process, so it is in there too).
profile_under_load() {
  local name=$1 pid=$2 url=$3 token=$4 sid wrk_pid io0 io1 r0 r1 port
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
    profile_under_load router "$PID_router" "$U_ROUTER" "$TOKEN"
    [ -n "$SHM" ] && profile_under_load router-shm "$PID_router_shm" "$U_SHM" "$TOKEN_SHM"
    {
      printf '### 4. Profile under wrk -t1 -c1\n\n'
      printf '| router | requests | fsync / req | fdatasync / req | pwrite64 / req | futex / req | bytes written to storage / req | wrk req/s |\n'
      printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
      for name in router router-shm; do
        [ -f "$OUT/profile.$name.io.txt" ] || continue
        python3 - "$name" "$OUT" <<'PY' || summary_failed profile
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
      for data in router router-shm; do
        [ -f "$OUT/perf.$data.data" ] || continue
        printf '`perf record -F 999 --call-graph dwarf` of %s, 3 s, on-CPU samples split by what their stack is doing (first match, top to bottom):\n\n' \
          "$(case $data in router) echo 'the router (data dir on disk)' ;; router-shm) echo 'the router with its data dir on tmpfs' ;; esac)"
        perf script -i "$OUT/perf.$data.data" 2>/dev/null | python3 "$BENCH/router_probe.py" perf-split || summary_failed profile
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
# expected_sandbox_argv DATA_DIR INSTANCE_DIR: what crates/hangar-machines/src/sandbox.rs
# wrap_command builds for the server command ["$EVERYTHING"] (network = "host"), one
# argument per line
expected_sandbox_argv() {
  local data=$1 inst=$2 rest top
  printf '%s\n' "$(command -v bwrap)" --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp
  case $EVERYTHING in
    /tmp/*)
      rest=${EVERYTHING#/tmp/}; top=${rest%%/*}
      if [ -n "$top" ] && [ "$top" != .. ] && [ -e "/tmp/$top" ]; then printf '%s\n' --ro-bind "/tmp/$top" "/tmp/$top"; fi ;;
  esac
  printf '%s\n' --tmpfs "$(realpath "$data")" --bind "$inst" "$inst" --unshare-pid --unshare-ipc --unshare-uts \
    --die-with-parent --new-session --setenv HOME "$inst" --chdir "$inst" -- "$EVERYTHING"
}
if part cold; then
  log "---- cold start: $COLD_STARTS starts through the router, and hangar-everything's own"
  CFG=$(router_config cold "$P_COLD" 1s)
  add_users "$CFG" cold "$COLD_STARTS" "$WORK/cold.tokens"
  add_tokens "$CFG" cold "$COLD_STARTS" "$WORK/cold.probe-tokens"
  start router-cold "$P_COLD" "$HANGAR" serve --config "$CFG"
  U_COLD=http://127.0.0.1:$P_COLD
  wait_idle >/dev/null
  curl -s --max-time 10 "$U_COLD/metrics" >"$OUT/cold.metrics.before.txt" || die "cold: GET /metrics failed"
  t0=$(proc_stat)
  python3 "$BENCH/router_probe.py" router-cold "$U_COLD/mcp/everything" "$PID_router_cold" "$WORK/cold.tokens" \
    "$WORK/cold.probe-tokens" "$OUT/cold.launch.json" >"$OUT/cold.router.txt" \
    || die "router cold starts failed; see $OUT/cold.router.txt and $OUT/router-cold.log"
  t1=$(proc_stat)
  curl -s --max-time 10 "$U_COLD/metrics" >"$OUT/cold.metrics.after.txt" || die "cold: GET /metrics failed"
  echo "router $(busy_pct "$t0" "$t1")" >"$OUT/cold.busy.txt"
  stop_tree "$PID_router_cold"
  # The baselines run the router's first instance's own command line and environment
  # (cold.launch.json); check that it is what sandbox.rs builds.
  python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["argv"]))' "$OUT/cold.launch.json" >"$WORK/cold.argv" \
    || die "cold: no instance command line captured"
  INST_DIR=$(awk 'prev == "--bind" {print; exit} {prev = $0}' "$WORK/cold.argv")
  [[ $INST_DIR == "$WORK/cold-data/instances/"?* ]] || die "cold: the instance's bwrap binds '$INST_DIR', not an instance dir of $WORK/cold-data"
  expected_sandbox_argv "$WORK/cold-data" "$INST_DIR" >"$WORK/cold.expected-argv"
  if diff "$WORK/cold.expected-argv" "$WORK/cold.argv" >"$OUT/cold.sandbox.diff"; then
    echo identical >"$OUT/cold.sandbox.txt"
  else
    echo different >"$OUT/cold.sandbox.txt"
    log "WARNING: the router's bwrap command line differs from what this script expects from sandbox.rs (see $OUT/cold.sandbox.diff); the baselines use the router's"
  fi
  [ -d "$INST_DIR" ] || mkdir -p -m 700 "$INST_DIR"
  wait_idle >/dev/null
  t0=$(proc_stat)
  python3 "$BENCH/router_probe.py" stdio "$COLD_STARTS" --launch "$OUT/cold.launch.json" --server-only >"$OUT/cold.stdio.txt" \
    || die "hangar-everything stdio starts failed"
  t1=$(proc_stat)
  echo "stdio $(busy_pct "$t0" "$t1")" >>"$OUT/cold.busy.txt"
  python3 "$BENCH/router_probe.py" stdio "$COLD_STARTS" --launch "$OUT/cold.launch.json" >"$OUT/cold.bwrap.txt" \
    || die "hangar-everything under bwrap starts failed"
  cs_sum=$(awk -v a="$(metric_sum "$OUT/cold.metrics.before.txt" hangar_cold_start_seconds_sum)" \
    -v b="$(metric_sum "$OUT/cold.metrics.after.txt" hangar_cold_start_seconds_sum)" 'BEGIN {printf "%.9f", b - a}')
  cs_count=$(awk -v a="$(metric_sum "$OUT/cold.metrics.before.txt" hangar_cold_start_seconds_count)" \
    -v b="$(metric_sum "$OUT/cold.metrics.after.txt" hangar_cold_start_seconds_count)" 'BEGIN {printf "%d", b - a}')
  python3 - "$OUT" "$cs_sum" "$cs_count" >>"$OUT/summary.2.md" <<'PY' || summary_failed cold
import sys
out, cs_sum, cs_count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
def results(name):
    res = {}
    for line in open("%s/%s" % (out, name)):
        if line.startswith("RESULT "):
            kv = dict(x.split("=", 1) for x in line.split()[1:])
            name = kv.pop("name")
            res[name] = {k: float(v) for k, v in kv.items()}
    return res
r, s, b = results("cold.router.txt"), results("cold.stdio.txt"), results("cold.bwrap.txt")
cold, warm, stdio, bwrap = r["cold"], r["warm"], s["stdio"], b["stdio"]
same = open("%s/cold.sandbox.txt" % out).read().strip() == "identical"
print("### 2. Cold start (%d starts each)\n" % cold["n"])
print("| what | p50 ms | p95 ms | min ms | max ms |")
print("|---|---:|---:|---:|---:|")
for text, x in (("through the router: POST initialize → answer, new user each time (its instance started)", cold),
                ("hangar-everything alone: spawn on stdio → initialize answer (the instance's environment)", stdio),
                ("hangar-everything under bwrap alone: the instance's command line → initialize answer", bwrap),
                ("(breakdown) through the router again, same user: instance running, token cached", warm),
                ("(breakdown) a user's second token, first use: DELETE of an unknown session → 404, nothing started", r["token_fresh"]),
                ("(breakdown) the same request, token cached", r["token_cached"]),
                ("(breakdown) spawning bwrap alone (Popen: fork + exec)", b["spawn"]),
                ("(breakdown) the server under bwrap answering a second initialize (running, no start)", b["again"])):
    print("| %s | %.2f | %.2f | %.2f | %.2f |" % (text, x["p50_ms"], x["p95_ms"], x["min_ms"], x["max_ms"]))
print()
added, bw, own = cold["p50_ms"] - stdio["p50_ms"], bwrap["p50_ms"] - stdio["p50_ms"], cold["p50_ms"] - bwrap["p50_ms"]
metric = 1e3 * cs_sum / cs_count if cs_count else float("nan")
lookup, spawn = r["token_lookup"]["p50_ms"], b["spawn"]["p50_ms"]
path = warm["p50_ms"] - b["again"]["p50_ms"]
rest = own - path - lookup - (metric - spawn)
print("| figure | value | target | |")
print("|---|---:|---:|---|")
print("| **added by Hangar**, p50 (router − server alone) | **%.2f ms** (%.2f vs %.2f) | ≤ 5 ms | %s |" % (
    added, cold["p50_ms"], stdio["p50_ms"], "met" if added <= 5 else "MISSED"))
print("| ├ bwrap's share (bwrap alone − server alone, p50) | %.2f ms | (info) | |" % bw)
print("| └ the router's own (the rest: router − bwrap alone, p50) | %.2f ms | (info) | |" % own)
print("| &nbsp;&nbsp;· its instance start, `hangar_cold_start_seconds` (instance dir, spawning bwrap), mean of %d | %.2f ms | (info) | |" % (cs_count, metric))
print("| &nbsp;&nbsp;&nbsp;&nbsp;of which spawning bwrap, also inside the bwrap-alone time (its Popen, p50) | %.2f ms | (info) | |" % spawn)
print("| &nbsp;&nbsp;· the token's first verification (store lookup): p50 of first − cached use, paired per user | %.2f ms | (info) | |" % lookup)
print("| &nbsp;&nbsp;· the request path (TCP, HTTP, token check, sessions): warm initialize through the router − the server's own answer to a second one (p50s) | %.2f ms | (info) | |" % path)
print("| &nbsp;&nbsp;· the remainder, not attributed (router's own − the three above; the spawn counted once; p50s of different samples, so it can be < 0) | %.2f ms | (info) | |" % rest)
print("| added by Hangar, p95 (router − server alone) | %.2f ms | (info) | |" % (cold["p95_ms"] - stdio["p95_ms"]))
busy = dict(l.split() for l in open("%s/cold.busy.txt" % out))
print("\nThe baselines run the router's first instance's own bwrap command line and environment (`cold.launch.json`), "
      "%s" % ("identical to what sandbox.rs `wrap_command` builds." if same else
              "**which differs from what this script expects from sandbox.rs `wrap_command`** (`cold.sandbox.diff`)."))
print("The router's starts include waiting for the previous instance to idle out between starts (not timed); the machine was %s %% busy on average during them (mostly our own router, instances and their stops), %s %% during the stdio starts.\n" % (busy.get("router", "?"), busy.get("stdio", "?")))
PY
fi

# ---------------------------------------------------------------- 3. density
if part density; then
  log "---- density: $USERS users registered, $ACTIVE active at once"
  CFG=$(router_config dense "$P_DENSE" 30m "$WORK" "max_instances = $((ACTIVE + 16))")
  log "registering $USERS users (a token each)"
  add_users "$CFG" dense "$USERS" "$WORK/dense.tokens"
  start router-dense "$P_DENSE" "$HANGAR" serve --config "$CFG"
  U_DENSE=http://127.0.0.1:$P_DENSE
  sleep 1
  curl -s --max-time 10 "$U_DENSE/metrics" >"$OUT/density.metrics.before.txt" || die "density: GET /metrics failed"
  wait_idle >/dev/null
  # bounded: the driver's own limits (starts 900 s, settle 10 s, steady, snapshot 300 s, calls 30 s) and this
  timeout --kill-after=10 $((900 + 10 + STEADY + 300 + 120)) \
    python3 "$BENCH/router_density.py" --url "$U_DENSE/mcp/everything" --tokens "$WORK/dense.tokens" --active "$ACTIVE" \
    --router-pid "$PID_router_dense" --concurrency "$START_CONCURRENCY" --steady "$STEADY" --out "$OUT/density.json" \
    2>&1 | tee "$OUT/density.txt" >&2
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || die "density: the load driver failed (exit status $rc); see $OUT/density.txt and $OUT/router-dense.log"
  curl -s --max-time 10 "$U_DENSE/metrics" >"$OUT/density.metrics.after.txt" || die "density: GET /metrics failed"
  "$HANGAR" instances --config "$CFG" >"$OUT/density.instances.txt" 2>>"$OUT/admin.log"
  listed=$(awk -F'\t' 'NR > 1 && $4 == "running"' "$OUT/density.instances.txt" | wc -l)
  running=$(metric_sum "$OUT/density.metrics.after.txt" hangar_instances_running)
  cs_sum=$(metric_sum "$OUT/density.metrics.after.txt" hangar_cold_start_seconds_sum)
  cs_count=$(metric_sum "$OUT/density.metrics.after.txt" hangar_cold_start_seconds_count)
  python3 - "$OUT" "$USERS" "$ACTIVE" "$running" "$listed" "$cs_sum" "$cs_count" >>"$OUT/summary.3.md" <<'PY' || summary_failed density
import json, sys
out, users, active, running, listed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
cs_sum, cs_count = float(sys.argv[6]), float(sys.argv[7])
d = json.load(open("%s/density.json" % out))
b, a = d["before"]["router"], d["after"]["router"]
inst, st, steady, snap = d["after"]["instances"], d["starts"], d["steady"], d["during_snapshot"]
n = inst["count"]
mib = lambda k: k / 1024
lo, hi = d["interval_s"]
print("### 3. Density: %d instances of hangar-everything active at once (%d users registered)\n" % (active, users))
print("Each active user: one keep-alive connection, a session (initialize + notifications/initialized) on its own instance, "
      "`echo` every %g–%g s (jittered); starts %d in flight (`bench/router_density.py`).\n" % (lo, hi, d["concurrency"]))
print("| figure | value | target | |")
print("|---|---:|---:|---|")
print("| instances running (router metric / `hangar instances` / bwrap children of the router) | %s / %s / %d | | |" % (running, listed, inst["bwrap_children"]))
print("| time to start all %d (first initialize sent → last instance's first answer) | %.2f s (%.0f starts/s) | (info) | |" % (active, st["span_s"], st["per_s"]))
print("| one start meanwhile (initialize → answer, %d in flight): p50 / p99 / max | %.1f / %.1f / %.1f ms | (info) | |" % (d["concurrency"], st["p50_ms"], st["p99_ms"], st["max_ms"]))
if cs_count:
    print("| the router's instance start (`hangar_cold_start_seconds`, mean of %d) | %.2f ms | (info) | |" % (cs_count, 1e3 * cs_sum / cs_count))
print("| **a call with all %d active**: p50 / p99 (%d calls over %.0f s, %.0f/s) | **%.2f / %.2f ms** (max %.2f) | (info) | |" % (
    active, steady["n"], steady["window_s"], steady["calls_per_s"], steady["p50_ms"], steady["p99_ms"], steady["max_ms"]))
print("| **memory per instance**: PSS of its processes summed, median (mean; min–max) | **%.0f KiB** (%.0f; %.0f–%.0f) | (info) | |" % (
    inst["pss_kib"]["median"], inst["pss_kib"]["mean"], inst["pss_kib"]["min"], inst["pss_kib"]["max"]))
print("| per instance beyond the server's own (its PSS − hangar-everything's PSS), median (mean) | %.0f KiB (%.0f) | (info) | |" % (
    inst["beyond_pss_kib"]["median"], inst["beyond_pss_kib"]["mean"]))
grow = (a["rss_kib"] - b["rss_kib"]) / n
print("| **router memory growth per instance** ((RSS with %d active − RSS with 0) / %d) | **%.1f KiB** (%.1f → %.1f MiB) | ≤ 100 KiB | %s |" % (
    n, n, grow, mib(b["rss_kib"]), mib(a["rss_kib"]), "met" if grow <= 100 else "MISSED"))
fb, fa = b["fds"], a["fds"]
kinds = sorted(set(fa) | set(fb), key=lambda k: (k == "total", -(fa.get(k, 0) - fb.get(k, 0)), k))
per_kind = ", ".join("%s %+.2f" % (k, (fa.get(k, 0) - fb.get(k, 0)) / n) for k in kinds
                     if k != "total" and fa.get(k, 0) != fb.get(k, 0))
print("| router open files: 0 → %d active; per instance | %d → %d; **%.2f per instance** (%s) | (info) | |" % (
    n, fb["total"], fa["total"], (fa["total"] - fb["total"]) / n, per_kind))
print("| processes: per instance / in all (router included) | %g / %d | (info) | |" % (inst["processes"]["median"], inst["processes_total"] + 1))
print("| threads: per instance / the router's | %g / %d | (info) | |" % (inst["threads"]["median"], a["threads"]))
calls = max(1, steady["n"])
print("| CPU in the steady state: the router / the instances (all their processes), per call and in %% of one core; the machine's busy %% | %.0f / %.0f µs per call; %.1f / %.1f %%; %.0f %% | (info) | |" % (
    1e6 * steady["router_cpu_s"] / calls, 1e6 * steady["instances_cpu_s"] / calls,
    100 * steady["router_cpu_s"] / steady["window_s"], 100 * steady["instances_cpu_s"] / steady["window_s"], steady["machine_busy_pct"]))
print()
print("| | RSS | PSS | open files | threads |")
print("|---|---:|---:|---:|---:|")
print("| router, %d users, no instance | %.1f MiB | %.1f MiB | %d | %d |" % (users, mib(b["rss_kib"]), mib(b["pss_kib"]), fb["total"], b["threads"]))
print("| router, %d active | %.1f MiB | %.1f MiB | %d | %d |" % (n, mib(a["rss_kib"]), mib(a["pss_kib"]), fa["total"], a["threads"]))
print("| all %d instances (%d processes) | %.1f MiB | %.1f MiB | | %d |" % (n, inst["processes_total"], mib(inst["rss_kib_total"]), mib(inst["pss_kib_total"]), inst["threads_total"]))
print("| total, router included | %.1f MiB | %.1f MiB | | |" % (mib(inst["rss_kib_total"] + a["rss_kib"]), mib(inst["pss_kib_total"] + a["pss_kib"])))
print()
print("| per instance, by program | processes | RSS each | PSS each | threads each |")
print("|---|---:|---:|---:|---:|")
for name, g in sorted(d["after"]["instances"]["by_program"].items()):
    text = ("bwrap (outside, and init of the PID namespace)" if name == "bwrap" else
            "hangar-everything (the server)" if name.startswith("hangar-everyth") else name)
    print("| %s | %g | %.0f KiB | %.0f KiB | %.1f |" % (text, g["processes"] / n, g["rss_kib"] / g["processes"], g["pss_kib"] / g["processes"], g["threads"] / g["processes"]))
print()
print("Router open files by kind: before %s; after %s." % (
    ", ".join("%s %d" % kv for kv in sorted(fb.items()) if kv[0] != "total"),
    ", ".join("%s %d" % kv for kv in sorted(fa.items()) if kv[0] != "total")))
print("Calls sent during the snapshot (%.1f s of reading /proc, not in the figures above): %s. "
      "%d calls in all, %d connections opened for %d users; every answer had its result and echo." % (
          snap["seconds"], "%d, p50 %.2f ms, p99 %.2f ms" % (snap["n"], snap["p50_ms"], snap["p99_ms"]) if snap["n"] else "none",
          d["calls_total"], d["connections_opened"], active))
print("PSS splits shared pages (the binaries' text, shared libraries) among the processes that share them, so the PSS sum is what the instances take; "
      "RSS counts them once per process. The router's token cache keeps a verified token 5 s (crates/hangar-auth `TOKEN_CACHE_TTL`), "
      "so at one call per %g–%g s about every other call verifies its token in the store again.\n" % (lo, hi))
PY
  stop_tree "$PID_router_dense"
fi

for n in 1 2 3 4; do
  [ -f "$OUT/summary.$n.md" ] && cat "$OUT/summary.$n.md"
done >"$SUMMARY"
log "summary: $SUMMARY"
cat "$SUMMARY"
[ ${#SUMMARY_FAILED[@]} -eq 0 ] || die "the summary of: ${SUMMARY_FAILED[*]} failed (see above)"
