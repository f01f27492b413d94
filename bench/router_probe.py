#!/usr/bin/env python3
"""Helpers of bench/router.sh (cold starts and memory); every wait is bounded.

  router_probe.py stdio N -- CMD ARGS...
      N times: spawn CMD (a stdio MCP server), send `initialize`, time until its
      answer; then close its stdin and wait for it to exit (killed after 5 s).
      Prints one line per start (ms) and
      RESULT n=… p50_ms=… p95_ms=… min_ms=… max_ms=…

  router_probe.py router-cold URL ROUTER_PID TOKENS_FILE
      For each token (one per line; N = their number): wait until the router
      has no child process (the previous instance idled out; at most 20 s),
      then time a POST `initialize` with that token, from opening the TCP
      connection to the end of the answer. Fails on any answer without a
      result. Prints one line per start (ms) and the same RESULT line.

  router_probe.py mem ROOT_PID...
      Memory of each ROOT_PID and of all its descendants, from /proc: RSS
      (VmRSS) and PSS (smaps_rollup, shared pages split among their users),
      grouped by program. Prints a table, and
      RESULT processes=… rss_kib=… pss_kib=… (descendants only)
      plus RESULT_ROOT pid=… rss_kib=… pss_kib=… for each root.

  router_probe.py perf-split < `perf script` output
      Splits the samples of a perf recording (with call graphs) by what their
      stacks are doing: the first category, in the order below, whose pattern
      matches any frame of the stack. Prints a Markdown table.
"""
import http.client
import json
import os
import re
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


def report(samples_ms):
    for s in samples_ms:
        print("%.2f" % s)
    v = sorted(samples_ms)
    print("RESULT n=%d p50_ms=%.2f p95_ms=%.2f min_ms=%.2f max_ms=%.2f"
          % (len(v), pct(v, 50), pct(v, 95), v[0], v[-1]))


def stdio(n, cmd):
    line = (json.dumps(INIT) + "\n").encode()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        p.stdin.write(line)
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
            if m.get("id") == 1:
                break
            if time.monotonic() > deadline:
                p.kill()
                sys.exit("router_probe stdio: no answer within 30 s")
        samples.append((time.perf_counter() - t0) * 1e3)
        if "result" not in m:
            p.kill()
            sys.exit("router_probe stdio: initialize failed: %s" % out)
        p.stdin.close()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    report(samples)


def parent_map():
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    return parents


def descendants(roots):
    parents = parent_map()
    found, frontier = [], set(roots)
    while frontier:
        nxt = {p for p, pp in parents.items() if pp in frontier}
        found.extend(sorted(nxt))
        frontier = nxt
    return found


def router_cold(url, router_pid, tokens_file):
    tokens = [t.strip() for t in open(tokens_file) if t.strip()]
    u = urllib.parse.urlsplit(url)
    body = json.dumps(INIT).encode()
    samples = []
    for i, token in enumerate(tokens):
        deadline = time.monotonic() + 20
        while descendants([router_pid]):
            if time.monotonic() > deadline:
                sys.exit("router_probe router-cold: the previous instance did not stop within 20 s")
            time.sleep(0.05)
        time.sleep(0.1)  # let the reaper's store write settle
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                   "Authorization": "Bearer " + token}
        t0 = time.perf_counter()
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        c.request("POST", u.path, body=body, headers=headers)
        r = c.getresponse()
        answer = r.read()
        samples.append((time.perf_counter() - t0) * 1e3)
        sid = r.getheader("Mcp-Session-Id")
        c.close()
        if r.status != 200 or b'"result"' not in answer:
            sys.exit("router_probe router-cold: start %d: %d %r" % (i, r.status, answer[:300]))
        if sid:  # end the session, so the instance may idle out
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
            c.request("DELETE", u.path, headers={**headers, "Mcp-Session-Id": sid,
                                                   "MCP-Protocol-Version": "2025-06-18"})
            c.getresponse().read()
            c.close()
    report(samples)


def status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return "?"


def mem(roots):
    procs = descendants(roots)
    groups = {}
    for pid in procs:
        g = groups.setdefault(comm(pid), [0, 0, 0])
        g[0] += 1
        g[1] += status_kib(pid, "VmRSS")
        g[2] += pss_kib(pid)
    print("%-18s %6s %12s %12s %12s %12s" % ("program", "count", "RSS MiB", "PSS MiB", "RSS KiB/proc", "PSS KiB/proc"))
    for name, (n, rss, pss) in sorted(groups.items()):
        print("%-18s %6d %12.1f %12.1f %12.0f %12.0f" % (name, n, rss / 1024, pss / 1024, rss / n, pss / n))
    rss = sum(g[1] for g in groups.values())
    pss = sum(g[2] for g in groups.values())
    print("RESULT processes=%d rss_kib=%d pss_kib=%d %s" % (
        len(procs), rss, pss,
        " ".join("%s_count=%d %s_rss_kib=%d %s_pss_kib=%d" % (k, g[0], k, g[1], k, g[2])
                 for k, g in sorted(groups.items()) if k.replace("-", "_").isidentifier())))
    for r in roots:
        print("RESULT_ROOT pid=%d rss_kib=%d pss_kib=%d" % (r, status_kib(r, "VmRSS"), pss_kib(r)))


# (category, pattern over a stack's frames), in priority order.
PERF_CATEGORIES = [
    ("store: SQLite through sqlx (token check, last-used update, audit)", re.compile(r"sqlx|sqlite3|hangar_store|libsqlite")),
    ("identity assertion: EdDSA JWT sign / verify", re.compile(r"ed25519|curve25519|jsonwebtoken|hangar_identity|ring::ec|ring::signature")),
    ("metrics (prometheus)", re.compile(r"prometheus")),
    ("JSON-RPC parse / peek", re.compile(r"mcp_transport::message|serde_json")),
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
        stdio(int(sys.argv[2]), sys.argv[sys.argv.index("--") + 1:])
    elif mode == "router-cold":
        router_cold(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif mode == "mem":
        mem([int(p) for p in sys.argv[2:]])
    elif mode == "perf-split":
        perf_split(sys.stdin)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
