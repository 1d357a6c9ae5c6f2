-- rafting.sim: a deterministic simulator of a cluster of pure Raft cores.
--
-- Virtual time is counted in ticks.  One step (sim:step()) is one tick:
-- first every async write that is due completes, then every message due at
-- this tick is delivered, then every live node ticks once.  The network
-- delays each message by a random number of ticks within bounds, drops,
-- duplicates and reorders them, and cuts links between partitions.  Nodes
-- crash and restart; a restart rebuilds the core from exactly what that node
-- persisted through its ready batches (hard state, and its log truncated
-- from the first entry of each batch) and nothing else.
--
-- All randomness comes from one seeded xoshiro256** generator, so a run
-- replays exactly from its seed.  Ready batches are processed by the
-- contract: persist, then send, then apply, then advance.  After every event
-- (each delivery, each tick) the touched node is checked against the Raft
-- invariants; a violation raises an error naming the invariant, the seed
-- and the command that replays the run.
--
-- Snapshots (§7), with compact_every = K: like the runtime, a node that has
-- applied K entries since its last snapshot takes one -- its state machine
-- (the applied sequence, as a chained hash of the entries) at the index
-- just applied, with that entry's term -- and compacts its core log and its
-- persisted log up to that index less 'trailing' entries.  A SNAPSHOT
-- message from a core makes the sim stream the sender's latest snapshot to
-- the peer as one message over the virtual network (delayed, dropped, cut
-- by partitions like any other); on delivery the receiver stores it, acks
-- it with a snapshot_resp over the network (as the runtime acks the last
-- chunk) and steps SNAPSHOT {index, log_term} into its core; the ack makes
-- the sender's core hear report_snapshot(to, true).  A transfer not acked
-- within snapshot_timeout ticks is reported failed.  A ready with snap_index
-- replaces the receiver's persisted log and state machine by the snapshot.
-- A restart restores from the latest stored snapshot plus the log after
-- the persisted compaction point, with applied = the snapshot's index.

local driver = require("rafting.driver")

local M = {}

---------------------------------------------------------------------------
-- PRNG: splitmix64 to seed, xoshiro256** to draw (64-bit integer math)
---------------------------------------------------------------------------

local Rng = {}
Rng.__index = Rng

local function splitmix(s)
  s = s + 0x9E3779B97F4A7C15
  local z = s
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return s, z ~ (z >> 31)
end

function M.rng(seed)
  local s, a, b, c, d = seed
  s, a = splitmix(s)
  s, b = splitmix(s)
  s, c = splitmix(s)
  s, d = splitmix(s)
  return setmetatable({ a, b, c, d }, Rng)
end

function Rng:next()
  local s0, s1, s2, s3 = self[1], self[2], self[3], self[4]
  local r = s1 * 5
  r = ((r << 7) | (r >> 57)) * 9
  local t = s1 << 17
  s2 = s2 ~ s0
  s3 = s3 ~ s1
  s1 = s1 ~ s2
  s0 = s0 ~ s3
  s2 = s2 ~ t
  s3 = (s3 << 45) | (s3 >> 19)
  self[1], self[2], self[3], self[4] = s0, s1, s2, s3
  return r
end

-- uniform in [0, n)
function Rng:below(n)
  return (self:next() >> 1) % n
end

-- uniform in [lo, hi]
function Rng:range(lo, hi)
  return lo + self:below(hi - lo + 1)
end

-- uniform in [0, 1)
function Rng:float()
  return (self:next() >> 11) * (1.0 / 9007199254740992.0)
end

function Rng:chance(p)
  return p > 0 and self:float() < p
end

