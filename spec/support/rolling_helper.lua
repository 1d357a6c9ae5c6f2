-- rolling_helper.lua -- a rolling restart of a durable cluster under
-- writers, shared by spec/cluster/rolling_spec.lua and bench/rolling.lua:
-- writer processes (spec/support/roll_writer.lua) that record when each
-- write was acknowledged, the restart of every node in turn, the longest
-- gap between acknowledgements, and the read-back of every acknowledged
-- write on every member.

local cluster = require "rafting.testing.cluster"
local proc = require "rafting.proc"
local lfs = require "lfs"
local D = require "spec.support.durability_helper"

local R = {}

-- A 3-node cluster (opts.timing: D.TIMING unless given), WAL with
-- fdatasync, data in its temp dir.
function R.start(opts)
  opts = opts or {}
  opts.nodes = opts.nodes or 3
  return D.start(opts)
end

-- -- writers ----------------------------------------------------------------

local W = {}
W.__index = W

-- R.writers(c, { n = 2, prefix = "r.", deadline_ms = 120000 }): writer i
-- tries node ids[i] first, then the others in id order.
function R.writers(c, o)
  local tag = o.prefix:gsub("[^%w]", "_")
  local dir = c.dir .. "/roll-" .. tag
  assert(lfs.mkdir(dir))
  local w = setmetatable({ c = c, dir = dir, stop_path = dir .. "/STOP",
                           procs = {}, acks = {}, errors = {} }, W)
  for i = 1, o.n or 2 do
    local order = {}
    for k = 0, #c.ids - 1 do order[#order + 1] = c.nodes[c.ids[(i - 1 + k) % #c.ids + 1]].http end
    local out = ("%s/w%d.out"):format(dir, i)
    local pid = assert(cluster.spawn{
      argv = { "lua5.4", "spec/support/roll_writer.lua", out, table.concat(order, ","),
               ("%sw%d."):format(o.prefix, i), tostring(o.deadline_ms or 120000),
               w.stop_path },
      env = { LUA_CPATH = package.cpath },
      stdout = dir .. "/writers.log", stderr = dir .. "/writers.log" })
    w.procs[i] = { pid = pid, out = out, offset = 0, partial = "" }
  end
  return w
end

