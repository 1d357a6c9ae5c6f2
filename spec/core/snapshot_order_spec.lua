-- A follower that adopts a leader's snapshot while an earlier write is still
-- out can get the snapshot and the entries after it in one ready batch: the
-- driver must install the snapshot into the state machine before it applies
-- the committed entries that follow it (raft.h: "install the snapshot into
-- the state machine before applying committed").
local sim = require("rafting.sim")
local H = require("spec.support.sim_helper")
local other_than, caught_up = H.other_than, H.caught_up

local REPLAY = "busted spec/core/snapshot_order_spec.lua"

local function one(s, pred)
  local ms = s:take(pred)
  for i = 2, #ms do s.held[#s.held + 1] = ms[i] end  -- keep the others
  return ms[1]
end

describe("snapshot install order", function()
  it("a snapshot is installed before the entries that follow it are "
     .. "applied, when both come in one ready batch", function()
    for seed = 1, 10 do
      local s = sim.new{ n = 3, seed = seed, compact_every = 5, trailing = 0,
                         replay = REPLAY }
      local l = assert(s:wait_leader())
      local f = other_than(s, l)
      s:run(5)
      -- an append to f is held in the network (it arrives late, below)
      local hold_app = s:filter(sim.hold_type("append", l, f))
      assert(s:propose("x", l))
      assert(s:run_until(function() return #s.held > 0 end, 20))
      local old = one(s, function(m)
        return m.type == "append" and m.entries and #m.entries > 0
      end)
      assert.is_not_nil(old, "seed " .. seed)
      s:unfilter(hold_app)
      s:release()
      s.held = {}
      -- f is cut off while the leader commits and compacts past its log
      s:isolate(f)
      for k = 1, 30 do
        assert(s:propose("v" .. k, l))
        s:run(1)
      end
      s:run(20)
      local fl = s:state(f).last_index
      assert.equal(old.index, fl, "seed " .. seed)
      assert.is_true(s:state(l).first_index > fl + 1,
                     "the leader's log still reaches the follower")
      -- back: the leader streams a snapshot (held), f answers heartbeats
      s:filter(sim.hold_type("snapshot", l, f))
      s:heal()
      assert(s:run_until(function()
        for _, m in ipairs(s.held) do
          if m.type == "snapshot" then return true end
        end
        return false
      end, 50))
      local snapm = one(s, function(m) return m.type == "snapshot" end)
      assert.is_not_nil(snapm, "seed " .. seed)
      s:filter(sim.hold_type("heartbeat_resp", f, l))
      assert(s:run_until(function() return #s.held > 0 end, 20))
      -- from now on f hears nothing unless a message is handed to it
      s:filter(function(m) if m.to == f then return "hold" end end)
      -- something committed after the snapshot (too little for another)
      if s:state(l).commit == snapm.index then
        assert(s:propose("w", l))
        s:run(2)
      end
      assert.is_true(s:state(l).commit > snapm.index)
      -- the late append reaches f, whose write of it is slow
      s.async = 1
      s:deliver(old)
      s.async = 0
      local n = s.nodes[f]
      assert.is_not_nil(n.pending, "f's write is not out")
      n.pending_at = math.huge  -- it completes when the spec says so
      -- f adopts the snapshot while that write is still out...
      s:deliver(snapm)
      assert.is_not_nil(n.pending)
      assert.is_true(s:run_until(function()
        local st = s:status(l)
        return st.peers[f].state == "probe"
      end, 5), "the transfer was not reported")
      -- ...and the leader's next append, after the snapshot, too
      s:release(function(m) return m.type == "heartbeat_resp" and m.from == f end)
      local app = one(s, function(m)
        return m.type == "append" and m.to == f and m.index == snapm.index
          and m.entries and #m.entries > 0
      end)
      assert.is_not_nil(app, "the leader sent no append after the snapshot")
      s:deliver(app)
      assert.is_not_nil(n.pending)
      assert.is_true(s:state(f).commit > snapm.index)
      -- the write completes: the next batch holds the snapshot, the entries
      -- after it and their commit
      local order = {}
      s.on_install = function(id, snap)
        if id == f then order[#order + 1] = "install " .. snap.index end
      end
      s.on_apply = function(id, e)
        if id == f then order[#order + 1] = "apply " .. e.index end
      end
      s:complete_io(true)
      assert.equal("install " .. snapm.index, order[1], "seed " .. seed)
      assert.equal("apply " .. (snapm.index + 1), order[2], "seed " .. seed)
      s.filters = {}
      s:release()
      assert(s:run_until(function() return caught_up(s, l) end, 200))
      local li, lh = s:sm_state(l)
      local fi, fh = s:sm_state(f)
      assert.equal(li, fi)
      assert.equal(lh, fh)
      s:check_logs()
    end
  end)

  it("a snapshot is installed into the state machine only once its "
     .. "adoption is durable (the ready's write came first)", function()
    for seed = 1, 5 do
      local s = sim.new{ n = 3, seed = seed, compact_every = 5, trailing = 2,
                         async = seed % 2 == 0 and 0.5 or 0, replay = REPLAY }
      local l = assert(s:wait_leader())
      local f = other_than(s, l)
      s:isolate(f)
      for k = 1, 30 do
        assert(s:propose("v" .. k, l))
        s:run(1)
      end
      s:run(20)
      local installs = 0
      s.on_install = function(id, snap)
        local n = s.nodes[id]
        assert(n.log_snap >= snap.index, ("seed %d: node %d installs "
          .. "snapshot %d, its persisted log still starts after %d"):format(
          seed, id, snap.index, n.log_snap))
        installs = installs + 1
      end
      s:heal()
      assert(s:run_until(function() return caught_up(s, l) end, 300))
      assert.is_true(installs > 0, "seed " .. seed .. ": nothing installed")
    end
  end)
end)
