-- Log compaction and InstallSnapshot (Raft §7): the core driven by hand
-- through rafting.core, and whole clusters through the simulator, whose
-- nodes snapshot their state machine every few applied entries and stream
-- snapshots to followers the leader's log no longer reaches.
local core = require("rafting.core")
local sim = require("rafting.sim")
local H = require("spec.support.sim_helper")
local other_than, caught_up = H.other_than, H.caught_up

local REPLAY = "busted spec/core/snapshot_spec.lua"

local function new(opts)
  opts.replay = opts.replay or REPLAY
  return sim.new(opts)
end

-- drain every ready batch of a lone core; everything they held
local function drain(c)
  local out = { entries = {}, msgs = {}, committed = {}, snaps = {} }
  while c:has_ready() do
    local rd = c:ready()
    out.hs = rd.hs or out.hs
    if rd.snap_index then
      out.snaps[#out.snaps + 1] = { index = rd.snap_index,
                                    term = rd.snap_term }
    end
    for _, k in ipairs({ "entries", "msgs", "committed" }) do
      for _, v in ipairs(rd[k]) do table.insert(out[k], v) end
    end
    c:advance()
  end
  return out
end

-- a log of the given terms from index 'first' (default 1)
local function log_of(terms, first)
  local log = {}
  first = first or 1
  for i, t in ipairs(terms) do
    local index = first + i - 1
    log[i] = { term = t, index = index, data = index .. ":" .. t }
  end
  return log
end

-- follower 2 of {1,2,3} in term 3, restored from a log of these terms
local function follower(terms, commit)
  return core.new{ id = 2, voters = { 1, 2, 3 }, log = log_of(terms),
                   hard_state = { term = 3, vote = 0, commit = commit } }
end

local function snapshot_msg(index, log_term)
  return { type = "snapshot", from = 1, to = 2, term = 3, index = index,
           log_term = log_term }
end

-- every node's state machine equals the leader's (applied index and hash)
local function same_state(s, l)
  local li, lh = s:sm_state(l)
  for _, id in ipairs(s.ids) do
    local i, h = s:sm_state(id)
    if i ~= li or h ~= lh then return false end
  end
  return true
end

-- A 3-node cluster in which follower f is cut off while the leader commits
-- 'count' entries and compacts its log well past f's; returns s, l, f.
local function leader_compacts_past(opts, count)
  opts.n = opts.n or 3
  opts.compact_every = opts.compact_every or 5
  opts.trailing = opts.trailing or 2
  local s = new(opts)
  local l = assert(s:wait_leader())
  local f = other_than(s, l)
  s:isolate(f)
  for k = 1, count do
    assert(s:propose("v" .. k, l))
    s:run(1)
  end
  s:run(20)
  return s, l, f
end

