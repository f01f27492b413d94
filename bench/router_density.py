#!/usr/bin/env python3
"""Density load driver of bench/router.sh: N users active at once, each on its own instance.

  router_density.py --url http://127.0.0.1:P/mcp/everything --tokens FILE --active N
                    --router-pid PID --out RESULT.json
                    [--concurrency 16] [--interval 3-5] [--settle 10] [--steady 60]
                    [--start-timeout 900] [--timeout 30]

Python 3 standard library only: asyncio streams and hand-written HTTP/1.1
(keep-alive, one TCP connection per user, loopback only).

  1. Snapshot of the router before any instance (router_probe.snapshot):
     RSS, PSS, open files; it must have no child process yet.
  2. Starts: user i (token i of FILE) opens its connection, sends
     `initialize` (which starts its instance) and `notifications/initialized`;
     at most --concurrency users are in that step at once. Each then calls
     the `echo` tool every --interval seconds (uniformly jittered; the first
     call after a random part of one interval), with a message of its own
     that the answer must echo. "Time to start all" is from the first
     `initialize` sent to the last instance's first answer.
  3. --settle seconds (every user must have had a call answered by then),
     then --steady seconds whose calls make the steady-state figures
     (p50/p99 of a call; the CPU time of the router's and the instances'
     threads, from /proc/PID/task/TID/sched; the machine's load).
  4. Snapshot with every instance active (the calls go on meanwhile; those
     sent during it are counted apart): the router's RSS/PSS/open files, and
     each instance's processes, threads, RSS and PSS summed over them.
  5. Stops: the connections are closed (the router and its instances are
     stopped by router.sh).

Any answer that is not what it must be (HTTP status, no `result`, the wrong
id or echo, a closed connection, no answer within --timeout) ends the run at
once with exit status 1 and says which user and which step. Every wait is
bounded. Writes RESULT.json and a readable account to stdout.
"""
import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ left in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import router_probe  # noqa: E402

MAX_BODY = 1 << 20
MAX_HEADERS = 100
PROTOCOL = "2025-06-18"


class Failure(Exception):
    pass


def now():
    return time.perf_counter()


def log(text):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), text), flush=True)


class Conn:
    """One keep-alive HTTP/1.1 connection to the router, for one user."""

    def __init__(self, host, port, path, token, timeout):
        self.host, self.port, self.path, self.token, self.timeout = host, port, path, token, timeout
        self.reader = self.writer = None
        self.sid = None
        self.opens = 0

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, body):
        """(status, headers, body) of one POST; reconnects once if a kept-alive
        connection turns out closed before any answer byte."""
        for attempt in (0, 1):
            fresh = self.writer is None
            if fresh:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                self.opens += 1
            head = ["POST %s HTTP/1.1" % self.path, "Host: %s:%d" % (self.host, self.port),
                    "Content-Type: application/json", "Accept: application/json, text/event-stream",
                    "Authorization: Bearer " + self.token, "Content-Length: %d" % len(body)]
            if self.sid:
                head += ["Mcp-Session-Id: " + self.sid, "MCP-Protocol-Version: " + PROTOCOL]
            self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            try:
                await self.writer.drain()
                status_line = await self.reader.readline()
            except ConnectionError:
                status_line = b""
            if status_line:
                break
            self.close()
            if fresh or attempt:
                raise Failure("the connection closed without an answer")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise Failure("not an HTTP/1.1 status line: %r" % status_line[:200])
        status = int(parts[1])
        headers = {}
        for _ in range(MAX_HEADERS + 1):
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise Failure("the connection closed in the headers")
            name, _, value = line.decode("latin-1").partition(":")
            key = name.strip().lower()
            headers[key] = (headers[key] + ", " if key in headers else "") + value.strip()
        else:
            raise Failure("more than %d headers" % MAX_HEADERS)
        body = await self.read_body(status, headers)
        if "close" in headers.get("connection", "").lower():
            self.close()
        return status, headers, body

    async def read_body(self, status, headers):
        if status in (204, 304) or 100 <= status < 200:
            return b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks, size = [], 0
            while True:
                line = await self.reader.readline()
                if not line:
                    raise Failure("the connection closed in a chunked body")
                n = int(line.split(b";")[0].strip() or b"x", 16)
                if n == 0:
                    for _ in range(MAX_HEADERS + 1):  # trailers, then the blank line
                        if (await self.reader.readline()) in (b"\r\n", b"\n", b""):
                            break
                    return b"".join(chunks)
                size += n
                if size > MAX_BODY:
                    raise Failure("a body larger than %d bytes" % MAX_BODY)
                chunks.append((await self.reader.readexactly(n + 2))[:-2])
        if "content-length" in headers:
            n = int(headers["content-length"])
            if n > MAX_BODY:
                raise Failure("a body larger than %d bytes" % MAX_BODY)
            return await self.reader.readexactly(n)
        body = await self.reader.read(MAX_BODY + 1)  # no length: the body ends with the connection
        self.close()
        return body


