--[[
peer_wire.lua -- the peer wire spoken by hand, as an attacker would: frames
encoded straight from proto/raft.proto (protobuf varints and length-
delimited fields, no library), sent on a plain TCP connection to a node's
peer port.  Used by spec/security/.

    local W = require "spec.support.peer_wire"
    local f = W.heartbeat{ cluster = "x", from = 2, to = 1, term = 3 }
    local sock = W.connect("127.0.0.1:7001")
    sock:send(f)

Numbers are Lua integers; a negative one is sent as its 64-bit two's
complement, so -1 is 2^64-1 and math.mininteger is 2^63.
]]

local socket = require "socket"

local W = {}

-- unsigned LEB128 of a 64-bit integer (>> is a logical shift in Lua 5.4)
local function varint(v)
  local out = {}
  while math.ult(0x7f, v) do
    out[#out + 1] = string.char((v & 0x7f) | 0x80)
    v = v >> 7
  end
  out[#out + 1] = string.char(v)
  return table.concat(out)
end
W.varint = varint

local function key(num, wire) return varint((num << 3) | wire) end

-- proto3 leaves zero scalars out; so do we
local function uint(num, v)
  if v == nil or v == 0 then return "" end
  return key(num, 0) .. varint(v)
end

local function bytes(num, s)
  if s == nil then return "" end
  return key(num, 2) .. varint(#s) .. s
end

local ENTRY_TYPES = { normal = 0, noop = 1, conf = 2 }

local function entry(e)
  return uint(1, e.term) .. uint(2, e.index) ..
         uint(3, ENTRY_TYPES[e.type or "normal"]) .. bytes(4, e.data)
end

-- Envelope: cluster 1, from 2, to 3, term 4, then the body's oneof field.
local function frame(m, body_field, body)
  local env = bytes(1, m.cluster) .. uint(2, m.from) .. uint(3, m.to) ..
              uint(4, m.term) .. bytes(body_field, body)
  return string.pack(">I4", #env) .. env
end
W.frame = frame

function W.heartbeat(m)
  return frame(m, 16, uint(1, m.commit) .. uint(2, m.context))
end

function W.heartbeat_resp(m)
  return frame(m, 17, uint(1, m.context) .. uint(2, m.index))
end

function W.append(m)
  local b = uint(1, m.index) .. uint(2, m.log_term) .. uint(3, m.commit)
  for _, e in ipairs(m.entries or {}) do b = b .. bytes(4, entry(e)) end
  return frame(m, 14, b)
end

function W.snapshot(m)
  return frame(m, 18, uint(1, m.index) .. uint(2, m.log_term) ..
               uint(4, m.offset) .. bytes(5, m.data) ..
               uint(6, m.done and 1 or 0) .. uint(7, m.size))
end

function W.timeout_now(m)
  return frame(m, 20, "")
end

-- A connected socket to "host:port" with a deadline on every call.
function W.connect(addr, timeout_ms)
  local host, port = addr:match("^(.+):(%d+)$")
  local sock = socket.tcp()
  sock:settimeout((timeout_ms or 2000) / 1000)
  assert(sock:connect(host, tonumber(port)))
  return sock
end

-- Whether the far end closed sock (EOF or reset); never blocks.
function W.closed(sock)
  sock:settimeout(0)
  local _, err = sock:receive(1)
  return err ~= "timeout", err
end

return W