describe("log compaction (§7)", function()
  it("compact() drops the log up to an index that is applied and durable, "
     .. "and refuses any other", function()
    local c = core.new{ id = 1, voters = { 1 } }
    c:campaign()
    drain(c)
    for k = 1, 4 do c:propose("x" .. k) end
    -- entries 2-5 are in the outstanding ready: neither durable nor applied
    local rd = c:ready()
    assert.equal(4, #rd.entries)
    assert.same({ nil, "inval", "invalid argument" }, { c:compact(3) })
    c:advance()
    drain(c)
    assert.equal(5, c:status().applied)
    assert.same({ nil, "inval", "invalid argument" }, { c:compact(0) })
    assert.same({ nil, "inval", "invalid argument" }, { c:compact(6) })
    assert.is_true(c:compact(3))
    local st = c:status()
    assert.equal(4, st.first_index)
    assert.equal(5, st.last_index)
    assert.is_nil(c:entry(3))
    assert.equal("x3", c:entry(4).data)
    -- at or below the compaction point again: refused
    assert.same({ nil, "inval", "invalid argument" }, { c:compact(3) })
    assert.same({ nil, "inval", "invalid argument" }, { c:compact(2) })
    -- the log goes on after it
    assert.equal(6, (c:propose("y")))
    drain(c)
    assert.is_true(c:compact(6))
    assert.equal(6, c:status().last_index)
    assert.equal(7, c:status().first_index)
  end)

  it("compact() refuses an index that is durable but not yet applied",
     function()
    local c = follower({ 1, 1, 2, 2, 3, 3 }, 0)
    assert.equal(6, c:status().stable_index)
    assert.same({ nil, "inval", "invalid argument" }, { c:compact(2) })
    c:step{ type = "heartbeat", from = 1, to = 2, term = 3, commit = 4 }
    local out = drain(c)
    assert.equal(4, #out.committed)
    assert.is_true(c:compact(4))
    assert.same({ nil, "inval", "invalid argument" }, { c:compact(5) })
  end)

  it("a core restored from a snapshot and the log after it starts there",
     function()
    local c = core.new{
      id = 2, voters = { 1, 2, 3 },
      hard_state = { term = 3, vote = 1, commit = 7 },
      snapshot = { index = 5, term = 2 }, applied = 6,
      log = log_of({ 2, 3, 3 }, 6),
    }
    local st = c:status()
    assert.equal(6, st.first_index)
    assert.equal(8, st.last_index)
    assert.equal(3, st.last_term)
    assert.equal(6, st.applied)
    assert.equal(7, st.commit)
    assert.equal(8, st.stable_index)
    assert.is_nil(c:entry(5))
    assert.equal("6:2", c:entry(6).data)
    -- only what follows 'applied' is handed out to apply
    local out = drain(c)
    assert.same({ "7:3" }, { out.committed[1].data })
    assert.equal(1, #out.committed)
    assert.same({}, out.snaps)
    -- an empty log after the snapshot: applied is the snapshot's index
    local d = core.new{ id = 2, voters = { 1, 2, 3 },
                        hard_state = { term = 3, vote = 0, commit = 0 },
                        snapshot = { index = 9, term = 3 } }
    st = d:status()
    assert.equal(10, st.first_index)
    assert.equal(9, st.last_index)
    assert.equal(3, st.last_term)
    assert.equal(9, st.applied)
    assert.equal(9, st.commit)
    -- the log must follow the snapshot, and applied lie within them
    assert.has_error(function()
      core.new{ id = 2, voters = { 1, 2, 3 }, snapshot = { index = 5, term = 1 },
                log = log_of({ 1 }, 5) }
    end, "entry 1 has index 5, expected 6")
    assert.has_error(function()
      core.new{ id = 2, voters = { 1, 2, 3 }, snapshot = { index = 5, term = 1 },
                applied = 4, log = log_of({ 1 }, 6),
                hard_state = { term = 1, vote = 0, commit = 0 } }
    end, "raft_new: invalid argument")
    assert.has_error(function()
      core.new{ id = 2, voters = { 1, 2, 3 }, snapshot = 5 }
    end, "field 'snapshot' must be a table or nil")
  end)
end)

describe("InstallSnapshot (§7), one core", function()
  it("a stale snapshot (index <= the follower's commit) is ignored and "
     .. "answered with the follower's commit", function()
    local c = follower({ 1, 1, 2, 2, 3, 3, 3 }, 6)
    drain(c)
    assert.is_true(c:step(snapshot_msg(4, 2)))
    local out = drain(c)
    assert.same({}, out.snaps)
    assert.equal(1, #out.msgs)
    local a = out.msgs[1]
    assert.equal("append_resp", a.type)
    assert.is_false(a.reject)
    assert.equal(6, a.index)
    local st = c:status()
    assert.equal(1, st.first_index)
    assert.equal(7, st.last_index)
    assert.equal(6, st.commit)
    -- at the commit index itself: still nothing to adopt
    assert.is_true(c:step(snapshot_msg(6, 3)))
    out = drain(c)
    assert.same({}, out.snaps)
    assert.equal(6, out.msgs[1].index)
    assert.equal(7, c:status().last_index)
  end)

  it("a follower whose log already holds the snapshot's last entry keeps "
     .. "its log and just advances commit", function()
    local c = follower({ 1, 1, 2, 2, 3, 3, 3, 3 }, 2)
    drain(c)
    assert.is_true(c:step(snapshot_msg(6, 3)))
    local out = drain(c)
    assert.same({}, out.snaps)  -- nothing to install
    assert.equal(6, out.hs.commit)
    -- the entries up to the snapshot's index apply from the log
    local idx = {}
    for _, e in ipairs(out.committed) do idx[#idx + 1] = e.index end
    assert.same({ 3, 4, 5, 6 }, idx)
    assert.equal(6, out.msgs[1].index)
    assert.is_false(out.msgs[1].reject)
    local st = c:status()
    assert.equal(1, st.first_index)
    assert.equal(8, st.last_index)  -- entries after it are kept (§7)
    assert.equal(6, st.commit)
    assert.equal("8:3", c:entry(8).data)
  end)

  it("a follower whose log conflicts at the snapshot's index (or is "
     .. "shorter) discards it and adopts the snapshot", function()
    for _, case in ipairs({
      { terms = { 1, 1, 2, 2, 2, 2, 2 }, what = "conflicting" },
      { terms = { 1, 1, 2 }, what = "shorter" },
    }) do
      local c = follower(case.terms, 2)
      drain(c)
      assert.is_true(c:step(snapshot_msg(6, 3)))
      local rd = c:ready()
      assert.equal(6, rd.snap_index, case.what)
      assert.equal(3, rd.snap_term)
      assert.equal(6, rd.hs.commit)
      assert.same({}, rd.entries)
      assert.same({}, rd.committed)  -- the snapshot is the state up to 6
      assert.equal(6, rd.msgs[1].index)
      c:advance()
      local st = c:status()
      assert.equal(7, st.first_index)
      assert.equal(6, st.last_index)
      assert.equal(3, st.last_term)
      assert.equal(6, st.applied)
      assert.equal(6, st.stable_index)
      -- and the log goes on from there
      c:step{ type = "append", from = 1, to = 2, term = 3, index = 6,
              log_term = 3, commit = 7,
              entries = { { term = 3, index = 7, data = "n" } } }
      local out = drain(c)
      assert.equal(7, out.entries[1].index)
      assert.equal(7, out.committed[1].index)
    end
  end)

  it("a leader whose follower needs compacted entries asks for a snapshot, "
     .. "waits for the transfer, and probes after it", function()
    local c = core.new{ id = 1, voters = { 1, 2 } }
    c:campaign()
    drain(c)
    c:step{ type = "vote_resp", from = 2, to = 1, term = 1 }
    drain(c)
    for k = 1, 5 do c:propose("x" .. k) end
    drain(c)  -- durable here; follower 2 answers nothing
    assert.equal("leader", c:status().role)
    -- the follower acknowledges only the no-op, entries commit once it does
    c:step{ type = "append_resp", from = 2, to = 1, term = 1, index = 6 }
    drain(c)
    assert.equal(6, c:status().commit)
    assert.is_true(c:compact(6))
    -- the follower restarted with an empty log and asks from the start
    c:step{ type = "append_resp", from = 2, to = 1, term = 1, index = 6,
            reject = true, hint_index = 0, hint_term = 0 }
    c:step{ type = "heartbeat_resp", from = 2, to = 1, term = 1, index = 0 }
    local out = drain(c)
    local snaps = {}
    for _, m in ipairs(out.msgs) do
      if m.type == "snapshot" then snaps[#snaps + 1] = m end
    end
    assert.equal(1, #snaps)
    assert.equal(6, snaps[1].index)
    assert.equal(1, snaps[1].log_term)
    assert.equal(2, snaps[1].to)
    assert.equal("snapshot", c:status().peers[2].state)
    -- nothing more goes to it while the transfer runs
    c:step{ type = "heartbeat_resp", from = 2, to = 1, term = 1, index = 0 }
    for _, m in ipairs(drain(c).msgs) do
      assert.are_not.equal("snapshot", m.type)
      assert.are_not.equal("append", m.type)
    end
    -- a failed transfer: back to probing, which asks for another
    c:report_snapshot(2, false)
    assert.equal("probe", c:status().peers[2].state)
    c:step{ type = "heartbeat_resp", from = 2, to = 1, term = 1, index = 0 }
    out = drain(c)
    assert.equal("snapshot", out.msgs[#out.msgs].type)
    -- a transfer that went through: the follower's answer resumes replication
    c:report_snapshot(2, true)
    assert.equal("probe", c:status().peers[2].state)
    c:step{ type = "append_resp", from = 2, to = 1, term = 1, index = 6 }
    assert.equal("replicate", c:status().peers[2].state)
    assert.equal(6, c:status().peers[2].match)
  end)
end)

describe("InstallSnapshot (§7), through the simulator", function()
  it("a follower partitioned while the leader compacted past its log is "
     .. "brought up to date by one snapshot, then by the log after it",
     function()
    for seed = 1, 5 do
      local s, l, f = leader_compacts_past({ seed = seed }, 30)
      local fl = s:state(f).last_index
      assert.is_true(s:state(l).first_index > fl + 1,
                     "the leader's log still reaches the follower")
      assert.equal(0, s:count("snapshot"))
      -- a few more entries that will reach f through its log
      s:reset_counts()
      s:heal()
      for k = 1, 3 do assert(s:propose("after" .. k, l)) end
      local seen = {}
      s.on_apply = function(id, e) if id == f then seen[#seen + 1] = e end end
      local installed
      s.on_install = function(id, snap) if id == f then installed = snap end end
      assert(s:run_until(function() return caught_up(s, l) end, 200))
      assert.equal(1, s:count("snapshot"), "seed " .. seed)
      assert.equal(1, s:count_to(f, "snapshot"))
      assert.equal(0, s.snap_failed)
      assert.is_not_nil(installed)
      assert.is_true(installed.index > fl)
      -- f applied from its own log only what it held (its commit may have
      -- been behind), nothing else up to the snapshot's index, and then
      -- everything after it in order, up to the three new entries
      local k = 1
      while seen[k] and seen[k].index <= fl do k = k + 1 end
      assert.equal(installed.index + 1, seen[k].index)
      for j = k, #seen do
        assert.equal(installed.index + 1 + j - k, seen[j].index)
      end
      assert.equal("after3", seen[#seen].data)
      -- its persisted log starts after the snapshot (until it compacts again)
      assert.is_true(s.nodes[f].log_snap >= installed.index)
      assert.is_true(same_state(s, l))
      assert.same(s:applied_data(l), s:applied_data(f))
      s:check_logs()
    end
  end)

  it("a dropped snapshot transfer is retried after report_snapshot(false)",
     function()
    local s, l, f = leader_compacts_past({ seed = 3 }, 25)
    local sent, dropped = {}, false
    s:filter(function(m)
      if m.type == "snapshot" then
        sent[#sent + 1] = s.time
        if not dropped then
          dropped = true
          return "drop"
        end
      end
    end)
    s:reset_counts()
    s:heal()
    -- while the lost transfer is pending the leader sends f nothing else
    assert(s:run_until(function() return #sent == 1 end, 50))
    assert.equal("snapshot", s:status(l).peers[f].state)
    local appends = s:count_to(f, "append")
    s:run(s.snapshot_timeout - 1)
    assert.equal(1, #sent)
    assert.equal(appends, s:count_to(f, "append"))
    assert.equal("snapshot", s:status(l).peers[f].state)
    assert(s:run_until(function() return caught_up(s, l) end, 200))
    assert.equal(2, s:count("snapshot"))
    assert.equal(1, s.snap_failed)
    assert.equal(1, s.snap_installs)
    assert.is_true(sent[2] - sent[1] >= s.snapshot_timeout)
    assert.is_true(same_state(s, l))
  end)

  it("a transfer lost to a partition is retried once the follower is "
     .. "reachable again", function()
    local s, l, f = leader_compacts_past({ seed = 4 }, 25)
    s:reset_counts()
    s:heal()
    assert(s:run_until(function() return s:count("snapshot") == 1 end, 50))
    s:isolate(f)  -- the stream in flight is lost with everything else
    s:run(2 * s.snapshot_timeout)
    assert.equal(1, s.snap_failed)
    assert.equal(0, s.snap_installs)
    s:heal()
    assert(s:run_until(function() return caught_up(s, l) end, 200))
    assert.equal(1, s.snap_installs)
    assert.is_true(same_state(s, l))
  end)

  it("a node restarted from its snapshot and log resumes with applied = "
     .. "the snapshot's index and the same state", function()
    local s = new{ n = 3, seed = 6, compact_every = 5, trailing = 3 }
    local l = assert(s:wait_leader())
    for k = 1, 23 do
      assert(s:propose("v" .. k, l))
      s:run(1)
    end
    assert(s:run_until(function() return caught_up(s, l) end, 100))
    local f = other_than(s, l)
    local snap = s:snapshot(f)
    assert.is_not_nil(snap)
    local applied, hash = s:sm_state(f)
    assert.is_true(applied > snap.index, "nothing applied after the snapshot")
    assert.equal(snap.index - 3, s.nodes[f].log_snap)
    s:reset_counts()
    s:crash(f)
    -- the state machine restarts as the snapshot (the restart then applies
    -- the committed entries of the log after it at once)
    local seen, at_start = {}, nil
    s.on_start = function(id)
      local i, h = s:sm_state(id)
      at_start = { applied = s:state(id).applied, sm_index = i, sm_hash = h,
                   first = s:state(id).first_index }
    end
    s.on_apply = function(id, e)
      if id == f then seen[#seen + 1] = e.index end
    end
    s:restart(f)
    assert.same({ applied = snap.index, sm_index = snap.index,
                  sm_hash = snap.hash, first = snap.index - 3 + 1 }, at_start)
    assert(s:run_until(function() return caught_up(s, l) end, 100))
    -- it applied what follows the snapshot from its own log, and no more
    assert.equal(snap.index + 1, seen[1])
    assert.equal(applied, seen[#seen])
    assert.equal(applied - snap.index, #seen)
    assert.equal(0, s:count("snapshot"))
    local i, h = s:sm_state(f)
    assert.equal(applied, i)
    assert.equal(hash, h)
    assert.is_true(same_state(s, l))
    assert.same(s:applied_data(l), s:applied_data(f))
  end)

  it("a node that crashed before the install of a snapshot it received was "
     .. "written restarts from that snapshot", function()
    local s, l, f = leader_compacts_past({ seed = 2 }, 25)
    s:filter(sim.hold_type("snapshot"))
    s:heal()
    assert(s:run_until(function() return #s.held > 0 end, 50))
    local m = s.held[1]
    -- every write of f is slow from now: the install's is still pending
    -- when it crashes
    s.async, s.io_delay = 1, 1000
    s:release()
    assert.is_not_nil(s.nodes[f].pending)
    assert.equal(m.index, s.nodes[f].pending.snap_index)
    assert.is_true(s.nodes[f].log_snap < m.index)
    s:crash(f)
    s.async = 0
    s:complete_io(true)  -- the others' writes
    s:restart(f)
    local st = s:state(f)
    assert.equal(m.index, st.applied)
    assert.equal(m.index + 1, st.first_index)
    assert.equal(m.index, s.nodes[f].log_snap)
    local _, h = s:sm_state(f)
    assert.equal(m.snap.hash, h)
    s.filters = {}
    assert(s:run_until(function() return caught_up(s, l) end, 200))
    assert.is_true(same_state(s, l))
  end)

  it("the checker reports a snapshot whose state differs from the entries "
     .. "applied elsewhere", function()
    local s, _, f = leader_compacts_past({ seed = 1 }, 25)
    s:filter(function(m)
      if m.type == "snapshot" then
        m.snap = { index = m.snap.index, term = m.snap.term,
                   hash = m.snap.hash + 1, conf = m.snap.conf }
      end
    end)
    s:heal()
    local ok, err = pcall(s.run_until, s, function()
      return s:state(f).applied > 0 and s.snap_installs > 0
    end, 200)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("invariant violated: state machine "
                                        .. "safety", 1, true), err)
  end)
end)
