-- snapshot_conf_spec.lua -- the configuration a snapshot file records is
-- the one the driver gives at its index, and a driver restored from that
-- file uses it, not its bootstrap voters: the real driver (rafting.driver,
-- through the simulator) changes membership, the file is written and read
-- by the real format code (rafting.snap), and a new driver restores from
-- what was read -- as src/snaps.c and src/node.c do with real nodes
-- (spec/cluster/backup_spec.lua restarts one).
local sim = require "rafting.sim"
local snap = require "rafting.snap"
local driver = require "rafting.driver"

local function sorted(t)
  local c = {}
  for i, v in ipairs(t or {}) do c[i] = v end
  table.sort(c)
  return c
end

-- a driver restored from a snapshot at (index, term) with conf (or none),
-- booted with voters {1, 2, 3}; its status
local function restored(id, index, term, conf)
  local io = {
    save = function() return true end, send = function() end,
    install = function() return true end, apply = function() return "" end,
    compact = function() end,
  }
  local d = driver.new({ id = id, voters = { 1, 2, 3 },
                         hard_state = { term = term },
                         snapshot = { index = index, term = term, conf = conf },
                         applied = index }, io)
  local st = d:status()
  d:close()
  return st
end

describe("a snapshot file carries the configuration", function()
  it("from the driver at the snapshot's index, to a restored driver", function()
    local s = sim.new{ seed = 7, n = 5, voters = { 1, 2, 3 },
                       replay = "busted spec/storage/snapshot_conf_spec.lua" }
    local l = assert(s:wait_leader())
    for _, op in ipairs({ "add_learner", "add_voter" }) do
      local index = assert(s:change(op, 4, l))
      assert.is_true(s:run_until(function()
        return s.nodes[l].applied_index >= index
      end, 400), op .. " did not commit")
    end
    local index = assert(s:change("add_learner", 5, l))
    assert.is_true(s:run_until(function()
      return s.nodes[l].applied_index >= index
    end, 400))
    local st = s.nodes[l].core:status()
    local at = st.applied
    local conf = assert(s.nodes[l].core:conf_at(at))
    assert.same({ 1, 2, 3, 4 }, sorted(conf.voters))
    assert.same({ 5 }, sorted(conf.learners))

    -- written with it, read back
    local bytes, m = snap.serialize({ k = "v" }, at, st.term,
      { voters = conf.voters, learners = conf.learners, blob = "address book" })
    local kv, back = assert(snap.restore(bytes))
    assert.same({ k = "v" }, kv)
    assert.same(sorted(conf.voters), sorted(back.conf.voters))
    assert.same(sorted(conf.learners), sorted(back.conf.learners))
    assert.equals("address book", back.blob)
    assert.same(m, back)

    -- node 1, restored from it, counts four voters, 5 a learner
    local r = restored(1, at, st.term, back.conf)
    assert.same({ 1, 2, 3, 4 }, sorted(r.conf.voters))
    assert.same({ 5 }, sorted(r.conf.learners))

    -- a version 1 file has none: the bootstrap voters
    local body = "RFSNAP01" .. bytes:sub(9, 32) .. bytes:sub(-12, -9) -- k=v: 4 bytes
    local v1 = assert(snap.check(body .. snap.checksum(body)))
    assert.is_nil(v1.conf)
    r = restored(1, at, st.term, v1.conf)
    assert.same({ 1, 2, 3 }, sorted(r.conf.voters))
  end)
end)
