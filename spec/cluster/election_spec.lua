-- election_spec.lua -- leader election among real `rafting` processes:
-- one agreed leader, a new one after a kill, a paused leader stepping down.

local cluster = require "rafting.testing.cluster"
local H = require "spec.support.cluster_helper"

describe("leader election (3 real nodes)", function()
  local c
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  it("elects exactly one leader that every node agrees on, and keeps it", function()
    c = H.start{ nodes = 3 }
    local id, term = c:leader()
    local leaders = 0
    for nid, s in pairs(c:statuses()) do
      assert.equal(nid, s.id)
      if s.role == "leader" then leaders = leaders + 1 end
      assert.equal(id, s.leader)
      assert.equal(term, s.term)
      assert.equal(c.nodes[id].http, s.leader_http)
    end
    assert.equal(1, leaders)
    c:wait_for(function()
      local s = c:status(id)
      if not s or #s.peers ~= 2 then return false, "peers" end
      for _, p in ipairs(s.peers) do
        if not p.connected or p.match < s.commit then
          return false, ("peer %d connected=%s match=%d"):format(p.id, p.connected, p.match)
        end
      end
      return s.commit >= 1, "commit " .. s.commit  -- its term's first entry
    end, nil, "the leader to see both followers connected and matched")
    -- Heartbeats keep it: no election over several election timeouts.
    c:holds(H.same_leader(c, id, term), 5 * H.ELECTION_MS,
            ("node %d leading in term %d"):format(id, term))
  end)

  it("a one-node cluster leads as soon as it starts, not after an election timeout", function()
    -- a 20 s election timeout: only the campaign at start can make it lead
    -- within the 5 s below, at the first start and after a restart
    c = H.start{ nodes = 1, storage = "data-%d", wal = { sync = "always" },
                 timing = { tick_ms = 10, election_ticks = 2000, heartbeat_ticks = 5 } }
    local _, term = c:leader(5000)
    assert.equal(200, (c:http(1, "PUT", "/kv/alone", "v")))
    c:stop(1)
    c:start_node(1)
    c:leader(5000, { above = term })
    local code, body = c:http(1, "GET", "/kv/alone")
    assert.equal(200, code)
    assert.equal("v", body)
  end)

  it("elects a new leader in a higher term when the leader is killed", function()
    c = H.start{ nodes = 3 }
    local l1, t1 = c:leader()
    c:kill(l1)
    local l2, t2 = c:leader(nil, { above = t1 })
    assert.not_equal(l1, l2)
    assert.is_true(t2 > t1)
    -- The old leader, back with an empty log, follows without disruption.
    c:restart(l1)
    local l3, t3 = c:leader()
    assert.equal(l2, l3)
    assert.equal(t2, t3)
  end)

  it("makes a paused leader, once resumed, step down and follow", function()
    c = H.start{ nodes = 3 }
    local l1, t1 = c:leader()
    c:pause(l1)
    local l2, t2 = c:leader(nil, { above = t1 })  -- among the two running
    assert.not_equal(l1, l2)
    c:resume(l1)
    c:wait_for(function()
      local s, err = c:status(l1)
      if not s then return false, err end
      return s.role == "follower" and s.leader == l2,
             ("role %s leader %s term %d"):format(s.role, s.leader, s.term)
    end, nil, ("resumed node %d to follow node %d"):format(l1, l2))
    local l3, t3 = c:leader()
    assert.equal(l2, l3)
    assert.equal(t2, t3)
  end)
end)
