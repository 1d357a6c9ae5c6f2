-- Randomized runs: 3-, 5- and 7-node clusters under drops, duplicates,
-- reordering, partitions, slow disks and crash/restarts while clients keep
-- proposing; every invariant is checked after every event, and once the
-- faults stop a leader must be elected and every proposal must commit within
-- a bound.  About a third of the runs compact their logs (a snapshot every
-- 5-50 applied entries, 0-10 entries kept behind it), so lagging and
-- restarted nodes catch up through InstallSnapshot (§7).  Another third
-- (drawn independently) change membership under the same faults: two spare
-- nodes are added as learners, promoted, removed (the leader too), and
-- leadership is transferred; the checker adds that only voters lead, that
-- commits are durable on a majority of voters (learners never count), and
-- that each committed configuration overlaps the previous one in a
-- majority (docs/membership.md).
--
--   RAFTING_SEEDS=N       how many seeds (default 300)
--   RAFTING_SEED=S        the first seed (default 1)
--   RAFTING_STEPS=T       virtual ticks of faults per seed (default 3000)
--   RAFTING_COMPACT=all   compaction in every run (none: in no run)
--   RAFTING_BUILD=DIR     the build named in replay commands (default build)
--
-- The long run:  ./dev test --long (10,000 seeds on two processes)
-- One seed:      RAFTING_SEED=1234 RAFTING_SEEDS=1 busted spec/core/random_spec.lua
local sim = require("rafting.sim")

local function env_int(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  local n = math.tointeger(tonumber(v))
  assert(n and n >= 0, name .. " must be a non-negative integer")
  return n
end

local SEEDS = env_int("RAFTING_SEEDS", 300)
local BASE = env_int("RAFTING_SEED", 1)
local STEPS = env_int("RAFTING_STEPS", 3000)
local COMPACT_ENV = os.getenv("RAFTING_COMPACT")
local COMPACT = ({ all = true, none = false })[COMPACT_ENV or ""]
assert(COMPACT ~= nil or COMPACT_ENV == nil or COMPACT_ENV == "",
       "RAFTING_COMPACT must be 'all' or 'none'")

-- the build whose core module runs (scripts/test.lua sets it), for replay
local BUILD = os.getenv("RAFTING_BUILD") or "build"

local function replay(seed)
  local steps = STEPS ~= 3000 and (" RAFTING_STEPS=" .. STEPS) or ""
  if COMPACT ~= nil then
    steps = steps .. " RAFTING_COMPACT=" .. COMPACT_ENV
  end
  return ("RAFTING_SEED=%d RAFTING_SEEDS=1%s busted "
          .. "--lpath='./lua/?.lua;./lua/?/init.lua' --cpath='./%s/lua/?.so' "
          .. "spec/core/random_spec.lua"):format(seed, steps, BUILD)
end

describe("randomized runs", function()
  it(("keep every safety invariant and stay live: %d seeds x %d steps on 3, "
      .. "5 and 7 nodes with faults, some compacting their logs"):format(
      SEEDS, STEPS), function()
    local t0 = os.clock()
    local totals = { events = 0, committed = 0, proposed = 0, terms = 0,
                     reads = 0, compacting = 0, snapshots = 0,
                     transfers = 0, transfers_failed = 0, installs = 0,
                     membership = 0, changes = 0, confs = 0,
                     leader_transfers = 0 }
    local sizes = {}
    for seed = BASE, BASE + SEEDS - 1 do
      local ok, res = pcall(sim.fuzz, seed, { steps = STEPS, replay = replay,
                                              compact = COMPACT })
      if not ok then
        -- the checker's message already names seed and replay; make sure
        -- anything else (an error in the core binding...) does too
        local msg = tostring(res)
        if not msg:find("replay:", 1, true) then
          msg = ("%s\n  seed=%d\n  replay: %s"):format(msg, seed, replay(seed))
        end
        error(msg, 0)
      end
      for k in pairs(totals) do totals[k] = totals[k] + res[k] end
      sizes[res.size] = (sizes[res.size] or 0) + 1
    end
    io.stderr:write(("\nrandomized: %d seeds (from %d) x %d steps, "
      .. "3/5/7 nodes: %d/%d/%d runs, %d events, %d proposals, %d entries "
      .. "committed, %d reads served, %d terms; %d runs compacting: %d "
      .. "snapshots taken, %d snapshot transfers delivered (%d timed out), "
      .. "%d installed; %d runs changing membership: %d changes proposed, "
      .. "%d configurations committed, %d leadership transfers; "
      .. "%.1f s\n"):format(SEEDS,
      BASE, STEPS, sizes[3] or 0, sizes[5] or 0, sizes[7] or 0,
      totals.events, totals.proposed, totals.committed, totals.reads,
      totals.terms, totals.compacting, totals.snapshots, totals.transfers,
      totals.transfers_failed, totals.installs, totals.membership,
      totals.changes, totals.confs, totals.leader_transfers, os.clock() - t0))
  end)
end)
