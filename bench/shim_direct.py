#!/usr/bin/env python3
"""The anchor for bench/shim.sh: what a shim adds is measured against this.

usage: shim_direct.py N URL TOKEN
N times: open one keep-alive HTTP connection to the Streamable HTTP endpoint
URL, POST `initialize` and `notifications/initialized`, then 50 `tools/call
echo` exactly like shared/bench/shim_init_time.py sends them through a shim,
timing each call; DELETE the session. Prints
RESULT init_ms_median=… call_us_median=… (init: connect + initialize answered)
and SAMPLES init_ms=… (every init time, for the p95), like bench/shim_init_time.py.
"""
import http.client, json, statistics, sys, time, urllib.parse

n, url, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
u = urllib.parse.urlsplit(url)
base = {"content-type": "application/json", "accept": "application/json, text/event-stream",
        "authorization": "Bearer " + token}
inits, calls = [], []


def post(conn, msg, headers):
    conn.request("POST", u.path, json.dumps(msg), headers)
    r = conn.getresponse()
    body = r.read()
    if r.status >= 300:
        raise SystemExit("HTTP %d: %s" % (r.status, body[:200]))
    if body and "text/event-stream" in (r.getheader("content-type") or ""):
        # The response is the last data line of the stream.
        body = [l[5:] for l in body.decode().splitlines() if l.startswith("data:") and l[5:].strip()][-1]
    return r, (json.loads(body) if body else None)


for _ in range(n):
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    r, m = post(conn, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}, base)
    inits.append(time.perf_counter() - t0)
    session = dict(base, **{"mcp-session-id": r.getheader("mcp-session-id"),
                            "mcp-protocol-version": m["result"]["protocolVersion"]})
    post(conn, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    for j in range(50):
        k = 100 + j
        s = time.perf_counter()
        _, m = post(conn, {"jsonrpc": "2.0", "id": k, "method": "tools/call",
                           "params": {"name": "echo", "arguments": {"message": "x"}}}, session)
        calls.append(time.perf_counter() - s)
        assert m["id"] == k and "result" in m, m
    conn.request("DELETE", u.path, headers=session)
    conn.getresponse().read()
    conn.close()
print("RESULT init_ms_median=%.1f call_us_median=%.0f" % (statistics.median(inits) * 1e3, statistics.median(calls) * 1e6))
print("SAMPLES init_ms=" + ",".join("%.2f" % (x * 1e3) for x in inits))
