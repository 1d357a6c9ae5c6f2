-- cluster_helper.lua -- what the spec/cluster/ specs against the real
-- `rafting` binary share: timing, cluster start, small predicates.

local cluster = require "rafting.testing.cluster"

local H = {}

-- config/local3.lua's timing, written out so the specs do not drift with
-- the defaults: election timeout 300..600 ms, heartbeat 50 ms.
H.TIMING = { tick_ms = 10, election_ticks = 30, heartbeat_ticks = 5,
             pre_vote = true, check_quorum = true }
H.ELECTION_MS = H.TIMING.tick_ms * H.TIMING.election_ticks

function H.start(opts)
  opts = opts or {}
  opts.timing = opts.timing or H.TIMING
  return cluster.start(opts)
end

-- after_each: shut down and insist every node exited 0 on SIGTERM
function H.shutdown(c)
  if not c then return end
  local ok, bad = c:shutdown()
  assert(ok, bad and ("unclean stop: " .. table.concat(bad, "; ")))
end

function H.others(c, id)
  local out = {}
  for _, x in ipairs(c.ids) do if x ~= id then out[#out + 1] = x end end
  return out
end

-- predicate: the running nodes agree that id leads in term
function H.same_leader(c, id, term)
  return function()
    local l, t = c:agreed_leader()
    if l == id and t == term then return true end
    if not l then return false, t end
    return false, ("leader %d in term %d"):format(l, t)
  end
end

-- predicate: node id answers and does not say leader
function H.not_leader(c, id)
  return function()
    local s, err = c:status(id)
    if not s then return false, err end
    return s.role ~= "leader", "role " .. s.role
  end
end

-- Whether the node serves the replicated write API (PUT /kv/{key}).
function H.has_kv(c, id)
  local code = c:http(id, "PUT", "/kv/__probe", "x")
  return code ~= nil and code ~= 404 and code ~= 405
end

function H.put(c, id, key, value)
  local code, body = c:http(id, "PUT", "/kv/" .. key, value)
  assert(code == 200, ("PUT /kv/%s on node %d: %s %s"):format(key, id, code, body))
end

return H
