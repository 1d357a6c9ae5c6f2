-- rolling_spec.lua -- a rolling restart of a durable 3-node cluster under
-- concurrent writers (issue 9, items 5 and 7): every node is stopped with
-- SIGTERM and started again, the followers first and the leader last
-- (whose stop hands leadership over, src/handover.c).  No acknowledged
-- write may be lost, and writes may pause only briefly.
--
-- The bound on the longest pause between two acknowledged writes is
-- GAP_BOUND_MS = 6 heartbeat intervals = 300 ms, under a third of the
-- shortest election timeout.  The spec runs with an election timeout of
-- 1000..2000 ms (100 ticks of 10 ms; local3.lua has 300..600 ms) so that
-- a pause on a loaded machine -- a slow fsync on a disk shared by every
-- node, a starved CPU: up to ~150 ms seen on a 2-CPU VM running other
-- builds and clusters -- stays under the bound, and the bound stays far
-- from what a stop without a transfer costs.  Why a SIGKILL of the leader
-- always breaks it: no follower may even start a pre-vote before its
-- election timeout has run since the last heartbeat it got (at most 50 ms
-- before the kill), so writes stop for at least 950 ms, and then a
-- pre-vote, a vote and the new leader's no-op follow
-- (RAFTING_ROLL_KILL_LEADER=1 below shows it; bench/rolling measures the
-- same with local3's timing).  With the transfer the pause is the
-- target's catch-up, one TimeoutNow, one vote round and the no-op's
-- commit: a few round trips and fsyncs, milliseconds on loopback; plus the
-- writers' retry backoff (10 ms, then 20 ms, after a whole round of nodes
-- refused).
--
-- Every failed attempt must be a clean refusal -- 503 (safe to retry:
-- nothing was done) or a connection refused -- never an unknown outcome
-- (a 504, a connection cut after the request was sent): a stopping node
-- answers what it has in flight before it closes (src/handover.c).

local cluster = require "rafting.testing.cluster"
local R = require "spec.support.rolling_helper"
local D = require "spec.support.durability_helper"
local proc = require "rafting.proc"
local H = require "spec.support.http_helper"

local TIMING = { tick_ms = 10, election_ticks = 100, heartbeat_ticks = 5,
                 pre_vote = true, check_quorum = true }
local HEARTBEAT_MS = TIMING.tick_ms * TIMING.heartbeat_ticks
local ELECTION_MS = TIMING.tick_ms * TIMING.election_ticks
local GAP_BOUND_MS = 6 * HEARTBEAT_MS
assert(GAP_BOUND_MS < ELECTION_MS / 3)
-- Set to SIGKILL the leader instead (no transfer): the spec must then fail
-- on the gap -- the check that the bound means something.
local KILL_LEADER = os.getenv("RAFTING_ROLL_KILL_LEADER") ~= nil

