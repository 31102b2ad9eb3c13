-- wrk script for bench.ingest and bench.run_invitations: POST /v1/responses (or the path in
-- CX_WRK_PATH, e.g. /v1/invitations), each request with a new external_id.
-- CX_WRK_BODIES names a Lua file returning {{prefix, suffix}, ...}: a body split where the
-- external_id goes. CX_WRK_KEY is the API key, CX_WRK_RUN tags the ids of this run.
local bodies = dofile(os.getenv("CX_WRK_BODIES"))
local run = os.getenv("CX_WRK_RUN") or "0"
local path = os.getenv("CX_WRK_PATH") or "/v1/responses"
local headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer " .. os.getenv("CX_WRK_KEY"),
}
local threads = {}
local counter = 0
created = 0
other = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function request()
  counter = counter + 1
  local parts = bodies[(counter % #bodies) + 1]
  local body = parts[1] .. "wrk" .. run .. "-" .. tid .. "-" .. counter .. parts[2]
  return wrk.format("POST", path, headers, body)
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
