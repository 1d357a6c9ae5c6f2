-- Leader election (Raft §5.2, §5.4.1, Figure 2), through the simulator.
local sim = require("rafting.sim")

local REPLAY = "busted spec/core/election_spec.lua"

local function new(opts)
  opts.replay = opts.replay or REPLAY
  return sim.new(opts)
end

-- the ids of live nodes that believe they lead
local function leaders(s)
  local out = {}
  for _, id in ipairs(s.ids) do
    local st = s:state(id)
    if st and st.role == "leader" then out[#out + 1] = id end
  end
  return out
end

describe("leader election (§5.2)", function()
  it("elects exactly one leader at startup, and every node agrees on its term",
     function()
    for _, n in ipairs({ 3, 5, 7 }) do
      for seed = 1, 10 do
        local s = new{ n = n, seed = seed }
        local l, term = s:wait_leader(20 * s.cfg.election_ticks)
        assert.is_not_nil(l, ("no leader: n=%d seed=%d"):format(n, seed))
        assert.same({ l }, leaders(s))
        for _, id in ipairs(s.ids) do
          local st = s:state(id)
          assert.equal(term, st.term)
          assert.equal(l, st.leader)
        end
      end
    end
  end)

  it("a follower that hears nothing for an election timeout elects a new "
     .. "leader, and the old one rejoins without disruption", function()
    for seed = 1, 10 do
      local s = new{ n = 5, seed = seed }
      local old = assert(s:wait_leader())
      s:isolate(old)
      local ok = s:run_until(function()
        local l = s:leader()
        return l ~= nil and l ~= old
      end, 10 * s.cfg.election_ticks)
      assert.is_true(ok, "no new leader while the old one is cut off")
      local new_l, term = assert(s:wait_leader())
      assert.are_not.equal(old, new_l)
      s:heal()
      s:run(20 * s.cfg.election_ticks)
      local l2, term2 = s:agreed_leader()
      assert.equal(new_l, l2)
      assert.equal(term, term2)
      assert.equal("follower", s:state(old).role)
      assert.equal(new_l, s:state(old).leader)
    end
  end)

  it("no leader is elected without a majority, and one is once the majority "
     .. "is back", function()
    for seed = 1, 5 do
      local s = new{ n = 5, seed = seed }
      local l = assert(s:wait_leader())
      -- crash the leader and two more: two of five remain
      local down = { l }
      for _, id in ipairs(s.ids) do
        if #down < 3 and id ~= l then down[#down + 1] = id end
      end
      for _, id in ipairs(down) do s:crash(id) end
      local t0 = s.time
      local got = s:run_until(function() return #leaders(s) > 0 end,
                              30 * s.cfg.election_ticks)
      assert.is_false(got, ("a minority elected a leader at t=%d (from %d)")
                           :format(s.time, t0))
      s:restart(down[2])
      local l2 = s:wait_leader(20 * s.cfg.election_ticks)
      assert.is_not_nil(l2, "no leader once a majority is back")
      s:restart(down[1])
      s:restart(down[3])
      assert.is_not_nil(s:wait_leader())
    end
  end)

  it("split votes between dueling candidates are resolved by randomized "
     .. "election timeouts", function()
    -- 4 nodes, pre-vote off: 1 and 2 stand at once, 3 votes for 1 and 4 for
    -- 2, so term 1 has no winner; the randomized timeouts break the tie
    for seed = 1, 10 do
      local s = new{ n = 4, seed = seed, pre_vote = false }
      s:filter(sim.hold_all)
      s:core(1):campaign(); s:process(s.nodes[1])
      s:core(2):campaign(); s:process(s.nodes[2])
      local function vote(from, to)
        local ms = s:take(function(m)
          return m.type == "vote" and m.from == from and m.to == to
        end)
        assert.equal(1, #ms)
        s:deliver(ms[1])
      end
      vote(1, 3); vote(2, 4); vote(2, 3); vote(1, 4); vote(1, 2); vote(2, 1)
      s.filters = {}
      s:release()
      s:flush()
      assert.same({}, leaders(s))
      assert.equal("candidate", s:state(1).role)
      assert.equal("candidate", s:state(2).role)
      local l, term = s:wait_leader(20 * s.cfg.election_ticks)
      assert.is_not_nil(l, "the split vote was never resolved")
      assert.is_true(term >= 2)
      assert.is_nil(s.leaders[1], "term 1 had a winner")
    end
  end)

  it("candidates that all stand at once still converge on one leader",
     function()
    for seed = 1, 10 do
      local s = new{ n = 5, seed = seed, pre_vote = false }
      for _, id in ipairs(s.ids) do
        s:core(id):campaign()
        s:process(s.nodes[id])
      end
      local l = s:wait_leader(30 * s.cfg.election_ticks)
      assert.is_not_nil(l, "seed " .. seed)
      assert.same({ l }, leaders(s))
    end
  end)
end)

-- One core at a time, with hand-made RequestVote messages.
describe("RequestVote (§5.2, §5.4.1, Figure 2)", function()
  local core = require("rafting.core")

  local function drain(c)
    local hs, msgs = nil, {}
    while c:has_ready() do
      local rd = c:ready()
      hs = rd.hs or hs
      for _, m in ipairs(rd.msgs) do msgs[#msgs + 1] = m end
      c:advance()
    end
    return hs, msgs
  end

  local function vote(from, term, index, log_term)
    return { type = "vote", from = from, to = 1, term = term,
             index = index or 0, log_term = log_term or 0 }
  end

  local function restored(terms, hs)
    local log = {}
    for i, t in ipairs(terms) do
      log[i] = { term = t, index = i, data = i .. ":" .. t }
    end
    return core.new{ id = 1, voters = { 1, 2, 3 }, log = log,
                     hard_state = hs }
  end

  it("each server votes for at most one candidate in a given term, and the "
     .. "vote is persisted before the reply leaves", function()
    local c = core.new{ id = 1, voters = { 1, 2, 3 } }
    assert.is_true(c:step(vote(2, 1)))
    local rd = c:ready()
    assert.same({ term = 1, vote = 2, commit = 0 }, rd.hs)  -- same batch
    assert.equal(1, #rd.msgs)
    assert.equal("vote_resp", rd.msgs[1].type)
    assert.equal(2, rd.msgs[1].to)
    assert.is_false(rd.msgs[1].reject)
    c:advance()
    c:step(vote(3, 1))
    local hs, msgs = drain(c)
    assert.is_nil(hs)  -- the vote did not change
    assert.equal(1, #msgs)
    assert.equal(3, msgs[1].to)
    assert.is_true(msgs[1].reject)
    -- the same candidate asking again (a duplicate) gets the same answer
    c:step(vote(2, 1))
    local _, again = drain(c)
    assert.is_false(again[1].reject)
    c:close()
  end)

  it("the voter denies its vote if its own log is more up-to-date than the "
     .. "candidate's", function()
    local c = restored({ 1, 1, 2 }, { term = 2, vote = 0, commit = 0 })
    -- an older last term loses, however long the log
    c:step(vote(2, 3, 10, 1))
    local hs, msgs = drain(c)
    assert.equal(3, hs.term)   -- the higher term is adopted ...
    assert.equal(0, hs.vote)   -- ... but no vote is given
    assert.is_true(msgs[1].reject)
    -- same last term, shorter log: denied
    c:step(vote(3, 3, 2, 2))
    _, msgs = drain(c)
    assert.is_true(msgs[1].reject)
    -- same last term, as long: granted
    c:step(vote(3, 3, 3, 2))
    hs, msgs = drain(c)
    assert.is_false(msgs[1].reject)
    assert.equal(3, hs.vote)
    c:close()
  end)

  it("a request with a stale term is rejected and the reply carries the "
     .. "current term", function()
    local c = restored({ 1 }, { term = 5, vote = 0, commit = 0 })
    c:step(vote(2, 4, 1, 1))
    local hs, msgs = drain(c)
    assert.is_nil(hs)
    assert.equal(1, #msgs)
    assert.is_true(msgs[1].reject)
    assert.equal(5, msgs[1].term)
    -- a stale AppendEntries is refused the same way
    c:step{ type = "append", from = 2, to = 1, term = 3, index = 1,
            log_term = 1 }
    _, msgs = drain(c)
    assert.equal("append_resp", msgs[1].type)
    assert.is_true(msgs[1].reject)
    assert.equal(5, msgs[1].term)
    assert.equal(5, c:status().term)
    c:close()
  end)

  it("a leader that discovers a higher term reverts to follower", function()
    local s = new{ n = 3, seed = 7 }
    local l, term = assert(s:wait_leader())
    local f = l % 3 + 1
    s:deliver{ type = "append_resp", from = f, to = l, term = term + 1 }
    local st = s:state(l)
    assert.equal("follower", st.role)
    assert.equal(term + 1, st.term)
    assert.equal(term + 1, s.nodes[l].hs.term)  -- and persisted it
  end)

  it("a candidate that hears from a leader of its term returns to follower",
     function()
    local s = new{ n = 3, seed = 3 }
    s:filter(sim.hold_all)
    s:core(1):campaign(); s:process(s.nodes[1])
    assert.equal("candidate", s:state(1).role)
    local term = s:state(1).term
    s:deliver{ type = "append", from = 2, to = 1, term = term, index = 0,
               log_term = 0, commit = 0 }
    assert.equal("follower", s:state(1).role)
    assert.equal(2, s:state(1).leader)
  end)
end)
