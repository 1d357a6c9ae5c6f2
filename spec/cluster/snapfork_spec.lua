-- snapfork_spec.lua -- snapshots written by a fork()ed child (src/snapfork.c)
-- on real nodes with WAL storage: a snapshot taken while writes go on is
-- exactly the state at its index, the node answers while the child works,
-- and a child that dies mid-write, or a node killed while its child writes,
-- leaves a data directory that recovers every acknowledged write.
--
-- The test hook RAFTING_TEST_SNAPSHOT_CHILD (exit, kill, slow) is read by
-- the nodes; see src/snapfork.h.

local cluster = require "rafting.testing.cluster"
local D = require "spec.support.durability_helper"
local snap = require "rafting.snap"
local lfs = require "lfs"

local LIMITS = { snapshot_entries = 150, snapshot_trailing = 30 }

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- names in node id's snapshot directory matching pattern, sorted
local function snap_files(c, id, pattern)
  local dir, out = D.data_dir(c, id) .. "/snap", {}
  if not lfs.attributes(dir) then return out, dir end
  for name in lfs.dir(dir) do
    if name:match(pattern) then out[#out + 1] = name end
  end
  table.sort(out)
  return out, dir
end

local function by_key(acks)
  local t = {}
  for _, a in ipairs(acks) do t[a.key] = a end
  return t
end

-- The snapshot at path holds exactly the acknowledged writes up to its
-- index, none after it, and nothing else but writes whose answer was lost
-- (unknown: not acknowledged). Returns its meta and those counts.
local function check_exact(path, acked)
  local kv, m = assert(snap.restore(slurp(path)))
  local inside, unknown = 0, 0
  for k, v in pairs(kv) do
    local a = acked[k]
    if k:match("^probe%.") then -- the probe writes: not from the writers
    elseif a then
      assert(a.index <= m.index, ("%s: key %s written at index %d is in the "
             .. "snapshot at %d"):format(path, k, a.index, m.index))
      assert(v == a.value, ("%s: key %s has the wrong value"):format(path, k))
    else
      unknown = unknown + 1
    end
  end
  for k, a in pairs(acked) do
    if a.index <= m.index then
      assert(kv[k] == a.value, ("%s: key %s written at index %d is missing "
             .. "from the snapshot at %d"):format(path, k, a.index, m.index))
      inside = inside + 1
    end
  end
  return m, inside, unknown
end

local function all_found(c, acks)
  for _, id in ipairs(c.ids) do
    local seen = {}
    for _, a in ipairs(acks) do
      local p = a.key:match("^(.*%.)%d+$")
      seen[p] = seen[p] or D.stale_range(c, id, p)
      assert(seen[p][a.key] == a.value, ("node %d: %s (index %d) missing "
             .. "or wrong"):format(id, a.key, a.index))
    end
  end
end

local function top_index(acks)
  local top = 0
  for _, a in ipairs(acks) do top = math.max(top, a.index) end
  return top
end

describe("snapshots written by a child process", function()
  local c, w
  after_each(function()
    if w then w:kill() w = nil end
    if c then c:shutdown({ force = true }) c = nil end
  end)
  teardown(function() cluster.kill_all() end)

  it("are exactly the state at their index while writes go on, and the node answers meanwhile", function()
    c = D.start{ nodes = 3, limits = LIMITS,
                 env = { RAFTING_TEST_SNAPSHOT_CHILD = "slow" } }
    local l = c:leader()
    w = D.writers(c, { n = 6, prefix = "s.", max = 150, deadline_ms = 60000, seed = 3 })
    -- a child is writing (it holds on 2 s after its fsync): the leader
    -- still commits writes of a client of its own
    local started = c:wait_for(function()
      local log = c:log(l)
      local idx = nil
      for i in log:gmatch('msg="snapshot started" index=(%d+)') do idx = i end
      if idx and not log:find('msg="snapshot taken" index=' .. idx .. ' ', 1, true) then
        return idx
      end
      return false, "no snapshot in progress on the leader"
    end, 30000, "a snapshot child at work on the leader")
    local cl = D.client(c, l)
    for i = 1, 10 do
      local code, body = cl:request("PUT", "/kv/probe." .. i, "p" .. i)
      assert(code == 200, ("probe %d: %s %s"):format(i, tostring(code), tostring(body)))
    end
    cl:close()
    assert.is_nil(c:log(l):find('msg="snapshot taken" index=' .. started .. ' ', 1, true),
                  "the snapshot at " .. started .. " ended before 10 writes did")
    local acks = w:stop(true)
    local sent, n, other = w:summary()
    w = nil
    for _, id in ipairs(c.ids) do D.wait_applied(c, id, top_index(acks)) end
    -- every snapshot kept on every node, against the acknowledged writes
    local acked, checked = by_key(acks), 0
    for _, id in ipairs(c.ids) do
      c:wait_for(function()
        return #snap_files(c, id, "%.tmp$") == 0, "a snapshot in progress"
      end, 20000, "node " .. id .. " to finish its snapshot")
      local names, dir = snap_files(c, id, "^%x+%-%x+%.snap$")
      for _, name in ipairs(names) do
        local m, inside, unknown = check_exact(dir .. "/" .. name, acked)
        if other == "" then assert.equals(0, unknown) end
        assert(m.index < top_index(acks), "a snapshot after the last write")
        checked = checked + 1
        D.report("snapfork: node %d snapshot at %d: %d keys, %d acknowledged up to it, %d unknown",
                 id, m.index, m.nkeys, inside, unknown)
      end
    end
    assert(checked >= 3, "only " .. checked .. " snapshots to check")
    D.report("snapfork: %d sent, %d acknowledged (others: %s), %d snapshots exact",
             sent, n, other ~= "" and other or "none", checked)
  end)

  it("a snapshot child holds no descriptor of the node's but its file and its pipe", function()
    c = D.start{ nodes = 1, limits = LIMITS,
                 env = { RAFTING_TEST_SNAPSHOT_CHILD = "slow" } }
    c:leader()
    local pid = c.nodes[1].pid
    local function fds(p)
      local n = 0
      for name in lfs.dir("/proc/" .. p .. "/fd") do
        if name:match("^%d+$") then n = n + 1 end
      end
      return n
    end
    w = D.writers(c, { n = 2, prefix = "c.", max = 200, deadline_ms = 60000, seed = 4 })
    -- the child: a process whose parent is the node (while it holds on)
    local child = c:wait_for(function()
      for name in lfs.dir("/proc") do
        if name:match("^%d+$") then
          local f = io.open("/proc/" .. name .. "/stat")
          local st = f and f:read("a")
          if f then f:close() end
          local ppid = st and st:match("^%d+ %b() %a (%d+)")
          if tonumber(ppid) == pid then return tonumber(name) end
        end
      end
      return false, "no child of the node"
    end, 30000, "a snapshot child of node 1")
    local n_child, n_node = fds(child), fds(pid)
    D.report("snapfork: the node has %d descriptors open, its snapshot child %d", n_node, n_child)
    assert(n_node > 8, "the node has only " .. n_node .. " descriptors: the check proves nothing")
    assert(n_child <= 5, "the child holds " .. n_child .. " descriptors (0-2, its file, its pipe: 5)")
    w:stop(true)
    w = nil
  end)

  for _, how in ipairs({ "exit", "kill" }) do
    it("a child that dies mid-write (" .. how .. ") leaves a recoverable data directory", function()
      c = D.start{ nodes = 3, limits = LIMITS,
                   env = { RAFTING_TEST_SNAPSHOT_CHILD = how } }
      local l = c:leader()
      w = D.writers(c, { n = 4, prefix = "f.", max = 120, deadline_ms = 60000, seed = 5 })
      local acks = w:stop(true)
      w = nil
      for _, id in ipairs(c.ids) do D.wait_applied(c, id, top_index(acks)) end
      local want = how == "exit" and "exited with status 1"
                   or "killed by signal 9"
      assert(c:log(l):find("snapshot child %d+ " .. want),
             "the leader did not log its child " .. want)
      assert(c:log(l):find('msg="snapshot save failed"'), "no 'snapshot save failed'")
      for _, id in ipairs(c.ids) do
        assert.equals("running", c.nodes[id].state)
        assert.same({}, (snap_files(c, id, "%.snap$")))
        c:wait_for(function()
          return #snap_files(c, id, "%.tmp$") == 0, "a partial file is still there"
        end, 10000, "node " .. id .. " to remove the partial snapshot")
      end
      all_found(c, acks)
      -- crash them all, start without the hook: all there, snapshots again
      D.kill_all_nodes(c)
      c.env = nil
      D.start_all_nodes(c)
      c:leader(15000)
      all_found(c, acks)
      w = D.writers(c, { n = 4, prefix = "g.", max = 60, deadline_ms = 60000, seed = 6 })
      local more = w:stop(true)
      w = nil
      for _, a in ipairs(more) do acks[#acks + 1] = a end
      for _, id in ipairs(c.ids) do D.wait_applied(c, id, top_index(acks)) end
      local acked = by_key(acks)
      for _, id in ipairs(c.ids) do
        local names, dir = c:wait_for(function()
          local names, dir = snap_files(c, id, "^%x+%-%x+%.snap$")
          return #names > 0 and names, dir
        end, 20000, "node " .. id .. " to take a snapshot")
        check_exact(dir .. "/" .. names[#names], acked)
      end
      all_found(c, acks)
    end)
  end

  it("are taken when the log since the last reaches snapshot_log_percent of the state, never before", function()
    local FLOOR = 65536
    c = D.start{ nodes = 1, limits = { snapshot_log_percent = 50,
                                        snapshot_min_log_bytes = FLOOR,
                                        snapshot_trailing = 10 } }
    w = D.writers(c, { n = 4, prefix = "a.", max = 2500, deadline_ms = 120000,
                       seed = 11, value_bytes = 100 })
    local acks = w:stop(true)
    w = nil
    D.wait_applied(c, 1, top_index(acks))
    local log = c:log(1)
    local started, sizes = {}, {}
    for idx, keys, lb in log:gmatch('msg="snapshot started" index=(%d+) keys=(%d+) log_bytes=(%d+)') do
      started[#started + 1] = { index = tonumber(idx), keys = tonumber(keys), log = tonumber(lb) }
    end
    for idx, bytes in log:gmatch('msg="snapshot taken" index=(%d+) keys=%d+ bytes=(%d+)') do
      sizes[tonumber(idx)] = tonumber(bytes)
    end
    assert(#started >= 3, "only " .. #started .. " snapshots over " .. #acks .. " writes")
    local snap_total, log_total = 0, 0
    for _, st in ipairs(started) do
      local size = sizes[st.index]
      if size then -- the last may still be in progress
        -- keys and values < 128 bytes: one length byte each; the frame is
        -- 48 bytes plus the configuration (3 + 8 per member: one here)
        local state = size - (48 + 3 + 8) - 2 * st.keys
        local need = math.max(FLOOR, state // 100 * 50)
        assert(st.log >= need, ("snapshot at %d after %d bytes of log, the "
               .. "state being %d bytes: want %d"):format(st.index, st.log, state, need))
        snap_total, log_total = snap_total + size, log_total + st.log
      end
    end
    D.report("snapfork: %d snapshots, %d bytes for %d bytes of log (%.2f per byte of log)",
             #started, snap_total, log_total, snap_total / log_total)
    assert(snap_total <= 2 * log_total, "more than 2 bytes of snapshot per byte of log")
  end)

  it("replicas do not all snapshot at the same index: the trigger waits a random 0-25 % more", function()
    c = D.start{ nodes = 3, limits = { snapshot_log_percent = 50,
                                        snapshot_min_log_bytes = 32768 } }
    w = D.writers(c, { n = 4, prefix = "j.", max = 3000, deadline_ms = 120000,
                       seed = 13, value_bytes = 100 })
    local acks = w:stop(true)
    w = nil
    local top = top_index(acks)
    local sets = {}
    for _, id in ipairs(c.ids) do
      D.wait_applied(c, id, top)
      local idx = {}
      for i in c:log(id):gmatch('msg="snapshot started" index=(%d+)') do idx[#idx + 1] = i end
      assert(#idx >= 3, ("node %d took %d snapshots"):format(id, #idx))
      sets[id] = table.concat(idx, ",")
    end
    D.report("snapfork: snapshot indexes per node: %s | %s | %s", sets[1], sets[2], sets[3])
    -- the same log and state on every replica: without the jitter the
    -- lists are equal (the chance that they are with it: below 1e-6)
    assert(not (sets[1] == sets[2] and sets[2] == sets[3]),
           "every replica snapshotted at the same indexes: " .. sets[1])
  end)

  it("a clean stop with a long log since the last snapshot takes one first: the restart loads it", function()
    -- percent 0: no snapshot while writing (ceilings of 1 GiB); the floor
    -- is what decides at the stop
    c = D.start{ nodes = 1, limits = { snapshot_log_percent = 0, snapshot_trailing = 1000,
                                        snapshot_min_log_bytes = 65536 } }
    w = D.writers(c, { n = 4, prefix = "f.", max = 1500, deadline_ms = 120000,
                       seed = 12, value_bytes = 100 })
    local acks = w:stop(true)
    w = nil
    local top = top_index(acks)
    D.wait_applied(c, 1, top)
    assert.is_nil(c:log(1):find('msg="snapshot started"', 1, true))
    c:stop(1)
    local log = c:log(1)
    assert(log:find('msg="snapshot before stopping" log_bytes=%d+'), "no snapshot at the stop")
    local idx = tonumber(log:match('msg="snapshot taken" index=(%d+)'))
    assert(idx and idx >= top, ("snapshot at %s, last acknowledged write at %d"):format(idx, top))
    local files, dir = snap_files(c, 1, "%.snap$")
    assert.are.equal(1, #files)
    local m, inside = check_exact(dir .. "/" .. files[1], by_key(acks))
    assert.are.equal(idx, m.index)
    assert.are.equal(#acks, inside)
    -- the restart loads it: nothing left to replay through the state
    -- machine; and with snapshot_trailing now 10, the 1000 entries the WAL
    -- still holds behind the snapshot are not handed to the core but 10
    local path = c.config_path
    local f = assert(io.open(path))
    local text = f:read("a")
    f:close()
    local n
    text, n = text:gsub("snapshot_trailing = 1000", "snapshot_trailing = 10")
    assert.are.equal(1, n)
    f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    c:start_node(1)
    c:wait_healthy({ 1 })
    local again = c:log(1):match("== harness: start #2.*$")
    local loaded = tonumber(again:match('msg="snapshot load done" unit=keys done=(%d+)'))
    assert.are.equal(#acks, loaded)
    local ready = tonumber(again:match('msg="node ready" applied=(%d+)'))
    assert(ready and ready - idx <= 1, ("replayed %s entries after the snapshot"):format(
           ready and ready - idx))
    assert.are.equal(idx - 10 + 1, assert(c:status(1)).first_index)
    all_found(c, acks)
    -- a stop with little log since (under the floor) takes none
    c:stop(1)
    local last = c:log(1):match("== harness: start #2.*$")
    assert.is_nil(last:find('msg="snapshot before stopping"', 1, true))
  end)

  it("a follower loading a large received snapshot keeps answering: the load runs off its loop", function()
    local cjson = require "cjson"
    local proc = require "rafting.proc"
    local KEYS, PER = 300000, 20000
    c = D.start{ nodes = 3, commands = "spec/cluster/fixtures/fill_commands.lua",
                 limits = { snapshot_entries = 10, snapshot_trailing = 2,
                            sm_instructions = 100000000, commit_timeout_ms = 20000 } }
    local l = c:leader()
    local f = D.others(c, l)[1]
    c:kill(f)
    for i = 0, KEYS // PER - 1 do
      local code, body = c:http(l, "POST", "/cmd/fill", cjson.encode{
        prefix = "big.", from = i * PER, n = PER, vlen = 100 }, { timeout_ms = 30000 })
      assert(code == 200, ("fill %d: %s %s"):format(i, tostring(code), tostring(body)))
    end
    for i = 1, 12 do assert(c:http(l, "PUT", "/kv/tail." .. i, "t") == 200) end
    c:wait_for(function()
      local s = c:status(l)
      return s and s.snapshot and s.snapshot.keys >= KEYS and s.first_index > 3,
             "the leader has not compacted past the follower"
    end, 30000, "a snapshot of the whole state on the leader")
    c:start_node(f)
    -- the follower answers all along: its loop never waits for the load
    local worst, polls = 0, 0
    c:wait_for(function()
      local t0 = proc.now_ms()
      local s = c:status(f, 2000)
      local dt = proc.now_ms() - t0
      if s then polls, worst = polls + 1, math.max(worst, dt) end
      return c:log(f):find('msg="snapshot installed"') ~= nil, "not installed yet"
    end, 60000, "node " .. f .. " to install the snapshot")
    local log = c:log(f)
    local t_rx = log:match('(%d%d%.%d+)Z [^\n]*msg="snapshot receive done"')
    local t_pre, keys = log:match('(%d%d%.%d+)Z [^\n]*msg="snapshot preloaded" index=%d+ keys=(%d+)')
    assert(t_pre, "the follower did not preload the snapshot off its loop")
    assert(tonumber(keys) >= KEYS)
    D.report("snapfork: follower loaded %d keys off its loop in about %.0f ms; "
             .. "%d /status polls meanwhile, the slowest %d ms", tonumber(keys),
             t_rx and (tonumber(t_pre) - tonumber(t_rx)) * 1000 or -1, polls, worst)
    assert(worst < 600, ("a /status took %d ms"):format(worst))
    -- and it has the state: the tail may come after the snapshot, by appends
    c:wait_index(f, assert(c:status(l)).commit, nil, "applied")
    local cl = D.client(c, f)
    for _, k in ipairs({ "big.00000000", ("big.%08d"):format(KEYS - 1), "tail.12" }) do
      local code, body = cl:get("/kv/" .. k .. "?stale", 20000)
      assert(code == 200, k .. " on the follower: " .. tostring(code))
      assert(#body > 0)
    end
    cl:close()
  end)

  it("a node killed while its child writes restarts from its WAL, the partial file removed", function()
    c = D.start{ nodes = 3, limits = LIMITS,
                 env = { RAFTING_TEST_SNAPSHOT_CHILD = "slow" } }
    local l = c:leader()
    local f = D.others(c, l)[1]
    w = D.writers(c, { n = 4, prefix = "k.", max = 150, deadline_ms = 60000, seed = 9 })
    c:wait_for(function()
      local log = c:log(f)
      local idx = nil
      for i in log:gmatch('msg="snapshot started" index=(%d+)') do idx = i end
      return idx and not log:find('msg="snapshot taken" index=' .. idx .. ' ', 1, true),
             "no snapshot in progress on node " .. f
    end, 30000, "a snapshot child at work on node " .. f)
    c:kill(f)
    assert(#snap_files(c, f, "%.tmp$") == 1, "no partial snapshot left by the kill")
    local acks = w:stop(true)
    w = nil
    c.env = nil
    c:start_node(f) -- binds its ports: the child died with its parent
    D.wait_applied(c, f, top_index(acks), 30000)
    -- the leftover went at open; a snapshot of the restarted node may be
    -- under way: it completes
    c:wait_for(function()
      return #snap_files(c, f, "%.tmp$") == 0, "a .tmp file is there"
    end, 10000, "node " .. f .. " without temp files")
    all_found(c, acks)
  end)
end)
