-- catchup_spec.lua -- a node restarted with empty (memory) storage gets the
-- whole log back from the leader.

local cluster = require "rafting.testing.cluster"
local H = require "spec.support.cluster_helper"

describe("log catch-up (real nodes)", function()
  local c
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  -- node id's last_index and commit equal the leader's, read in one round
  local function caught_up(id, lead)
    return function()
      local ls, err = c:status(lead)
      if not ls then return false, "leader: " .. err end
      local s, e = c:status(id)
      if not s then return false, e end
      if s.last_index == ls.last_index and s.commit == ls.commit then return s end
      return false, ("node %d last=%d commit=%d, leader last=%d commit=%d")
                    :format(id, s.last_index, s.commit, ls.last_index, ls.commit)
    end
  end

  it("a node restarted with empty memory storage catches up on the log", function()
    c = H.start{ nodes = 3, storage = "memory" }
    local l, t = c:leader()
    -- Several terms, each leader adding its no-op entry: kill the leader
    -- twice, bringing each back (empty) before the next kill.
    for _ = 1, 2 do
      c:kill(l)
      local l2, t2 = c:leader(nil, { above = t })
      c:restart(l)
      c:wait_for(caught_up(l, l2), nil, ("node %d to catch up"):format(l))
      l, t = l2, t2
    end
    local kv = H.has_kv(c, l)
    local f = H.others(c, l)[1]
    c:kill(f)
    if kv then
      for i = 1, 50 do H.put(c, l, "key" .. i, ("value %d "):format(i):rep(20)) end
    end
    local before = c:status(l)
    assert.is_true(before.last_index >= 3, "want at least one entry per term")
    assert.equal(before.last_index, before.commit)
    c:restart(f)
    local s = c:wait_for(caught_up(f, l), nil, ("restarted node %d to catch up"):format(f))
    assert.is_true(s.last_index >= before.last_index)
    c:wait_index(f, s.commit, nil, "applied")
    -- and it did not disturb the leader
    local l3, t3 = c:leader()
    assert.equal(l, l3)
    assert.equal(t, t3)
  end)
end)
