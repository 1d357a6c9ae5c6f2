-- quorum_spec.lua -- no leader without a quorum, a leader back with one;
-- a 5-node cluster that survives two kills.

local cluster = require "rafting.testing.cluster"
local H = require "spec.support.cluster_helper"

describe("quorum (real nodes)", function()
  local c
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  it("a leader that lost both followers steps down, and one back elects a leader", function()
    c = H.start{ nodes = 3 }
    local l, t = c:leader()
    local f = H.others(c, l)
    local kv = H.has_kv(c, l)
    c:kill(f[1])
    c:kill(f[2])
    -- check-quorum: no answers for an election timeout and it steps down
    c:wait_for(H.not_leader(c, l), 20 * H.ELECTION_MS,
               ("node %d to step down without a quorum"):format(l))
    c:holds(H.not_leader(c, l), 5 * H.ELECTION_MS,
            ("node %d staying no leader without a quorum"):format(l))
    if kv then
      local code = c:http(l, "PUT", "/kv/lonely", "x", { timeout_ms = 3 * H.ELECTION_MS })
      assert.not_equal(200, code, "a write committed without a quorum")
    end
    c:restart(f[1])
    local l2, t2 = c:leader()
    assert.is_true(t2 >= t)
    -- the new term's first entry commits on two of three
    local s = c:status(l2)
    for _, id in ipairs(c:running()) do c:wait_index(id, s.last_index) end
  end)

  it("a lone follower never becomes leader, and leads once one node is back", function()
    c = H.start{ nodes = 3 }
    local l, t = c:leader()
    local f = H.others(c, l)
    c:kill(l)
    c:kill(f[2])
    c:holds(H.not_leader(c, f[1]), 5 * H.ELECTION_MS,
            ("lone node %d staying no leader"):format(f[1]))
    -- Node f[2] returns with an empty log: only f[1] holds the log, so
    -- only f[1] can win (election restriction).
    c:restart(f[2])
    local l2, t2 = c:leader()
    assert.equal(f[1], l2)
    assert.is_true(t2 > t)
  end)

  it("a 5-node cluster survives two kills", function()
    c = H.start{ nodes = 5 }
    local l, t = c:leader()
    local f = H.others(c, l)
    local kv = H.has_kv(c, l)
    c:kill(l)
    c:kill(f[1])
    local l2, t2 = c:leader(nil, { above = t })
    assert.equal(3, #c:running())
    if kv then
      for i = 1, 10 do H.put(c, l2, "k" .. i, "v" .. i) end
    end
    -- the new leader commits on three of five, and all three catch up
    local s = c:status(l2)
    assert.is_true(s.last_index >= 1)
    for _, id in ipairs(c:running()) do c:wait_index(id, s.last_index) end
    c:restart(l)
    c:restart(f[1])
    local l3, t3 = c:leader()
    assert.equal(l2, l3)
    assert.equal(t2, t3)
    for _, id in ipairs(c.ids) do c:wait_index(id, s.last_index) end
  end)
end)
