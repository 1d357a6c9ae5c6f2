-- linearizable_spec.lua -- reads are never stale and writes are never
-- silently lost, across leader crashes, a partitioned (paused) old leader
-- and the loss of the quorum.  Each case starts its own 3-node cluster.

local cluster = require "rafting.testing.cluster"
local proc = require "rafting.proc"
local H = require "spec.support.http_helper"

describe("linearizable reads and writes under faults (3 real nodes)", function()
  local c
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  it("a linearizable read after the leader is killed returns the last acknowledged write, on every survivor", function()
    c = H.start{ nodes = 3 }
    local l, t = c:leader()
    local last
    for i = 1, 20 do
      last = "v" .. i
      -- acknowledged writes, half of them through a follower
      H.put(c, i % 2 == 0 and l or H.others(c, l)[1], "k", last)
    end
    c:kill(l)
    local survivors = H.others(c, l)
    -- every answer a survivor gives is the last acknowledged value; until
    -- the new leader has committed an entry of its term reads get 503
    for _, id in ipairs(survivors) do
      c:wait_for(function()
        local code, body, hdrs = c:http(id, "GET", "/kv/k", nil, { timeout_ms = 3000 })
        if code == 200 then
          assert.equal(last, body, ("stale read on node %d after the leader died"):format(id))
          return true
        end
        if code == 503 then
          assert.equal("1", hdrs["retry-after"])
          return false, "503 " .. body
        end
        if code == 504 then return false, "504 " .. body end  -- forward timed out
        return false, tostring(code) .. " " .. tostring(body)
      end, 10000, ("a linearizable read on node %d"):format(id))
    end
    local l2, t2 = c:leader(nil, { above = t })
    assert.is_not.equal(l, l2)
    assert.is_true(t2 > t)
    -- and the new leader takes writes that are read back everywhere
    H.put(c, survivors[1], "k", "after")
    for _, id in ipairs(survivors) do
      local code, body = c:http(id, "GET", "/kv/k")
      assert.equal(200, code)
      assert.equal("after", body)
    end
  end)

  it("a paused old leader never serves a stale linearizable read: requests queued while it was paused get the new value or 503", function()
    c = H.start{ nodes = 3 }
    local l, t = c:leader()
    for _, key in ipairs{ "a", "b", "c" } do H.put(c, l, key, "old") end
    H.settle(c)
    c:pause(l)
    local l2 = c:leader(nil, { among = H.others(c, l), above = t })
    for _, key in ipairs{ "a", "b", "c" } do H.put(c, l2, key, "new") end
    -- Requests reach the paused node's socket now (the kernel accepts them)
    -- and are the first thing it sees when it runs again, while it still
    -- believes it leads.
    local reads = {
      { "/kv/a", function(body) return body end },
      { "/kv/b", function(body) return body end },
      { "/kv?prefix=c", function(body)
        local items = H.decode(body).items
        return items[1] and items[1].value
      end },
    }
    local socks = {}
    for i, r in ipairs(reads) do
      local sock = H.connect(c, l, 10000)
      assert(sock:send(H.request_bytes("GET", r[1], nil, { "Connection: close" })))
      socks[i] = sock
    end
    c:resume(l)
    for i, r in ipairs(reads) do
      local code, body, hdrs = H.read_response(socks[i])
      socks[i]:close()
      assert(code, body)
      if code == 200 then
        assert.equal("new", r[2](body), ("GET %s on the old leader served stale data"):format(r[1]))
      else
        assert.equal(503, code, ("GET %s on the old leader: %s"):format(r[1], body))
        assert.equal("1", hdrs["retry-after"])
      end
    end
    -- once it has rejoined, the old leader serves the new values
    c:leader()
    for _, key in ipairs{ "a", "b", "c" } do
      local code, body = c:http(l, "GET", "/kv/" .. key)
      assert.equal(200, code, body)
      assert.equal("new", body)
    end
    -- ?stale promises nothing about recency, but it converges
    c:wait_for(function()
      local code, body = c:http(l, "GET", "/kv/a?stale")
      return code == 200 and body == "new", body
    end, 5000, "the old leader to apply the new value")
  end)

  it("reads in flight on a leader when it is paused are all answered (200 or 503) once it resumes, and later reads see the new leader's write", function()
    -- Reads sent just before the pause may be pending in the leader's
    -- ReadIndex round when it stops; none may hang.
    c = H.start{ nodes = 3, limits = { commit_timeout_ms = 2000 } }
    local l, t = c:leader()
    H.put(c, l, "x", "old")
    -- many readers on the leader's socket, sent just before SIGSTOP
    local socks = {}
    for i = 1, 8 do
      local sock = H.connect(c, l, 10000)
      assert(sock:send(H.request_bytes("GET", "/kv/x", nil, { "Connection: close" })))
      socks[i] = sock
    end
    c:pause(l)
    local l2 = c:leader(nil, { among = H.others(c, l), above = t })
    H.put(c, l2, "x", "new")
    c:resume(l)
    for i, sock in ipairs(socks) do
      local code, body = H.read_response(sock)
      sock:close()
      assert(code, body)
      -- "old" is a correct answer here: these reads began before the new
      -- write, so they may be linearized before it
      assert.is_true(code == 200 or code == 503, ("reader %d: %s %s"):format(i, code, body))
    end
    -- reads started after the new write was acknowledged: never "old"
    local code, body = c:http(l, "GET", "/kv/x", nil, { timeout_ms = 5000 })
    if code == 200 then assert.equal("new", body) else assert.equal(503, code) end
  end)

  it("without a quorum a write to the survivor gets 504 while it still leads (it may commit later) and 503 once it knows it does not; linearizable reads get 503", function()
    -- A longer election timeout gives a wide window between the followers'
    -- deaths and the leader's check-quorum step-down (1-2 election
    -- timeouts later), so that the first write lands while it leads.
    c = H.start{ nodes = 3,
                 timing = { tick_ms = 10, election_ticks = 100, heartbeat_ticks = 5,
                            pre_vote = true, check_quorum = true },
                 limits = { commit_timeout_ms = 700 } }
    local l = c:leader()
    H.put(c, l, "q", "before")
    local f = H.others(c, l)
    c:kill(f[1])
    c:kill(f[2])
    -- still leader: the entry is appended to its log but cannot commit
    local code, body, hdrs = c:http(l, "PUT", "/kv/q", "maybe")
    assert.equal(504, code, body)
    local e = H.decode(body)
    assert.equal("outcome_unknown", e.error)
    assert.matches("may still commit", e.message)
    -- a linearizable read cannot be confirmed by a quorum
    code, body, hdrs = c:http(l, "GET", "/kv/q")
    assert.equal(503, code, body)
    assert.equal("1", hdrs["retry-after"])
    -- check-quorum: it steps down, knows no leader, and says so at once
    c:wait_for(function()
      local s = c:status(l)
      return s and s.role ~= "leader" and s.leader == nil, s and s.role
    end, 10 * 1000, "the lone leader to step down")
    for _, req in ipairs{ { "PUT", "/kv/q", "no" }, { "GET", "/kv/q" },
                          { "DELETE", "/kv/q" }, { "POST", "/cmd/incr", '{"key":"n"}' },
                          { "GET", "/kv?prefix=" }, { "GET", "/query/balance?args=%7B%22account%22%3A%22a%22%7D" } } do
      code, body, hdrs = c:http(l, req[1], req[2], req[3])
      assert.equal(503, code, req[1] .. " " .. req[2] .. ": " .. tostring(body))
      assert.equal("1", hdrs["retry-after"])
      assert.equal("no_leader", H.decode(body).error)
    end
    -- a ?stale read still answers from the local state
    code, body = c:http(l, "GET", "/kv/q?stale")
    assert.equal(200, code)
    -- 504 meant "unknown", not "failed": with one follower back (an empty
    -- log: memory storage) only the survivor's longer log can win the
    -- election, and the write it had appended commits after all.
    c:restart(f[1])
    local l2 = c:leader()
    assert.equal(l, l2)
    code, body = c:http(l, "GET", "/kv/q")
    assert.equal(200, code, body)
    assert.equal("maybe", body)
  end)

  it("a write to a follower whose leader just died is answered at once (503 with Retry-After, or 200 from a new leader), never left hanging", function()
    c = H.start{ nodes = 3, limits = { forward_timeout_ms = 1000 } }
    local l, t = c:leader()
    local f = H.others(c, l)
    c:kill(l)
    -- until the followers notice, they still name the dead leader: the
    -- forward cannot connect (503, nothing was sent); then there is no
    -- leader (503) or a new one (200).  A forward on a pooled connection
    -- the leader's death broke would be 504 (sent, outcome unknown).
    local t0 = proc.now_ms()
    local code, body, hdrs = c:http(f[1], "PUT", "/kv/w", "x", { timeout_ms = 5000 })
    assert.is_true(code == 503 or code == 200 or code == 504, tostring(code) .. " " .. tostring(body))
    if code == 503 then assert.equal("1", hdrs["retry-after"]) end
    assert.is_true(proc.now_ms() - t0 < 1000 + 500, "answered within the forward timeout")
    c:leader(nil, { above = t })
    code, body = c:http(f[1], "PUT", "/kv/w", "y")
    assert.equal(200, code, body)
  end)
end)
