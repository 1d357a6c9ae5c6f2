-- bench/wrk/put_distinct.lua -- PUT a fresh key with every request, so
-- every request is a new log entry and a new key in the store.
--
--   wrk -t2 -c64 -d10s -s bench/wrk/put_distinct.lua http://127.0.0.1:PORT -- TAG [VALUE_BYTES]
--
-- Keys are TAG.<thread>.<n> (n counts up per thread), so runs with
-- different TAGs never overwrite each other; values are VALUE_BYTES
-- (default 100) bytes.  done() prints one line for bench/durable to parse:
--   RESULT requests=N duration_us=N errors=N non200=N p50_us=N p99_us=N max_us=N
-- (errors: socket errors and timeouts; non200: answers other than 200).

local tag, value = "run", nil
local counter, non200 = 0, 0
local threads, nthreads = {}, 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  threads[#threads + 1] = thread
end

function init(args)
  tag = args[1] or tag
  local vbytes = tonumber(args[2]) or 100
  value = ("0123456789abcdef"):rep(math.ceil(vbytes / 16)):sub(1, vbytes)
end

function request()
  counter = counter + 1
  return wrk.format("PUT", ("/kv/%s.%d.%d"):format(tag, tid, counter), nil, value)
end

function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
  local e = summary.errors
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (tonumber(t:get("non200")) or 0) end
  io.write(("RESULT requests=%d duration_us=%d errors=%d non200=%d p50_us=%d p99_us=%d max_us=%d\n"):format(
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, bad,
    latency:percentile(50), latency:percentile(99), latency.max))
end
