-- durability_helper.lua -- what the durability specs share: a seeded
-- generator, a cluster on WAL storage inside the harness's temp dir, a
-- keep-alive HTTP client, writer processes (spec/support/dur_writer.lua)
-- and the checks that every acknowledged write is there.

local cluster = require "rafting.testing.cluster"
local proc = require "rafting.proc"
local socket = require "socket"
local cjson = require "cjson"
local lfs = require "lfs"
local CH = require "spec.support.cluster_helper"

local D = {}

D.TIMING = CH.TIMING
D.ELECTION_MS = CH.ELECTION_MS
D.others = CH.others
D.shutdown = CH.shutdown

-- -- seeds ----------------------------------------------------------------

-- The run's seed: RAFTING_DUR_SEED replays one, else one from the clock.
function D.seed()
  local s = tonumber(os.getenv("RAFTING_DUR_SEED") or "")
  if s then return math.tointeger(s) end
  return (proc.now_ms() * 7919 + proc.getpid()) % 1000000007
end

-- A small deterministic generator (64-bit LCG, high bits), independent of
-- math.random (which busted may seed itself).  r(n) -> 1..n; r() -> [0,1).
function D.rng(seed)
  local s = seed * 2654435761 + 1
  return function(n)
    s = s * 6364136223846793005 + 1442695040888963407
    local x = (s >> 33) & 0x7fffffff
    if n then return x % n + 1 end
    return x / 0x80000000
  end
end

-- -- the cluster ------------------------------------------------------------

-- A cluster whose nodes keep a WAL in <temp dir>/data-<id> (the harness
-- puts a relative storage directory inside its temp dir; the directories
-- survive kill and restart, and go with shutdown()).
function D.start(opts)
  opts = opts or {}
  opts.timing = opts.timing or D.TIMING
  opts.storage = opts.storage or "data-%d"
  opts.wal = opts.wal or { sync = "always" }
  opts.limits = opts.limits or {}
  opts.limits.commit_timeout_ms = opts.limits.commit_timeout_ms or 2000
  opts.limits.forward_timeout_ms = opts.limits.forward_timeout_ms or 2500
  return cluster.start(opts)
end

function D.data_dir(c, id)
  return (c.config.storage:gsub("%%d", tostring(id)))
end

