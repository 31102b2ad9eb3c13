-- wrk script for bench.run_invitations: the public submit, each request with another token.
-- CX_WRK_TOKENS names a Lua file returning {token, ...}; CX_WRK_BODY is the answers' body.
-- Thread t of n takes tokens t, t + n, t + 2n, ...: no two requests answer one invitation.
local tokens = dofile(os.getenv("CX_WRK_TOKENS"))
local body = os.getenv("CX_WRK_BODY")
local headers = {["Content-Type"] = "application/json"}
local threads = {}
local counter = 0
created = 0
other = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  stride = tonumber(os.getenv("CX_WRK_THREADS") or "2")
end

function request()
  local index = (tid - 1) + counter * stride + 1
  counter = counter + 1
  local token = tokens[index]
  if token == nil then
    token = "exhausted-tokens-exhausted-toke"  -- 404s: the run outlasted its invitations
  end
  return wrk.format("POST", "/v1/public/invitations/" .. token .. "/response", headers, body)
end

function response(status, hdrs, body)
  if status == 201 then created = created + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local made, rest = 0, 0
  for _, thread in ipairs(threads) do
    made = made + thread:get("created")
    rest = rest + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "created": %d, "not_created": %d, '
      .. '"socket_errors": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, made, rest,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
