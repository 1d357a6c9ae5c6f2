-- Membership changes, one server at a time (Raft thesis §4.1-§4.2), and
-- leadership transfer (§3.10), through the simulator and the real driver.
-- docs/membership.md states the rules these check.
local sim = require("rafting.sim")

local REPLAY = "busted spec/core/membership_spec.lua"
local ET = 10 -- election ticks (sim default)

-- 3 voters (1, 2, 3) and spares that start with no configuration
local function new(opts)
  opts.replay = opts.replay or REPLAY
  opts.n = opts.n or 5
  opts.voters = opts.voters or { 1, 2, 3 }
  return sim.new(opts)
end

local function propose_all(s, n, tag)
  local last
  for k = 1, n do
    last = assert(s:propose(("%s%d"):format(tag or "x", k)))
  end
  return last
end

-- run until every listed node applied index; fails the spec otherwise
local function applied_by(s, ids, index, ticks)
  return s:run_until(function()
    for _, id in ipairs(ids) do
      if not s:alive(id) or s.nodes[id].applied_index < index then
        return false
      end
    end
    return true
  end, ticks or 40 * ET)
end

-- propose a change at the leader and wait until the leader applied it
local function change(s, op, id)
  local l = assert(s:leader())
  local index, err = s:change(op, id, l)
  assert(index, err)
  assert.is_true(applied_by(s, { l }, index), op .. " did not commit")
  return index
end

