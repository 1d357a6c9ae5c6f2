-- Out of memory (issue 10): every allocation of the core and the driver goes
-- through raft_config.realloc, and the sim's drivers (alloc_hook = true)
-- count them and fail them on cue.  One scenario -- a 3-node cluster
-- elects a leader, takes five writes and a read, a follower restarts -- is run
-- once to count the allocations the leader's and a follower's driver make,
-- then again from the same seed with each of them failing in turn (alone,
-- and every 7th in a run of 10).  The sim checks every invariant after
-- every event; afterwards, with memory back, a leader must be agreed on, a
-- new write must commit and apply everywhere, every request a client made
-- must have been answered exactly once, and the driver, closed, must have
-- freed every block.
--
--   RAFTING_ALLOC_EVERY=N   try every N-th failure point (default 1: all;
--                           about 1.5 s plain, 5 s under ASan)
--   RAFTING_ALLOC_SEED=S    the scenario's seed (default 7)
local sim = require("rafting.sim")

local function env_int(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  local n = math.tointeger(tonumber(v))
  assert(n and n >= 1, name .. " must be a positive integer")
  return n
end

local EVERY = env_int("RAFTING_ALLOC_EVERY", 1)
local SEED = env_int("RAFTING_ALLOC_SEED", 7)
local REQUEST_TICKS = 60

-- One run.  ids: {leader=, follower=, restart=} as the run without
-- failures has them; target ("leader" or "follower"): the node whose driver
-- may fail; k, span: allocations k+1 .. k+span of the scenario fail (none
-- if k is nil).  Returns the allocations the target made in the scenario
-- and, without failures, the ids.
local function run(ids, target, k, span)
  local what = k and ("%s allocation %d (span %d)"):format(target, k + 1, span)
               or target
  local s = sim.new{
    n = 3, seed = SEED, alloc_hook = true, async = 0.2,
    request_ticks = REQUEST_TICKS,
    replay = ("RAFTING_ALLOC_SEED=%d busted spec/core/alloc_spec.lua (%s)")
             :format(SEED, what),
  }
  local asked, answered = 0, 0
  s.on_answer = function() answered = answered + 1 end
  -- the scenario starts once the drivers exist (creation may not fail):
  -- an election, five writes, a read, a follower restarts
  local d, base
  if ids then
    d = s.nodes[ids[target]].core
    base = d:allocs()
    if k then d:fail_allocs(k, span) end
  end
  local l = s:wait_leader()
  if not ids then -- the run that counts: it names the nodes
    assert(l, "no leader in the scenario")
    ids = { leader = l }
    for _, id in ipairs(s.ids) do
      if id ~= l then
        if ids.follower then ids.restart = id else ids.follower = id end
      end
    end
    d = s.nodes[ids[target]].core
    base = 0
  end
  for i = 1, 5 do
    if s:propose("w" .. i) then asked = asked + 1 end
    s:run(1)
  end
  -- a read as sim:read makes it, but every answer counts (errors too)
  local n = s.nodes[s:leader() or ids.leader]
  if n.alive then
    local f = { acked = s.acked, committed = s.ncommit, at = s.time }
    if n.core:read(function(status)
      answered = answered + 1
      if status == nil then s:_serve_read(n, 1, f) end
    end) then asked = asked + 1 end
    s:process(n)
  end
  s:run(3)
  s:restart(ids.restart)
  s:run(40)
  local used = d:allocs() - base

  -- memory is back: the cluster recovers
  d:fail_allocs(nil)
  s:heal()
  assert(s:wait_leader(100 * s.cfg.election_ticks),
         "no leader agreed on after " .. what)
  local index, term = s:propose("after")
  assert(index, "the leader refused a write after " .. what)
  asked = asked + 1
  assert(s:run_until(function()
    for _, id in ipairs(s.ids) do
      if s.nodes[id].applied_index < index then return false end
    end
    return true
  end, 20 * s.cfg.election_ticks),
    "write " .. index .. " not applied everywhere after " .. what)
  assert(s:is_applied(index, term), "the write after " .. what .. " was lost")
  -- no client is left hanging: each request is answered within its deadline
  assert(s:run_until(function() return answered >= asked end,
                     REQUEST_TICKS + 10),
    ("%d of %d requests never answered after %s"):format(
      asked - answered, asked, what))
  assert(answered == asked, "a request was answered twice after " .. what)
  -- and nothing leaked: closed, the driver has freed every block it took
  s:crash(ids[target])
  local _, live = d:allocs()
  assert(live == 0, ("%d blocks leaked after %s"):format(live, what))
  return used, ids
end

describe("allocation failures", function()
  it("a node that runs out of memory at any point of a write never breaks "
     .. "safety, every client hears back, and the cluster recovers",
     function()
    local t0, points = os.clock(), 0
    local counts = {}
    for _, target in ipairs({ "leader", "follower" }) do
      local total, ids = run(nil, target)
      counts[#counts + 1] = ("%s %d"):format(target, total)
      assert.is_true(total > 0, "the " .. target .. " allocated nothing")
      for k = 0, total - 1, EVERY do
        run(ids, target, k, 1)
        points = points + 1
        if k % 7 == 0 then
          run(ids, target, k, 10)
          points = points + 1
        end
      end
    end
    io.stderr:write(("\nallocation failures: %d failure points (allocations "
      .. "in the scenario: %s; every %d), seed %d, %.1f s\n"):format(points,
      table.concat(counts, ", "), EVERY, SEED, os.clock() - t0))
  end)
end)
