-- Message counts stay bounded: elections, batched proposals, idle clusters.
local sim = require("rafting.sim")

local REPLAY = "busted spec/core/messages_spec.lua"

local function new(opts)
  opts.replay = opts.replay or REPLAY
  return sim.new(opts)
end

local function describe_counts(s)
  local parts = {}
  for k, v in pairs(s.counts) do parts[#parts + 1] = k .. "=" .. v end
  table.sort(parts)
  return table.concat(parts, " ")
end

describe("message counts", function()
  it("electing a leader in a 3-node cluster takes at most 30 messages",
     function()
    -- Counted from startup until every node follows the leader and its
    -- no-op is committed, on a network faster than a tick (as a LAN is,
    -- against ticks of 100 ms).  When two timers fire in the same tick both
    -- nodes stand and the election takes another round; those runs are held
    -- to 30 messages for the first candidacy and 12 (a pre-vote and a vote
    -- round trip to each of two peers) for every further one.
    local single, worst, at = 0, 0, nil
    for seed = 1, 50 do
      local s = new{ n = 3, seed = seed, net = { min_delay = 0, max_delay = 0 } }
      assert.is_not_nil(s:wait_leader())
      local stood = s:count("prevote") // 2
      local bound = 30 + 12 * (stood - 1)
      assert.is_true(s:count() <= bound, ("seed %d: %d messages for %d "
        .. "candidacies: %s"):format(seed, s:count(), stood,
                                     describe_counts(s)))
      if stood == 1 then
        single = single + 1
        if s:count() > worst then worst, at = s:count(), describe_counts(s) end
      end
    end
    assert.is_true(single >= 25, "too few uncontested elections to judge")
    assert.is_true(worst <= 30, ("%d messages: %s"):format(worst, at))
  end)

  it("committing 10 entries proposed together (before the leader's next "
     .. "ready) takes at most (10+1+3)x3 messages", function()
    for seed = 1, 10 do
      local s = new{ n = 3, seed = seed }
      assert.is_not_nil(s:wait_leader())
      s:run(3 * s.cfg.election_ticks)  -- idle, caught up
      s:reset_counts()
      local list = {}
      for k = 1, 10 do list[k] = "cmd" .. k end
      local placed = assert(s:propose_many(list))
      local last = placed[10].index
      local ok = s:run_until(function()
        for _, id in ipairs(s.ids) do
          if s:state(id).applied < last then return false end
        end
        return true
      end, 5 * s.cfg.election_ticks)
      assert.is_true(ok)
      -- everything counts, heartbeats that fall due meanwhile too
      local n = s:count()
      assert.is_true(n <= (10 + 1 + 3) * 3, ("seed %d: %d messages: %s")
                     :format(seed, n, describe_counts(s)))
    end
  end)

  for _, hb in ipairs({ 1, 3 }) do
    it(("an idle cluster sends at most one heartbeat per follower per "
        .. "heartbeat interval (%d tick%s)"):format(hb, hb > 1 and "s" or ""),
       function()
      local s = new{ n = 5, seed = 11, heartbeat_ticks = hb }
      local l = assert(s:wait_leader())
      s:run(3 * s.cfg.election_ticks)
      s:reset_counts()
      local ticks = 100
      s:run(ticks)
      for _, id in ipairs(s.ids) do
        if id ~= l then
          assert.is_true(s:count_to(id, "heartbeat") <= ticks // hb + 1,
                         describe_counts(s))
        end
      end
      -- and nothing but heartbeats and their answers
      assert.equal(s:count(), s:count("heartbeat") + s:count("heartbeat_resp"),
                   describe_counts(s))
      -- (answers to heartbeats sent just before the count began land in it)
      assert.is_true(math.abs(s:count("heartbeat") - s:count("heartbeat_resp"))
                     <= #s.ids - 1)
    end)
  end
end)
