#!/usr/bin/env python3
"""Helpers of bench/router.sh (cold starts, process snapshots, perf); every wait is bounded.

  router_probe.py stdio N (--launch FILE [--server-only] | -- CMD ARGS...)
      N times: spawn a stdio MCP server, send `initialize`, time until its
      answer; then close its stdin and wait for it to exit (killed after 5 s).
      With --launch, the command line, environment (and nothing else of
      ours) and working directory are those of a real instance, as
      router-cold captured them (FILE, JSON): the outer bwrap and its flags
      exactly; with --server-only, the server's own command line after
      bwrap's `--`, run without bwrap, in the instance's directory, with the
      same environment. Prints one line per start (ms) and
      RESULT name=stdio n=… p50_ms=… p95_ms=… min_ms=… max_ms=…
      RESULT name=spawn …   (Popen alone: fork + exec of the program)
      RESULT name=again …   (a second `initialize` to the running server: its
                             answer alone, no start)

  router_probe.py router-cold URL ROUTER_PID TOKENS_FILE PROBE_TOKENS_FILE LAUNCH_OUT
      For each token (one per line; N = their number): wait until the router
      has no child process (the previous instance idled out; at most 20 s),
      then time, each on a new TCP connection, from opening it to the end of
      the answer:
        cold   POST `initialize` with that token (starts the user's instance);
        warm   POST `initialize` again with the same token (instance running,
               token cached);
        token_fresh / token_cached   DELETE of a session that does not exist
               (404 after the token check; starts nothing) with a second token
               of the same user, used for the first time, then again: the
               difference, paired per user, is a token's first verification
               (store lookup), which every cold start pays;
      then end the sessions. The first instance's bwrap command line and
      environment go to LAUNCH_OUT (JSON, for `stdio --launch`). Fails on any
      answer without a result. Prints one line per cold start (ms) and RESULT
      lines named cold, warm, token_fresh, token_cached, token_lookup.

  router_probe.py snapshot ROUTER_PID
      JSON: the router's RSS, PSS, threads and open files by kind; each of its
      child processes (instances: the outer bwrap) with all their
      descendants: processes, threads, RSS and PSS (/proc/PID/smaps_rollup)
      summed per instance, the server's own (every process but bwrap), and
      by program. Also importable (bench/router_density.py).

  router_probe.py perf-split < `perf script` output
      Splits the samples of a perf recording (with call graphs) by what their
      stacks are doing: the first category, in the order below, whose pattern
      matches any frame of the stack. Prints a Markdown table.
"""
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.parse

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "bench-router", "version": "1"}}}


def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_vals) - 1, -(-p * len(sorted_vals) // 100) - 1))
    return sorted_vals[int(k)]


def result_line(name, samples_ms):
    v = sorted(samples_ms)
    return ("RESULT name=%s n=%d p50_ms=%.3f p95_ms=%.3f min_ms=%.3f max_ms=%.3f mean_ms=%.3f"
            % (name, len(v), pct(v, 50), pct(v, 95), v[0], v[-1], statistics.fmean(v)))


def report(name, samples_ms, extra=()):
    for s in samples_ms:
        print("%.3f" % s)
    print(result_line(name, samples_ms))
    for n, s in extra:
        print(result_line(n, s))


def load_launch(path, server_only):
    launch = json.load(open(path))
    argv, env, cwd = launch["argv"], launch["env"], None
    if server_only:
        cut = argv.index("--")
        cwd = argv[argv.index("--chdir") + 1] if "--chdir" in argv[:cut] else None
        argv = argv[cut + 1:]
    return argv, env, cwd


def stdio(n, cmd, env=None, cwd=None):
    samples, spawns, again = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             env=env, cwd=cwd)
        spawns.append((time.perf_counter() - t0) * 1e3)
        m, out = ask(p, 1)
        samples.append((time.perf_counter() - t0) * 1e3)
        if "result" not in m:
            p.kill()
            sys.exit("router_probe stdio: initialize failed: %s" % out)
        t1 = time.perf_counter()
        ask(p, 2)  # answered (a result or an error): the server's own time for an answer
        again.append((time.perf_counter() - t1) * 1e3)
        p.stdin.close()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    report("stdio", samples, [("spawn", spawns), ("again", again)])