-- The WAL segment files of node id, oldest first (full paths).
function D.segments(c, id)
  local dir = D.data_dir(c, id) .. "/wal"
  local out = {}
  for name in lfs.dir(dir) do
    if name:match("^%x+%-%x+%.wal$") then out[#out + 1] = name end
  end
  table.sort(out)
  for i, n in ipairs(out) do out[i] = dir .. "/" .. n end
  return out
end

-- SIGKILL every running node at once, then reap them: a whole-cluster
-- crash, with no node outliving another by more than the loop below.
function D.kill_all_nodes(c, order)
  order = order or c:running()
  for _, id in ipairs(order) do
    local n = c.nodes[id]
    if n.state == "running" or n.state == "paused" then proc.kill(n.pid, "KILL") end
  end
  for _, id in ipairs(order) do
    local n = c.nodes[id]
    if n.state == "running" or n.state == "paused" then c:kill(id) end
  end
end

-- Start every node that is not running, then wait until all answer.
function D.start_all_nodes(c, order)
  for _, id in ipairs(order or c.ids) do
    local n = c.nodes[id]
    if n.state ~= "running" and n.state ~= "paused" then
      c:start_node(id, { wait = false })
    end
  end
  c:wait_healthy(nil, 15000)
end

-- -- a keep-alive client ----------------------------------------------------

local Client = {}
Client.__index = Client

function D.client(c, id, timeout_ms)
  local n = c.nodes[id]
  return setmetatable({ host = n.host, port = n.port, id = id,
                        timeout = (timeout_ms or 5000) / 1000 }, Client)
end

function Client:close()
  if self.sock then self.sock:close() self.sock = nil end
end

-- code, body | nil, err; reconnects as needed, never retries
function Client:request(method, path, body)
  if not self.sock then
    local s = socket.tcp()
    s:settimeout(self.timeout)
    local ok, err = s:connect(self.host, self.port)
    if not ok then s:close() return nil, "connect: " .. err end
    self.sock = s
  end
  local s = self.sock
  local ok, err = s:send(("%s %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s")
                         :format(method, path, body and #body or 0, body or ""))
  if not ok then self:close() return nil, "send: " .. err end
  local line
  line, err = s:receive("*l")
  local code = line and tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  if not code then self:close() return nil, "status: " .. tostring(err or line) end
  local len, keep = 0, true
  while true do
    line, err = s:receive("*l")
    if not line then self:close() return nil, "headers: " .. err end
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then
      k = k:lower()
      if k == "content-length" then len = tonumber(v)
      elseif k == "connection" and v:lower() == "close" then keep = false end
    end
  end
  local data = ""
  if len > 0 then
    data, err = s:receive(len)
    if not data then self:close() return nil, "body: " .. err end
  end
  if not keep then self:close() end
  return code, data
end

-- GET with retries while the answer is 503 or the connection fails (a
-- node that just restarted, a leader not yet able to serve reads), until
-- deadline_ms; any other answer is returned as is.
function Client:get(path, deadline_ms)
  local deadline = proc.now_ms() + (deadline_ms or 10000)
  while true do
    local code, body = self:request("GET", path)
    if code and code ~= 503 then return code, body end
    if proc.now_ms() >= deadline then return code, body end
    proc.sleep_ms(cluster.POLL_MS)
  end
end

-- -- writer processes -------------------------------------------------------

local Writers = {}
Writers.__index = Writers

local function mkdir(p) assert(lfs.mkdir(p)) end

-- D.writers(c, { n = 4, prefix = "d1.", max = 2000, deadline_ms = 20000,
--   seed = s, targets = { ids } }) -> a set of running writer processes.
-- Writer i writes keys PREFIX .. "w<i>." .. seq and talks first to
-- targets[(i-1) % #targets + 1] (followers forward), then the next node.
function D.writers(c, o)
  local tag = o.prefix:gsub("[^%w]", "_")
  local dir = c.dir .. "/writers-" .. tag
  mkdir(dir)
  local w = setmetatable({ dir = dir, stop_path = dir .. "/STOP", procs = {},
                           acks = {}, c = c }, Writers)
  local targets = o.targets or c.ids
  for i = 1, o.n do
    -- first its target, then every node in turn
    local first = targets[(i - 1) % #targets + 1]
    local order, at = { first }, 1
    for k, id in ipairs(c.ids) do if id == first then at = k end end
    for k = 1, #c.ids - 1 do order[#order + 1] = c.ids[(at - 1 + k) % #c.ids + 1] end
    local addrs = {}
    for k, id in ipairs(order) do addrs[k] = c.nodes[id].http end
    local out = ("%s/w%d.acks"):format(dir, i)
    local pid = assert(cluster.spawn{
      argv = { "lua5.4", "spec/support/dur_writer.lua", out,
               table.concat(addrs, ","), ("%sw%d."):format(o.prefix, i),
               tostring(o.max or 100000), tostring(o.deadline_ms or 30000),
               w.stop_path, tostring((o.seed or 1) * 100 + i),
               tostring(o.value_bytes or 40) },
      stdout = dir .. "/writers.log", stderr = dir .. "/writers.log" })
    w.procs[i] = { pid = pid, out = out, offset = 0, partial = "" }
  end
  return w
end

-- Read what the writers appended since the last poll; returns the number
-- of acknowledged writes so far.
function Writers:poll()
  for _, p in ipairs(self.procs) do
    local f = io.open(p.out, "rb")
    if f then
      f:seek("set", p.offset)
      local data = f:read("a") or ""
      f:close()
      p.offset = p.offset + #data
      data = p.partial .. data
      local last = 1
      for line, e in data:gmatch("([^\n]*)\n()") do
        last = e
        if line:sub(1, 1) == "#" then
          p.summary = line
        else
          local k, v, idx = line:match("^(%S+) (%S+) (%d+)$")
          assert(k, "writer output: bad line " .. line)
          self.acks[#self.acks + 1] = { key = k, value = v, index = tonumber(idx) }
        end
      end
      p.partial = data:sub(last)
    end
  end
  return #self.acks
end

-- Wait (deadline) until the writers acknowledged at least n writes.
function Writers:wait_acks(n, timeout_ms, what)
  return self.c:wait_for(function()
    local k = self:poll()
    if k >= n then return k end
    return false, ("%d of %d writes acknowledged"):format(k, n)
  end, timeout_ms or 20000, what or (n .. " acknowledged writes"))
end

-- Tell the writers to stop (unless finish: let them reach their MAX or
-- deadline), wait for them (each exits 0), read the rest.
function Writers:stop(finish)
  if not finish then
    local f = assert(io.open(self.stop_path, "w"))
    f:close()
  end
  for i, p in ipairs(self.procs) do
    if not p.exited then
      local how, code = cluster.wait_pid(p.pid, finish and 60000 or 15000)
      p.exited = true
      assert(how == "exited" and code == 0,
             ("writer %d: %s %s"):format(i, tostring(how), tostring(code)))
    end
  end
  self:poll()
  return self.acks
end

-- SIGKILL the writers that still run (after_each, after a failure).
function Writers:kill()
  for _, p in ipairs(self.procs) do
    if not p.exited then
      proc.kill(p.pid, "KILL")
      cluster.wait_pid(p.pid, 5000)
      p.exited = true
    end
  end
end

-- totals over the writers' summary lines: sent, acked, and the other
-- outcomes ("503:4,connect:12")
function Writers:summary()
  local sent, acked, other = 0, 0, {}
  for _, p in ipairs(self.procs) do
    local s, a, o = (p.summary or ""):match("sent=(%d+) acked=(%d+) other=(%S*)")
    sent, acked = sent + (tonumber(s) or 0), acked + (tonumber(a) or 0)
    for k, n in (o or ""):gmatch("([^:,]+):(%d+)") do
      other[k] = (other[k] or 0) + tonumber(n)
    end
  end
  local o = {}
  for k, n in pairs(other) do o[#o + 1] = k .. ":" .. n end
  table.sort(o)
  return sent, acked, table.concat(o, ",")
end

function Writers:max_index()
  local m = 0
  for _, a in ipairs(self.acks) do if a.index > m then m = a.index end end
  return m
end

-- -- checks -----------------------------------------------------------------

-- Linearizable GET of every acknowledged write, spread over the nodes in
-- ids; returns found, and a list of what is missing or wrong.
function D.check_linearizable(c, acks, ids, r)
  ids = ids or c.ids
  local clients = {}
  for _, id in ipairs(ids) do clients[#clients + 1] = D.client(c, id) end
  local found, bad = 0, {}
  for _, a in ipairs(acks) do
    local cl = clients[r and r(#clients) or 1]
    local code, body = cl:get("/kv/" .. a.key, 10000)
    if code == 200 and body == a.value then
      found = found + 1
    else
      bad[#bad + 1] = ("%s (index %d) via node %d: %s %s"):format(a.key, a.index,
        cl.id, tostring(code), tostring(body):sub(1, 80))
    end
  end
  for _, cl in ipairs(clients) do cl:close() end
  return found, bad
end

-- Node id's own state for every key with prefix (stale range read, split
-- per prefix so no answer is capped): { key = value }.
function D.stale_range(c, id, prefix)
  local cl = D.client(c, id)
  local code, body = cl:request("GET", "/kv?stale&limit=10000&prefix=" .. prefix)
  cl:close()
  assert(code == 200, ("range %s on node %d: %s %s"):format(prefix, id,
         tostring(code), tostring(body)))
  local v = cjson.decode(body)
  assert(not v.more, "range " .. prefix .. " has more than 10000 keys")
  local out = {}
  for _, it in ipairs(v.items) do out[it.key] = it.value end
  return out, #v.items
end

-- Wait until node id applied at least index (its applied catches up).
function D.wait_applied(c, id, index, timeout_ms)
  return c:wait_for(function()
    local s, err = c:status(id)
    if not s then return false, err end
    if s.applied >= index then return s end
    return false, ("node %d applied %d, want %d"):format(id, s.applied, index)
  end, timeout_ms or 20000, ("node %d applied >= %d"):format(id, index))
end

-- TAP-safe report line (busted -o TAP shows "# ..." lines as comments).
function D.report(fmt, ...)
  io.stdout:write("# ", fmt:format(...), "\n")
  io.stdout:flush()
end

return D
