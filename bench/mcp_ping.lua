-- wrk script: POST a JSON-RPC `ping` to an MCP Streamable HTTP endpoint (bench/router.sh).
-- Like bench/mcp_call.lua, but `ping` is not a tool call, so the router does not audit it:
-- router.sh uses it to tell the audit log's cost apart from the proxying's.
-- env: MCP_SESSION (session id, may be empty), MCP_TOKEN (bearer token, may be empty)
local session = os.getenv("MCP_SESSION") or ""
local token = os.getenv("MCP_TOKEN") or ""

local threads = {}
local next_tid = 0
setup = function(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

local counter = 0
local stride = 64 -- ids are counter*stride + tid: unique across threads
init = function(argv)
  tid = tid or 0
end
request = function()
  counter = counter + 1
  local body = string.format('{"jsonrpc":"2.0","id":%d,"method":"ping"}', counter * stride + tid)
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Accept"] = "application/json, text/event-stream"
  headers["MCP-Protocol-Version"] = "2025-06-18"
  if session ~= "" then headers["Mcp-Session-Id"] = session end
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("POST", nil, headers, body)
end
bad = 0
response = function(status, headers, body)
  if status ~= 200 or not string.find(body, '"result"', 1, true) then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local bad_total = 0
  for _, t in ipairs(threads) do bad_total = bad_total + (t:get("bad") or 0) end
  io.write(string.format("RESULT rps=%.0f p50_us=%d p99_us=%d errors_non200=%d bad_body=%d requests=%d socket_errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    summary.errors.status, bad_total, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
