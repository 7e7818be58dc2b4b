-- wrk script for bench/run.sh. One script, chosen by environment variables:
--   BENCH_MODE  read_hot | read_spread | write_one | write_spread | health | env | post
--   BENCH_PATH, BENCH_BODY  for `post`: the path and JSON body sent every time
--               (transit encrypt and decrypt of 1 KiB)
--   BENCH_TOKEN the X-Vault-Token to send
--   BENCH_KEYS  how many pre-populated keys to spread over (default 1000)
-- Keys are secret/data/bench/k<N>; the hot key is k0.
-- done() prints one machine-readable line the driver parses.

local mode = os.getenv("BENCH_MODE") or "read_hot"
local token = os.getenv("BENCH_TOKEN") or "root"
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")

-- About 200 bytes of JSON, as the pre-populated secrets.
local body = '{"data":{"value":"' .. string.rep("w", 180) .. '"}}'

wrk.headers["X-Vault-Token"] = token
if mode == "write_one" or mode == "write_spread" then
  wrk.method = "PUT"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = body
end
if mode == "post" then
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = os.getenv("BENCH_BODY")
end

function init(args)
  -- Each wrk thread gets its own Lua state; seed it differently.
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

local function key()
  if mode == "read_spread" or mode == "write_spread" then
    return "/v1/secret/data/bench/k" .. math.random(0, keys - 1)
  end
  return "/v1/secret/data/bench/k0"
end

function request()
  if mode == "health" then
    return wrk.format("GET", "/v1/sys/health")
  end
  if mode == "post" then
    return wrk.format(nil, os.getenv("BENCH_PATH"))
  end
  if mode == "env" then
    return wrk.format("GET", "/v1/lockana/projects/bench/env")
  end
  return wrk.format(nil, key())
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "BENCH rps=%.1f p50_us=%d p99_us=%d requests=%d non2xx=%d sockerr=%d\n",
    summary.requests / secs, latency:percentile(50), latency:percentile(99),
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout))
end
