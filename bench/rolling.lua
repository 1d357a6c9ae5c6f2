--[[
bench/rolling.lua -- what a change of leader costs clients, with and
without a leadership transfer, on a durable 3-node cluster (issue 9,
item 8).  Run through bench/rolling (which sets the Lua paths); see
bench/README.md, "bench/rolling".

    lua5.4 bench/rolling.lua TRANSFERS KILLS ROUNDS OUT

  1. Leadership transfer: TRANSFERS times, POST /cluster/leader to the
     leader naming the next node; the round trip of that request, and the
     time from sending it to the first write the new leader acknowledges
     (a PUT sent to it right after the 200).  Reference row: KILLS times,
     SIGKILL of the leader, then PUT to the other nodes in turn (retrying
     every 503 / refused connection at once, 5 ms apart after a whole round)
     until one is acknowledged; the killed node is started again and
     caught up before the next round.
  2. Rolling restart of the 3 nodes under two writer processes
     (spec/support/roll_writer.lua), followers first, the leader last:
     ROUNDS times with SIGTERM for every node (the leader hands over and
     drains), ROUNDS times with the leader SIGKILLed and started again.
     Per round: the longest gap between two acknowledged writes (of either
     writer), the writes acknowledged during the restart, the failed
     attempts by kind, and how many acknowledged writes a linearizable GET
     on each member did not find.

Timing is config/local3.lua's (election timeout 300..600 ms, heartbeat
50 ms), storage a WAL with fdatasync.  Measures, asserts nothing.  Prints a
markdown report (and writes it to OUT unless OUT is "-").
]]

local cluster = require "rafting.testing.cluster"
local proc = require "rafting.proc"
local R = require "spec.support.rolling_helper"
local D = require "spec.support.durability_helper"

local TRANSFERS = tonumber(arg[1]) or 20
local KILLS = tonumber(arg[2]) or 20
local ROUNDS = tonumber(arg[3]) or 3
local OUT = arg[4] or "-"

local function say(fmt, ...) io.stderr:write("rolling: ", fmt:format(...), "\n") end

