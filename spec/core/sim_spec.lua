-- The simulator itself: determinism, the network, crashes, and the checker.
local sim = require("rafting.sim")

local REPLAY = "busted spec/core/sim_spec.lua"

local function new(opts)
  opts.replay = opts.replay or REPLAY
  return sim.new(opts)
end

describe("the simulator", function()
  it("draws the same numbers from the same seed, and others from another",
     function()
    local a, b, c = sim.rng(42), sim.rng(42), sim.rng(43)
    local same, differ = true, false
    for _ = 1, 100 do
      local x, y, z = a:next(), b:next(), c:next()
      same = same and x == y
      differ = differ or x ~= z
    end
    assert.is_true(same)
    assert.is_true(differ)
    local r, seen = sim.rng(1), {}
    for _ = 1, 1000 do
      local v = r:range(3, 7)
      assert.is_true(v >= 3 and v <= 7)
      seen[v] = true
      local f = r:float()
      assert.is_true(f >= 0 and f < 1)
    end
    assert.same({ [3] = true, [4] = true, [5] = true, [6] = true,
                  [7] = true }, seen)
  end)

  it("replays a randomized run exactly from its seed", function()
    local a = sim.fuzz(7, { steps = 600 })
    local b = sim.fuzz(7, { steps = 600 })
    local c = sim.fuzz(8, { steps = 600 })
    assert.same(a, b)
    assert.are_not.same(a, c)
  end)

  it("loses messages across a partition, in flight too, and not after "
     .. "healing", function()
    local s = new{ n = 3, seed = 1, net = { min_delay = 2, max_delay = 2 } }
    local l = assert(s:wait_leader())
    local f = l % 3 + 1
    s:reset_counts()
    s:run(1)  -- heartbeats in flight
    assert.is_true(s:in_flight() > 0)
    s:isolate(f)
    local before = s:state(f).commit
    assert(s:propose("x", l))
    s:run(5)
    assert.equal(before, s:state(f).commit)
    s:heal()
    s:run(10)
    assert.is_true(s:state(f).commit > before)
  end)

  it("keeps each link in order unless told to reorder", function()
    local s = new{ n = 2, seed = 3, net = { min_delay = 1, max_delay = 9 } }
    assert(s:wait_leader())
    local seen, ok = {}, true
    s.on_apply = function(id, e)
      if e.type == "normal" then
        local k = tonumber(e.data)
        if seen[id] and k <= seen[id] then ok = false end
        seen[id] = k
      end
    end
    s:reset_counts()
    for k = 1, 30 do
      assert(s:propose(tostring(k)))
      s:run(1)
    end
    s:run(50)
    assert.is_true(ok)
    assert.equal(0, s:count("append_resp.reject"))  -- no gaps seen
  end)

  it("holds, drops and hands over messages by filter", function()
    local s = new{ n = 3, seed = 5 }
    s:filter(sim.drop_type("prevote"))
    s:run(50)
    assert.is_nil(s:leader())
    assert.is_true(s:count("prevote") > 0)
    assert.equal(0, s:count("prevote_resp"))
    s.filters = {}
    s:filter(sim.hold_type("prevote_resp"))
    s:run_until(function() return #s.held > 0 end, 50)
    local held = s:take("prevote_resp")
    assert.is_true(#held > 0)
    assert.is_nil(s:leader())
    s.filters = {}
    for _, m in ipairs(held) do s:deliver(m) end
    s:flush()
    assert.is_not_nil(s:leader())
  end)

  it("restarts a node from what it persisted and nothing else", function()
    local s = new{ n = 3, seed = 9 }
    local l = assert(s:wait_leader())
    assert(s:propose("kept", l))
    s:run(5)
    local applied = s:applied_data(l)
    assert.same({ "kept" }, applied)
    -- from now on every write is slow: the next proposal is not durable;
    -- and cut off, so that the appends the leader sends ahead of its own
    -- write (thesis 10.2.1) reach nobody
    s.async, s.io_delay = 1, 50
    s:isolate(l)
    local index = assert(s:propose("lost", l))
    assert.equal(index, s:state(l).last_index)
    assert.is_not_nil(s.nodes[l].pending)
    s:crash(l)
    s.async = 0
    s:heal()
    s:restart(l)
    local st = s:state(l)
    assert.equal(index - 1, st.last_index)
    assert.equal(#s:log(l), st.last_index)
    assert.equal("follower", st.role)
    s:run(30)
    assert.same({ "kept" }, s:applied_data(l))  -- re-applied after restart
    for _, id in ipairs(s.ids) do
      for _, e in ipairs(s:mem_log(id)) do assert.are_not.equal("lost", e.data) end
    end
  end)

  describe("the invariant checker", function()
    local function raises(invariant, fn)
      local ok, err = pcall(fn)
      assert.is_false(ok, "no violation was reported")
      assert.is_truthy(tostring(err):find("invariant violated: " .. invariant,
                                          1, true), err)
      assert.is_truthy(tostring(err):find("seed=", 1, true))
      assert.is_truthy(tostring(err):find("replay: ", 1, true))
    end

    it("reports logs that break log matching", function()
      raises("log matching", function()
        new{ n = 2, seed = 1, restore = {
          { log = { { term = 1, data = "a" }, { term = 2, data = "b" } } },
          { log = { { term = 1, data = "z" }, { term = 2, data = "b" } } },
        } }
      end)
    end)

    it("reports two leaders of one term", function()
      local s = new{ n = 3, seed = 1 }
      local l, term = assert(s:wait_leader())
      local other = l % 3 + 1
      local real = s.nodes[other].core
      s.nodes[other].core = setmetatable({
        state = function()
          local _, _, _, commit, last, lt, applied, vote = real:state()
          return "leader", term, other, commit, last, lt, applied, vote
        end,
      }, { __index = function(_, k)
        return function(_, ...) return real[k](real, ...) end
      end })
      raises("election safety", function() s:check(s.nodes[other]) end)
    end)

    it("reports nodes that apply different entries at one index", function()
      local s = new{ n = 3, seed = 1 }
      local l = assert(s:wait_leader())
      assert(s:propose("a", l))
      s:run(5)
      local n = s.nodes[l % 3 + 1]
      n.applied_index = 1
      raises("state machine safety", function()
        s:apply(n, { term = 1, index = 2, type = "normal", data = "b" })
      end)
    end)

    it("reports a commit index that goes back", function()
      local s = new{ n = 3, seed = 1 }
      local l = assert(s:wait_leader())
      s.nodes[l].commit = s.nodes[l].commit + 5
      raises("commit never decreases", function() s:check(s.nodes[l]) end)
    end)

    it("reports a persisted term that goes back, and a second vote in a term",
       function()
      local s = new{ n = 3, seed = 1 }
      assert(s:wait_leader())
      local n = s.nodes[1]
      raises("persisted term never decreases", function()
        s:persist(n, { hs = { term = n.hs.term - 1, vote = 0, commit = 0 },
                       entries = {} })
      end)
      raises("one vote per term", function()
        s:persist(n, { hs = { term = n.hs.term, vote = 99,
                              commit = n.hs.commit }, entries = {} })
      end)
    end)

    it("reports a leader that lacks a committed entry", function()
      local s = new{ n = 3, seed = 1 }
      local l = assert(s:wait_leader())
      assert(s:propose("x", l))
      s:run(5)
      local n = s.nodes[l]
      n.lc_term, n.lc_upto = nil, 0
      for i = 1, s.ncommit do s.cterm[i] = 0 end  -- committed in term 0
      n.hashes[2] = 12345     -- and the leader's log held something else
      s.ck[2] = -1
      raises("leader completeness", function() s:check(n) end)
    end)
  end)
end)
