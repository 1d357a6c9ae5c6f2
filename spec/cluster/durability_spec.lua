-- durability_spec.lua -- what a node promises about its disk, checked on
-- real processes with WAL storage (each node's data directory lives in the
-- harness's temp dir and survives kill and restart).
--
-- Randomness (when to kill, in which order, how many writers) comes from
-- one seed, printed as a "# durability: seed ..." line; replay it with
--   RAFTING_DUR_SEED=<seed> RAFTING_DUR_SEEDS=1 busted ... spec/cluster/durability_spec.lua
-- RAFTING_DUR_SEEDS (default 3) and RAFTING_DUR_ROUNDS (default 4) size the
-- crash test.  Counts are printed as "# durability: ..." lines.

local cluster = require "rafting.testing.cluster"
local D = require "spec.support.durability_helper"

local SEED = D.seed()
local SEEDS = tonumber(os.getenv("RAFTING_DUR_SEEDS") or "") or 3
local ROUNDS = tonumber(os.getenv("RAFTING_DUR_ROUNDS") or "") or 4

local function shuffle(list, r)
  local t = { table.unpack(list) }
  for i = #t, 2, -1 do
    local j = r(i)
    t[i], t[j] = t[j], t[i]
  end
  return t
end

local function fail_list(what, bad)
  local show = {}
  for i = 1, math.min(#bad, 10) do show[i] = "  " .. bad[i] end
  return ("%s: %d\n%s"):format(what, #bad, table.concat(show, "\n"))
end

-- Every acknowledged write, on node id's own state (stale range reads,
-- one per writer prefix); returns found and what is missing or wrong.
local function check_on_node(c, id, acks)
  local ranges, found, bad = {}, 0, {}
  for _, a in ipairs(acks) do
    local prefix = a.key:match("^(.*%.)%d+$")
    ranges[prefix] = ranges[prefix] or D.stale_range(c, id, prefix)
    local v = ranges[prefix][a.key]
    if v == a.value then found = found + 1
    else bad[#bad + 1] = ("node %d: %s (index %d): %s"):format(id, a.key, a.index, tostring(v)) end
  end
  return found, bad, ranges
end

-- The same keys and values on every node, for every writer prefix of acks.
local function same_everywhere(c, acks)
  local prefixes, list = {}, {}
  for _, a in ipairs(acks) do
    local p = a.key:match("^(.*%.)%d+$")
    if not prefixes[p] then prefixes[p] = true list[#list + 1] = p end
  end
  local keys = 0
  for _, p in ipairs(list) do
    local ref, n = D.stale_range(c, c.ids[1], p)
    keys = keys + n
    for i = 2, #c.ids do
      local other, m = D.stale_range(c, c.ids[i], p)
      assert(n == m, ("prefix %s: node %d has %d keys, node %d has %d")
                     :format(p, c.ids[1], n, c.ids[i], m))
      for k, v in pairs(ref) do
        assert(other[k] == v, ("prefix %s: key %s differs on node %d"):format(p, k, c.ids[i]))
      end
    end
  end
  return keys
end

-- The log of node id since its last start (the harness marks each start).
local function log_since_start(c, id)
  local log = c:log(id)
  local marker = ("== harness: start #%d of node %d =="):format(c.nodes[id].starts, id)
  local at = log:find(marker, 1, true)
  return at and log:sub(at) or log
end

describe("durability (real nodes, WAL storage)", function()
  local c, w
  after_each(function()
    if w then w:kill() w = nil end
    D.shutdown(c)
    c = nil
  end)
  teardown(function() cluster.kill_all() end)

  it("every write acknowledged before kill -9 of all nodes is readable, with its value, after they restart", function()
    local rounds, crashes, acked, found = 0, 0, 0, 0
    for s = 0, SEEDS - 1 do
      local seed = SEED + s
      D.report("durability: crash-all seed %d (replay: RAFTING_DUR_SEED=%d RAFTING_DUR_SEEDS=1)",
               seed, seed)
      local r = D.rng(seed)           -- the schedule: same seed, same choices
      local route = D.rng(seed + 1)   -- which node serves each check read
      c = D.start{ nodes = 3 }
      c:leader()
      local all = {}
      for round = 1, ROUNDS do
        local nw = 3 + r(4)
        w = D.writers(c, { n = nw, prefix = ("c%d.r%d."):format(seed, round),
                           max = 3000, deadline_ms = 40000, seed = seed * 16 + round })
        -- a random moment: after a random number of acknowledgements,
        -- with every writer's next request in flight
        local kill_at = 10 + r(400)
        w:wait_acks(kill_at, 30000, "acknowledged writes before the crash")
        D.kill_all_nodes(c, shuffle(c.ids, r))
        local before = w:poll()
        D.start_all_nodes(c, shuffle(c.ids, r))
        -- every other round on average, a second crash during recovery:
        -- before a leader is elected, or a few writes into the new term
        local second = r(4)
        if second == 1 then
          D.kill_all_nodes(c, shuffle(c.ids, r))
          D.start_all_nodes(c, shuffle(c.ids, r))
        elseif second == 2 then
          c:leader(20000)
          w:wait_acks(w:poll() + r(30), 30000, "acknowledged writes before the second crash")
          D.kill_all_nodes(c, shuffle(c.ids, r))
          D.start_all_nodes(c, shuffle(c.ids, r))
        end
        c:leader(20000)
        -- the writers carry on against the restarted cluster
        w:wait_acks(before + 20 + r(200), 30000, "acknowledged writes after the restart")
        local acks = w:stop()
        local sent, n, other = w:summary()
        w = nil
        for _, a in ipairs(acks) do all[#all + 1] = a end
        -- every write acknowledged so far, in this round and before
        local f, bad = D.check_linearizable(c, all, c.ids, route)
        assert(#bad == 0, fail_list(("seed %d round %d: acknowledged writes lost or wrong")
                                    :format(seed, round), bad))
        rounds = rounds + 1
        crashes = crashes + (second <= 2 and 2 or 1)
        D.report("durability: seed %d round %d: %d writers, killed all after %d acks (%d before "
                 .. "the kill was seen)%s, %d sent, %d acknowledged (others: %s); %d of %d found",
                 seed, round, nw, kill_at, before,
                 second == 1 and ", again before an election" or
                 second == 2 and ", again in the new term" or "",
                 sent, n, other ~= "" and other or "none", f, #all)
      end
      -- and, once every node applied it all, the nodes hold the same data
      local top = 0
      for _, a in ipairs(all) do top = math.max(top, a.index) end
      for _, id in ipairs(c.ids) do D.wait_applied(c, id, top) end
      same_everywhere(c, all)
      acked = acked + #all
      found = found + #all  -- checked above, none missing
      D.shutdown(c)
      c = nil
    end
    D.report("durability: crash-all total: %d seeds, %d rounds, %d kill -9 of all nodes, "
             .. "%d writes acknowledged, %d found", SEEDS, rounds, crashes, acked, found)
  end)

  it("every write acknowledged while a follower is killed and restarted is on every node", function()
    local seed = SEED + 1000
    local r = D.rng(seed)
    c = D.start{ nodes = 3 }
    local l = c:leader()
    w = D.writers(c, { n = 6, prefix = "f.", max = 4000, deadline_ms = 60000, seed = seed })
    local kills = 5
    for k = 1, kills do
      l = c:leader(20000)
      local f = D.others(c, l)[r(2)]
      w:wait_acks(w:poll() + 10 + r(150), 20000, "writes before killing a follower")
      local before = assert(c:status(f))
      c:kill(f)
      w:wait_acks(w:poll() + 10 + r(150), 20000, "writes while a follower is down")
      c:start_node(f)
      -- what it had applied was durable: it comes back with at least that log
      local after = assert(c:status(f))
      assert(after.last_index >= before.applied,
             ("kill %d: node %d restarted with last_index %d, had applied %d")
             :format(k, f, after.last_index, before.applied))
      w:wait_acks(w:poll() + 10 + r(150), 20000, "writes after the follower restarted")
    end
    local acks = w:stop()
    local sent, n, other = w:summary()
    w = nil
    local top = 0
    for _, a in ipairs(acks) do top = math.max(top, a.index) end
    for _, id in ipairs(c.ids) do D.wait_applied(c, id, top) end
    for _, id in ipairs(c.ids) do
      local f, bad = check_on_node(c, id, acks)
      assert(#bad == 0, fail_list("acknowledged writes missing or wrong", bad))
      assert.equal(#acks, f)
    end
    local keys = same_everywhere(c, acks)
    D.report("durability: follower kill -9 x%d (seed %d): %d sent, %d acknowledged (others: %s), "
             .. "all %d on each of %d nodes; %d keys identical on every node",
             kills, seed, sent, n, other ~= "" and other or "none", #acks, #c.ids, keys)
  end)

  -- 10,000+ entries, compacted behind the follower's back
  local SNAP_LIMITS = { snapshot_entries = 2000, snapshot_trailing = 200,
                        snapshot_chunk_bytes = 65536 }
  local BULK_WRITERS, BULK_EACH = 16, 700   -- 11,200 writes

  local function catch_up_by_snapshot(how)
    c = D.start{ nodes = 3, limits = SNAP_LIMITS }
    local l = c:leader()
    local f = D.others(c, l)[1]
    local g = D.others(c, l)[2]
    -- some history the follower does have
    w = D.writers(c, { n = 4, prefix = "a.", max = 50, deadline_ms = 20000, seed = 7 })
    local acks = w:stop(true)
    D.wait_applied(c, f, w:max_index())
    w = nil
    local fs = assert(c:status(f))
    if how == "pause" then c:pause(f) else c:kill(f) end
    w = D.writers(c, { n = BULK_WRITERS, prefix = "b.", max = BULK_EACH,
                       deadline_ms = 90000, seed = 8, targets = { l, g } })
    local bulk = w:stop(true)
    local sent, n, other = w:summary()
    w = nil
    assert(#bulk >= 10000, ("only %d of %d bulk writes acknowledged (others: %s)")
                           :format(#bulk, sent, other))
    for _, a in ipairs(bulk) do acks[#acks + 1] = a end
    -- the leader compacted past everything the follower has
    local ls = c:wait_for(function()
      local s, err = c:status(l)
      if not s then return false, err end
      if s.first_index > fs.last_index + 1 and s.snapshot then return s end
      return false, ("leader first_index %d, follower last_index %d"):format(s.first_index, fs.last_index)
    end, 20000, "the leader's log to start after the follower's")
    if how == "pause" then c:resume(f) else c:start_node(f) end
    local top = 0
    for _, a in ipairs(acks) do top = math.max(top, a.index) end
    D.wait_applied(c, f, top, 30000)
    local s = assert(c:status(f))
    assert(s.snapshot and s.snapshot.index > fs.last_index,
           ("node %d: snapshot %s, it had last_index %d"):format(f,
             s.snapshot and s.snapshot.index or "none", fs.last_index))
    assert(s.first_index > fs.last_index + 1,
           ("node %d: first_index %d, it had last_index %d"):format(f, s.first_index, fs.last_index))
    local llog = c:log(l)
    assert(llog:find('msg="snapshot sending" index=%d+ to=' .. f .. ' bytes=%d+'),
           "the leader's log has no 'snapshot sending ... to=" .. f .. "'")
    assert(llog:find('msg="snapshot sent" index=%d+ to=' .. f .. ' '),
           "the leader's log has no 'snapshot sent ... to=" .. f .. "'")
    assert(log_since_start(c, f):find('msg="snapshot installed" index=%d+'),
           "node " .. f .. " logged no 'snapshot installed'")
    -- and it serves the same data
    for _, id in ipairs(c.ids) do D.wait_applied(c, id, top) end
    local found, bad = check_on_node(c, f, acks)
    assert(#bad == 0, fail_list("acknowledged writes missing on the follower", bad))
    local keys = same_everywhere(c, acks)
    local _, lbad = D.check_linearizable(c, { acks[1], acks[#acks] }, { f })
    assert(#lbad == 0, fail_list("linearizable reads through the follower", lbad))
    D.report("durability: follower %s during %d writes (others: %s): leader first_index %d "
             .. "past the follower's last_index %d; follower snapshot %d (%d bytes), "
             .. "first_index %d; %d of %d acknowledged found on it, %d keys identical "
             .. "on every node", how == "pause" and "SIGSTOPped" or "killed", #bulk,
             other ~= "" and other or "none", ls.first_index, fs.last_index,
             s.snapshot.index, s.snapshot.size, s.first_index, found, #acks, keys)
  end

  it("a follower paused while 10,000+ entries are written and compacted catches up by snapshot and serves the same data", function()
    catch_up_by_snapshot("pause")
  end)

  it("a follower killed while 10,000+ entries are written and compacted restarts from its WAL, catches up by snapshot and serves the same data", function()
    catch_up_by_snapshot("kill")
  end)

  it("a node's term never decreases and its vote in a term never changes across kills and restarts", function()
    local seed = SEED + 2000
    local r = D.rng(seed)
    c = D.start{ nodes = 3 }
    local seen, observations, pairs_seen, restarts = {}, 0, 0, 0
    for _, id in ipairs(c.ids) do seen[id] = { term = 0, votes = {} } end
    local function observe(id, why)
      local s = c:status(id)
      if not s then return end
      local m = seen[id]
      observations = observations + 1
      assert(s.term >= m.term, ("node %d: term went back from %d to %d (%s)")
                               :format(id, m.term, s.term, why or "running"))
      local v = m.votes[s.term]
      if v ~= nil then
        assert(s.vote == v, ("node %d: voted %d in term %d, now says %s (%s)")
                            :format(id, v, s.term, tostring(s.vote), why or "running"))
      elseif s.vote ~= nil then
        m.votes[s.term] = s.vote
        pairs_seen = pairs_seen + 1
      end
      m.term = s.term
    end
    local function observe_all()
      for _, id in ipairs(c:running()) do observe(id) end
    end
    local function leader(above)
      return c:wait_for(function()
        observe_all()
        return c:agreed_leader(nil, above)
      end, 20000, "a leader" .. (above and (" above term " .. above) or ""))
    end
    local function restarted(ids)
      for _, id in ipairs(ids) do c:start_node(id, { wait = false }) end
      for _, id in ipairs(ids) do
        c:wait_healthy({ id }, 15000)
        observe(id, "first answer after restart")
        restarts = restarts + 1
      end
    end
    local l, t = leader()
    for k = 1, 12 do
      local scenario = (k - 1) % 4
      if scenario == 0 then
        -- the leader dies; a new one is elected; the old one comes back
        c:kill(l)
        local l2, t2 = leader(t)
        restarted({ l })
        l, t = l2, t2
      elseif scenario == 1 then
        -- every node dies right after an election
        D.kill_all_nodes(c, shuffle(c.ids, r))
        restarted(shuffle(c.ids, r))
      elseif scenario == 2 then
        -- the leader and a follower die; the survivor campaigns alone
        -- (pre-vote: without a quorum it must not even raise its term)
        local f = D.others(c, l)[r(2)]
        local survivor
        for _, id in ipairs(c.ids) do if id ~= l and id ~= f then survivor = id end end
        c:kill(l)
        c:kill(f)
        c:wait_for(function()
          observe_all()
          local s = c:status(survivor)
          return s and s.leader == nil, "it still follows " .. tostring(s and s.leader)
        end, 20000, ("node %d to notice the leader is gone"):format(survivor))
        restarted(shuffle({ l, f }, r))
      else
        -- a follower dies and comes back at once, mid-term
        local f = D.others(c, l)[r(2)]
        c:kill(f)
        restarted({ f })
      end
      l, t = leader()
      -- a little traffic, so terms carry entries
      local code = c:http(l, "PUT", "/kv/term" .. k, tostring(t))
      assert(code == 200 or code == 503 or code == 504, "PUT: " .. tostring(code))
    end
    observe_all()
    local terms = 0
    for _, id in ipairs(c.ids) do terms = math.max(terms, seen[id].term) end
    D.report("durability: term/vote (seed %d): %d restarts, %d /status observations, %d (node, term, vote) "
             .. "triples, terms up to %d; no term went back, no vote changed", seed, restarts,
             observations, pairs_seen, terms)
  end)

  it("a second process on the same data directory exits 2 naming the lock", function()
    c = D.start{ nodes = 3 }
    c:leader()
    local out = c.dir .. "/second.log"
    local pid = assert(cluster.spawn{
      argv = { c.argv[1], "--config", c.config_path, "--node", "2" },
      stdout = out, stderr = out })
    local how, code = cluster.wait_pid(pid, 10000)
    local f = assert(io.open(out))
    local msg = f:read("a")
    f:close()
    assert(how == "exited" and code == 2,
           ("second process: %s %s, want exit 2\n%s"):format(tostring(how), tostring(code), msg))
    local dir = D.data_dir(c, 2)
    assert(msg:find("data directory " .. dir .. " is in use by another process", 1, true),
           "message does not name the directory and the lock:\n" .. msg)
    assert(msg:find("pid " .. c.nodes[2].pid, 1, true), "message does not name the holder:\n" .. msg)
    -- the first one is unharmed
    c:wait_healthy({ 2 })
    local code2 = c:http(2, "PUT", "/kv/after-lock", "x")
    assert.equal(200, code2)
  end)

  -- A cluster where 100 writes were acknowledged and a follower applied
  -- them all, then stopped cleanly: leader, follower, the follower's last
  -- WAL segment, the acknowledgements and the highest acknowledged index.
  local function stop_follower_after_writes(prefix, seed)
    c = D.start{ nodes = 3 }
    local l = c:leader()
    local f = D.others(c, l)[1]
    w = D.writers(c, { n = 4, prefix = prefix, max = 100, deadline_ms = 30000, seed = seed })
    local acks = w:stop(true)
    w = nil
    local top = 0
    for _, a in ipairs(acks) do top = math.max(top, a.index) end
    D.wait_applied(c, f, top)
    c:stop(f)
    local segs = D.segments(c, f)
    return l, f, segs[#segs], acks, top
  end

  it("a WAL with a byte flipped in the middle of a segment makes the node refuse to start (exit 2), naming the file and offset", function()
    local l, f, seg = stop_follower_after_writes("x.", 3)
    local fh = assert(io.open(seg, "r+b"))
    local size = fh:seek("end")
    assert(size > 4096, "segment too small: " .. size)
    local at = size // 2
    fh:seek("set", at)
    local b = fh:read(1)
    fh:seek("set", at)
    fh:write(string.char(b:byte() ~ 0xff))
    fh:close()
    c:start_node(f, { wait = false })
    c:wait_for(function()
      return c.nodes[f].state == "exited", c.nodes[f].state
    end, 10000, "node " .. f .. " to refuse to start")
    local e = c.nodes[f].exit
    local log = log_since_start(c, f)
    assert(e.how == "exited" and e.code == 2,
           ("node %d: %s %s, want exit 2\n%s"):format(f, e.how, tostring(e.code), log))
    local off = log:match("corrupt WAL: " .. seg:gsub("%p", "%%%0") .. " at offset (%d+)")
    assert(off, "no 'corrupt WAL: " .. seg .. " at offset N' in the log:\n" .. log)
    off = tonumber(off)
    assert(off > 0 and off <= at, ("offset %d, the flipped byte is at %d"):format(off, at))
    D.report("durability: corrupt segment (byte %d of %d flipped): exit 2, 'corrupt WAL ... at offset %d'",
             at, size, off)
    -- the others go on
    local code = c:http(l, "PUT", "/kv/after-corruption", "x")
    assert.equal(200, code)
  end)

  it("a torn tail (last segment cut by a few bytes) starts with a warning and loses no acknowledged write", function()
    local _, f, seg, acks, top = stop_follower_after_writes("t.", 4)
    local fh = assert(io.open(seg, "rb"))
    local size = fh:seek("end")
    fh:close()
    local cut = 5
    assert(os.execute(("truncate -s %d '%s'"):format(size - cut, seg)))
    c:start_node(f)
    local log = log_since_start(c, f)
    assert(log:find("torn tail", 1, true) and log:find(seg, 1, true),
           "no torn tail warning naming " .. seg .. ":\n" .. log)
    -- it catches up and has every acknowledged write
    D.wait_applied(c, f, top)
    local found, bad = check_on_node(c, f, acks)
    assert(#bad == 0, fail_list("acknowledged writes missing on the torn node", bad))
    local lf, lbad = D.check_linearizable(c, acks, c.ids)
    assert(#lbad == 0, fail_list("acknowledged writes missing", lbad))
    D.report("durability: torn tail (%d bytes cut of %d): warning logged, %d of %d acknowledged "
             .. "writes on the node, %d linearizable", cut, size, found, #acks, lf)
  end)
end)