def ask(p, id_):
    """Sends `initialize` with id_ to the stdio server p; its answer (message, line)."""
    p.stdin.write((json.dumps({**INIT, "id": id_}) + "\n").encode())
    p.stdin.flush()
    deadline = time.monotonic() + 30
    while True:
        out = p.stdout.readline()  # the server answers within the deadline or exits
        if not out:
            p.kill()
            sys.exit("router_probe stdio: the server closed stdout before answering")
        try:
            m = json.loads(out)
        except ValueError:
            continue
        if m.get("id") == id_:
            return m, out
        if time.monotonic() > deadline:
            p.kill()
            sys.exit("router_probe stdio: no answer within 30 s")


# ------------------------------------------------------------------ /proc

def proc_table():
    """pid -> (ppid, comm, threads) of every live (non-zombie) process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        close = stat.rindex(")")
        fields = stat[close + 2:].split()
        if fields[0] != "Z":
            table[int(entry)] = (int(fields[1]), stat[stat.index("(") + 1:close], int(fields[17]))
    return table


def descendants(roots, table=None):
    table = proc_table() if table is None else table
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, frontier = [], list(roots)
    while frontier:
        nxt = [c for p in frontier for c in children.get(p, ())]
        found.extend(sorted(nxt))
        frontier = nxt
    return found


def smaps(pid):
    """(RSS KiB, PSS KiB) of one process from smaps_rollup; (0, 0) if it is gone."""
    rss = pss = 0
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def fd_kinds(pid):
    """Open files of PID by kind: socket, pipe, anon_inode:<what>, file, and total."""
    kinds = {}
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return {"total": 0}
    for fd in names:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:"):
            kind = "socket"
        elif target.startswith("pipe:"):
            kind = "pipe"
        elif target.startswith("anon_inode:"):
            kind = "anon_inode:" + target[len("anon_inode:"):].strip("[]")
        else:
            kind = "file"
        kinds[kind] = kinds.get(kind, 0) + 1
    kinds["total"] = sum(kinds.values())
    return kinds


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def task_cpu_ms(pids):
    """tid -> CPU time (ms) of every thread of PIDs: se.sum_exec_runtime from
    /proc/PID/task/TID/sched (ns precision), else utime+stime from its stat (ticks).
    The difference of two calls, thread by thread, is the CPU used in between by the
    threads alive at the end (a thread that exited meanwhile is not counted)."""
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in tids:
            ms = None
            try:
                with open("/proc/%d/task/%s/sched" % (pid, tid)) as f:
                    for line in f:
                        if line.startswith("se.sum_exec_runtime"):
                            ms = float(line.split(":")[1])
                            break
            except OSError:
                pass
            if ms is None:
                try:
                    with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    ms = (int(fields[11]) + int(fields[12])) * 1000.0 / hz
                except (OSError, IndexError, ValueError):
                    continue
            out[int(tid)] = ms
    return out


def cpu_delta_s(before, after):
    return sum(ms - before.get(tid, 0.0) for tid, ms in after.items()) / 1000.0


def stats(values):
    if not values:
        return {"n": 0}
    v = sorted(values)
    return {"n": len(v), "mean": statistics.fmean(v), "median": statistics.median(v),
            "min": v[0], "max": v[-1]}


def snapshot(router_pid):
    table = proc_table()
    rss, pss = smaps(router_pid)
    router = {"pid": router_pid, "rss_kib": rss, "pss_kib": pss,
              "threads": table.get(router_pid, (0, "?", 0))[2], "fds": fd_kinds(router_pid),
              "cpu_ticks": cpu_ticks(router_pid)}
    children = sorted(p for p, (pp, _, _) in table.items() if pp == router_pid)
    per, by_program, cpu = [], {}, 0
    for child in children:
        procs = [child] + descendants([child], table)
        inst = {"pid": child, "comm": table[child][1], "processes": len(procs), "threads": 0,
                "rss_kib": 0, "pss_kib": 0, "server_pss_kib": 0, "server_rss_kib": 0}
        for p in procs:
            _, name, threads = table[p]
            r, s = smaps(p)
            cpu += cpu_ticks(p)
            inst["threads"] += threads
            inst["rss_kib"] += r
            inst["pss_kib"] += s
            if name != "bwrap":
                inst["server_pss_kib"] += s
                inst["server_rss_kib"] += r
            g = by_program.setdefault(name, {"processes": 0, "threads": 0, "rss_kib": 0, "pss_kib": 0})
            g["processes"] += 1
            g["threads"] += threads
            g["rss_kib"] += r
            g["pss_kib"] += s
        inst["beyond_pss_kib"] = inst["pss_kib"] - inst["server_pss_kib"]
        per.append(inst)
    instances = {
        "count": len(per),
        "bwrap_children": sum(1 for i in per if i["comm"] == "bwrap"),
        "processes_total": sum(i["processes"] for i in per),
        "threads_total": sum(i["threads"] for i in per),
        "cpu_ticks": cpu,
        "processes": stats([i["processes"] for i in per]),
        "threads": stats([i["threads"] for i in per]),
    }
    for key in ("rss_kib", "pss_kib", "server_pss_kib", "server_rss_kib", "beyond_pss_kib"):
        instances[key] = stats([i[key] for i in per])
        instances[key + "_total"] = sum(i[key] for i in per)
    instances["by_program"] = by_program
    return {"time": time.time(), "router": router, "instances": instances}


# ------------------------------------------------------------------ router-cold

def timed_request(u, method, headers, body=None):
    t0 = time.perf_counter()
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request(method, u.path, body=body, headers=headers)
    r = c.getresponse()
    answer = r.read()
    dt = (time.perf_counter() - t0) * 1e3
    c.close()
    return dt, r, answer


def capture_launch(router_pid, path):
    """The command line and environment of the router's first bwrap child."""
    table = proc_table()
    kids = [p for p, (pp, name, _) in table.items() if pp == router_pid and name == "bwrap"]
    if not kids:
        sys.exit("router_probe router-cold: the router has no bwrap child (is the instance sandboxed?)")
    pid = min(kids)
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0")[:-1]]
    with open("/proc/%d/environ" % pid, "rb") as f:
        env = dict(e.decode().split("=", 1) for e in f.read().split(b"\0") if b"=" in e)
    with open(path, "w") as f:
        json.dump({"pid": pid, "argv": argv, "env": env}, f, indent=1)


