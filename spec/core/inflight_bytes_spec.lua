-- A follower far behind gets its backlog a window at a time: the leader
-- keeps at most max_inflight_bytes of entries (each counted with its 40
-- bytes of framing, as against max_msg_bytes) in APPENDs that the follower
-- has not answered, not max_inflight full messages at once (issue 13: a
-- restarted follower was sent up to 64 x 2 MiB in one loop turn, more than
-- the transport queues, which dropped most of it).
local sim = require("rafting.sim")

local REPLAY = "busted spec/core/inflight_bytes_spec.lua"
local OVERHEAD = 40 -- per entry, as the core counts it

local function entry_bytes(m)
  local b = 0
  for _, e in ipairs(m.entries or {}) do b = b + #e.data + OVERHEAD end
  return b
end

-- Crash a follower, commit 'count' entries of 'size' bytes without it,
-- restart it, and watch the leader catch it up.  The network delivers in
-- order and loses nothing, so the k-th APPEND_RESP from the follower
-- answers the k-th APPEND to it: the bytes outstanding are those of the
-- APPENDs not answered yet.  Returns the worst seen by the wire and by the
-- leader's own accounting, and the ticks the catch-up took.
local function catch_up(opts, count, size)
  opts.n = 3
  opts.replay = REPLAY
  opts.net = { min_delay = 1, max_delay = 1, reorder = false }
  -- heartbeats further apart than a round trip (2 ticks): the answer to
  -- one frees a slot of a full window (an APPEND may have been lost), so
  -- at most one message beyond the window is out at a time
  opts.heartbeat_ticks = 3
  local s = sim.new(opts)
  local l = assert(s:wait_leader())
  local f = l % 3 + 1
  s:crash(f)
  local list = {}
  for k = 1, count do
    list[k] = string.format("%06d", k) .. string.rep("x", size - 6)
  end
  for k = 1, count, 50 do
    assert(s:propose_many({ table.unpack(list, k, math.min(count, k + 49)) }))
    s:run(2)
  end
  local last = s:state(l).last_index
  assert.is_true(s:run_until(function()
    return s:state(l).commit >= last end, 2000), "the rest did not commit")
  -- nothing to the dead follower stays in the network: every APPEND it
  -- gets once restarted is one the filter counted
  local sent, wire, worst_wire, worst_core, up = {}, 0, 0, 0, false
  s:filter(function(m)
    if not up then return m.to == f and "drop" or nil end
    if m.type == "append" and m.from == l and m.to == f then
      local b = entry_bytes(m)
      sent[#sent + 1] = b
      wire = wire + b
      if wire > worst_wire then worst_wire = wire end
    elseif m.type == "append_resp" and m.from == f and m.to == l then
      wire = wire - table.remove(sent, 1)
    end
  end)
  s:run(3)
  up = true
  s:restart(f)
  local t0 = s.time
  local done = s:run_until(function()
    local st = s:status(l)
    local p = st and st.peers[f]
    if p and p.inflight_bytes > worst_core then worst_core = p.inflight_bytes end
    local fs = s:state(f)
    return fs ~= nil and fs.applied >= last
  end, 5000)
  assert.is_true(done, ("follower %d did not catch up with %d entries"):format(
    f, last))
  assert.are.equal(l, s:leader()) -- the leader kept leading throughout
  return worst_wire, worst_core, s.time - t0
end

describe("bytes in flight per follower", function()
  it("stay under max_inflight_bytes plus one entry while a follower "
     .. "catches up with 400 entries of 500 bytes", function()
    local bound, one = 8192, 500 + OVERHEAD
    for seed = 1, 5 do
      local wire, core, ticks = catch_up({ seed = seed, max_inflight = 64,
        max_msg_bytes = 4096, max_inflight_bytes = bound }, 400, 500)
      -- the core's own count: under the bound before each APPEND, which
      -- carries at most what is left of it, but one entry whatever it is
      assert.is_true(core < bound + one, ("seed %d: the leader counted %d "
        .. "bytes in flight, bound %d"):format(seed, core, bound))
      -- on the wire: plus the one message a heartbeat answer may free
      assert.is_true(wire < bound + one + 4096, ("seed %d: %d bytes of "
        .. "APPENDs unanswered at once, bound %d"):format(seed, wire, bound))
      assert.is_true(wire > 0 and ticks > 0)
    end
  end)

  it("without a byte bound max_inflight whole messages go at once (what "
     .. "the bound prevents)", function()
    local wire = catch_up({ seed = 1, max_inflight = 64, max_msg_bytes = 4096,
                            max_inflight_bytes = 0 }, 400, 500)
    assert.is_true(wire > 8 * 4096, ("only %d bytes in flight"):format(wire))
  end)

  it("a bound below one entry still sends one entry at a time, and the "
     .. "follower catches up", function()
    local wire, core, ticks = catch_up({ seed = 2, max_inflight = 64,
      max_msg_bytes = 4096, max_inflight_bytes = 1 }, 60, 500)
    -- one APPEND of one entry at a time (plus the heartbeat's extra one)
    assert.is_true(core <= 500 + OVERHEAD, ("core counted %d"):format(core))
    assert.is_true(wire <= 2 * (500 + OVERHEAD), ("wire %d"):format(wire))
    assert.is_true(ticks < 1000, ("%d ticks"):format(ticks))
  end)

  it("a large bound catches up as fast as none: the window is bytes, not "
     .. "a slower protocol", function()
    local _, _, free = catch_up({ seed = 3, max_inflight = 8,
      max_msg_bytes = 4096, max_inflight_bytes = 0 }, 400, 500)
    local _, _, bounded = catch_up({ seed = 3, max_inflight = 8,
      max_msg_bytes = 4096, max_inflight_bytes = 8 * 4096 }, 400, 500)
    assert.is_true(bounded <= free + 2, ("%d ticks bounded, %d free"):format(
      bounded, free))
  end)
end)