def message_for(headers, body, want_id):
    """The JSON-RPC message answering want_id, from a JSON or an SSE answer."""
    if headers.get("content-type", "").startswith("text/event-stream"):
        messages, data = [], []
        for line in body.decode("utf-8", "replace").splitlines() + [""]:
            if line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
            elif not line and data:
                messages.append("\n".join(data))
                data = []
    else:
        messages = [body.decode("utf-8", "replace")]
    for text in messages:
        try:
            m = json.loads(text)
        except ValueError:
            continue
        if isinstance(m, dict) and m.get("id") == want_id:
            return m
    return None


def rpc(id_, method, params):
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}).encode()


INIT_PARAMS = {"protocolVersion": PROTOCOL, "capabilities": {},
               "clientInfo": {"name": "bench-router-density", "version": "1"}}
INITIALIZED = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode()


def pct(values, p):
    return router_probe.pct(sorted(values), p) if values else float("nan")


def lat(values_ms):
    return {"n": len(values_ms), "p50_ms": pct(values_ms, 50), "p90_ms": pct(values_ms, 90),
            "p99_ms": pct(values_ms, 99), "max_ms": max(values_ms) if values_ms else float("nan")}


class Run:
    def __init__(self, args, tokens):
        u = urllib.parse.urlsplit(args.url)
        if u.scheme != "http" or u.hostname != "127.0.0.1":
            sys.exit("router_density: loopback only (http://127.0.0.1:…), not %s" % args.url)
        self.host, self.port, self.path = u.hostname, u.port, u.path
        self.args, self.tokens = args, tokens
        self.lo, self.hi = (float(x) for x in args.interval.split("-"))
        self.rng = random.Random(1)
        self.start_sem = asyncio.Semaphore(args.concurrency)
        self.failed = asyncio.Event()
        self.all_started = asyncio.Event()
        self.failure = None
        self.stop = False
        self.starts = []  # (user, sent, answered)
        self.calls = []  # (user, sent, latency s)
        self.answered = [0] * len(tokens)
        self.inflight = {}  # user -> sent
        self.conns = []

    def fail(self, user, step, why):
        if self.failure is None:
            self.failure = ("user %d (%s): %s" % (user, step, why)) if user is not None else "%s: %s" % (step, why)
            self.failed.set()

    async def exchange(self, conn, user, step, body):
        try:
            return await asyncio.wait_for(conn.post(body), self.args.timeout)
        except asyncio.TimeoutError:
            raise Failure("no answer within %g s" % self.args.timeout)
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            raise Failure("%s: %s" % (type(e).__name__, e))

    async def user(self, i):
        conn = Conn(self.host, self.port, self.path, self.tokens[i], self.args.timeout)
        self.conns.append(conn)
        step = "initialize"
        try:
            async with self.start_sem:
                if self.stop:
                    return
                sent = now()
                status, headers, body = await self.exchange(conn, i, step, rpc(0, "initialize", INIT_PARAMS))
                answered = now()
                m = message_for(headers, body, 0)
                if status != 200 or m is None or "result" not in m:
                    raise Failure("HTTP %d: %r" % (status, body[:300]))
                conn.sid = headers.get("mcp-session-id")
                if not conn.sid:
                    raise Failure("no Mcp-Session-Id in the answer")
                step = "notifications/initialized"
                status, _, body = await self.exchange(conn, i, step, INITIALIZED)
                if status not in (200, 202):
                    raise Failure("HTTP %d: %r" % (status, body[:300]))
            self.starts.append((i, sent, answered))
            if len(self.starts) % 100 == 0:
                log("%d of %d instances started" % (len(self.starts), len(self.tokens)))
            if len(self.starts) == len(self.tokens):
                self.all_started.set()
            await asyncio.sleep(self.rng.uniform(0, self.hi))
            seq = 0
            while not self.stop:
                seq += 1
                step = "tools/call echo #%d" % seq
                message = "u%d-%d" % (i, seq)
                body = rpc(seq, "tools/call", {"name": "echo", "arguments": {"message": message}})
                sent = now()
                self.inflight[i] = sent
                status, headers, answer = await self.exchange(conn, i, step, body)
                latency = now() - sent
                del self.inflight[i]
                m = message_for(headers, answer, seq)
                if status != 200 or m is None or "result" not in m:
                    raise Failure("HTTP %d: %r" % (status, answer[:300]))
                texts = [c.get("text") for c in m["result"].get("content", []) if isinstance(c, dict)]
                if "Echo: " + message not in texts:
                    raise Failure("the answer does not echo %r: %r" % (message, answer[:300]))
                self.calls.append((i, sent, latency))
                self.answered[i] += 1
                await asyncio.sleep(self.rng.uniform(self.lo, self.hi))
        except Failure as e:
            if not self.stop:
                self.fail(i, step, str(e))
        except asyncio.CancelledError:
            pass
        except Exception as e:  # a bug here, or an answer of a shape nobody expected
            if not self.stop:
                self.fail(i, step, "%s: %s" % (type(e).__name__, e))
        finally:
            conn.close()

    async def phase(self, seconds, until=None):
        """Waits seconds (or until the event is set); False if the run failed meanwhile."""
        waits = [asyncio.ensure_future(self.failed.wait())]
        if until is not None:
            waits.append(asyncio.ensure_future(until.wait()))
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        return not self.failed.is_set()

    async def main(self):
        a, n = self.args, len(self.tokens)
        before = router_probe.snapshot(a.router_pid)
        if before["instances"]["count"]:
            sys.exit("router_density: the router already has %d child processes" % before["instances"]["count"])
        log("router before: RSS %d KiB, PSS %d KiB, %d open files"
            % (before["router"]["rss_kib"], before["router"]["pss_kib"], before["router"]["fds"]["total"]))
        tasks = [asyncio.ensure_future(self.user(i)) for i in range(n)]
        t_begin = now()
        result = {"active": n, "concurrency": a.concurrency, "interval_s": [self.lo, self.hi],
                  "settle_s": a.settle, "steady_s": a.steady, "before": before}
        try:
            ok = await self.phase(a.start_timeout, self.all_started)
            if ok and not self.all_started.is_set():
                self.fail(None, "starts", "only %d of %d instances started within %g s"
                          % (len(self.starts), n, a.start_timeout))
            if not self.failed.is_set():
                first = min(s for _, s, _ in self.starts)
                last = max(t for _, _, t in self.starts)
                span = last - first
                result["starts"] = dict(lat([(t - s) * 1e3 for _, s, t in self.starts]), span_s=span,
                                        per_s=n / span if span > 0 else float("nan"))
                log("all %d started in %.2f s (first initialize sent → last first answer); a start p50 %.1f ms, p99 %.1f ms"
                    % (n, span, result["starts"]["p50_ms"], result["starts"]["p99_ms"]))
            if not self.failed.is_set() and await self.phase(a.settle):
                silent = [i for i in range(n) if not self.answered[i]]
                if silent:
                    self.fail(silent[0], "settle", "%d users had no call answered within %g s of the last start"
                              % (len(silent), a.settle))
            if not self.failed.is_set():
                log("steady state: %g s of calls" % a.steady)
                cpu0 = await asyncio.to_thread(cpu_now, a.router_pid)
                s0, stat0 = now(), proc_stat()
                ok = await self.phase(a.steady)
                s1, stat1 = now(), proc_stat()
                cpu1 = await asyncio.to_thread(cpu_now, a.router_pid)
            if not self.failed.is_set():
                log("snapshot of the router and its %d instances (calls go on)" % n)
                after = await asyncio.wait_for(asyncio.to_thread(router_probe.snapshot, a.router_pid), 300)
                s2 = now()
                # calls sent in the steady window get their answer (or fail) within --timeout
                deadline = now() + a.timeout + 1
                while any(t < s1 for t in self.inflight.values()) and now() < deadline and not self.failed.is_set():
                    await asyncio.sleep(0.05)
                window = [l * 1e3 for _, t, l in self.calls if s0 <= t < s1]
                result["steady"] = dict(lat(window), window_s=s1 - s0, calls_per_s=len(window) / (s1 - s0),
                                        router_cpu_s=router_probe.cpu_delta_s(cpu0[0], cpu1[0]),
                                        instances_cpu_s=router_probe.cpu_delta_s(cpu0[1], cpu1[1]),
                                        machine_busy_pct=busy(stat0, stat1))
                result["during_snapshot"] = dict(lat([l * 1e3 for _, t, l in self.calls if s1 <= t < s2]),
                                                 seconds=s2 - s1)
                result["after"] = after
                log("calls with all %d active: %d in %.0f s (%.0f/s), p50 %.2f ms, p99 %.2f ms, max %.2f ms"
                    % (n, len(window), s1 - s0, len(window) / (s1 - s0), result["steady"]["p50_ms"],
                       result["steady"]["p99_ms"], result["steady"]["max_ms"]))
        finally:
            self.stop = True
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks, timeout=10)
            for c in self.conns:
                c.close()
        result["calls_total"] = len(self.calls)
        result["connections_opened"] = sum(c.opens for c in self.conns)
        result["elapsed_s"] = now() - t_begin
        result["failure"] = self.failure
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
        if self.failure:
            print("router_density: FAILED: %s" % self.failure, file=sys.stderr, flush=True)
            return 1
        log("%d calls in all, %d connections opened for %d users; no failure" % (
            result["calls_total"], result["connections_opened"], n))
        return 0


