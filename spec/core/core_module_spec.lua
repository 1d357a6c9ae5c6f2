-- The rafting.core Lua module: one pure core, driven by hand.
local core = require("rafting.core")

-- drain every ready batch; everything they held, concatenated
local function drain(c)
  local out = { entries = {}, msgs = {}, committed = {}, reads = {} }
  while c:has_ready() do
    local rd = c:ready()
    out.hs = rd.hs or out.hs
    for _, k in ipairs({ "entries", "msgs", "committed", "reads" }) do
      for _, v in ipairs(rd[k]) do table.insert(out[k], v) end
    end
    c:advance()
  end
  return out
end

local function single()
  local c = core.new{ id = 1, voters = { 1 } }
  assert(c:campaign())
  drain(c)
  assert.equal("leader", c:status().role)
  return c
end

describe("rafting.core", function()
  it("exposes the C defaults and the message type names", function()
    local d = core.defaults()
    assert.is_true(d.election_ticks > d.heartbeat_ticks)
    assert.is_true(d.pre_vote)
    assert.is_true(d.check_quorum)
    assert.equal("prevote", core.msg_types[1])
    assert.equal("append", core.msg_types[5])
  end)

  it("rejects a bad configuration with an error naming the field", function()
    assert.has_error(function() core.new{ id = 1 } end,
                     "field 'voters' must be a list of node ids")
    assert.has_error(function() core.new{ id = -1, voters = { 1 } } end,
                     "field 'id' must be a non-negative integer")
    assert.has_error(function() core.new{ id = 1, voters = { 1, "x" } } end,
                     "voters[2] is not a node id")
    assert.has_error(function() core.new{ id = 4, voters = { 1, 2, 3 } } end)
    assert.has_error(function()
      core.new{ id = 1, voters = { 1 }, log = { { term = 1, index = 2 } } }
    end, "entry 1 has index 2, expected 1")
    assert.has_error(function()
      core.new{ id = 1, voters = { 1 }, log = { { term = 1, type = "odd" } } }
    end, "entry 1: bad type 'odd'")
    assert.has_error(function()
      core.new{ id = 1, voters = { 1 }, hard_state = 3 }
    end)
  end)

  it("a fresh node is a follower of term 0 with an empty log", function()
    local c = core.new{ id = 2, voters = { 1, 2, 3 }, seed = 9 }
    local st = c:status()
    assert.equal(2, st.id)
    assert.equal("follower", st.role)
    assert.equal(0, st.term)
    assert.equal(0, st.leader)
    assert.equal(0, st.last_index)
    assert.is_false(c:has_ready())
    assert.is_nil(c:ready())
    assert.is_nil(c:entry(1))
    assert.equal(tostring(c), "raft core 2 (follower, term 0)")
  end)

  it("restores a persisted hard state and log, clamping commit to the log",
     function()
    local c = core.new{
      id = 1, voters = { 1, 2, 3 },
      hard_state = { term = 3, vote = 2, commit = 9 },
      log = { { term = 1, data = "a" }, { term = 3, type = "noop" } },
    }
    local st = c:status()
    assert.equal(3, st.term)
    assert.equal(2, st.vote)
    assert.equal(2, st.commit)
    assert.equal(2, st.last_index)
    assert.equal(3, st.last_term)
    assert.equal(2, st.stable_index)
    assert.same({ term = 1, index = 1, type = "normal", data = "a" },
                c:entry(1))
    assert.same({ term = 3, index = 2, type = "noop", data = "" }, c:entry(2))
    assert.equal(3, c:term_at(2))
  end)

  it("a single node elects itself and commits proposals through ready "
     .. "batches", function()
    local c = single()
    local index, term = c:propose("x\0y")  -- binary-safe
    assert.equal(2, index)
    assert.equal(1, term)
    local out = drain(c)
    assert.same({ { term = 1, index = 2, type = "normal", data = "x\0y" } },
                out.entries)
    assert.same(out.entries, out.committed)
    assert.equal(2, out.hs.commit)
    assert.equal("noop", c:entry(1).type)
    local st = c:status()
    assert.equal(2, st.applied)
    assert.equal(2, st.stable_index)
    assert.is_not_nil(st.peers[1])
    c:close()
  end)

  it("holds one ready at a time: a second is refused until advance()",
     function()
    local c = single()
    c:propose("a")
    local rd = c:ready()
    assert.is_not_nil(rd)
    c:propose("b")           -- inputs keep flowing while the write runs
    assert.is_nil(c:ready())
    c:advance()
    local rd2 = c:ready()
    assert.equal("b", rd2.entries[1].data)
    c:advance()
  end)

  it("a proposal on a follower is refused with the leader as a hint",
     function()
    local c = core.new{ id = 2, voters = { 1, 2, 3 } }
    local ok, err, hint = c:propose("x")
    assert.is_nil(ok)
    assert.equal("notleader", err)
    assert.is_nil(hint)
    c:step{ type = "heartbeat", from = 1, to = 2, term = 1 }
    ok, err, hint = c:propose("x")
    assert.is_nil(ok)
    assert.equal("notleader", err)
    assert.equal(1, hint)
    assert.same({ nil, "notleader", 1 }, { c:read_index(5) })
  end)

  it("refuses a proposal larger than max_msg_bytes", function()
    local c = core.new{ id = 1, voters = { 1 }, max_msg_bytes = 4 }
    c:campaign()
    drain(c)
    local ok, err = c:propose("12345")
    assert.is_nil(ok)
    assert.equal("toobig", err)
    assert.is_not_nil(c:propose("1234"))
  end)

  it("answers a read on a single node at once", function()
    local c = single()
    assert.is_true(c:read_index(42))
    local out = drain(c)
    assert.same({ { index = 1, ctx = 42 } }, out.reads)
  end)

  it("step() rejects malformed messages: an error for a bad shape, nil and "
     .. "a code for a message the core refuses", function()
    local c = core.new{ id = 1, voters = { 1, 2, 3 } }
    assert.has_error(function() c:step{ type = "bogus", from = 2, to = 1 } end,
                     "bad message type 'bogus'")
    assert.has_error(function()
      c:step{ type = "append", from = 2, to = 1, entries = 3 }
    end, "field 'entries' must be a list or nil")
    local ok, err = c:step{ type = "heartbeat", from = 2, to = 3, term = 1 }
    assert.is_nil(ok)
    assert.equal("inval", err)
    ok, err = c:step{ type = "append", from = 2, to = 1, term = 1,
                      entries = { { term = 1, index = 1, type = "conf",
                                    data = "not a configuration" } } }
    assert.is_nil(ok)
    assert.equal("inval", err)
  end)

  it("carries every message field through ready() and step()", function()
    local a = core.new{ id = 1, voters = { 1, 2 } }
    local b = core.new{ id = 2, voters = { 1, 2 } }
    a:campaign()
    local rd = a:ready()
    local m = rd.msgs[1]
    assert.same({ type = "vote", from = 1, to = 2, term = 1, index = 0,
                  log_term = 0, commit = 0, reject = false, hint_index = 0,
                  hint_term = 0, context = 0 }, m)
    a:advance()
    assert.is_true(b:step(m))
    local resp = b:ready().msgs[1]
    b:advance()
    assert.equal("vote_resp", resp.type)
    assert.is_true(a:step(resp))
    assert.equal("leader", a:status().role)
    local app = a:ready().msgs[1]
    a:advance()
    assert.equal("append", app.type)
    assert.same({ { term = 1, index = 1, type = "noop", data = "" } },
                app.entries)
  end)

  it("close() frees the core once; a closed core refuses use; <close> and "
     .. "the GC also free it", function()
    local c = single()
    c:propose("x")
    c:ready()        -- outstanding at close: freed with the core
    c:close()
    c:close()
    assert.has_error(function() c:tick() end,
                     "attempt to use a closed raft core")
    assert.equal("raft core (closed)", tostring(c))
    do
      local d <close> = core.new{ id = 1, voters = { 1 } }
      d:campaign()
    end
    for _ = 1, 100 do
      local e = core.new{ id = 1, voters = { 1, 2, 3 } }
      e:tick()
    end
    collectgarbage()
  end)
end)
