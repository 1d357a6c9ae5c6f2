-- transfer_spec.lua -- leadership transfer over REST (POST /cluster/leader),
-- GET /cluster, `rafting ctl members` / `leader transfer`, and the graceful
-- stop of a leader (SIGTERM hands leadership over first).

local cluster = require "rafting.testing.cluster"
local H = require "spec.support.http_helper"
local X = require "spec.support.ctl_helper"
local proc = require "rafting.proc"

describe("leadership transfer (3 real nodes)", function()
  local c
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  local function put(id, k, v)
    return c:http(id, "PUT", "/kv/" .. k, v, { timeout_ms = 2000 })
  end

  it("moves leadership to a named follower: it leads, term + 1, writes keep working", function()
    c = H.start{ nodes = 3 }
    local old, term = c:leader()
    assert.equal(200, (put(old, "a", "1")))
    local to = H.others(c, old)[1]
    local code, b = c:transfer(to)
    assert.equal(200, code)
    assert.equal(to, b.leader)
    assert.equal(term + 1, b.term)
    local id, t2 = c:leader(nil, { above = term })
    assert.equal(to, id)
    assert.equal(term + 1, t2)
    assert.equal(200, (put(to, "b", "2")))
    local code2, v = c:http(to, "GET", "/kv/a")
    assert.equal(200, code2)
    assert.equal("1", v)
  end)

  it("picks an up-to-date voter for an empty body, and answers at once when asked for itself", function()
    c = H.start{ nodes = 3 }
    local old, term = c:leader()
    local code, b = c:transfer(old)
    assert.equal(200, code)
    assert.equal(old, b.leader)
    assert.equal(term, b.term)
    code, b = c:transfer(nil, old)
    assert.equal(200, code)
    assert.are_not.equal(old, b.leader)
    assert.is_true(b.term > term)
    assert.equal(b.leader, (c:leader(nil, { above = term })))
  end)

  it("answers 404 for an unknown id and 400 for a bad body, without a transfer", function()
    c = H.start{ nodes = 3 }
    local old, term = c:leader()
    local code, b = c:transfer(99)
    assert.equal(404, code)
    assert.equal("unknown_node", b.error)
    for _, body in ipairs{ "{", "[1]", '{"id":0}', '{"id":-1}', '{"id":"2"}',
                           '{"id":2} x', '{"idx":2}', "99999999999999999999999" } do
      local code2, data = c:http(old, "POST", "/cluster/leader", body)
      assert.equal(400, code2, body .. " -> " .. tostring(data))
    end
    local id, t = c:leader()
    assert.equal(old, id)
    assert.equal(term, t)
  end)

  it("to a node that cannot take over: 409 and 503 while under way, then 504, and the leader stays", function()
    c = H.start{ nodes = 3 }
    local old, term = c:leader()
    local stuck = H.others(c, old)[1]
    c:pause(stuck)
    assert.equal(200, (put(old, "p", "1"))) -- stuck is now behind: no TimeoutNow yet
    -- the client gives up at once; the leader keeps the transfer going
    c:http(old, "POST", "/cluster/leader", '{"id":' .. stuck .. '}', { timeout_ms = 30 })
    local code, b = c:transfer(H.others(c, old)[2])
    assert.equal(409, code)
    assert.equal("transfer_in_progress", b.error)
    local code2, _, hdrs = put(old, "q", "1")
    if code2 ~= 200 then -- the core refuses proposals while the transfer lasts
      assert.equal(503, code2)
      assert.equal("1", hdrs["retry-after"])
    end
    local code3, b3
    c:wait_for(function()
      code3, b3 = c:transfer(stuck)
      return code3 ~= 409, "409"
    end, nil, "the first transfer to end")
    assert.equal(504, code3)
    assert.equal("transfer_timeout", b3.error)
    c:resume(stuck)
    local id, t = c:leader()
    assert.equal(old, id)
    assert.equal(term, t)
    assert.equal(200, (put(old, "r", "1")))
  end)

  it("is forwarded by a follower to the leader", function()
    c = H.start{ nodes = 3 }
    local old, term = c:leader()
    local f = H.others(c, old)
    local code, b = c:transfer(f[2], f[1])
    assert.equal(200, code)
    assert.equal(f[2], b.leader)
    assert.equal(f[2], (c:leader(nil, { above = term })))
  end)

  it("GET /cluster lists the members with their addresses, the leader and the term", function()
    c = H.start{ nodes = 3 }
    local leader, term = c:leader()
    for _, id in ipairs(c.ids) do
      local m = c:wait_for(function()
        local m = c:members(id)
        return m and m.leader == leader and m, "leader " .. tostring(m and m.leader)
      end, nil, "node " .. id .. " to know the leader")
      assert.equal(term, m.term)
      assert.is_false(m.pending)
      assert.equal(3, #m.members)
      for i, mem in ipairs(m.members) do
        assert.equal(c.ids[i], mem.id)
        assert.is_true(mem.voter)
        assert.equal(c:node(mem.id).http, mem.http)
        assert.equal(c:node(mem.id).peer, mem.peer)
      end
    end
  end)

  it("rafting ctl members and leader transfer ID", function()
    c = H.start{ nodes = 3 }
    local old, term = c:leader()
    local eps = X.endpoints(c)
    local code, out, err = X.run{ "--endpoints", eps, "members" }
    assert.equal(0, code, err)
    local m = require("cjson").decode(out)
    assert.equal(3, #m.members)
    local to = H.others(c, old)[2]
    code, out, err = X.run{ "--endpoints", eps, "--timeout", "10", "leader", "transfer", tostring(to) }
    assert.equal(0, code, err)
    assert.equal(to, require("cjson").decode(out).leader)
    assert.equal(to, (c:leader(nil, { above = term })))
    code, _, err = X.run{ "--endpoints", eps, "leader", "transfer", "42" }
    assert.equal(1, code)
    assert.matches("404", err)
  end)

  it("takes little time (20 transfers, p50 and max printed)", function()
    c = H.start{ nodes = 3 }
    local times = {}
    for i = 1, 20 do
      local old, term = c:leader()
      local to = H.others(c, old)[1 + i % 2]
      local t0 = proc.now_ms()
      local code, b = c:transfer(to, old)
      times[#times + 1] = proc.now_ms() - t0
      assert.equal(200, code, require("cjson").encode(b))
      assert.equal(to, b.leader)
      assert.equal(term + 1, b.term)
    end
    table.sort(times)
    print(("transfer time over %d: p50 %d ms, max %d ms"):format(#times,
          times[#times // 2], times[#times]))
    assert.is_true(times[#times] < 2 * H.ELECTION_MS + 200)
  end)

  it("SIGTERM on the leader: another node leads before it exits, and writes barely pause", function()
    c = H.start{ nodes = 3 }
    local old, term = c:leader()
    local w = H.others(c, old)[1]
    for i = 1, 5 do assert.equal(200, (put(w, "warm" .. i, "x"))) end
    local n = c:node(old)
    local seen_other_lead -- a node other than old leads, while old still runs
    local last_ok, gap, failed, ok_after, i = proc.now_ms(), 0, {}, 0, 0
    proc.kill(n.pid, "TERM")
    local deadline = proc.now_ms() + 10000
    while proc.now_ms() < deadline do
      i = i + 1
      local code, body = put(w, "k" .. i, tostring(i))
      local t = proc.now_ms()
      if code == 200 then
        gap = math.max(gap, t - last_ok)
        last_ok = t
        if n.state ~= "running" then ok_after = ok_after + 1 end
      else
        failed[#failed + 1] = tostring(code) .. " " .. tostring(body)
      end
      if n.state == "running" then
        c:reap()
        if n.state == "running" and not seen_other_lead then
          local s = c:status(w)
          if s and s.leader ~= 0 and s.leader ~= old then seen_other_lead = s.leader end
        end
      end
      if n.state ~= "running" and ok_after >= 20 then break end
    end
    print(("SIGTERM of leader %d: longest gap between successful writes %d ms, "
           .. "%d writes, %d failed"):format(old, gap, i, #failed))
    assert.equal("exited", n.state)
    assert.equal(0, n.exit.code)
    assert.is_truthy(seen_other_lead, "no other node led before the old leader exited")
    assert.is_true(#failed <= 1, table.concat(failed, "; "))
    local id, t2 = c:leader(nil, { above = term })
    assert.are_not.equal(old, id)
    assert.equal(seen_other_lead, id)
    assert.is_true(gap < H.ELECTION_MS, "gap " .. gap)
    n.state = "stopped" -- exited 0 on SIGTERM: what shutdown expects
  end)

  it("SIGTERM on a follower stops it at once, leadership untouched", function()
    c = H.start{ nodes = 3 }
    local old, term = c:leader()
    local f = H.others(c, old)[1]
    local t0 = proc.now_ms()
    c:stop(f)
    local took = proc.now_ms() - t0
    assert.is_true(took < H.ELECTION_MS, "took " .. took)
    local id, t = c:leader()
    assert.equal(old, id)
    assert.equal(term, t)
  end)
end)
