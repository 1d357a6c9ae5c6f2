-- Log replication and safety (Raft §5.3, §5.4, Figures 7 and 8), through the
-- simulator, with nodes restored from hand-built logs.
local sim = require("rafting.sim")

local REPLAY = "busted spec/core/replication_spec.lua"

-- a log from a list of terms; an entry's data names its index and term, so
-- equal (index, term) pairs are equal entries in every log
local function log_of(terms)
  local log = {}
  for i, t in ipairs(terms) do
    log[i] = { term = t, index = i, type = "normal", data = i .. ":" .. t }
  end
  return log
end

-- "1 1 1 4 4" / {{1,3},{4,2}} (term, count) -> list of terms
local function terms_of(spec)
  local out = {}
  if type(spec) == "string" then
    for t in spec:gmatch("%d+") do out[#out + 1] = tonumber(t) end
  else
    for _, run in ipairs(spec) do
      for _ = 1, run[2] do out[#out + 1] = run[1] end
    end
  end
  return out
end

local function max_term(terms)
  local m = 0
  for _, t in ipairs(terms) do if t > m then m = t end end
  return m
end

-- sim.new with node i restored from logs[i] (a terms spec) at the given
-- hard-state term (default: its last term)
local function restored(opts, logs, hs)
  local restore = {}
  opts.ids = {}
  for id, spec in ipairs(logs) do
    local terms = terms_of(spec)
    opts.ids[id] = id
    local h = hs and hs[id] or {}
    restore[id] = {
      log = log_of(terms),
      hard_state = { term = h.term or max_term(terms), vote = h.vote or 0,
                     commit = h.commit or 0 },
    }
  end
  opts.restore = restore
  opts.replay = opts.replay or REPLAY
  return sim.new(opts)
end

local function same_log(s, a, b)
  local la, lb = s:mem_log(a), s:mem_log(b)
  if #la ~= #lb then return false end
  for i = 1, #la do
    if la[i].term ~= lb[i].term or la[i].data ~= lb[i].data then
      return false
    end
  end
  return true
end

-- Figure 7: the leader of term 8 and six possible follower logs
local FIG7_LEADER = "1 1 1 4 4 5 5 6 6 6"
local FIG7 = {
  { "a", "1 1 1 4 4 5 5 6 6", "missing an entry" },
  { "b", "1 1 1 4", "missing many entries" },
  { "c", "1 1 1 4 4 5 5 6 6 6 6", "holding an extra uncommitted entry" },
  { "d", "1 1 1 4 4 5 5 6 6 6 7 7", "holding extra entries of a later term" },
  { "e", "1 1 1 4 4 4 4", "missing entries and holding extra ones" },
  { "f", "1 1 1 2 2 2 3 3 3 3 3", "holding many entries of terms the leader "
                                  .. "never saw" },
}

describe("log replication (§5.3)", function()
  it("Figure 7: all six follower logs (a-f) are repaired to the leader's log "
     .. "in one cluster", function()
    local logs = { FIG7_LEADER }
    for i, f in ipairs(FIG7) do logs[i + 1] = f[2] end
    local hs = {}
    for id = 1, 7 do hs[id] = { term = 7 } end
    local s = restored({ seed = 1 }, logs, hs)
    assert.is_true(s:elect(1))  -- a, b, e and f grant; c and d are longer
    assert.equal(8, s:state(1).term)
    for id = 2, 7 do
      assert.is_true(same_log(s, 1, id), "follower " .. FIG7[id - 1][1]
        .. " ended as " .. sim.terms(s:mem_log(id)))
    end
    assert.equal(FIG7_LEADER .. " 8", sim.terms(s:mem_log(1)))
    assert.equal(11, s:state(1).commit)
    s:check_logs()
  end)

  for _, f in ipairs(FIG7) do
    it(("Figure 7 (%s): a follower %s is brought in line with the leader")
       :format(f[1], f[3]), function()
      for seed = 1, 3 do
        -- node 3 holds the leader's log so that node 1 wins without node 2
        local s = restored({ seed = seed }, { FIG7_LEADER, f[2], FIG7_LEADER },
                           { { term = 7 }, { term = 7 }, { term = 7 } })
        assert.is_true(s:elect(1))
        assert.is_true(same_log(s, 1, 2), "ended as "
                       .. sim.terms(s:mem_log(2)))
        -- and keeps in line under ordinary running, with proposals
        for k = 1, 5 do assert(s:propose("p" .. k)) end
        s:run(5 * s.cfg.election_ticks)
        assert.is_true(same_log(s, 1, 2))
        assert.same(s:applied_data(1), s:applied_data(2))
      end
    end)
  end

  it("fast backtracking: a follower that missed 60 entries per term across "
     .. "several divergent terms is repaired in round trips proportional to "
     .. "the terms, not the entries", function()
    local cases = {
      -- leader, follower
      { { { 1, 1 }, { 2, 60 }, { 4, 60 }, { 6, 60 } },
        { { 1, 1 }, { 3, 60 }, { 5, 60 } } },
      { { { 1, 1 }, { 2, 60 }, { 4, 60 }, { 6, 60 } },
        { { 1, 1 }, { 2, 30 }, { 3, 60 }, { 5, 60 }, { 5, 60 } } },
      { { { 1, 1 }, { 2, 60 }, { 3, 60 }, { 4, 60 }, { 5, 60 } },
        { { 1, 1 } } },
      { { { 1, 1 }, { 2, 60 }, { 7, 60 } },
        { { 1, 1 }, { 2, 60 }, { 3, 60 }, { 4, 60 }, { 5, 60 }, { 6, 60 } } },
    }
    for k, case in ipairs(cases) do
      local lt, ft = terms_of(case[1]), terms_of(case[2])
      local terms = {}
      for _, t in ipairs(lt) do terms[t] = true end
      for _, t in ipairs(ft) do terms[t] = true end
      local nterms = 0
      for _ in pairs(terms) do nterms = nterms + 1 end
      local top = math.max(max_term(lt), max_term(ft))
      local s = restored({ seed = k }, { case[1], case[2], case[1] },
                         { { term = top }, { term = top }, { term = top } })
      s:reset_counts()
      assert.is_true(s:elect(1))
      assert.is_true(same_log(s, 1, 2), "case " .. k)
      -- round trips: every APPEND to the follower is answered, and each
      -- rejected one must skip a whole term
      local appends = s:count_to(2, "append")
      local rejects = s:count_to(1, "append_resp.reject")
      assert.is_true(rejects <= nterms, ("case %d: %d rejected APPENDs for "
        .. "%d terms"):format(k, rejects, nterms))
      assert.is_true(appends <= nterms + 3, ("case %d: %d APPENDs for %d "
        .. "divergent entries in %d terms"):format(k, appends, #ft + #lt,
                                                   nterms))
    end
  end)

  it("a partitioned old leader's uncommitted entries are discarded when it "
     .. "rejoins", function()
    for seed = 1, 5 do
      local s = sim.new{ n = 5, seed = seed, replay = REPLAY }
      local old = assert(s:wait_leader())
      local buddy = old % 5 + 1
      local rest = {}
      for _, id in ipairs(s.ids) do
        if id ~= old and id ~= buddy then rest[#rest + 1] = id end
      end
      s:partition({ old, buddy }, rest)
      local lost = {}
      for k = 1, 3 do
        local index, term = s:propose("lost" .. k, old)
        assert.is_not_nil(index)
        lost[#lost + 1] = { index = index, term = term }
      end
      local ok = s:run_until(function()
        local l = s:leader()
        return l ~= nil and l ~= old
      end, 20 * s.cfg.election_ticks)
      assert.is_true(ok)
      local new_l = assert(s:wait_leader())
      for k = 1, 3 do assert(s:propose("kept" .. k, new_l)) end
      s:run(3 * s.cfg.election_ticks)
      s:heal()
      s:run(10 * s.cfg.election_ticks)
      assert.equal(new_l, s:agreed_leader())
      for _, id in ipairs(s.ids) do
        assert.is_true(same_log(s, new_l, id), "node " .. id)
        local data = table.concat(s:applied_data(id), ",")
        assert.is_nil(data:find("lost"), "node " .. id .. " applied " .. data)
        assert.is_not_nil(data:find("kept3"), "node " .. id)
      end
      for _, p in ipairs(lost) do
        assert.is_false(s:is_applied(p.index, p.term))
      end
    end
  end)
end)

describe("safety (§5.4)", function()
  -- Figure 8, state (c): S1 leads term 4; entry 2 of term 2 is on S1 and
  -- S2; S5 (down) holds entry 2 of term 3; S3 and S4 voted for S5 in term 3.
  local function figure8(seed)
    local s = restored({ seed = seed, max_msg_bytes = 1 }, {
      "1 2", "1 2", "1", "1", "1 3",
    }, {
      { term = 3, commit = 1 }, { term = 2, commit = 1 },
      { term = 3, vote = 5, commit = 1 }, { term = 3, vote = 5, commit = 1 },
      { term = 3, vote = 5, commit = 1 },
    })
    s:crash(5)
    s:filter(sim.hold_type("append", 1))
    assert.is_true(s:elect(1))
    assert.equal(4, s:state(1).term)
    local function to(id)
      return s:take(function(m) return m.to == id end)
    end
    -- S2 takes the leader's no-op; S3 takes entry 2 alone (one entry per
    -- APPEND), so entry 2 (term 2) is on S1, S2, S3: a majority
    for _, m in ipairs(to(2)) do s:deliver(m) end
    s:flush()                                -- S2's answer reaches S1
    local probe = to(3)
    assert.equal(1, #probe)
    s:deliver(probe[1])                      -- rejected: S3 lacks entry 2
    s:flush()
    local fill = to(3)
    assert.equal(1, #fill)
    assert.equal(1, #fill[1].entries)
    assert.equal(2, fill[1].entries[1].term)
    s:deliver(fill[1])
    s:flush()
    assert.equal(2, s:state(3).last_index)
    return s, to
  end

  it("Figure 8: a leader does not commit an entry from an earlier term by "
     .. "counting replicas, and such an entry may be overwritten", function()
    for seed = 1, 5 do
      local s = figure8(seed)
      assert.equal(1, s:state(1).commit)  -- entry 2 is on 3 of 5, yet
      assert.equal(1, s.ncommit)
      -- (d): S1 crashes; S5 wins with S3 and S4 and replaces entry 2
      s:crash(1)
      s.filters, s.held = {}, {}
      s:restart(5)
      s:partition({ 2 }, { 3, 4, 5 })
      local ok = s:run_until(function() return s:leader() == 5 end,
                             30 * s.cfg.election_ticks)
      assert.is_true(ok, "S5 was not elected")
      s:heal()
      s:restart(1)
      s:run(10 * s.cfg.election_ticks)
      assert.equal(5, s:agreed_leader())
      for id = 1, 5 do
        assert.equal(3, s:mem_log(id)[2].term, "node " .. id)
      end
      assert.equal(3, s.applied[2].term)
    end
  end)

  it("Figure 8 (e): once an entry of the leader's term is on a majority, it "
     .. "and the earlier entries are committed and no other log can win",
     function()
    for seed = 1, 5 do
      local s, to = figure8(seed)
      for _, m in ipairs(to(3)) do s:deliver(m) end  -- the no-op reaches S3
      s:flush()
      assert.equal(3, s:state(1).commit)
      s:crash(1)
      s.filters, s.held = {}, {}
      s:restart(5)
      s:partition({ 2 }, { 3, 4, 5 })
      s:run(30 * s.cfg.election_ticks)
      for term, id in pairs(s.leaders) do
        assert.are_not.equal(5, id, "S5 led term " .. term)
      end
      s:heal()
      s:restart(1)
      assert.is_not_nil(s:wait_leader())
      s:run(5 * s.cfg.election_ticks)
      for id = 1, 5 do
        assert.equal("1 2 4", sim.terms(s:mem_log(id)):sub(1, 5),
                     "node " .. id)
      end
    end
  end)
end)

describe("the follower's commit rule (Figure 2)", function()
  local core = require("rafting.core")

  -- every ready until none is left: the last hard state, what was applied,
  -- what was sent
  local function drain(c)
    local out = { committed = {}, msgs = {} }
    while c:has_ready() do
      local rd = c:ready()
      out.hs = rd.hs or out.hs
      for _, e in ipairs(rd.committed) do out.committed[#out.committed + 1] = e end
      for _, m in ipairs(rd.msgs) do out.msgs[#out.msgs + 1] = m end
      c:advance()
    end
    return out
  end

  it("if leaderCommit > commitIndex, set commitIndex = min(leaderCommit, "
     .. "index of last new entry): a stale suffix past the entries an "
     .. "AppendEntries verified is not committed", function()
    -- the follower holds 4 and 5 of term 2 from a deposed leader; the leader
    -- of term 3 holds other entries there and has committed up to 5.  Its
    -- APPENDs are built by hand, so nothing caps the commit they carry.
    local appends = {
      { index = 2, log_term = 1,                  -- one entry, as it has it
        entries = { { term = 2, index = 3, type = "normal", data = "3:2" } } },
      { index = 3, log_term = 2 },                -- a probe with no entries
    }
    for _, a in ipairs(appends) do
      local f = core.new{ id = 2, voters = { 1, 2, 3 }, seed = 1,
                          hard_state = { term = 3, vote = 0, commit = 2 },
                          log = log_of(terms_of("1 1 2 2 2")) }
      a.type, a.from, a.to, a.term, a.commit = "append", 1, 2, 3, 5
      assert.is_true(f:step(a))
      local out = drain(f)
      local st = f:status()
      assert.equal(3, st.commit)        -- not 5: 4 and 5 were never verified
      assert.equal(5, st.last_index)    -- and kept until a conflict shows
      assert.equal(3, out.hs.commit)
      assert.equal(3, out.committed[#out.committed].index)
      assert.equal(1, #out.msgs)
      assert.equal("append_resp", out.msgs[1].type)
      assert.is_false(out.msgs[1].reject)
      assert.equal(3, out.msgs[1].index)
      f:close()
    end
  end)
end)
