-- garbage_spec.lua -- bytes that are not frames, sent to a node's peer
-- port, are dropped with their connection; the cluster does not notice.

local socket = require "socket"
local cluster = require "rafting.testing.cluster"
local H = require "spec.support.cluster_helper"

local function connect(c, id)
  local host, port = c.nodes[id].peer:match("^(.+):(%d+)$")
  local s = socket.tcp()
  s:settimeout(5)
  assert(s:connect(host, tonumber(port)))
  return s
end

-- The node must close a connection after such bytes: read until EOF/reset.
local function assert_closed(s, what)
  local data, err, partial = s:receive("*a")
  s:close()
  assert(data ~= nil or err == "closed" or (err or ""):find("reset"),
         what .. ": connection still open (" .. tostring(err) .. ", " ..
         #(partial or "") .. " bytes)")
end

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

describe("garbage on the peer port (real nodes)", function()
  local c
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  it("does not disturb the cluster", function()
    local seed = os.time()
    math.randomseed(seed)
    c = H.start{ nodes = 3 }
    local l, t = c:leader()
    local f = H.others(c, l)[1]
    local stalled = {}
    finally(function() for _, s in ipairs(stalled) do s:close() end end)

    for _, id in ipairs{ l, f } do
      local tag = ("node %d (seed %d)"):format(id, seed)
      -- random bytes, then hang up
      for _ = 1, 5 do
        local s = connect(c, id)
        s:send(random_bytes(math.random(1, 8192)))
        s:close()
      end
      -- a length prefix far over any maximum frame
      local s = connect(c, id)
      s:send("\255\255\255\255" .. random_bytes(100))
      assert_closed(s, tag .. " after a 4 GiB length prefix")
      s = connect(c, id)
      s:send(string.pack(">I4", 64 * 1024 * 1024) .. random_bytes(100))
      assert_closed(s, tag .. " after a 64 MiB length prefix")
      -- a plausible length, then bytes that cannot unpack (0xff: varint
      -- overflow / invalid wire type)
      s = connect(c, id)
      s:send(string.pack(">I4", 64) .. ("\255"):rep(64))
      assert_closed(s, tag .. " after an unpackable frame")
      -- a zero-length frame, then junk
      s = connect(c, id)
      s:send("\0\0\0\0" .. random_bytes(32))
      s:close()
      -- half a frame, left hanging: must not stall the node
      s = connect(c, id)
      s:send(string.pack(">I4", 1000) .. random_bytes(10))
      stalled[#stalled + 1] = s
      -- connection churn
      for _ = 1, 50 do connect(c, id):close() end
    end

    -- Nothing changes over several election timeouts, and all stay healthy.
    c:holds(H.same_leader(c, l, t), 5 * H.ELECTION_MS,
            ("node %d leading in term %d after garbage"):format(l, t))
    for _, id in ipairs(c.ids) do
      assert.equal(200, (c:http(id, "GET", "/health")))
    end
    c:wait_for(function()
      local s = c:status(l)
      for _, p in ipairs(s and s.peers or {}) do
        if not p.connected then return false, "peer " .. p.id .. " disconnected" end
      end
      return s ~= nil
    end, nil, "the leader's peers connected")
    assert.same({ l, t }, { c:leader() })
  end)
end)