def router_cold(url, router_pid, tokens_file, probe_tokens_file, launch_out):
    tokens = [t.strip() for t in open(tokens_file) if t.strip()]
    probes = [t.strip() for t in open(probe_tokens_file) if t.strip()]
    if len(probes) != len(tokens):
        sys.exit("router_probe router-cold: %d tokens but %d probe tokens" % (len(tokens), len(probes)))
    u = urllib.parse.urlsplit(url)
    body = json.dumps(INIT).encode()
    cold, warm, fresh, cached, lookup = [], [], [], [], []
    for i, (token, probe) in enumerate(zip(tokens, probes)):
        deadline = time.monotonic() + 20
        while descendants([router_pid]):
            if time.monotonic() > deadline:
                sys.exit("router_probe router-cold: the previous instance did not stop within 20 s")
            time.sleep(0.05)
        time.sleep(0.1)  # let the reaper's store write settle
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                   "Authorization": "Bearer " + token}
        sids = []
        for name, samples in (("cold", cold), ("warm", warm)):
            dt, r, answer = timed_request(u, "POST", headers, body)
            if r.status != 200 or b'"result"' not in answer:
                sys.exit("router_probe router-cold: start %d (%s initialize): %d %r" % (i, name, r.status, answer[:300]))
            samples.append(dt)
            if r.getheader("Mcp-Session-Id"):
                sids.append(r.getheader("Mcp-Session-Id"))
            if name == "cold" and i == 0:
                capture_launch(router_pid, launch_out)
        bogus = {"Accept": "application/json, text/event-stream", "Authorization": "Bearer " + probe,
                 "MCP-Protocol-Version": "2025-06-18", "Mcp-Session-Id": "0" * 32}
        pair = []
        for samples in (fresh, cached):
            dt, r, answer = timed_request(u, "DELETE", bogus)
            if r.status != 404:
                sys.exit("router_probe router-cold: DELETE of an unknown session (user %d): %d %r, not 404"
                         % (i, r.status, answer[:300]))
            samples.append(dt)
            pair.append(dt)
        lookup.append(pair[0] - pair[1])
        for sid in sids:  # end the sessions, so the instance may idle out
            timed_request(u, "DELETE", {**headers, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"})
    report("cold", cold, [("warm", warm), ("token_fresh", fresh), ("token_cached", cached), ("token_lookup", lookup)])


# (category, pattern over a stack's frames), in priority order.
PERF_CATEGORIES = [
    ("store: SQLite through sqlx (token check, last-used update, audit)", re.compile(r"sqlx|sqlite3|hangar_store|libsqlite")),
    ("identity assertion: EdDSA JWT sign / verify", re.compile(r"ed25519|curve25519|jsonwebtoken|hangar_identity|ring::ec|ring::signature")),
    ("metrics (prometheus)", re.compile(r"prometheus")),
    ("JSON-RPC parse / peek", re.compile(r"mcp_transport::message|serde_json")),
    ("the in-process instance: hangar-wrap's child mux over the server's stdio", re.compile(r"hangar_wrap")),
    ("HTTP serving and proxying: hyper / h2 / axum (and the handler itself)", re.compile(r"hyper|\bh2::|axum|http_body")),
    ("tokio runtime and threads (scheduling, wakeups)", re.compile(r"tokio|std::thread|futex|parking_lot")),
]


def perf_split(stream):
    counts, total, sample = {}, 0, []

    def flush():
        nonlocal total
        if not sample:
            return
        total += 1
        text = "\n".join(sample)
        for name, pattern in PERF_CATEGORIES:
            if pattern.search(text):
                break
        else:
            name = "kernel only (syscalls, scheduling)" if all("[kernel" in f for f in sample) else "other"
        counts[name] = counts.get(name, 0) + 1
        sample.clear()

    for line in stream:
        if not line.strip():
            flush()
        elif line[0] in " \t":
            sample.append(line.strip())
    flush()
    print("| samples whose stack is in … | share |")
    print("|---|---:|")
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print("| %s | %.1f %% |" % (name, 100 * n / max(1, total)))
    print("| (samples) | %d |" % total)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    mode = sys.argv[1]
    if mode == "stdio":
        args = sys.argv[3:]
        if args[:1] == ["--launch"]:
            cmd, env, cwd = load_launch(args[1], "--server-only" in args[2:])
            stdio(int(sys.argv[2]), cmd, env, cwd)
        elif args[:1] == ["--"]:
            stdio(int(sys.argv[2]), args[1:])
        else:
            sys.exit(__doc__)
    elif mode == "router-cold":
        router_cold(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
    elif mode == "snapshot":
        json.dump(snapshot(int(sys.argv[2])), sys.stdout, indent=1)
        print()
    elif mode == "perf-split":
        perf_split(sys.stdin)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
