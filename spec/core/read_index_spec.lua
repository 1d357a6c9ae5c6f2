-- Linearizable reads by ReadIndex (Raft §8, thesis §6.4).
local sim = require("rafting.sim")

local REPLAY = "busted spec/core/read_index_spec.lua"

local function log_of(n)
  local log = {}
  for i = 1, n do log[i] = { term = 1, index = i, data = "w" .. i } end
  return log
end

describe("ReadIndex (§8)", function()
  it("a new leader serves no read until it has committed an entry of its "
     .. "term, and then at an index covering every earlier commit", function()
    -- entries 1..5 are committed (node 2 knows); node 1 restarted knowing
    -- nothing of it and is elected
    local s = sim.new{ n = 3, seed = 1, replay = REPLAY, restore = {
      { log = log_of(5), hard_state = { term = 1 } },
      { log = log_of(5), hard_state = { term = 1, commit = 5 } },
      { log = log_of(5), hard_state = { term = 1, commit = 5 } },
    } }
    s:filter(sim.hold_type("append", 1))
    assert.is_true(s:elect(1))
    assert.equal(0, s:state(1).commit)
    assert.is_true(s:read(1, 7))
    s:flush()
    assert.same({}, s.nodes[1].reads)
    s.filters = {}
    s:release()
    s:flush()
    local reads = s.nodes[1].reads
    assert.equal(1, #reads)
    assert.equal(7, reads[1].ctx)
    assert.is_true(reads[1].index >= 6)
  end)

  it("a read on a follower is refused with the leader as a hint", function()
    local s = sim.new{ n = 3, seed = 2, replay = REPLAY }
    local l = assert(s:wait_leader())
    local f = l % 3 + 1
    local ok, err = s:read(f, 1)
    assert.is_nil(ok)
    assert.equal("notleader", err)
    assert.equal(l, s:state(f).leader)
  end)

  it("a leader cut off from the majority serves no read", function()
    for _, cq in ipairs({ true, false }) do
      local s = sim.new{ n = 5, seed = 3, check_quorum = cq, replay = REPLAY }
      local l = assert(s:wait_leader())
      s:isolate(l)
      assert.is_true(s:read(l, 1))
      s:run(5 * s.cfg.election_ticks)
      assert.same({}, s.nodes[l].reads)
    end
  end)

  it("reads issued together are all served, each costing at most one "
     .. "heartbeat round", function()
    local s = sim.new{ n = 3, seed = 4, replay = REPLAY }
    local l = assert(s:wait_leader())
    s:run(20)
    s:reset_counts()
    for ctx = 1, 5 do assert.is_true(s:read(l, ctx)) end
    s:flush()
    assert.equal(5, #s.nodes[l].reads)
    assert.is_true(s:count("heartbeat") <= 5 * 2)
  end)
  it("a leader that was deposed does not serve a read with answers to a "
     .. "heartbeat round that began before the read (§6.4: it issues a new "
     .. "round of heartbeats and waits for a majority to acknowledge it)",
     function()
    -- no check-quorum: node 1 must not notice by itself that it was deposed
    local s = sim.new{ n = 3, seed = 6, check_quorum = false, pre_vote = false,
                       replay = REPLAY }
    assert.is_true(s:elect(1))
    assert(s:propose("w1", 1))
    s:flush()
    -- read 1 starts a round; the followers answer it, the answers are held
    local hold = s:filter(sim.hold_type("heartbeat_resp", nil, 1))
    assert.is_true(s:read(1, 1))
    s:flush()
    assert.equal(2, #s.held)
    assert.same({}, s.nodes[1].reads)
    -- node 1 is cut off; 2 and 3 move on and a client is told w2 is done
    s:isolate(1)
    assert.is_true(s:elect(2))
    local w2 = assert(s:propose("w2", 2))
    s:flush()
    assert.equal(w2, s.acked)
    assert.equal("leader", s:state(1).role)
    -- read 2 begins after w2 was acknowledged; node 1 cannot see w2
    assert.is_true(s:read(1, 2))
    s:unfilter(hold)
    -- the old answers confirm the read of their round, and only that one
    -- (counting them for read 2 serves a state without w2: the sim fails
    -- "linearizable reads")
    assert.equal(2, s:release())
    local reads = s.nodes[1].reads
    assert.equal(1, #reads)
    assert.equal(1, reads[1].ctx)
    assert.is_true(reads[1].applied < w2)
    s:heal()
    s:run(5 * s.cfg.election_ticks)
    assert.equal(1, #s.nodes[1].reads)
    assert.equal("follower", s:state(1).role)
  end)
end)