describe("rolling restart (3 durable nodes, concurrent writers)", function()
  local c, w
  after_each(function()
    if w then w:kill() w = nil end
    D.shutdown(c)
    c = nil
  end)
  teardown(function() cluster.kill_all() end)

  it("restarts every node, the leader last through a transfer: no write lost, no long pause", function()
    c = R.start{ timing = TIMING }
    local leader0, term0 = c:leader()
    w = R.writers(c, { n = 2, prefix = "roll." })
    w:wait_acks(100, nil, "writers warmed up")
    local t0 = proc.now_ms()
    local steps = R.roll(c, w, { kill_leader = KILL_LEADER })
    local t1 = proc.now_ms()
    local acks = w:stop()

    -- the order: both followers, then the leader, whose stop handed over
    assert.equal(3, #steps)
    assert.is_false(steps[1].was_leader)
    assert.is_false(steps[2].was_leader)
    assert.is_true(steps[3].was_leader)
    assert.equal(leader0, steps[3].id)
    assert.equal(term0, steps[3].term, "a follower's restart cost an election")
    assert.is_truthy(KILL_LEADER or steps[3].handed_to,
                     "the leader stopped without handing over:\n" .. R.last_log(c, leader0))
    local new_leader, term = c:leader()
    assert.is_true(term > term0)
    if not KILL_LEADER then -- nor did it take leadership back when it returned
      assert.equal(steps[3].handed_to, new_leader)
      assert.equal(term0 + 1, term)
    end

    local gap, at, till, n = w:longest_gap(t0, t1)
    for _, st in ipairs(steps) do
      D.report("node %d (%s): stop %d ms, start to /health %d ms, caught up %d ms later%s",
               st.id, st.was_leader and "leader" or "follower", st.t_down - st.t_stop,
               st.t_up - st.t_down, st.t_caught - st.t_up,
               st.handed_to and (", handed over to node " .. st.handed_to) or "")
    end
    D.report("rolling restart: %d writes acknowledged during it (%d in all), longest gap "
             .. "%.1f ms (from %.0f to %.0f ms after the first stop), bound %d ms; failed "
             .. "attempts: %s", n, #acks, gap, at - t0, till - t0, GAP_BOUND_MS,
             w:error_counts())
    assert.is_true(gap < GAP_BOUND_MS, ("longest gap %.1f ms"):format(gap))
    local _, kinds = w:error_counts()
    for what in pairs(kinds) do
      assert.is_truthy(what:match("^503") or what == "connect",
                       "a write's outcome was unknown to its client: " .. what)
    end

    -- every acknowledged write, on every member
    local top = 0
    for _, a in ipairs(acks) do top = math.max(top, a.index) end
    for _, id in ipairs(c.ids) do D.wait_applied(c, id, top) end
    for id, r in pairs(R.read_back(c, acks)) do
      assert.equal(#acks, r.found, ("node %d: %d of %d acknowledged writes missing: %s")
                   :format(id, #acks - r.found, #acks, table.concat(r.bad, "; ", 1,
                                                                   math.min(#r.bad, 5))))
    end
  end)

  -- The drain, made visible: the leader's followers are paused, so a
  -- write it took waits for its commit; SIGTERM; while the node waits it
  -- refuses new requests and still serves /status; once the followers run
  -- again one of them takes over, commits the write, and the stopping node
  -- answers it 200 (not 504) before it exits 0.  A long election timeout
  -- (3 s) keeps everything inside the handover's deadline.
  it("a stopping leader answers the write it was waiting on before it exits", function()
    c = R.start{ timing = { tick_ms = 10, election_ticks = 300, heartbeat_ticks = 5,
                            pre_vote = true, check_quorum = true },
                 limits = { commit_timeout_ms = 10000, forward_timeout_ms = 12000 } }
    local l, term = c:leader()
    local f = H.others(c, l)
    assert.equal(200, (c:http(l, "PUT", "/kv/before", "1")))
    for _, id in ipairs(f) do c:pause(id) end
    local sock = H.connect(c, l, 15000)
    assert(sock:send(H.request_bytes("PUT", "/kv/waiting", "w")))
    c:wait_for(function()
      local s = c:status(l)
      return s and s.last_index > s.commit, s and ("last %d commit %d"):format(s.last_index, s.commit)
    end, nil, "the write in the leader's log, not committed")
    local n = c:node(l)
    assert(proc.kill(n.pid, "TERM"))
    -- the drain starts in the signal's callback, which logs "stopping"
    -- first: a request sent before that would be proposed, and wait too
    c:wait_for(function() return R.last_log(c, l):match('msg="stopping"') end, nil,
               "the leader to take the signal")
    local code, body, hdrs
    c:wait_for(function()
      code, body, hdrs = c:http(l, "PUT", "/kv/late", "x")
      return code == 503, tostring(code) .. " " .. tostring(body)
    end, nil, "the stopping leader to refuse new writes")
    assert.equal("shutting_down", H.decode(body).error)
    assert.equal("close", hdrs["connection"])
    assert.equal("1", hdrs["retry-after"])
    assert.equal(200, (c:http(l, "GET", "/status")))
    c:reap()
    assert.equal("running", n.state)
    for _, id in ipairs(f) do c:resume(id) end
    local wcode, wbody = H.read_response(sock)
    sock:close()
    assert.equal(200, wcode, wbody)
    c:wait_for(function() c:reap() return n.state == "exited", n.state end, nil,
               "the old leader to exit")
    assert.same({ how = "exited", code = 0 }, { how = n.exit.how, code = n.exit.code })
    n.state = "stopped"
    assert.matches("handed leadership over to node", R.last_log(c, l))
    local l2 = c:leader(nil, { above = term })
    assert.are_not.equal(l, l2)
    local got, v = c:http(l2, "GET", "/kv/waiting")
    assert.equal(200, got)
    assert.equal("w", v)
  end)

  -- A follower that just stopped is still "active" in the leader's core
  -- (heard from within an election timeout) and may have the longest log:
  -- the handover must pick a node whose connection is up.  Node ids and
  -- equal logs make the stopped follower the first candidate.
  it("a leader stopped right after a follower hands over to the node still running", function()
    c = R.start()
    local l = c:leader()
    local f = H.others(c, l)
    assert.equal(200, (c:http(l, "PUT", "/kv/k", "v")))
    for _, id in ipairs(f) do c:wait_index(id, assert(c:status(l)).commit, nil, "applied") end
    c:stop(f[1])
    local t0 = proc.now_ms()
    c:stop(l)
    local took = proc.now_ms() - t0
    assert.equal(f[2], tonumber(R.last_log(c, l):match("handed leadership over to node (%d+)")),
                 R.last_log(c, l))
    assert.is_true(took < D.ELECTION_MS, "took " .. took .. " ms")
    local s = assert(c:status(f[2]))
    assert.equal("leader", s.role)
  end)
end)