local function sorted(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  return c
end

local function leaders_terms(s)
  local terms = 0
  for t in pairs(s.leaders) do if t > terms then terms = t end end
  return terms
end

describe("membership (thesis §4.1)", function()
  it("the checker's overlap test: one voter apart overlaps, two may not",
     function()
    local function c(...) return { voters = { ... }, learners = {} } end
    local ov = sim.majorities_overlap
    assert.is_true(ov(c(1, 2, 3), c(1, 2, 3, 4)))
    assert.is_true(ov(c(1, 2, 3, 4), c(1, 2, 3)))
    assert.is_true(ov(c(1, 2), c(1)))
    assert.is_true(ov(c(1, 2, 3), c(1, 2, 3)))
    assert.is_false(ov(c(1, 2, 3), c(1, 4, 5)))    -- {2,3} and {4,5}
    assert.is_false(ov(c(1, 2, 3), c(1, 2, 3, 4, 5))) -- {1,2}, {3,4,5}
    assert.is_false(ov(c(1, 2), c(3)))
  end)

  it("the configuration entry round-trips, and a bad one is refused",
     function()
    local s = new{ seed = 1 }
    assert(s:wait_leader())
    local index = change(s, "add_learner", 4)
    local l = s:leader()
    local e = s.nodes[l].core:entry(index)
    assert.equal("conf", e.type)
    local c = sim.decode_conf(e.data)
    assert.same({ 1, 2, 3 }, sorted(c.voters))
    assert.same({ 4 }, c.learners)
    -- a change that does not apply: adding a member, removing a stranger
    assert.same({ nil, "inval" }, { s:change("add_learner", 4) })
    assert.same({ nil, "inval" }, { s:change("remove", 9) })
  end)

  it("a change carries the runtime's context after the configuration, "
     .. "replicated as is and bounded", function()
    local core = require("rafting.core")
    local s = new{ seed = 2 }
    local l = assert(s:wait_leader())
    local ctx = "addresses\0of every member"
    local index = assert(s:change("add_learner", 4, l, ctx))
    assert.is_true(applied_by(s, { 1, 2, 3, 4 }, index))
    for _, id in ipairs({ 1, 2, 3, 4 }) do
      local c, got = core.conf_decode(s.nodes[id].core:entry(index).data)
      assert.same({ 4 }, c.learners)
      assert.equal(ctx, got)
    end
    assert.equal(4, #s:config(4).voters + #s:config(4).learners)
    -- without a context the payload is the configuration alone
    local plain = change(s, "add_voter", 4)
    local c, got = core.conf_decode(s.nodes[l].core:entry(plain).data)
    assert.same({}, c.learners)
    assert.equal("", got)
    -- over the bound: refused before anything is appended
    local last = s:status(l).last_index
    assert.same({ nil, "inval" },
                { s:change("add_learner", 5, l, ("x"):rep(4097)) })
    assert.equal(last, s:status(l).last_index)
    assert(s:change("add_learner", 5, l, ("x"):rep(4096)))
    -- a payload cut short, or with more than the bound after it
    local data = s.nodes[l].core:entry(plain).data
    assert.is_nil(core.conf_decode(data:sub(1, #data - 1)))
    assert.is_nil(core.conf_decode(data .. ("y"):rep(4097)))
    assert.truthy(core.conf_decode(data .. ("y"):rep(4096)))
  end)

  it("a new server far behind catches up as a learner first, never votes "
     .. "and never counts for commit", function()
    for _, compact in ipairs({ false, true }) do
      local s = new{ seed = 3, compact_every = compact and 20 or nil }
      local l = assert(s:wait_leader())
      local last = propose_all(s, 150, "old")
      assert.is_true(applied_by(s, { 1, 2, 3 }, last))
      change(s, "add_learner", 4)
      change(s, "add_learner", 5)
      -- the learners receive the log (or a snapshot, then the log)
      local lead_last = s:status(l).last_index
      assert.is_true(applied_by(s, { 4, 5 }, lead_last), "learner behind")
      local st4 = s:status(4)
      assert.same({ 4, 5 }, st4.conf.learners)
      if compact then assert.is_true(st4.first_index > 1) end
      -- it never stands for election, even when nobody leads
      assert.equal("inval", select(2, s.nodes[4].core:campaign()))
      -- with two voters down the learners make no majority (they would be
      -- 3 of 5 if they counted)
      local others = {}
      for _, id in ipairs({ 1, 2, 3 }) do
        if id ~= l then others[#others + 1] = id end
      end
      s:crash(others[1])
      s:crash(others[2])
      local idx = assert(s:propose("needs a voter majority", l))
      s:run(5 * ET)
      assert.is_true(s.nodes[l].commit < idx, "a learner counted for commit")
      s:restart(others[1])
      s:restart(others[2])
      local nl = assert(s:wait_leader())
      assert.is_not.equal(4, nl)
      -- promoted once caught up, it votes and counts
      change(s, "add_voter", 4)
      assert.same({ 1, 2, 3, 4 }, sorted(s:config().voters))
      assert.same({ 5 }, s:config().learners)
      local p = assert(s:propose("after promote"))
      assert.is_true(applied_by(s, { 1, 2, 3, 4, 5 }, p))
    end
  end)

  it("removing the current leader: it steps down once the change commits, "
     .. "and the rest go on without it", function()
    for seed = 1, 5 do
      local s = new{ seed = seed }
      local l = assert(s:wait_leader())
      local term = s:state(l).term
      local idx = assert(s:change("remove", l, l))
      -- the leader manages the cluster until the change commits, without
      -- counting itself: then it steps down
      assert.is_true(s:run_until(function()
        return s:state(l).role ~= "leader"
      end, 5 * ET), "removed leader kept leading")
      assert.is_true(s.nodes[l].commit >= idx)
      assert.equal(term, s:state(l).term)
      local nl = assert(s:wait_leader())
      assert.is_not.equal(l, nl)
      local voters = sorted(s:config(nl).voters)
      assert.equal(2, #voters)
      for _, v in ipairs(voters) do assert.is_not.equal(l, v) end
      local p = assert(s:propose("without the old leader"))
      assert.is_true(applied_by(s, voters, p))
      -- the old leader never leads again (it is no voter)
      s:run(20 * ET)
      assert.is_not.equal("leader", s:state(l).role)
    end
  end)

  it("a removed server that keeps campaigning does not disrupt the cluster "
     .. "(pre-vote, check-quorum, votes from non-members refused)", function()
    for _, pv in ipairs({ true, false }) do
      local s = new{ seed = 5, pre_vote = pv, check_quorum = true }
      local l = assert(s:wait_leader())
      local gone = l == 3 and 2 or 3
      -- it never hears of its removal
      s:isolate(gone)
      change(s, "remove", gone)
      s:heal()
      local term = s:state(l).term
      local votes = 0
      s:filter(function(m)
        if m.from == gone and (m.type == "vote" or m.type == "prevote") then
          votes = votes + 1
        end
      end)
      s:run(30 * ET)
      assert.is_true(votes > 0, "the removed server never campaigned")
      assert.equal(l, s:leader())
      assert.equal(term, s:state(l).term)
      local p = assert(s:propose("undisturbed"))
      local stay = {}
      for _, id in ipairs({ 1, 2, 3 }) do
        if id ~= gone then stay[#stay + 1] = id end
      end
      assert.is_true(applied_by(s, stay, p))
    end
  end)

  it("the single-server change bug is impossible: no change before an "
     .. "entry of the leader's term commits, and one change at a time",
     function()
    local s = new{ seed = 7 }
    local l = assert(s:wait_leader())
    change(s, "add_learner", 4)
    -- a new leader whose no-op has not committed yet may not change
    -- (a transfer makes it leader at once; its APPENDs are held)
    local nl = l % 3 + 1
    s:filter(sim.hold_type("append", nl))
    assert(s:transfer(nl, l))
    assert.is_true(s:run_until(function()
      return s:state(nl).role == "leader"
    end, 3 * ET))
    local st = s:status(nl)
    assert.is_true(st.commit < st.last_index)
    assert.same({ nil, "busy" }, { s:change("add_voter", 4, nl) })
    s.filters = {}
    s:release()
    assert.is_true(s:run_until(function()
      local x = s:status(nl)
      return x.commit == x.last_index
    end, 5 * ET))
    -- now it may; and a second change waits for the first to commit
    s:filter(sim.hold_type("append", nl))
    assert(s:change("add_voter", 4, nl))
    assert.is_true(s:status(nl).conf_pending)
    assert.same({ nil, "busy" }, { s:change("add_learner", 5, nl) })
    s.filters = {}
    s:release()
    assert.is_true(s:run_until(function()
      return not s:status(nl).conf_pending
    end, 10 * ET))
    assert(s:change("add_learner", 5, nl))
    -- each committed configuration overlapped the previous one (the
    -- checker's invariant) and none was skipped
    s:run(5 * ET)
    assert.equal(3, s.conf_changes)
  end)

  it("a restarted node restores its configuration from the log and from "
     .. "its snapshot", function()
    local s = new{ seed = 11, compact_every = 10 }
    assert(s:wait_leader())
    change(s, "add_learner", 4)
    change(s, "add_voter", 4)
    local p = propose_all(s, 40, "fill")
    assert.is_true(applied_by(s, { 1, 2, 3, 4 }, p))
    for _, id in ipairs({ 1, 2, 3, 4 }) do
      -- compacted past the change: only the snapshot knows it
      assert.is_true(s:status(id).first_index > 10)
      s:restart(id)
      assert.same({ 1, 2, 3, 4 }, sorted(s:status(id).conf.voters))
    end
    assert(s:wait_leader())
  end)
end)

describe("leadership transfer (thesis §3.10)", function()
  it("transfers to a lagging node: it is brought up to date first, "
     .. "proposals wait meanwhile", function()
    for seed = 1, 5 do
      local s = new{ seed = seed }
      local l = assert(s:wait_leader())
      local target = l % 3 + 1
      s:isolate(target)
      local last = propose_all(s, 30, "lag")
      s:run(2)
      s:heal()
      assert.is_true(s.nodes[target].applied_index < last)
      assert(s:transfer(target, l))
      assert.equal(target, s:status(l).transferee)
      assert.same({ nil, "busy" }, { s:propose("during transfer", l) })
      assert.is_true(s:run_until(function()
        return s:state(target).role == "leader"
      end, 2 * ET), "the target did not take over")
      local t = s:state(target)
      assert.is_true(t.last_index >= last)
      assert.equal(target, (s:wait_leader()))
      local p = assert(s:propose("after transfer"))
      assert.is_true(applied_by(s, { 1, 2, 3 }, p))
    end
  end)

  it("transfer is aborted when the target dies: after an election timeout "
     .. "the leader takes proposals again, in the same term", function()
    local s = new{ seed = 2 }
    local l = assert(s:wait_leader())
    local term = s:state(l).term
    local target = l % 3 + 1
    s:crash(target)
    assert(s:transfer(target, l))
    assert.same({ nil, "busy" }, { s:propose("refused", l) })
    assert.is_true(s:run_until(function()
      return s:status(l).transferee == 0
    end, 2 * ET))
    assert.equal("leader", s:state(l).role)
    assert.equal(term, s:state(l).term)
    local p = assert(s:propose("resumed", l))
    local alive = {}
    for _, id in ipairs({ 1, 2, 3 }) do
      if id ~= target then alive[#alive + 1] = id end
    end
    assert.is_true(applied_by(s, alive, p))
    assert.equal(term, leaders_terms(s))
  end)

  it("TimeoutNow skips pre-vote and is obeyed only by a voter from its "
     .. "leader", function()
    local s = new{ seed = 4 }
    local l = assert(s:wait_leader())
    local target = l % 3 + 1
    local prevotes = 0
    s:filter(function(m)
      if m.from == target and m.type == "prevote" then prevotes = prevotes + 1 end
    end)
    assert(s:transfer(target, l))
    assert.is_true(s:run_until(function()
      return s:state(target).role == "leader"
    end, 2 * ET))
    assert.equal(0, prevotes)
    -- a learner is no transfer target
    assert.equal(target, (s:wait_leader()))
    change(s, "add_learner", 4)
    assert.same({ nil, "inval" }, { s:transfer(4) })
  end)
end)