def proc_stat():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v), v[3] + v[4]


def busy(a, b):
    dt, di = b[0] - a[0], b[1] - a[1]
    return 100.0 * (dt - di) / dt if dt > 0 else 0.0


def cpu_now(router_pid):
    """CPU time per thread of the router, and of all its descendants (the instances)."""
    return (router_probe.task_cpu_ms([router_pid]),
            router_probe.task_cpu_ms(router_probe.descendants([router_pid])))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--active", type=int, required=True)
    p.add_argument("--router-pid", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--interval", default="3-5")
    p.add_argument("--settle", type=float, default=10)
    p.add_argument("--steady", type=float, default=60)
    p.add_argument("--start-timeout", type=float, default=900)
    p.add_argument("--timeout", type=float, default=30)
    a = p.parse_args()
    lo, hi = (float(x) for x in a.interval.split("-"))
    if not 0 < lo <= hi or a.settle < hi + 1 or a.concurrency < 1 or a.active < 1:
        sys.exit("router_density: want 0 < interval low <= high, --settle >= high + 1, --concurrency >= 1, --active >= 1")
    tokens = [t.strip() for t in open(a.tokens) if t.strip()][:a.active]
    if len(tokens) < a.active:
        sys.exit("router_density: %d tokens in %s, %d wanted" % (len(tokens), a.tokens, a.active))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < a.active + 64:
        sys.exit("router_density: open-files limit %d < %d (one connection per user)" % (soft, a.active + 64))
    sys.exit(asyncio.run(Run(a, tokens).main()))


if __name__ == "__main__":
    main()
