#!/usr/bin/env python3
"""The stdio child's own tools/call ceiling, with no HTTP in the way.

usage: stdio_ceiling.py N DEPTH -- CMD ARGS...

Spawns CMD, initializes it, warms it up, then sends N tools/call echo requests over its
stdin and reads the answers from its stdout:
  * DEPTH=1: strictly sequential (send one, wait for its answer, send the next);
  * DEPTH>1: DEPTH requests kept in flight (what a gateway that pipelines concurrent HTTP
    requests into one child can at best get out of it); answers that arrive together are
    replaced by one write carrying as many new requests.
The client side is kept as cheap as Python allows (pre-formatted requests, answers matched
by a byte search for their id instead of a JSON parse) so that the figure is the child's.
Prints: RESULT calls_per_s=… p50_us=… p99_us=… n=… depth=…
Bounded: N requests, and a 120 s deadline on the whole run."""
import json, os, selectors, subprocess, sys, time

n = int(sys.argv[1]); depth = int(sys.argv[2]); cmd = sys.argv[sys.argv.index("--") + 1:]
DEADLINE = time.monotonic() + 120
p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
fin, fout = p.stdin.fileno(), p.stdout.fileno()
sel = selectors.DefaultSelector(); sel.register(fout, selectors.EVENT_READ)
REQ = ('{"jsonrpc":"2.0","id":%d,"method":"tools/call",'
       '"params":{"name":"echo","arguments":{"message":"hello"}}}\n')
buf = b""

def write_all(data):
    view = memoryview(data)
    while view:
        view = view[os.write(fin, view):]

def read_lines():
    """Block until at least one full line arrives; return the complete lines."""
    global buf
    while True:
        if time.monotonic() > DEADLINE:
            p.kill(); sys.exit("stdio_ceiling: deadline exceeded")
        if b"\n" in buf:
            lines = buf.split(b"\n"); buf = lines.pop()
            return lines
        if not sel.select(timeout=5): continue
        chunk = os.read(fout, 1 << 16)
        if not chunk: sys.exit("stdio_ceiling: child closed stdout")
        buf += chunk

def answer_id(line):
    """The numeric id of a response line, or None for notifications / requests."""
    if b'"method"' in line: return None
    k = line.find(b'"id":')
    if k < 0: return None
    k += 5; e = k
    while e < len(line) and 48 <= line[e] <= 57: e += 1
    if e == k: return None
    if b'"result"' not in line: sys.exit("stdio_ceiling: error answer %r" % line[:300])
    return int(line[k:e])

write_all((json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}) + "\n").encode())
while not any(answer_id(l) == 0 for l in read_lines()): pass
write_all(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')

def run(count, first_id, depth, lat=None):
    t_sent = {}; sent = done = 0
    def send(k):
        nonlocal sent
        now = time.perf_counter(); out = []
        for _ in range(k):
            i = first_id + sent; t_sent[i] = now; out.append(REQ % i); sent += 1
        write_all("".join(out).encode())
    send(min(depth, count))
    while done < count:
        got = 0
        for line in read_lines():
            i = answer_id(line)
            if i is None or i not in t_sent: continue
            t = t_sent.pop(i); done += 1; got += 1
            if lat is not None: lat.append(time.perf_counter() - t)
        if got and sent < count: send(min(got, count - sent))

run(min(1000, n), 1_000_000, depth)  # warm-up (JIT)
lat = []
t0 = time.perf_counter(); run(n, 1, depth, lat); dt = time.perf_counter() - t0
p.kill(); p.wait()
lat.sort()
pct = lambda q: int(lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6)
print("RESULT calls_per_s=%.0f p50_us=%d p99_us=%d n=%d depth=%d" % (n / dt, pct(0.5), pct(0.99), n, depth))
