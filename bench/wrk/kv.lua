-- bench/wrk/kv.lua -- one wrk script for every workload of bench/run.
--
--   wrk -t2 -c16 -d10s -s bench/wrk/kv.lua http://127.0.0.1:PORT -- SYSTEM OP [KEYS [VALUE_BYTES]]
--
-- SYSTEM: rafting | etcd      OP: put | get | stale
--   rafting put    PUT  /kv/bench%2F<n>            body: the value
--   rafting get    GET  /kv/bench%2F<n>            (linearizable, ReadIndex)
--   rafting stale  GET  /kv/bench%2F<n>?stale      (local state)
--   etcd    put    POST /v3/kv/put   {"key":b64,"value":b64}
--   etcd    get    POST /v3/kv/range {"key":b64}                  (linearizable)
--   etcd    stale  POST /v3/kv/range {"key":b64,"serializable":true}
-- Keys cycle through KEYS (default 1000) names, each thread from its own
-- offset; values are VALUE_BYTES (default 100) bytes, the same for both.
-- done() prints one line for bench/run to parse:
--   RESULT requests=N duration_us=N errors=N p50_us=N p99_us=N

local system, op, nkeys, vbytes = "rafting", "put", 1000, 100
local reqs, i = {}, 0

local threads, counter = {}, 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  threads[#threads + 1] = thread
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  local out = {}
  for p = 1, #s, 3 do
    local a, b, c = s:byte(p, p + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for k = 3, 0, -1 do
      local v = math.floor(n / 64 ^ k) % 64
      q[#q + 1] = b64chars:sub(v + 1, v + 1)
    end
    if not b then q[3], q[4] = "=", "=" elseif not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

function init(args)
  system = args[1] or system
  op = args[2] or op
  nkeys = tonumber(args[3]) or nkeys
  vbytes = tonumber(args[4]) or vbytes
  local value = ("0123456789abcdef"):rep(math.ceil(vbytes / 16)):sub(1, vbytes)
  for n = 1, nkeys do
    local key = ("bench/%06d"):format(n)
    local r
    if system == "rafting" then
      local path = "/kv/" .. key:gsub("/", "%%2F")
      if op == "put" then r = wrk.format("PUT", path, nil, value)
      elseif op == "get" then r = wrk.format("GET", path)
      else r = wrk.format("GET", path .. "?stale") end
    else
      local body
      if op == "put" then
        body = ('{"key":"%s","value":"%s"}'):format(b64(key), b64(value))
        r = wrk.format("POST", "/v3/kv/put", { ["Content-Type"] = "application/json" }, body)
      else
        body = ('{"key":"%s"%s}'):format(b64(key), op == "stale" and ',"serializable":true' or "")
        r = wrk.format("POST", "/v3/kv/range", { ["Content-Type"] = "application/json" }, body)
      end
    end
    reqs[n] = r
  end
  i = ((tonumber(tid) or 1) - 1) * 97
end

function request()
  i = i % nkeys + 1
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(("RESULT requests=%d duration_us=%d errors=%d p50_us=%d p99_us=%d\n"):format(
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