local lines = {}
local function emit(fmt, ...)
  local s = fmt:format(...)
  lines[#lines + 1] = s
  io.stdout:write(s, "\n")
  io.stdout:flush()
end

local function pct(t, p)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  if #s == 0 then return 0 end
  return s[math.max(1, math.ceil(#s * p))]
end

local function ms(v) return ("%.1f"):format(v) end

-- PUT until a node acknowledges: ids in turn, at once after a refusal,
-- 5 ms apart after a whole round.  Returns the id that answered.
local function put_anywhere(c, ids, key)
  local i = 0
  while true do
    for _, id in ipairs(ids) do
      i = i + 1
      local code = c:http(id, "PUT", "/kv/" .. key, "v", { timeout_ms = 5000 })
      if code == 200 then return id end
    end
    proc.sleep_ms(5) -- a client's retry interval
    assert(i < 100000, "no node acknowledged a write")
  end
end

local function caught_up(c, id)
  local l = c:leader(20000)
  local target = assert(c:status(l)).commit
  c:wait_for(function()
    local s = c:status(id)
    return s and s.applied >= target, s and s.applied
  end, 20000, ("node %d caught up"):format(id))
end

-- -- 1. leadership changes ---------------------------------------------------

local function transfers(c, n)
  local rtt, first = {}, {}
  for i = 1, n do
    local old = c:leader(20000)
    local others = D.others(c, old)
    local to = others[1 + i % #others]
    local t0 = proc.now_ms()
    local code, b = c:transfer(to, old)
    local t1 = proc.now_ms()
    assert(code == 200 and b.leader == to, ("transfer %d -> %d: %s"):format(old, to, tostring(code)))
    put_anywhere(c, { to }, ("t.%d"):format(i))
    local t2 = proc.now_ms()
    rtt[#rtt + 1], first[#first + 1] = t1 - t0, t2 - t0
  end
  return rtt, first
end

local function failovers(c, n)
  local first = {}
  for i = 1, n do
    local old = c:leader(20000)
    local t0 = proc.now_ms()
    c:kill(old)
    put_anywhere(c, D.others(c, old), ("k.%d"):format(i))
    first[#first + 1] = proc.now_ms() - t0
    c:start_node(old, { timeout_ms = 20000 })
    caught_up(c, old)
  end
  return first
end

-- -- 2. rolling restarts ----------------------------------------------------

local function rolling(c, round, kill)
  local w = R.writers(c, { n = 2, prefix = ("r%d%s."):format(round, kill and "k" or "t") })
  local ok, err = pcall(function()
    w:wait_acks(w:poll() + 100, 20000)
    local t0 = proc.now_ms()
    local steps = R.roll(c, w, { kill_leader = kill })
    local t1 = proc.now_ms()
    w:stop()
    local gap, _, _, n = w:longest_gap(t0, t1)
    local top = 0
    for _, a in ipairs(w.acks) do top = math.max(top, a.index) end
    for _, id in ipairs(c.ids) do D.wait_applied(c, id, top) end
    local lost = 0
    for _, r in pairs(R.read_back(c, w.acks)) do lost = math.max(lost, #w.acks - r.found) end
    w.result = { gap = gap, n = n, errors = (w:error_counts()), lost = lost,
                 secs = (t1 - t0) / 1000, handed = steps[#steps].handed_to ~= nil }
  end)
  if not ok then w:kill() error(err, 0) end
  return w.result
end

-- -- the run ----------------------------------------------------------------

local function header()
  local cpu = io.popen("nproc"):read("l")
  local model = io.popen("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"):read("l") or "?"
  local load = io.open("/proc/loadavg"):read("l"):match("^(%S+ %S+ %S+)")
  local rev = io.popen("git rev-parse --short HEAD 2>/dev/null"):read("l") or "?"
  local dirty = io.popen("git status --porcelain -uno 2>/dev/null"):read("a") ~= "" and "+local changes" or ""
  emit("Measured %s on %s CPUs (%s), Linux %s; rafting %s%s. 3 nodes on 127.0.0.1, "
       .. "WAL with fdatasync, election timeout 300..600 ms, heartbeat 50 ms. "
       .. "Load average at the start: %s.", os.date("!%Y-%m-%d %H:%M UTC"), cpu,
       model:gsub("^%s+", ""), io.popen("uname -r"):read("l"), rev, dirty, load)
  emit("")
end

local c = R.start{ timing = D.TIMING, log_level = "warn" }
local ok, err = pcall(function()
  header()
  say("%d transfers", TRANSFERS)
  local rtt, first = transfers(c, TRANSFERS)
  say("%d failovers by SIGKILL", KILLS)
  local kfirst = failovers(c, KILLS)
  emit("Leader change, %d times each:", TRANSFERS)
  emit("")
  emit("| how | n | POST /cluster/leader answered, p50 / max ms | first write acknowledged by the new leader, p50 / max ms |")
  emit("|---|---:|---:|---:|")
  emit("| transfer (POST /cluster/leader) | %d | %s / %s | %s / %s |", #rtt, ms(pct(rtt, .5)),
       ms(pct(rtt, 1)), ms(pct(first, .5)), ms(pct(first, 1)))
  emit("| SIGKILL of the leader (election) | %d | – | %s / %s |", #kfirst,
       ms(pct(kfirst, .5)), ms(pct(kfirst, 1)))
  emit("")
  local rows = {}
  for _, kill in ipairs{ false, true } do
    for r = 1, ROUNDS do
      say("rolling restart %d of %d, leader %s", r, ROUNDS, kill and "SIGKILLed" or "SIGTERMed")
      rows[#rows + 1] = { kill = kill, round = r, res = rolling(c, r, kill) }
    end
  end
  emit("Rolling restart of the 3 nodes (followers first, the leader last) under 2 writers, %d rounds each:", ROUNDS)
  emit("")
  emit("| leader stopped by | round | longest gap between acked writes, ms | writes acked during it | restart took, s | failed attempts | acked writes lost |")
  emit("|---|---:|---:|---:|---:|---|---:|")
  for _, row in ipairs(rows) do
    local r = row.res
    emit("| %s | %d | %s | %d | %.2f | %s | %d |", row.kill and "SIGKILL, then restart"
         or "SIGTERM (transfer + drain)", row.round, ms(r.gap), r.n, r.secs,
         r.errors ~= "" and r.errors or "none", r.lost)
  end
end)
local sok = c:shutdown()
cluster.kill_all()
if not ok then
  say("failed: %s", err)
  os.exit(1)
end
if not sok then say("a node did not stop cleanly") end
if OUT ~= "-" then
  local f = assert(io.open(OUT, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
end
