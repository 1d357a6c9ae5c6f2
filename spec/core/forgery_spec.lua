-- The core's rules against messages no correct peer sends (issue 8): one
-- leader per term, TimeoutNow only from that leader.  (Terms at or above
-- 2^63 do not fit a Lua integer: spec/c/test_codec.c feeds those in frames.)
-- Each rule is driven by hand on one rafting.core; spec/security/ sends the
-- same forgeries over the wire to a real cluster.
local core = require("rafting.core")

local function drain(c)
  local out = { entries = {}, msgs = {} }
  while c:has_ready() do
    local rd = c:ready()
    for _, k in ipairs({ "entries", "msgs" }) do
      for _, v in ipairs(rd[k]) do table.insert(out[k], v) end
    end
    c:advance()
  end
  return out
end

-- node 2 of {1,2,3}, following leader 1 in term 2, log empty
local function follower()
  local c = core.new{ id = 2, voters = { 1, 2, 3 }, seed = 5 }
  assert.is_true(c:step{ type = "heartbeat", from = 1, to = 2, term = 2 })
  drain(c)
  assert.equal(1, c:status().leader)
  return c
end

local function append(from, term, data)
  return { type = "append", from = from, to = 2, term = term, index = 0,
           log_term = 0, commit = 1,
           entries = { { term = term, index = 1, data = data } } }
end

describe("forged messages", function()
  it("an append from a node other than the known leader of the term is "
     .. "dropped", function()
    local c = follower()
    local ok, err = c:step(append(3, 2, "forged"))
    assert.is_nil(ok)
    assert.equal("forged", err)
    local st = c:status()
    assert.equal(0, st.last_index)     -- nothing appended
    assert.equal(0, st.commit)
    assert.equal(1, st.leader)         -- the real leader is kept
    assert.equal(2, st.term)
    assert.same({}, drain(c).msgs)     -- and no answer to the forger
    -- the real leader's append at that index still lands
    assert.is_true(c:step(append(1, 2, "real")))
    assert.equal("real", c:entry(1).data)
  end)

  it("a heartbeat or snapshot from a node other than the known leader is "
     .. "dropped", function()
    local c = follower()
    local ok, err = c:step{ type = "heartbeat", from = 3, to = 2, term = 2,
                            commit = 5 }
    assert.is_nil(ok)
    assert.equal("forged", err)
    ok, err = c:step{ type = "snapshot", from = 3, to = 2, term = 2,
                            index = 50, log_term = 2 }
    assert.is_nil(ok)
    assert.equal("forged", err)
    assert.equal(0, c:status().commit)
    assert.equal(0, c:status().last_index)
  end)

  it("a follower that does not know the term's leader accepts the first "
     .. "one and records it", function()
    local c = core.new{ id = 2, voters = { 1, 2, 3 }, seed = 5 }
    assert.is_true(c:step(append(3, 2, "x")))
    assert.equal(3, c:status().leader)
    assert.equal(1, c:status().last_index)
    local ok, err = c:step(append(1, 2, "y"))
    assert.is_nil(ok)
    assert.equal("forged", err)
    assert.equal("x", c:entry(1).data)
  end)

  it("a candidate receiving an append of its own term learns the leader",
     function()
    local c = core.new{ id = 2, voters = { 1, 2, 3 }, seed = 5,
                        pre_vote = false }
    assert(c:campaign())
    drain(c)
    assert.equal("candidate", c:status().role)
    local term = c:status().term
    assert.is_true(c:step(append(3, term, "x")))
    assert.equal("follower", c:status().role)
    assert.equal(3, c:status().leader)
  end)

  it("a leader drops an append of its own term from another node",
     function()
    local c = core.new{ id = 1, voters = { 1, 2, 3 }, seed = 5,
                        pre_vote = false }
    assert(c:campaign())
    drain(c)
    c:step{ type = "vote_resp", from = 2, to = 1, term = 1 }
    drain(c)
    assert.equal("leader", c:status().role)
    local ok, err = c:step{ type = "append", from = 3, to = 1, term = 1,
                            index = 1, log_term = 1, commit = 2,
                            entries = { { term = 1, index = 2, data = "f" } } }
    assert.is_nil(ok)
    assert.equal("forged", err)
    assert.equal("leader", c:status().role)
    assert.equal(1, c:status().last_index)
  end)

  it("TimeoutNow from a non-leader is ignored", function()
    local c = follower()
    local ok, err = c:step{ type = "timeout_now", from = 3, to = 2, term = 2 }
    assert.is_nil(ok)
    assert.equal("forged", err)
    assert.equal(2, c:status().term)
    assert.equal("follower", c:status().role)
    assert.same({}, drain(c).msgs)
    -- when no leader is known it is ignored without an error
    local d = core.new{ id = 2, voters = { 1, 2, 3 }, seed = 5 }
    assert.is_true(d:step{ type = "timeout_now", from = 3, to = 2, term = 0 })
    assert.equal(0, d:status().term)
    assert.equal("follower", d:status().role)
  end)

  it("TimeoutNow with a higher term is ignored: the term does not move",
     function()
    local c = follower()
    assert.is_true(c:step{ type = "timeout_now", from = 1, to = 2, term = 9 })
    assert.equal(2, c:status().term)
    assert.equal("follower", c:status().role)
    assert.equal(1, c:status().leader)
  end)

  it("TimeoutNow from the known leader starts an election at once",
     function()
    local c = follower()
    assert.is_true(c:step{ type = "timeout_now", from = 1, to = 2, term = 2 })
    assert.equal(3, c:status().term)
    assert.equal("candidate", c:status().role)
  end)
end)

describe("forged messages after a leader stepped down", function()
  it("a leader that stepped down (check-quorum) drops an append of the term "
     .. "it led from another node", function()
    local c = core.new{ id = 1, voters = { 1, 2, 3 }, seed = 5,
                        pre_vote = false }
    assert(c:campaign())
    drain(c)
    c:step{ type = "vote_resp", from = 2, to = 1, term = 1 }
    drain(c)
    assert.equal("leader", c:status().role)
    local ticks = 0
    while c:status().role == "leader" do -- no answers: it steps down
      c:tick()
      drain(c)
      ticks = ticks + 1
      assert.is_true(ticks < 1000, "the leader never stepped down")
    end
    assert.equal(1, c:status().term)
    local ok, err = c:step{ type = "append", from = 3, to = 1, term = 1,
                            index = 1, log_term = 1, commit = 2,
                            entries = { { term = 1, index = 2, data = "f" } } }
    assert.is_nil(ok)
    assert.equal("forged", err)
    assert.equal(1, c:status().last_index)
    assert.equal(0, c:status().leader)
  end)
end)