-- Read what the writers appended since the last poll; the number of acks.
function W:poll()
  for i, p in ipairs(self.procs) do
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
        local c1 = line:sub(1, 1)
        if c1 == "#" then
          p.summary = line
        elseif c1 == "!" then
          local t, what = line:match("^! (%S+) (.*)$")
          self.errors[#self.errors + 1] = { t = tonumber(t), what = what, writer = i }
        else
          local k, v, idx, t = line:match("^(%S+) (%S+) (%d+) (%S+)$")
          assert(k, "writer output: bad line " .. line)
          self.acks[#self.acks + 1] = { key = k, value = v, index = tonumber(idx),
                                        t = tonumber(t), writer = i }
        end
      end
      p.partial = data:sub(last)
    end
  end
  return #self.acks
end

function W:wait_acks(n, timeout_ms, what)
  return self.c:wait_for(function()
    local k = self:poll()
    if k >= n then return k end
    return false, ("%d of %d writes acknowledged"):format(k, n)
  end, timeout_ms or 20000, what or (n .. " acknowledged writes"))
end

-- Tell the writers to stop, wait for each to exit 0, read the rest.
function W:stop()
  local f = assert(io.open(self.stop_path, "w"))
  f:close()
  for i, p in ipairs(self.procs) do
    if not p.exited then
      local how, code = cluster.wait_pid(p.pid, 15000)
      p.exited = true
      assert(how == "exited" and code == 0,
             ("writer %d: %s %s"):format(i, tostring(how), tostring(code)))
    end
  end
  self:poll()
  return self.acks
end

function W:kill()
  for _, p in ipairs(self.procs) do
    if not p.exited then
      proc.kill(p.pid, "KILL")
      cluster.wait_pid(p.pid, 5000)
      p.exited = true
    end
  end
end

-- "503.transfer_in_progress:3,connect:2" over every writer's failed attempts
function W:error_counts(from, to)
  local n, keys = {}, {}
  for _, e in ipairs(self.errors) do
    if (not from or e.t >= from) and (not to or e.t <= to) then
      if not n[e.what] then keys[#keys + 1] = e.what end
      n[e.what] = (n[e.what] or 0) + 1
    end
  end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = k .. ":" .. n[k] end
  return table.concat(keys, ","), n
end

-- The longest gap between successive acknowledgements (of any writer)
-- with t in [from, to]: gap_ms, its start, its end.
function W:longest_gap(from, to)
  local ts = {}
  for _, a in ipairs(self.acks) do
    if a.t >= from and a.t <= to then ts[#ts + 1] = a.t end
  end
  table.sort(ts)
  local gap, at, till = 0, from, from
  for i = 2, #ts do
    if ts[i] - ts[i - 1] > gap then gap, at, till = ts[i] - ts[i - 1], ts[i - 1], ts[i] end
  end
  return gap, at, till, #ts
end

-- -- the restart ------------------------------------------------------------

-- The part of node id's log since its last start.
function R.last_log(c, id)
  local log = c:log(id) or ""
  local at = 1
  for s in log:gmatch("()== harness: start #%d+ of node %d+ ==") do at = s end
  return log:sub(at)
end

-- Wait until node id has applied what the leader had committed when the
-- call began.
local function wait_caught_up(c, id, timeout_ms)
  local l = c:leader(timeout_ms)
  local ls = assert(c:status(l))
  local target = ls.commit
  c:wait_for(function()
    local s, err = c:status(id)
    if not s then return false, err end
    return s.applied >= target, ("node %d applied %d, leader %d had committed %d")
                                 :format(id, s.applied, l, target)
  end, timeout_ms, ("node %d to catch up to %d"):format(id, target))
end

-- Restart every node once, the followers (in id order) first and the
-- leader last, waiting after each until the node caught up and the
-- writers got settle more acknowledgements.  opts.kill_leader: SIGKILL the
-- leader instead of SIGTERM.  Returns a list of steps:
--   { id, was_leader, term, t_stop, t_down, t_up, t_caught, handed_to }
function R.roll(c, w, opts)
  opts = opts or {}
  local settle = opts.settle or 100
  local timeout = opts.timeout_ms or 20000
  local steps, done = {}, {}
  for _ = 1, #c.ids do
    local leader, term = c:leader(timeout)
    local id
    for _, x in ipairs(c.ids) do
      if not done[x] and x ~= leader then id = x break end
    end
    id = id or leader
    local st = { id = id, was_leader = id == leader, term = term }
    st.t_stop = proc.now_ms()
    if st.was_leader and opts.kill_leader then c:kill(id) else c:stop(id, timeout) end
    st.t_down = proc.now_ms()
    if st.was_leader and not opts.kill_leader then
      st.handed_to = tonumber(R.last_log(c, id):match("handed leadership over to node (%d+)"))
    end
    c:start_node(id, { timeout_ms = timeout })
    st.t_up = proc.now_ms()
    wait_caught_up(c, id, timeout)
    st.t_caught = proc.now_ms()
    w:wait_acks(w:poll() + settle, timeout, ("%d more writes after node %d came back")
                                            :format(settle, id))
    done[id] = true
    steps[#steps + 1] = st
  end
  return steps
end

-- -- checks -----------------------------------------------------------------

-- Every acknowledged write, read back with a linearizable GET on each
-- member: { [id] = { found = n, bad = { "key ...", ... } } }.
function R.read_back(c, acks)
  local out = {}
  for _, id in ipairs(c.ids) do
    local found, bad = D.check_linearizable(c, acks, { id })
    out[id] = { found = found, bad = bad }
  end
  return out
end

return R
