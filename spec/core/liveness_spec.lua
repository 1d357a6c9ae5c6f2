-- Pre-vote and check-quorum (Raft thesis §9.6, §6.2), through the simulator.
local sim = require("rafting.sim")

local REPLAY = "busted spec/core/liveness_spec.lua"

local function new(opts)
  opts.replay = opts.replay or REPLAY
  return sim.new(opts)
end

local function other_than(s, id)
  for _, x in ipairs(s.ids) do if x ~= id then return x end end
end

-- isolate a follower for 'ticks', heal, settle; leader and term before and
-- after, and the follower's highest term while it was away
local function isolate_follower(opts, ticks)
  local s = new(opts)
  local l, term = assert(s:wait_leader())
  local f = other_than(s, l)
  s:isolate(f)
  local away = 0
  s:run_until(function()
    away = math.max(away, s:state(f).term)
    return false
  end, ticks)
  s:heal()
  s:run(20 * s.cfg.election_ticks)
  local l2, term2 = s:agreed_leader()
  return l, term, l2, term2, away
end

describe("pre-vote (thesis §9.6)", function()
  it("a node partitioned away does not raise its term, and when it rejoins "
     .. "the leader and the term stay as they were", function()
    for seed = 1, 10 do
      local l, term, l2, term2, away = isolate_follower(
        { n = 5, seed = seed }, 30 * 10)
      assert.equal(term, away, "the isolated node's term moved")
      assert.equal(l, l2, "seed " .. seed)
      assert.equal(term, term2, "seed " .. seed)
    end
  end)

  it("without pre-vote the same rejoining node does disrupt the term (the "
     .. "scenario above can fail)", function()
    local disrupted = 0
    for seed = 1, 10 do
      local _, term, _, term2, away = isolate_follower(
        { n = 5, seed = seed, pre_vote = false }, 30 * 10)
      assert.is_true(away > term)
      if term2 ~= term then disrupted = disrupted + 1 end
    end
    assert.equal(10, disrupted)
  end)
end)

describe("check-quorum (thesis §6.2)", function()
  it("a leader that has not heard from a majority for an election timeout "
     .. "steps down", function()
    for seed = 1, 10 do
      local s = new{ n = 5, seed = seed }
      local l = assert(s:wait_leader())
      s:isolate(l)
      local ok, took = s:run_until(function()
        return s:state(l).role ~= "leader"
      end, 3 * s.cfg.election_ticks)
      assert.is_true(ok, "the isolated leader kept leading")
      assert.is_true(took <= 2 * s.cfg.election_ticks)
      -- a minority that still reaches it is not enough either
      s:heal()
      assert(s:wait_leader())
      local l2 = s:leader()
      local buddy = other_than(s, l2)
      local rest = {}
      for _, id in ipairs(s.ids) do
        if id ~= l2 and id ~= buddy then rest[#rest + 1] = id end
      end
      s:partition({ l2, buddy }, rest)
      ok = s:run_until(function()
        return s:state(l2).role ~= "leader"
      end, 3 * s.cfg.election_ticks)
      assert.is_true(ok, "a leader with a minority kept leading")
    end
  end)

  it("a leader that hears from a majority keeps leading", function()
    local s = new{ n = 5, seed = 4 }
    local l, term = assert(s:wait_leader())
    local f = other_than(s, l)
    s:isolate(f)  -- four of five remain
    s:run(20 * s.cfg.election_ticks)
    assert.equal("leader", s:state(l).role)
    assert.equal(term, s:state(l).term)
  end)

  it("without check-quorum an isolated leader keeps believing it leads (the "
     .. "scenario above can fail)", function()
    local s = new{ n = 5, seed = 2, check_quorum = false }
    local l = assert(s:wait_leader())
    s:isolate(l)
    s:run(10 * s.cfg.election_ticks)
    assert.equal("leader", s:state(l).role)
  end)
end)
