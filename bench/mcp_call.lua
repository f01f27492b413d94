-- wrk script: POST a JSON-RPC tools/call to an MCP streamable HTTP endpoint.
-- env: MCP_SESSION (session id, may be empty), MCP_TOOL (default echo), MCP_ARGS (json)
-- Copied from shared/bench/mcp_call.lua, with two changes for bench/run.sh:
--   * request ids are unique across wrk threads (each thread has its own Lua state and
--     counter, so the original sent ids 1,2,3… from every thread at once; gateways that
--     route responses by id within one session could then misroute them);
--   * responses that are 200 but carry no "result" are counted and reported (bad_body=).
local session = os.getenv("MCP_SESSION") or ""
local tool = os.getenv("MCP_TOOL") or "echo"
local args = os.getenv("MCP_ARGS") or '{"message":"hello"}'
local token = os.getenv("MCP_TOKEN") or ""

local threads = {}
local next_tid = 0
setup = function(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

local counter = 0
local stride = 64 -- more than any -t we use; ids are counter*stride + tid
init = function(argv)
  tid = tid or 0
end
request = function()
  counter = counter + 1
  local id = counter * stride + tid
  local body = string.format('{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s","arguments":%s}}', id, tool, args)
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