function Rng:pick(list)
  return list[self:below(#list) + 1]
end

function Rng:shuffle(list)
  for i = #list, 2, -1 do
    local j = self:below(i) + 1
    list[i], list[j] = list[j], list[i]
  end
  return list
end

-- a seed a core accepts (non-negative)
function Rng:seed()
  return self:next() & 0x7FFFFFFFFFFFFFFF
end

---------------------------------------------------------------------------
-- hashing entries and log prefixes
---------------------------------------------------------------------------

-- Each distinct entry (term, type, data) is interned to a small integer; a
-- log prefix is summarised by chaining a 64-bit mix over those integers, so
-- "same prefix" is one comparison.
local function mix(h, k)
  h = (h ~ k) * 0x9E3779B97F4A7C15
  h = h ~ (h >> 29)
  h = h * 0xBF58476D1CE4E5B9
  return h ~ (h >> 32)
end

local function entry_key(e)
  return e.term .. "|" .. e.type .. "|" .. e.data
end

---------------------------------------------------------------------------
-- the simulator
---------------------------------------------------------------------------

local Sim = {}
Sim.__index = Sim
M.Sim = Sim

local defaults = {
  election_ticks = 10,
  heartbeat_ticks = 1,
  pre_vote = true,
  check_quorum = true,
  max_inflight = 256,
  max_msg_bytes = 1024 * 1024,
  max_inflight_bytes = 0,
}

-- sim.new{ n=3 | ids={...}, seed=, election_ticks=, heartbeat_ticks=,
--   pre_vote=, check_quorum=, max_inflight=, max_msg_bytes=,
--   max_inflight_bytes= (0: no bound),
--   net={min_delay=1, max_delay=1, drop=0, dup=0, reorder=false},
--   async=0 (probability a ready's write is deferred), io_delay=3 (ticks),
--   compact_every=nil (snapshot every K applied entries), trailing=0 (log
--   entries kept behind a snapshot), snapshot_timeout=3*election_ticks,
--   replay="command", restore={[id]={hard_state=, log=}},
--   voters=ids (the bootstrap voters; the other nodes start as joining
--   nodes with no configuration, spares for membership changes),
--   alloc_hook=false (true: each driver counts its allocations and fails
--   them on cue, d:allocs() / d:fail_allocs(after, span); alloc_spec) }
function M.new(opts)
  opts = opts or {}
  local ids = opts.ids
  if not ids then
    ids = {}
    for i = 1, opts.n or 3 do ids[i] = i end
  end
  local self = setmetatable({}, Sim)
  self.seed = opts.seed or 1
  self.rng = M.rng(self.seed)
  self.ids = ids
  local boot = opts.voters or ids
  self.boot = {}
  for _, id in ipairs(boot) do self.boot[id] = true end
  self.cfg = {}
  for k, v in pairs(defaults) do
    if opts[k] == nil then self.cfg[k] = v else self.cfg[k] = opts[k] end
  end
  local net = opts.net or {}
  self.net = {
    min_delay = net.min_delay or 1,  -- 0: delivered within the tick
    max_delay = net.max_delay or net.min_delay or 1,
    drop = net.drop or 0,
    dup = net.dup or 0,
    reorder = net.reorder or false,
  }
  self.async = opts.async or 0
  self.io_delay = opts.io_delay or 3
  self.compact_every = opts.compact_every  -- nil: no snapshots taken
  self.trailing = opts.trailing or 0
  self.snapshot_timeout = opts.snapshot_timeout
    or 3 * self.cfg.election_ticks
  self.streams = {}     -- snapshot transfers in flight, oldest first
  self.tx_seq = 0
  self.snaps_taken = 0      -- snapshots nodes took of their state machine
  self.snap_transfers = 0   -- snapshot transfers delivered
  self.snap_failed = 0      -- transfers reported failed (timeouts)
  self.snap_installs = 0    -- snapshots installed into a state machine
  self.replay = opts.replay
  self.time = 0
  self.ctime = 0        -- the time new sends are stamped with (see flush)
  self.queue = {}       -- [due tick] = list of envelopes
  self.qmax = 0         -- latest tick with a bucket
  self.held = {}        -- envelopes a filter held, for manual delivery
  self.link_last = {}   -- [from*65536+to] = due tick of the link's last msg
  self.filters = {}
  self.group = {}       -- [id] = partition group (nil: the main one)
  self.cut = {}         -- [a*65536+b] = true: link a->b is cut
  self.counts = {}      -- [type] = messages sent
  self.counts_to = {}   -- [to][type] = messages sent to 'to'
  self.nodes = {}
  self.events = 0
  -- RAFTING_TRACE=N keeps the last N events (default 200) for the report
  local tr = os.getenv("RAFTING_TRACE")
  self.tracing = opts.trace or tr ~= nil
  self.trace_keep = math.tointeger(tonumber(tr or "")) or 200
  self.trace_buf, self.trace_n = {}, 0
  self.step_errors = {}
  self.reads_served = 0
  self.acked = 0        -- highest index a client was told is done (applied)
  self.writes_acked = 0 -- writes answered "done"
  self.request_ticks = opts.request_ticks or 1000000 -- clients wait long
  self.strict_step = opts.strict_step ~= false
  self.alloc_hook = opts.alloc_hook or nil
  -- the checker's memory of the whole run
  self.leaders = {}     -- [term] = the id that led it
  self.intern = {}      -- entry key -> small integer
  self.n_interned = 0
  self.known = {}       -- [index] = {[term] = prefix hash}: log matching
  self.ck = {}          -- committed entries: key id by index
  self.chash = { [0] = 0 } -- hash of the committed prefix by index
  self.cterm = {}       -- upper bound on the term that committed index
  self.ncommit = 0      -- highest index known committed anywhere
  self.cversion = 0     -- bumped whenever ck/cterm change
  self.applied = {}     -- [index] = entry, as first applied anywhere
  self.akey = {}        -- [index] = key id of that entry
  self.ahash = { [0] = 0 } -- [index] = hash of the applied prefix
  self.conf = { voters = boot, learners = {} } -- the latest committed one
  self.conf_changes = 0 -- configurations committed
  self.transfers = 0    -- leadership transfers that completed
  for _, id in ipairs(ids) do
    local r = opts.restore and opts.restore[id]
    -- persisted: hs, the log (by index) after the compaction point
    -- log_snap (of term log_snap_term) up to last, the prefix hashes of
    -- that log, and the snapshots stored (snaps by index, snap the latest)
    local n = { id = id, alive = false, incarnation = 0, hs = nil,
                log = {}, hashes = { [0] = 0 }, last = 0, log_snap = 0,
                log_snap_term = 0, snaps = {}, snap = nil, reads = {},
                read_floor = {}, tx = {},
                boot = self.boot[id] and boot or {} }
    if r then
      if r.hard_state then
        n.hs = { term = r.hard_state.term or 0, vote = r.hard_state.vote or 0,
                 commit = r.hard_state.commit or 0 }
      end
      for i, e in ipairs(r.log or {}) do
        n.log[i] = { term = e.term, index = i, type = e.type or "normal",
                     data = e.data or "" }
      end
      n.last = #n.log
    end
    self.nodes[id] = n
  end
  -- restored logs join the log-matching memory before anyone runs
  for _, id in ipairs(ids) do
    local n = self.nodes[id]
    for i = 1, n.last do self:_remember(n, i) end
  end
  for _, id in ipairs(ids) do self:_start(self.nodes[id]) end
  return self
end

---------------------------------------------------------------------------
-- failure reporting and tracing
---------------------------------------------------------------------------

function Sim:replay_cmd()
  if type(self.replay) == "function" then return self.replay(self.seed) end
  return self.replay or string.format(
    "RAFTING_SEED=%d RAFTING_SEEDS=1 busted spec/core", self.seed)
end

function Sim:trace(fmt, ...)
  if not self.tracing then return end
  local keep = self.trace_keep
  local n = self.trace_n % keep + 1
  self.trace_n = self.trace_n + 1
  self.trace_buf[n] = string.format("[t=%d] " .. fmt, self.time, ...)
end

function Sim:trace_dump()
  local out, total, keep = {}, self.trace_n, self.trace_keep
  for i = math.max(1, total - keep + 1), total do
    out[#out + 1] = self.trace_buf[(i - 1) % keep + 1]
  end
  return table.concat(out, "\n")
end

function Sim:fail(invariant, fmt, ...)
  local msg = string.format(
    "invariant violated: %s: %s\n  seed=%d time=%d events=%d\n  replay: %s",
    invariant, string.format(fmt, ...), self.seed, self.time, self.events,
    self:replay_cmd())
  if self.tracing then msg = msg .. "\n  last events:\n" .. self:trace_dump() end
  error(msg, 0)
end

---------------------------------------------------------------------------
-- nodes: start, crash, restart
---------------------------------------------------------------------------

-- What a node restores, as the runtime does: the latest stored snapshot
-- into the state machine, then the log after the persisted compaction
-- point.  A crash can leave a stored snapshot the log never learned about
-- (an install whose write was lost): then the snapshot wins and the log
-- restarts after it.
function Sim:_start(n)
  local snap = n.snap
  if snap and snap.index > n.log_snap then
    local e = n.log[snap.index]
    if snap.index > n.last or e.term ~= snap.term then
      self:_reset_log(n, snap)
    end
  end
  local log, c = nil, n.log_snap
  if n.last > c then
    log = {}
    for i = c + 1, n.last do log[i - c] = n.log[i] end
  end
  n.core = driver.new({
    id = n.id, seed = self.rng:seed(),
    election_ticks = self.cfg.election_ticks,
    heartbeat_ticks = self.cfg.heartbeat_ticks,
    pre_vote = self.cfg.pre_vote, check_quorum = self.cfg.check_quorum,
    max_inflight = self.cfg.max_inflight,
    max_msg_bytes = self.cfg.max_msg_bytes,
    max_inflight_bytes = self.cfg.max_inflight_bytes,
    hard_state = n.hs, log = log,
    voters = n.boot,
    snapshot = c > 0 and { index = c, term = n.log_snap_term,
                           conf = n.log_snap_conf } or nil,
    applied = snap and snap.index or 0,
    request_ticks = self.request_ticks,
    alloc_hook = self.alloc_hook,
  }, self:_io(n))
  n.alive = true
  n.incarnation = n.incarnation + 1
  n.pending = nil
  n.tx = {}
  n.csnap_index, n.csnap_term = c, n.log_snap_term
  local role, term, _, commit, _, _, applied = n.core:state()
  n.role, n.term, n.commit = role, term, commit
  -- the state machine restarts from the snapshot (or empty): the core's view
  n.applied_index = applied
  n.applied_term = snap and snap.term or 0
  n.sm_hash = snap and snap.hash or 0
  n.snap_at = applied
  if applied ~= (snap and snap.index or 0) then
    self:fail("a restart applies from the snapshot", "node %d restarted "
              .. "with applied %d, snapshot %d", n.id, applied,
              snap and snap.index or 0)
  end
  n.lc_term, n.lc_upto = nil, 0
  -- a restart forgets its clients: their reads and proposals get no answer
  n.reads, n.read_floor = {}, {}
  self:trace("start %d (incarnation %d, term %d, commit %d, log %d..%d, "
             .. "applied %d)", n.id, n.incarnation, term, commit, c + 1,
             n.last, applied)
  if self.on_start then self.on_start(n.id) end  -- before any ready
  self:check(n)
  self:process(n)
end

function Sim:crash(id)
  local n = self.nodes[id]
  if not n.alive then return end
  n.alive, n.pending = false, nil  -- an unfinished write is lost
  n.core:close()                   -- its clients hear "stopping"
  n.core = nil
  n.tx = {}                                     -- and its transfers
  self:trace("crash %d", id)
end

function Sim:restart(id)
  local n = self.nodes[id]
  if n.alive then self:crash(id) end
  self:_start(n)
end

function Sim:alive(id) return self.nodes[id].alive end
function Sim:core(id) return self.nodes[id].core end

---------------------------------------------------------------------------
-- the network
---------------------------------------------------------------------------

function Sim:connected(from, to)
  local g = self.group
  return (g[from] or 0) == (g[to] or 0) and not self.cut[from * 65536 + to]
end

-- partition({1,2},{3,4,5}): each list is a group; unlisted nodes form one
-- more group of their own.  Messages across groups are lost, in flight too.
function Sim:partition(...)
  self.group = {}
  for gi, set in ipairs({ ... }) do
    for _, id in ipairs(set) do self.group[id] = gi end
  end
  if self.tracing then
    self:trace("partition %s", self:describe_partition())
  end
end

function Sim:isolate(id)
  self:partition({ id })
end

function Sim:heal()
  self.group, self.cut = {}, {}
  self:trace("heal")
end

function Sim:describe_partition()
  local gs = {}
  for _, id in ipairs(self.ids) do
    local g = self.group[id] or 0
    gs[g] = gs[g] or {}
    table.insert(gs[g], id)
  end
  local parts = {}
  for _, set in pairs(gs) do parts[#parts + 1] = table.concat(set, ",") end
  table.sort(parts)
  return "{" .. table.concat(parts, "} {") .. "}"
end

-- cut(a, b): drop messages both ways between a and b (cut(a, b, true): a->b)
function Sim:cut_link(a, b, oneway)
  self.cut[a * 65536 + b] = true
  if not oneway then self.cut[b * 65536 + a] = true end
end

-- A filter is fn(msg) -> "drop" | "hold" | nil, consulted at send time.
-- Held messages wait in sim.held for deliver()/release().
function Sim:filter(fn)
  self.filters[#self.filters + 1] = fn
  return fn
end

function Sim:unfilter(fn)
  for i, f in ipairs(self.filters) do
    if f == fn then table.remove(self.filters, i) return end
  end
end

-- handy filters
function M.drop_type(mtype, from, to)
  return function(m)
    if m.type == mtype and (not from or m.from == from)
       and (not to or m.to == to) then return "drop" end
  end
end

function M.hold_type(mtype, from, to)
  return function(m)
    if m.type == mtype and (not from or m.from == from)
       and (not to or m.to == to) then return "hold" end
  end
end

function M.hold_all(m) return "hold" end

-- Without net.reorder each link is FIFO (as over TCP): a message never
-- overtakes an earlier one on its link, whatever its drawn delay.
function Sim:_enqueue(m, delay)
  local at = self.ctime + delay
  if not self.net.reorder then
    local link = m.from * 65536 + m.to
    local last = self.link_last[link]
    if last and last > at then at = last end
    self.link_last[link] = at
  end
  local b = self.queue[at]
  if not b then
    b = {}
    self.queue[at] = b
    if at > self.qmax then self.qmax = at end
  end
  b[#b + 1] = m
end

function Sim:send(m)
  local ty = m.type
  self.counts[ty] = (self.counts[ty] or 0) + 1
  local ct = self.counts_to[m.to]
  if not ct then ct = {}; self.counts_to[m.to] = ct end
  ct[ty] = (ct[ty] or 0) + 1
  if m.reject then  -- refusals are counted apart too: "append_resp.reject"
    local rty = ty .. ".reject"
    self.counts[rty] = (self.counts[rty] or 0) + 1
    ct[rty] = (ct[rty] or 0) + 1
  end
  for i = 1, #self.filters do
    local v = self.filters[i](m)
    if v == "drop" then
      self:trace("filter drops %s %d->%d", ty, m.from, m.to)
      return
    elseif v == "hold" then
      self.held[#self.held + 1] = m
      return
    end
  end
  if not self:connected(m.from, m.to) then return end
  local net, rng = self.net, self.rng
  if rng:chance(net.drop) then
    self:trace("net drops %s %d->%d", ty, m.from, m.to)
    return
  end
  self:_enqueue(m, rng:range(net.min_delay, net.max_delay))
  if not m.snap and rng:chance(net.dup) then  -- a stream is not duplicated
    self:_enqueue(m, rng:range(net.min_delay, net.max_delay))
  end
end

-- messages sent of a type (or "append_resp.reject"...); all if nil
function Sim:count(mtype)
  if mtype then return self.counts[mtype] or 0 end
  local total = 0
  for k, c in pairs(self.counts) do
    if not k:find(".", 1, true) then total = total + c end
  end
  return total
end

function Sim:count_to(to, mtype)
  local ct = self.counts_to[to] or {}
  if mtype then return ct[mtype] or 0 end
  local total = 0
  for k, c in pairs(ct) do
    if not k:find(".", 1, true) then total = total + c end
  end
  return total
end

function Sim:reset_counts()
  self.counts, self.counts_to = {}, {}
end

-- hand one message to its recipient now (a held one, or any you build)
function Sim:deliver(m)
  for i, h in ipairs(self.held) do
    if h == m then table.remove(self.held, i) break end
  end
  local n = self.nodes[m.to]
  if not n or not n.alive then return false end
  self.events = self.events + 1
  if self.tracing then
    self:trace("deliver %s %d->%d term=%d index=%d log_term=%d commit=%d%s%s%s",
               m.type, m.from, m.to, m.term, m.index, m.log_term, m.commit,
               m.reject and " reject" or "",
               m.entries and (" +" .. #m.entries) or "",
               m.tx and " (stream)" or "")
  end
  if m.type == "snapshot_resp" then  -- between runtimes: not for the core
    self:_stream_acked(n, m)
    return true
  end
  if m.snap then
    -- a streamed snapshot is stored whole before the core hears of it, and
    -- the sender is told (ahead of whatever the core answers)
    self:_store_snapshot(n, m.snap)
    self.snap_transfers = self.snap_transfers + 1
    self:send{ type = "snapshot_resp", from = n.id, to = m.from,
               term = n.term, index = m.index, log_term = 0, commit = 0,
               reject = false, hint_index = 0, hint_term = 0, context = 0,
               tx = m.tx }
  end
  local ok, err = n.core:step(m)
  if not ok then
    self.step_errors[err] = (self.step_errors[err] or 0) + 1
    if self.strict_step then
      self:fail("step accepts well-formed messages",
                "node %d refused %s from %d: %s", n.id, m.type, m.from, err)
    end
  end
  if m.type == "snapshot" then self:_adopted(n, m) end
  self:check(n)
  self:process(n)
  return true
end

-- held messages matching pred (a function, or a type name); all if nil
function Sim:take(pred)
  if type(pred) == "string" then
    local ty = pred
    pred = function(m) return m.type == ty end
  end
  local out, keep = {}, {}
  for _, m in ipairs(self.held) do
    if not pred or pred(m) then out[#out + 1] = m else keep[#keep + 1] = m end
  end
  self.held = keep
  return out
end

function Sim:release(pred)
  local ms = self:take(pred)
  for _, m in ipairs(ms) do self:deliver(m) end
  return #ms
end

-- Deliver bucket t and whatever lands in it meanwhile (delay 0: the network
-- is faster than a tick); returns the number delivered.
function Sim:_drain(t)
  local count = 0
  self.ctime = t
  while true do
    local b = self.queue[t]
    if not b then break end
    self.queue[t] = nil
    if self.net.reorder then self.rng:shuffle(b) end
    for i = 1, #b do
      local m = b[i]
      if self:connected(m.from, m.to) then
        self:deliver(m)
        count = count + 1
      end
    end
    if count > 1000000 then
      error("the network never went quiet at t=" .. t, 2)
    end
  end
  return count
end

-- Deliver everything in flight, in due order, without time passing for the
-- nodes (no ticks): the network is infinitely fast for a moment.  Deferred
-- writes complete too, once nothing else is left.
function Sim:flush(max_events)
  max_events = max_events or 100000
  local delivered = 0
  local t = self.time
  while true do
    if t > self.qmax then
      if not self:_any_pending() then break end
      self.ctime = self.qmax
      self:complete_io(true)
      t = self.time
    end
    delivered = delivered + self:_drain(t)
    if delivered > max_events then
      error("flush: the network never went quiet", 2)
    end
    t = t + 1
  end
  -- the queue is empty: new sends are stamped from now again
  self.ctime = self.time
  self.qmax = self.time
  self.link_last = {}
  return delivered
end

function Sim:_any_pending()
  for _, id in ipairs(self.ids) do
    if self.nodes[id].pending then return true end
  end
  return false
end

function Sim:in_flight()
  local n = 0
  for t = self.time + 1, self.qmax do
    local b = self.queue[t]
    if b then n = n + #b end
  end
  return n
end

---------------------------------------------------------------------------
-- ready batches, by the contract
---------------------------------------------------------------------------

-- the checker learns entry i of n's persisted log
function Sim:_remember(n, i)
  local e = n.log[i]
  local key = entry_key(e)
  local k = self.intern[key]
  if not k then
    k = self.n_interned + 1
    self.n_interned = k
    self.intern[key] = k
  end
  local h = mix(n.hashes[i - 1], k)
  n.hashes[i] = h
  local byterm = self.known[i]
  if not byterm then
    byterm = {}
    self.known[i] = byterm
  end
  local seen = byterm[e.term]
  if seen == nil then
    byterm[e.term] = h
  elseif seen ~= h then
    self:fail("log matching",
              "node %d holds entry %d of term %d after a prefix that differs "
              .. "from another log's with the same entry", n.id, i, e.term)
  end
  local prev = n.log[i - 1]
  local pt = prev and prev.term or (i - 1 == n.log_snap and n.log_snap_term)
             or 0
  if pt > e.term then
    self:fail("log terms never decrease", "node %d: entry %d term %d after "
              .. "term %d", n.id, i, e.term, pt)
  end
  -- an entry the node itself persisted as committed must be the committed
  -- one (a stale, uncommitted entry may be written by an async batch and
  -- replaced by the next one)
  local ck = self.ck[i]
  if ck and ck ~= k and n.hs and i <= n.hs.commit then
    self:fail("committed entries are never overwritten",
              "node %d persisted %s at index %d under its commit %d", n.id,
              key, i, n.hs.commit)
  end
end

function Sim:persist(n, rd)
  -- an adopted snapshot first: the storage drops its log
  if rd.snap_index then
    self:_persist_snapshot(n, rd.snap_index, rd.snap_term, rd.snap_conf)
  end
  local hs = rd.hs
  if hs then
    local old = n.hs
    if old then
      if hs.term < old.term then
        self:fail("persisted term never decreases", "node %d: %d -> %d",
                  n.id, old.term, hs.term)
      end
      if hs.term == old.term and old.vote ~= 0 and hs.vote ~= old.vote then
        self:fail("one vote per term", "node %d voted %d then %d in term %d",
                  n.id, old.vote, hs.vote, hs.term)
      end
      if hs.commit < old.commit then
        self:fail("commit never decreases", "node %d persisted commit %d "
                  .. "after %d", n.id, hs.commit, old.commit)
      end
    end
    n.hs = { term = hs.term, vote = hs.vote, commit = hs.commit }
  end
  local es = rd.entries
  if #es > 0 then
    local log = n.log
    local first = es[1].index
    if first <= n.log_snap or first > n.last + 1 then
      self:fail("ready entries extend the log", "node %d: batch starts at %d, "
                .. "log is %d..%d", n.id, first, n.log_snap + 1, n.last)
    end
    for i = n.last, first, -1 do
      log[i] = nil
      n.hashes[i] = nil
    end
    n.last = first + #es - 1
    for j, e in ipairs(es) do
      if e.index ~= first + j - 1 then
        self:fail("ready entries are contiguous", "node %d: entry %d has "
                  .. "index %d", n.id, j, e.index)
      end
      log[e.index] = e
      self:_remember(n, e.index)
    end
  end
  if n.hs and n.hs.commit > n.last then
    self:fail("persisted commit is in the persisted log", "node %d: commit "
              .. "%d, log %d", n.id, n.hs.commit, n.last)
  end
end

function Sim:apply(n, e)
  local i = e.index
  if i ~= n.applied_index + 1 then
    self:fail("entries apply in order", "node %d applied %d after %d", n.id,
              i, n.applied_index)
  end
  n.applied_index = i
  n.applied_term = e.term
  local key = entry_key(e)
  local k = self.intern[key]
  if not k then
    k = self.n_interned + 1
    self.n_interned = k
    self.intern[key] = k
  end
  -- the node's state machine: a hash chained over what it applied (a
  -- snapshot restarts the chain from the snapshot's)
  local h = mix(n.sm_hash, k)
  n.sm_hash = h
  local ak = self.akey[i]
  if ak == nil then
    self.akey[i] = k
    self.applied[i] = e
    self.ahash[i] = h
  elseif ak ~= k then
    local o = self.applied[i]
    self:fail("state machine safety", "node %d applied entry %d as term %d "
              .. "%s %q; another node applied term %d %s %q", n.id, i, e.term,
              e.type, e.data, o.term, o.type, o.data)
  elseif self.ahash[i] ~= h then
    self:fail("state machine safety", "node %d's state machine at index %d "
              .. "differs from another node's there", n.id, i)
  end
  local ck = self.ck[i]
  if ck and ck ~= k then
    self:fail("state machine safety", "node %d applied entry %d that differs "
              .. "from the one committed", n.id, i)
  end
  if self.on_apply then self.on_apply(n.id, e) end
end

-- The node's I/O, as the driver sees it: the sim is its disk, its network
-- and its state machine.  Every call is checked against the contract.
function Sim:_io(n)
  local sim = self
  return {
    save = function(hs, must_sync, entries, snap_index, snap_term, conf)
      if not must_sync then sim:_check_nosync(n, hs, entries, snap_index) end
      local rd = { hs = hs, must_sync = must_sync, entries = entries,
                   snap_index = snap_index > 0 and snap_index or nil,
                   snap_term = snap_term, snap_conf = conf }
      if sim.async > 0 and sim.rng:chance(sim.async) then
        n.pending = rd
        n.pending_at = sim.time + sim.rng:range(1, sim.io_delay)
        return false
      end
      sim:persist(n, rd)
      return true
    end,
    send = function(m)
      if m.type == "snapshot" then sim:_stream(n, m) return end
      sim:_check_durable(n, m)
      sim:send(m)
    end,
    install = function(index)
      sim:_install(n, index)
      return true
    end,
    apply = function(e) sim:apply(n, e) end,
    compact = function(index, term) sim:_compacted(n, index, term) end,
  }
end

-- A write may skip its sync only when it changes nothing a crash must keep:
-- no entries, no snapshot, the same term and vote (the commit index alone).
function Sim:_check_nosync(n, hs, entries, snap_index)
  local old = n.hs or { term = 0, vote = 0 }
  if #entries > 0 or snap_index > 0 or (hs and (hs.term ~= old.term
     or hs.vote ~= old.vote)) then
    self:fail("only a commit-index change skips the sync", "node %d saved "
              .. "%d entries, snapshot %d, term %s vote %s (stored %d/%d) "
              .. "without a sync", n.id, #entries, snap_index,
              tostring(hs and hs.term), tostring(hs and hs.vote), old.term,
              old.vote)
  end
end

-- What a node promises in a message must be durable when it leaves (the
-- ready contract): a vote it grants, the log it acknowledges.  A leader's
-- own appends may leave before its write (thesis 10.2.1).
function Sim:_check_durable(n, m)
  local ty = m.type
  if ty == "vote_resp" and not m.reject then
    -- (a later term persisted before the grant left also binds: no other
    -- vote in m.term can follow it)
    local hs = n.hs
    if not hs or hs.term < m.term or (hs.term == m.term and hs.vote ~= m.to)
    then
      self:fail("votes are durable before they are sent", "node %d granted "
                .. "its vote to %d in term %d, persisted %s", n.id, m.to,
                m.term, hs and string.format("term %d vote %d", hs.term,
                hs.vote) or "nothing")
    end
  elseif (ty == "append_resp" and not m.reject) then
    local i = m.index
    -- (a newer leader may have replaced the entry in memory since: the ack
    -- speaks for the term it carries, the persisted entry must be of it)
    if i > n.log_snap and (i > n.last or n.log[i].term > m.term) then
      self:fail("acknowledged entries are durable", "node %d acknowledged "
                .. "index %d but persisted its log only to %d", n.id, i,
                n.last)
    end
  end
  if m.term > (n.hs and n.hs.term or 0) and ty ~= "prevote"
     and ty ~= "prevote_resp" then
    self:fail("a term is durable before it is used", "node %d sent %s in "
              .. "term %d, persisted term %d", n.id, ty, m.term,
              n.hs and n.hs.term or 0)
  end
end

-- Run n's driver until it waits for a write or has nothing to do, taking a
-- snapshot whenever enough has been applied since the last one.
function Sim:process(n)
  while n.alive and not n.pending do
    local more = n.core:process()
    if self.compact_every and n.alive
       and n.applied_index - n.snap_at >= self.compact_every then
      -- learn what it committed before the log behind it goes (a single
      -- voter commits, applies and compacts within one process)
      self:check(n)
      self:_take_snapshot(n)
      more = true
    end
    if not more then break end
  end
  if n.alive then self:check(n) end
end

-- finish deferred writes that are due (all of them if 'all')
function Sim:complete_io(all)
  for _, id in ipairs(self.ids) do
    local n = self.nodes[id]
    if n.pending and (all or n.pending_at <= self.time) then
      local rd = n.pending
      n.pending = nil
      self.events = self.events + 1
      self:persist(n, rd)
      n.core:saved(true)
      self:check(n)
      self:process(n)
    end
  end
end

---------------------------------------------------------------------------
-- snapshots (§7): taking, streaming, installing
---------------------------------------------------------------------------

-- A snapshot is {index=, term=, hash=}: the state machine after applying
-- index (of that term), i.e. the hash chained over the applied entries.
-- Stored snapshots are durable; the latest by index is what a restart
-- restores and what a transfer streams.
function Sim:_store_snapshot(n, snap)
  n.snaps[snap.index] = snap
  if not n.snap or snap.index > n.snap.index then n.snap = snap end
end

-- drop persisted entries up to upto (the hash at upto stays: the rest of
-- the log chains on from it)
function Sim:_drop_log(n, upto)
  local log, hashes = n.log, n.hashes
  for i = n.log_snap, upto - 1 do
    log[i] = nil
    hashes[i] = nil
  end
  log[upto] = nil
end

-- the persisted log restarts after a snapshot: nothing before it is kept
function Sim:_reset_log(n, snap)
  self:_drop_log(n, n.last)
  n.hashes[n.last] = nil
  n.log_snap, n.log_snap_term, n.last = snap.index, snap.term, snap.index
  n.log_snap_conf = snap.conf
  n.hashes[snap.index] = snap.hash
  self:_prune_snaps(n, snap.index)
end

-- stored snapshots behind index are of no more use (but the latest)
function Sim:_prune_snaps(n, index)
  for i, snap in pairs(n.snaps) do
    if i < index and snap ~= n.snap then n.snaps[i] = nil end
  end
end

-- after applying: snapshot the state machine at the index just applied and
-- compact the core and the persisted log behind it, less 'trailing'
function Sim:_take_snapshot(n)
  local a = n.applied_index
  local first = select(9, n.core:state())
  -- a snapshot the core adopted already covers this (its install is on its
  -- way in a later ready)
  if a < first then return end
  local snap = { index = a, term = n.applied_term, hash = n.sm_hash,
                 conf = n.core:conf_at(a) }
  self:_store_snapshot(n, snap)
  n.snap_at = a
  self.snaps_taken = self.snaps_taken + 1
  local upto = a - self.trailing
  if upto < first then return end
  local term, p = n.core:term_at(upto), n.log[upto]
  if not p or p.term ~= term then
    self:fail("in-memory log matches the persisted log", "node %d compacts "
              .. "to %d: persisted term %s, in memory %s", n.id, upto,
              tostring(p and p.term), tostring(term))
  end
  local ok, err = n.core:compact(upto)
  if not ok then
    self:fail("compaction within applied and stable", "node %d refused "
              .. "compact(%d) after applying %d: %s", n.id, upto, a, err)
  end
  if n.log_snap ~= upto then
    self:fail("a compaction reaches the storage", "node %d compacted to %d, "
              .. "its storage to %d", n.id, upto, n.log_snap)
  end
  self:trace("node %d snapshot at %d (term %d), log compacted to %d", n.id,
             a, snap.term, upto)
end

-- the driver lets the storage drop its log up to index (of term)
function Sim:_compacted(n, index, term)
  local p = n.log[index]
  if not p or p.term ~= term then
    self:fail("in-memory log matches the persisted log", "node %d compacts "
              .. "its storage to %d (term %d): persisted %s", n.id, index,
              term, tostring(p and p.term))
  end
  self:_drop_log(n, index)
  n.log_snap, n.log_snap_term = index, term
  n.log_snap_conf = n.core:conf_at(index)
  n.csnap_index, n.csnap_term = index, term
  self:_prune_snaps(n, index)
end

-- a core asked for a snapshot covering m.index to be streamed to m.to
function Sim:_stream(n, m)
  if n.tx[m.to] then return end  -- already streaming to it: that one reports
  local snap = n.snap
  if not snap or snap.index < m.index then
    -- nothing stored covers it: the runtime gives up at once
    self:trace("node %d has no snapshot covering %d for %d", n.id, m.index,
               m.to)
    n.core:report_snapshot(m.to, false)
    return
  end
  self.tx_seq = self.tx_seq + 1
  local tx = { id = self.tx_seq, from = n.id, to = m.to,
               deadline = self.time + self.snapshot_timeout }
  n.tx[m.to] = tx
  self.streams[#self.streams + 1] = tx
  self:trace("node %d streams snapshot %d (term %d) to %d", n.id, snap.index,
             snap.term, m.to)
  self:send{ type = "snapshot", from = n.id, to = m.to, term = m.term,
             index = snap.index, log_term = snap.term, commit = 0,
             reject = false, hint_index = 0, hint_term = 0, context = 0,
             snap = snap, tx = tx.id, conf = snap.conf }
end

-- did the core adopt the snapshot just stepped in?  Its log now starts
-- after it (the sim tracks the term there, which the core does not show)
function Sim:_adopted(n, m)
  local first = select(9, n.core:state())
  if first - 1 > n.csnap_index then
    if first - 1 ~= m.index then
      self:fail("a snapshot replaces the log up to its index", "node %d "
                .. "stepped snapshot %d, its log now starts at %d", n.id,
                m.index, first)
    end
    n.csnap_index, n.csnap_term = m.index, m.log_term
  end
end

-- the term of entry i in n's in-memory log, the compaction point included
function Sim:_term_at(n, i)
  if i == n.csnap_index then return n.csnap_term end
  return n.core:term_at(i)
end

-- the receiver's ack of a whole stream: the sender's core hears it went
-- through (unless the transfer is over already: timed out, or the sender
-- restarted since)
function Sim:_stream_acked(src, m)
  local tx = src.tx[m.from]
  if tx and tx.id == m.tx then
    src.tx[m.from] = nil
    tx.done = true
    src.core:report_snapshot(m.from, true)
    self:check(src)
    self:process(src)
  end
end

-- transfers that never arrived are reported failed after the timeout
function Sim:_stream_timeouts()
  local keep = {}
  for _, tx in ipairs(self.streams) do
    if not tx.done and tx.deadline <= self.time then
      tx.done = true
      local src = self.nodes[tx.from]
      if src.alive and src.tx[tx.to] == tx then
        src.tx[tx.to] = nil
        self.snap_failed = self.snap_failed + 1
        self:trace("node %d: snapshot transfer to %d timed out", tx.from,
                   tx.to)
        self.events = self.events + 1
        src.core:report_snapshot(tx.to, false)
        self:check(src)
        self:process(src)
      end
    end
    if not tx.done then keep[#keep + 1] = tx end
  end
  self.streams = keep
end

-- a ready's snap_index: the persisted log is replaced by the snapshot
function Sim:_persist_snapshot(n, index, term, conf)
  local snap = n.snaps[index]
  if not snap or snap.term ~= term then
    self:fail("a snapshot is adopted only once stored", "node %d adopted "
              .. "snapshot %d term %d", n.id, index, term)
  end
  if M.conf_str(conf) ~= M.conf_str(snap.conf) then
    self:fail("a snapshot carries its configuration", "node %d adopted "
              .. "snapshot %d with configuration %s, stored with %s", n.id,
              index, M.conf_str(conf), M.conf_str(snap.conf))
  end
  if index <= n.log_snap then
    self:fail("an adopted snapshot is ahead of the log's", "node %d adopted "
              .. "%d, its log starts after %d", n.id, index, n.log_snap)
  end
  self:_reset_log(n, snap)
end

-- ...and the state machine too, before the batch's committed entries
function Sim:_install(n, index)
  local snap = n.snaps[index]
  if index <= n.applied_index then
    self:fail("a snapshot installs ahead of the state machine", "node %d "
              .. "installs %d after applying %d", n.id, index,
              n.applied_index)
  end
  if self.ahash[index] ~= snap.hash then
    self:fail("state machine safety", "node %d installs a snapshot at %d "
              .. "unlike the entries applied up to there elsewhere", n.id,
              index)
  end
  n.applied_index, n.applied_term, n.sm_hash = index, snap.term, snap.hash
  n.snap_at = index
  self.snap_installs = self.snap_installs + 1
  self:trace("node %d installs snapshot %d (term %d)", n.id, index, snap.term)
  if self.on_install then self.on_install(n.id, snap) end
end

---------------------------------------------------------------------------
-- the invariants
---------------------------------------------------------------------------

-- a configuration {voters=, learners=} as text, "1 2 3/4" (nil: "-")
function M.conf_str(c)
  if not c then return "-" end
  local v, l = {}, {}
  for i, id in ipairs(c.voters) do v[i] = id end
  for i, id in ipairs(c.learners or {}) do l[i] = id end
  table.sort(v)
  table.sort(l)
  return table.concat(v, " ") .. "/" .. table.concat(l, " ")
end

-- a CONF entry's data (raft.h's encoding) as {voters=, learners=}
function M.decode_conf(data)
  local _, nv, nl, pos = string.unpack("<BBB", data)
  local c = { voters = {}, learners = {} }
  for i = 1, nv do c.voters[i], pos = string.unpack("<i8", data, pos) end
  for i = 1, nl do c.learners[i], pos = string.unpack("<i8", data, pos) end
  return c
end

-- Could a majority of a and a majority of b be disjoint?  Each takes what
-- only it has first, then the shared voters must serve both.
function M.majorities_overlap(a, b)
  local ina, inb, shared = {}, {}, 0
  for _, id in ipairs(a.voters) do ina[id] = true end
  for _, id in ipairs(b.voters) do
    inb[id] = true
    if ina[id] then shared = shared + 1 end
  end
  local na, nb = #a.voters, #b.voters
  local need = math.max(0, na // 2 + 1 - (na - shared))
             + math.max(0, nb // 2 + 1 - (nb - shared))
  return need > shared
end

-- a committed configuration overlaps the one before in a majority
function Sim:_conf_committed(i, e)
  local c = M.decode_conf(e.data)
  if not M.majorities_overlap(self.conf, c) then
    self:fail("every configuration overlaps the previous one in a majority",
              "index %d commits %s after %s", i, M.conf_str(c),
              M.conf_str(self.conf))
  end
  self.conf = c
  self.conf_changes = self.conf_changes + 1
  self:trace("configuration %s committed at %d", M.conf_str(c), i)
end

-- Committed-prefix bound: cterm[i] bounds from above the term in which i was
-- committed (i commits no later than any j >= i, and j was committed by a
-- leader of a term <= that of any node that knows it committed).  So every
-- leader of a term > cterm[i] must hold entry i (leader completeness).
function Sim:_learn_commit(n, commit, term)
  for i = self.ncommit + 1, commit do
    local e = n.core:entry(i)
    if not e then
      self:fail("commit is within the log", "node %d: commit %d but no "
                .. "entry %d", n.id, commit, i)
    end
    local key = entry_key(e)
    local k = self.intern[key]
    if not k then
      k = self.n_interned + 1
      self.n_interned = k
      self.intern[key] = k
    end
    local ak = self.akey[i]
    if ak and ak ~= k then
      self:fail("state machine safety", "node %d committed entry %d unlike "
                .. "the one applied", n.id, i)
    end
    self.ck[i] = k
    self.chash[i] = mix(self.chash[i - 1], k)
    self.cterm[i] = term
    if e.type == "conf" then self:_conf_committed(i, e) end
  end
  if commit > self.ncommit then
    -- committed means durable on a majority of the voters of the
    -- configuration it committed in (the first to know is the leader, whose
    -- latest configuration counted it): the persisted logs (of crashed
    -- nodes too) that hold this very prefix; learners never count
    local h, have = self.chash[commit], 0
    local voters = n.core:status().conf.voters
    for _, id in ipairs(voters) do
      local v = self.nodes[id]
      if v and v.hashes[commit] == h then have = have + 1 end
    end
    if have < #voters // 2 + 1 then
      self:fail("committed entries are durable on a majority", "node %d "
                .. "knows index %d committed, but only %d of its %d voters "
                .. "persisted it", n.id, commit, have, #voters)
    end
    self.ncommit = commit
  end
  self.cversion = self.cversion + 1
  -- tighten the bound below: cterm is non-decreasing in the index
  local i = math.min(commit, self.ncommit)
  while i >= 1 and self.cterm[i] > term do
    self.cterm[i] = term
    i = i - 1
  end
end

-- highest index whose commit term is known to be below 'term'
function Sim:_committed_before(term)
  local lo, hi = 0, self.ncommit
  while lo < hi do
    local mid = (lo + hi + 1) // 2
    if self.cterm[mid] < term then lo = mid else hi = mid - 1 end
  end
  return lo
end

function Sim:_leader_holds(n, upto)
  -- entries the core compacted are covered by the node's snapshot (checked
  -- against the applied entries when it was taken or installed): present
  local base = (select(9, n.core:state()) or 1) - 1
  -- the persisted prefix by hash, the rest (async writes) entry by entry
  local p = math.min(upto, n.last)
  if p < base or n.hashes[p] ~= self.chash[p] then
    -- the persisted log may be stale behind an in-memory rewrite; compare
    -- the in-memory log entry by entry before crying wolf
    p = base
  end
  for i = p + 1, upto do
    local e = n.core:entry(i)
    if not e or self.intern[entry_key(e)] ~= self.ck[i] then return false, i end
  end
  return true
end

function Sim:check(n)
  if not n.alive then return end
  local role, term, leader, commit, last, _, applied = n.core:state()
  -- election safety: at most one leader per term, over the whole run
  if role == "leader" then
    local l = self.leaders[term]
    if l == nil then
      self.leaders[term] = n.id
      self:trace("node %d leads term %d", n.id, term)
      -- (or a voter of the configuration before an uncommitted one that
      -- removes it: it may hold the only up-to-date log, thesis §4.1)
      local st = n.core:status()
      local function has(c)
        for _, id in ipairs(c and c.voters or {}) do
          if id == n.id then return true end
        end
        return false
      end
      local voter = has(st.conf) or (st.conf_pending
        and has(n.core:conf_at(st.conf_index - 1)))
      if not voter then
        self:fail("only voters lead", "node %d leads term %d with "
                  .. "configuration %s", n.id, term, M.conf_str(st.conf))
      end
    elseif l ~= n.id then
      self:fail("election safety", "nodes %d and %d both led term %d", l,
                n.id, term)
    end
  end
  if term < n.term then
    self:fail("term never decreases", "node %d: %d -> %d", n.id, n.term, term)
  end
  if n.hs and term < n.hs.term then
    self:fail("term never below persisted", "node %d: term %d, persisted %d",
              n.id, term, n.hs.term)
  end
  if commit < n.commit then
    self:fail("commit never decreases", "node %d: %d -> %d", n.id, n.commit,
              commit)
  end
  if n.hs and commit < n.hs.commit then
    self:fail("commit never below persisted", "node %d: commit %d, "
              .. "persisted %d", n.id, commit, n.hs.commit)
  end
  if commit > last then
    self:fail("commit is within the log", "node %d: commit %d, last %d",
              n.id, commit, last)
  end
  if applied > commit then
    self:fail("only committed entries apply", "node %d: applied %d, "
              .. "commit %d", n.id, applied, commit)
  end
  -- §5.4.2: a leader advances its commit index only to an entry of its own
  -- term (earlier entries commit with it, never by counting replicas)
  if role == "leader" and commit > n.commit
     and self:_term_at(n, commit) ~= term then
    self:fail("commit by counting replicas only in the current term (§5.4.2)",
              "leader %d of term %d advanced commit %d -> %d, an entry of "
              .. "term %s", n.id, term, n.commit, commit,
              tostring(self:_term_at(n, commit)))
  end
  n.role, n.term, n.leader, n.commit = role, term, leader, commit
  if commit > 0 and (commit > self.ncommit or self.cterm[commit] > term) then
    self:_learn_commit(n, commit, term)
  end
  -- leader completeness: a leader holds everything committed before its term
  if role == "leader" and (n.lc_term ~= term or n.lc_seen ~= self.cversion) then
    if n.lc_term ~= term then n.lc_term, n.lc_upto = term, 0 end
    n.lc_seen = self.cversion
    local upto = self:_committed_before(term)
    if upto > n.lc_upto then
      local ok, i = self:_leader_holds(n, upto)
      if not ok then
        self:fail("leader completeness", "node %d leads term %d without "
                  .. "committed entry %d", n.id, term, i)
      end
      n.lc_upto = upto
    end
  end
end

-- full check of every live node's in-memory log against what it persisted
-- (entries up to its stable index) and against the committed prefix
function Sim:check_logs()
  for _, id in ipairs(self.ids) do
    local n = self.nodes[id]
    if n.alive and not n.pending then
      local st = n.core:status()
      local from = math.max(st.first_index, n.log_snap + 1)
      for i = from, math.min(st.stable_index, n.last) do
        local e = n.core:entry(i)
        local p = n.log[i]
        if not e or e.term ~= p.term or e.data ~= p.data or e.type ~= p.type then
          self:fail("in-memory log matches the persisted log",
                    "node %d entry %d", id, i)
        end
      end
      for i = st.first_index, math.min(st.commit, self.ncommit) do
        local e = n.core:entry(i)
        if not e or self.intern[entry_key(e)] ~= self.ck[i] then
          self:fail("log matching", "node %d committed entry %d differs", id, i)
        end
      end
    end
  end
end

---------------------------------------------------------------------------
-- time
---------------------------------------------------------------------------

-- one virtual tick: due writes complete, due messages arrive, nodes tick
function Sim:step()
  self:_drain(self.time)  -- sent between steps with no delay
  self.time = self.time + 1
  self.ctime = self.time
  self:complete_io(false)
  self:_drain(self.time)
  for _, id in ipairs(self.ids) do
    local n = self.nodes[id]
    if n.alive then
      self.events = self.events + 1
      n.core:tick()
      self:check(n)
      self:process(n)
    end
  end
  self:_drain(self.time)  -- what the ticks sent with no delay
  if #self.streams > 0 then self:_stream_timeouts() end
  if self.on_step then self.on_step(self) end
end

function Sim:run(ticks)
  for _ = 1, ticks do self:step() end
end

-- step until cond(sim) is true; returns true, ticks taken | false
function Sim:run_until(cond, max_ticks)
  max_ticks = max_ticks or 1000
  for t = 0, max_ticks do
    if cond(self) then return true, t end
    if t == max_ticks then break end
    self:step()
  end
  return false
end

---------------------------------------------------------------------------
-- views and helpers for specs
---------------------------------------------------------------------------

function Sim:state(id)
  local n = self.nodes[id]
  if not n.alive then return nil end
  local role, term, leader, commit, last, last_term, applied, vote, first =
    n.core:state()
  return { role = role, term = term, leader = leader, commit = commit,
           last_index = last, last_term = last_term, applied = applied,
           vote = vote, first_index = first }
end

function Sim:status(id)
  return self.nodes[id].alive and self.nodes[id].core:status() or nil
end

-- the live leader of the highest term, and that term
function Sim:leader()
  local best, bt
  for _, id in ipairs(self.ids) do
    local n = self.nodes[id]
    if n.alive and n.role == "leader" and (not bt or n.term > bt) then
      best, bt = id, n.term
    end
  end
  return best, bt
end

-- a leader that every live node in its partition follows, in its term
function Sim:agreed_leader()
  local l, term = self:leader()
  if not l then return nil end
  local g = self.group[l] or 0
  for _, id in ipairs(self:members(l)) do
    local n = self.nodes[id]
    if n.alive and (self.group[id] or 0) == g
       and (n.term ~= term or (id ~= l and n.leader ~= l)) then
      return nil
    end
  end
  return l, term
end

-- the members (voters, then learners) in node id's configuration (default:
-- the leader's; all nodes when there is none)
function Sim:members(id)
  id = id or self:leader()
  local n = id and self.nodes[id]
  if not n or not n.alive then return self.ids end
  local c, out = n.core:status().conf, {}
  for _, v in ipairs(c.voters) do out[#out + 1] = v end
  for _, v in ipairs(c.learners) do out[#out + 1] = v end
  return out
end

-- the configuration node id uses ({voters=, learners=}), default the leader's
function Sim:config(id)
  id = id or self:leader()
  local n = id and self.nodes[id]
  if not n or not n.alive then return nil end
  return n.core:status().conf
end

-- Propose a membership change at node id (default: the leader): op is
-- "add_learner", "add_voter" or "remove"; context (optional): bytes the
-- entry carries after the configuration.  index, term | nil, err.  The
-- answer is checked like a write's.
function Sim:change(op, target, id, context)
  id = id or self:leader()
  if not id then return nil, "noleader" end
  local n = self.nodes[id]
  if not n.alive then return nil, "dead" end
  local index, term
  index, term = n.core:change(op, target, function(status)
    self:_answered(n, index, term, status)
  end, context)
  self.events = self.events + 1
  self:trace("node %d: change %s %d -> %s", id, op, target,
             index and ("index " .. index) or tostring(term))
  self:process(n)
  if not index then return nil, term end
  return index, term
end

-- leadership transfer from node id (default: the leader) to target
function Sim:transfer(target, id)
  id = id or self:leader()
  if not id then return nil, "noleader" end
  local n = self.nodes[id]
  if not n.alive then return nil, "dead" end
  local ok, err = n.core:transfer(target)
  self.events = self.events + 1
  self:trace("node %d: transfer to %d -> %s", id, target, tostring(ok or err))
  self:check(n)
  self:process(n)
  return ok, err
end

-- the agreed leader and term, if it has committed an entry of its term
function Sim:_settled()
  local l, term = self:agreed_leader()
  if not l then return nil end
  local n = self.nodes[l]
  if n.commit == 0 or self:_term_at(n, n.commit) ~= term then return nil end
  return l, term
end

-- run until a leader is agreed on and has committed an entry of its term,
-- and (with 'hold' > 0) has stayed so for 'hold' ticks; leader, term | nil
function Sim:wait_leader(max_ticks, hold)
  hold = hold or 0
  local cur, curt, since
  local ok = self:run_until(function(s)
    local l, term = s:_settled()
    if l ~= cur or term ~= curt then cur, curt, since = l, term, s.time end
    return l ~= nil and s.time - since >= hold
  end, max_ticks or 50 * self.cfg.election_ticks)
  if not ok then return nil end
  return self:agreed_leader()
end

-- make 'id' leader now: campaign, then let messages flow (no ticks)
function Sim:elect(id)
  local n = self.nodes[id]
  assert(n.alive, "cannot elect a dead node")
  n.core:campaign()
  self:check(n)
  self:process(n)
  self:flush()
  return n.role == "leader"
end

-- the persisted log of id as a list of {term,index,type,data}
function Sim:log(id) return self.nodes[id].log end

-- in-memory log of a live node, by index (from its first index, which is
-- past 1 once compacted)
function Sim:mem_log(id)
  local c, out = self.nodes[id].core, {}
  local i = select(9, c:state())
  while true do
    local e = c:entry(i)
    if not e then break end
    out[i] = e
    i = i + 1
  end
  return out
end

-- the terms of a log as a compact string, e.g. "1 1 1 4 4 5"
function M.terms(log)
  local t = {}
  for i, e in ipairs(log) do t[i] = tostring(e.term) end
  return table.concat(t, " ")
end

-- data of the normal entries in node id's state machine (applied in this
-- incarnation, or covered by the snapshot it restored or installed)
function Sim:applied_data(id)
  local out = {}
  for i = 1, self.nodes[id].applied_index do
    local e = self.applied[i]
    if e.type == "normal" then out[#out + 1] = e.data end
  end
  return out
end

-- the latest snapshot node id stored ({index=, term=, hash=} | nil), and
-- its state machine now: applied index and hash
function Sim:snapshot(id) return self.nodes[id].snap end

function Sim:sm_state(id)
  local n = self.nodes[id]
  return n.applied_index, n.sm_hash
end

function Sim:is_applied(index, term)
  local e = self.applied[index]
  return e ~= nil and e.term == term
end

-- The client's callback for a write proposed at (index, term) on n: an
-- answer "done" must come after the entry committed and applied there.
function Sim:_answered(n, index, term, status)
  self.events = self.events + 1
  if status == nil then
    self:check(n)  -- learn what n knows committed
    local e, k = self.applied[index], self.ck[index]
    if not e or e.term ~= term or n.applied_index < index or not k
       or k ~= self.akey[index] then
      self:fail("a write is answered only once committed and applied",
                "node %d answered the write at index %d term %d, applied "
                .. "%d, committed there: %s", n.id, index, term,
                n.applied_index, tostring(k ~= nil))
    end
    if index > self.acked then self.acked = index end
    self.writes_acked = self.writes_acked + 1
  elseif status == "notcommitted" then
    local e = self.applied[index]
    if not e or e.term == term then
      self:fail("a write is refused only once another entry took its place",
                "node %d said the write at index %d term %d never commits",
                n.id, index, term)
    end
  end
  if self.on_answer then self.on_answer(n.id, index, term, status) end
end

-- propose data at node id (default: the leader); index, term | nil, err
function Sim:propose(data, id)
  id = id or self:leader()
  if not id then return nil, "noleader" end
  local n = self.nodes[id]
  if not n.alive then return nil, "dead" end
  local index, term
  index, term = n.core:propose(data, function(status)
    self:_answered(n, index, term, status)
  end)
  self.events = self.events + 1
  self:process(n)
  if not index then return nil, term end
  return index, term
end

-- Start a linearizable read at node id (default: the leader); true or nil,
-- err.  Once the driver says it may be served it shows up in
-- sim.nodes[id].reads as {ctx=, at=, index=, applied=} (applied and index:
-- the state it read).
function Sim:read(id, ctx)
  id = id or self:leader()
  if not id then return nil, "noleader" end
  local n = self.nodes[id]
  if not n.alive then return nil, "dead" end
  -- what the read must see, fixed when it begins (real time): every write
  -- a client was told is done, and (ReadIndex, §6.4) every commit known
  local f = { acked = self.acked, committed = self.ncommit, at = self.time }
  local ok, err = n.core:read(function(status)
    if status == nil then self:_serve_read(n, ctx, f) end
  end)
  self.events = self.events + 1
  self:process(n)
  return ok, err
end

-- the driver says read ctx may be served now, from n's state machine
function Sim:_serve_read(n, ctx, f)
  local a = n.applied_index
  if a < f.acked then
    self:fail("linearizable reads", "node %d served read %d (begun at "
              .. "t=%d) from applied index %d, but index %d was "
              .. "acknowledged to a client before it began", n.id, ctx,
              f.at, a, f.acked)
  end
  if a < f.committed then
    self:fail("a read covers every commit before the read (§6.4)",
              "node %d served read %d from applied index %d, but index %d "
              .. "was committed before the read began", n.id, ctx, a,
              f.committed)
  end
  n.reads[#n.reads + 1] = { index = a, ctx = ctx, at = self.time, applied = a }
  self.reads_served = self.reads_served + 1
end

-- propose every item of list at node id (default: the leader) before any of
-- its ready batches is processed, as a runtime batching clients would;
-- returns the list of {index=, term=} (nil, err at the first refusal)
function Sim:propose_many(list, id)
  id = id or self:leader()
  if not id then return nil, "noleader" end
  local n, out = self.nodes[id], {}
  for i, data in ipairs(list) do
    local p = {}
    local index, term = n.core:propose(data, function(status)
      self:_answered(n, p.index, p.term, status)
    end)
    if not index then return nil, term end
    p.index, p.term = index, term
    out[i] = p
  end
  self.events = self.events + 1
  self:process(n)
  return out
end

---------------------------------------------------------------------------
-- the randomized run: faults while clients propose, then liveness
---------------------------------------------------------------------------

-- M.fuzz(seed, {steps=3000, sizes={3,5,7}, replay=, compact=}) runs one
-- seed and raises on any violated invariant or lost liveness.  A third of
-- the seeds (or all with compact=true, none with false) take snapshots
-- every 5-50 applied entries and keep 0-10 entries behind them, so lagging
-- and restarted nodes catch up through InstallSnapshot.  Returns a summary.
function M.fuzz(seed, opts)
  opts = opts or {}
  -- the run's shape, from a stream of its own (the sim's starts at 'seed')
  local pick = M.rng(seed ~ 0x6A09E667F3BCC909)
  local sizes = opts.sizes or { 3, 5, 7 }
  local size = sizes[seed % #sizes + 1]
  local et = 10
  -- membership runs (a third, or as opts.membership says) get two spare
  -- nodes; drawn from a stream of their own so other runs keep their shape
  local mpick = M.rng(seed ~ 0x3C6EF372FE94F82B)
  local membership = mpick:below(3) == 0
  if opts.membership ~= nil then membership = opts.membership end
  local voters = {}
  for i = 1, size do voters[i] = i end
  -- a byte bound on appends in flight in half the runs, also from a stream
  -- of its own
  local bpick = M.rng(seed ~ 0xA54FF53A5F1D36F1)
  local inflight_bytes = bpick:chance(0.5) and bpick:pick({ 64, 512, 4096 })
                         or 0
  local s = M.new{
    n = size + (membership and 2 or 0), voters = voters,
    seed = seed, replay = opts.replay,
    election_ticks = et,
    heartbeat_ticks = pick:range(1, 3),
    pre_vote = pick:chance(0.75),
    check_quorum = pick:chance(0.75),
    max_inflight = pick:range(1, 8),
    max_msg_bytes = pick:pick({ 16, 128, 512, 4096 }),
    max_inflight_bytes = inflight_bytes,
    async = pick:chance(0.5) and 0.3 or 0,
    net = { min_delay = 1, max_delay = pick:range(1, 4), drop = 0, dup = 0,
            reorder = pick:chance(0.7) },
  }
  local rng = s.rng
  local steps = opts.steps or 3000
  local proposed, accepted, reads = 0, 0, 0
  local crashed = {}
  local function nemesis()
    local r = rng:float()
    if r < 0.3 then                         -- partition in two, at random
      local a, b = {}, {}
      for _, id in ipairs(s.ids) do
        if rng:chance(0.5) then a[#a + 1] = id else b[#b + 1] = id end
      end
      s:partition(a, b)
    elseif r < 0.4 then                     -- cut one off, often the leader
      s:isolate(rng:chance(0.5) and s:leader() or rng:pick(s.ids))
    elseif r < 0.55 then
      s:heal()
    elseif r < 0.7 then                     -- crash one; restart later
      local id = rng:chance(0.5) and s:leader() or rng:pick(s.ids)
      if s.nodes[id].alive then
        s:crash(id)
        crashed[#crashed + 1] = id
      end
    elseif r < 0.85 then
      if #crashed > 0 then
        s:restart(table.remove(crashed, rng:below(#crashed) + 1))
      end
    else                                    -- a new kind of weather
      s.net.drop = rng:chance(0.5) and rng:float() * 0.2 or 0
      s.net.dup = rng:chance(0.5) and rng:float() * 0.1 or 0
      s.net.max_delay = rng:range(1, 6)
      s.net.reorder = rng:chance(0.7)
    end
  end
  -- Membership events: add a non-member as a learner (a spare, or a
  -- removed node with its disk intact: never wiped, whose votes would then
  -- speak for a history it lost), promote a learner, remove a member (the
  -- leader too), transfer leadership.
  local changes, transfers = 0, 0
  local function reconfigure()
    local l = s:leader()
    if not l then return end
    local st = s.nodes[l].core:status()
    local c, member = st.conf, {}
    for _, id in ipairs(c.voters) do member[id] = "voter" end
    for _, id in ipairs(c.learners) do member[id] = "learner" end
    local r = rng:float()
    local function pick_where(want)
      local out = {}
      for _, id in ipairs(s.ids) do
        if want(member[id]) then out[#out + 1] = id end
      end
      return #out > 0 and rng:pick(out) or nil
    end
    local op, id
    if r < 0.3 then
      op, id = "add_learner", pick_where(function(m) return m == nil end)
    elseif r < 0.55 then
      -- promote only a learner in sync, as an operator would (etcd
      -- refuses otherwise): a lagging voter stalls every commit it is
      -- needed for while it catches up
      op, id = "add_voter", pick_where(function(m) return m == "learner" end)
      local p = id and st.peers[id]
      if not p or p.match + 5 < st.last_index then return end
    elseif r < 0.8 then
      op, id = "remove", pick_where(function(m) return m ~= nil end)
    else
      id = pick_where(function(m) return m == "voter" end)
      if id and id ~= l and s:transfer(id, l) then transfers = transfers + 1 end
      return
    end
    if id and s.nodes[l].alive and s:change(op, id, l) then
      changes = changes + 1
    end
  end
  local member_rate = membership and 1 / (mpick:range(5, 20) * et) or 0
  local fault_rate = 1 / (pick:range(2, 8) * et)
  -- drawn after the rest, so runs without compaction keep their shape
  local compact = pick:below(3) == 0
  if opts.compact ~= nil then compact = opts.compact end
  if compact then
    s.compact_every = pick:range(5, 50)
    s.trailing = pick:range(0, 10)
  end
  for _ = 1, steps do
    if rng:chance(fault_rate) then nemesis() end
    if membership and rng:chance(member_rate) then reconfigure() end
    if rng:chance(0.05) then
      reads = reads + 1
      local id = rng:chance(0.8) and s:leader() or rng:pick(s.ids)
      if id and s.nodes[id].alive then s:read(id, reads) end
    end
    if rng:chance(0.2) then
      proposed = proposed + 1
      local id = rng:chance(0.8) and s:leader() or rng:pick(s.ids)
      if id and s.nodes[id].alive then
        if s:propose(string.format("%d:%d", seed, proposed), id) then
          accepted = accepted + 1
        end
      end
    end
    s:step()
  end
  -- the faults stop: the network is clean, everyone is back
  -- (a slow disk is a fault too: a leader's heartbeats wait for its writes,
  -- so a chain of slow ones starves followers into elections)
  s:heal()
  s.net.drop, s.net.dup, s.net.reorder = 0, 0, false
  s.async = 0
  s:complete_io(true)
  for _, id in ipairs(s.ids) do
    if not s.nodes[id].alive then s:restart(id) end
  end
  -- a leader every node follows, for as long as the longest election
  -- timeout, so no timer from the fault period is still running
  local elect_bound = 40 * et
  local l = s:wait_leader(elect_bound, 2 * et)
  if not l then
    s:fail("liveness", "no leader agreed on for %d ticks within %d ticks "
           .. "after the faults stopped", 2 * et, elect_bound)
  end
  -- A round trip: two delays and a tick at each end.  Entries go out
  -- max_inflight APPENDs per round trip, at worst one entry each; under a
  -- byte bound, as many of the largest entries (with their framing) as it
  -- holds, at least one.
  local rtt = 2 * s.net.max_delay + 2
  local window = s.cfg.max_inflight
  local function trips(entries)
    return rtt * (entries // window + 3)
  end
  local function bound_window()
    if s.cfg.max_inflight_bytes == 0 then return end
    local largest = 32 -- the final proposals below
    for _, e in pairs(s.nodes[l].log) do
      if e.data and #e.data > largest then largest = #e.data end
    end
    local fit = s.cfg.max_inflight_bytes // (largest + 40)
    window = math.max(1, math.min(s.cfg.max_inflight, fit))
  end
  local function all_applied(index, bound, what)
    local ok = s:run_until(function()
      for _, id in ipairs(s:members(l)) do
        if s.nodes[id].applied_index < index then return false end
      end
      return true
    end, bound)
    if not ok then
      s:fail("liveness", "not every node applied index %d %s within %d ticks",
             index, what, bound)
    end
  end
  -- every node catches up with the leader's log within a bound set by how
  -- far behind the furthest one is
  local backlog, lead_last = 0, s.nodes[l].core:status().last_index
  for _, id in ipairs(s:members(l)) do
    backlog = math.max(backlog, lead_last - s.nodes[id].applied_index)
  end
  bound_window()
  all_applied(lead_last, 10 * et + trips(backlog), "(catching up)")
  -- the stable period: every proposal commits (the leader applies it)
  -- within a bound, and every node applies all of them within another
  local commit_bound = 6 * et + trips(20)
  local pending = {}
  for k = 1, 20 do
    local data = string.format("%d:final:%d", seed, k)
    local index, term = s:propose(data)
    if not index then
      s:fail("liveness", "the leader refused proposal %d: %s", k, term)
    end
    pending[#pending + 1] = { index = index, term = term, at = s.time }
    s:run(rng:range(0, 2))
  end
  for _, p in ipairs(pending) do
    local ok = s:run_until(function()
      return s.nodes[l].applied_index >= p.index
    end, math.max(0, p.at + commit_bound - s.time))
    if not ok or not s:is_applied(p.index, p.term) then
      s:fail("liveness", "proposal at index %d term %d (made at t=%d) not "
             .. "committed within %d ticks", p.index, p.term, p.at,
             commit_bound)
    end
  end
  all_applied(pending[#pending].index, commit_bound, "(the proposals)")
  -- and a linearizable read is served, covering all of them
  local ctx = reads + 1
  local asked = s:read(l, ctx)
  if not asked then s:fail("liveness", "the leader refused a read") end
  local served = s:run_until(function()
    local rs = s.nodes[l].reads
    return #rs > 0 and rs[#rs].ctx == ctx
  end, commit_bound)
  if not served then
    s:fail("liveness", "a read on the leader was not served within %d ticks",
           commit_bound)
  end
  s:check_logs()
  local terms = 0
  for t in pairs(s.leaders) do if t > terms then terms = t end end
  return { size = size, steps = steps, proposed = proposed,
           accepted = accepted, committed = s.ncommit, events = s.events,
           terms = terms, reads = s.reads_served,
           compacting = compact and 1 or 0, snapshots = s.snaps_taken,
           transfers = s.snap_transfers, installs = s.snap_installs,
           transfers_failed = s.snap_failed,
           membership = membership and 1 or 0, changes = changes,
           confs = s.conf_changes, leader_transfers = transfers }
end

return M
