--[[
dur_writer.lua -- one client process of the durability specs: PUTs fresh
keys, one at a time on a keep-alive connection, and appends every write
that got a 200 to a file, after the answer arrived.

    lua5.4 spec/support/dur_writer.lua OUT NODES PREFIX MAX DEADLINE_MS STOP SEED [VALUE_BYTES]

  OUT          acknowledged writes are appended here, one per line:
               "<key> <value> <index>" (flushed per line); a last line
               "# sent=N acked=N other=code:count,..." when it exits
  NODES        host:port,host:port,... -- the first is tried first, and the
               next one after any failure (connection refused or reset, a
               503, a 504, a timeout)
  PREFIX       keys are PREFIX .. 6-digit sequence number; a new key for
               every attempt, so a key is written at most once
  MAX          attempts at most
  DEADLINE_MS  milliseconds from start, at most
  STOP         a path: the writer exits once it exists (checked per attempt)
  SEED         seeds the value bytes (values are printable, no spaces)

Failed attempts are paced (20 ms) so a cluster that is down is not
hammered; that is a client's retry interval, not a synchronization.  Each
request has a 4 s deadline (above the specs' commit and forward timeouts),
so the writer notices STOP within about that long.  Needs only lua-socket.
]]

local socket = require "socket"

local out_path, nodes_arg, prefix, max, deadline_ms, stop_path, seed, vbytes =
  arg[1], arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5]), arg[6],
  tonumber(arg[7]), tonumber(arg[8] or 40)
assert(out_path and nodes_arg and prefix and max and deadline_ms and stop_path
       and seed, "usage: dur_writer.lua OUT NODES PREFIX MAX DEADLINE_MS STOP SEED [VALUE_BYTES]")

local nodes = {}
for hp in nodes_arg:gmatch("[^,]+") do
  local h, p = hp:match("^(.+):(%d+)$")
  nodes[#nodes + 1] = { host = h, port = tonumber(p) }
end

local function now() return socket.gettime() * 1000 end
local t_end = now() + deadline_ms
math.randomseed(seed)

local out = assert(io.open(out_path, "a"))
local sock, cur = nil, 1
local sent, acked, other = 0, 0, {}

local function close()
  if sock then sock:close() sock = nil end
end

local function exists(p)
  local f = io.open(p, "r")
  if f then f:close() return true end
  return false
end

-- one request on the keep-alive connection: code, body or nil, err
local function request(method, path, body)
  if not sock then
    local n = nodes[cur]
    sock = socket.tcp()
    sock:settimeout(4)
    local ok, err = sock:connect(n.host, n.port)
    if not ok then close() return nil, "connect: " .. err end
  end
  local ok, err = sock:send(("%s %s HTTP/1.1\r\nHost: w\r\nContent-Length: %d\r\n\r\n%s")
                            :format(method, path, #body, body))
  if not ok then close() return nil, "send: " .. err end
  local line
  line, err = sock:receive("*l")
  local code = line and tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  if not code then close() return nil, "status: " .. tostring(err or line) end
  local len, keep = 0, true
  while true do
    line, err = sock:receive("*l")
    if not line then close() return nil, "headers: " .. err end
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then
      k = k:lower()
      if k == "content-length" then len = tonumber(v)
      elseif k == "connection" and v:lower() == "close" then keep = false end
    end
  end
  local data = ""
  if len > 0 then
    data, err = sock:receive(len)
    if not data then close() return nil, "body: " .. err end
  end
  if not keep then close() end
  return code, data
end

local CH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
local function value(seq)
  local v = { ("v%d.%d."):format(seed, seq) }
  for i = 1, vbytes do
    local r = math.random(#CH)
    v[i + 1] = CH:sub(r, r)
  end
  return table.concat(v)
end

local seq = 0
while seq < max and now() < t_end and not exists(stop_path) do
  seq = seq + 1
  local key = ("%s%06d"):format(prefix, seq)
  local val = value(seq)
  sent = sent + 1
  local code, body = request("PUT", "/kv/" .. key, val)
  if code == 200 then
    acked = acked + 1
    local index = body:match('"index":(%d+)') or "0"
    out:write(key, " ", val, " ", index, "\n")
    out:flush()
  else
    local k = code and tostring(code) or (body or "?"):match("^(%a+)") or "err"
    other[k] = (other[k] or 0) + 1
    close()
    cur = cur % #nodes + 1
    socket.sleep(0.02)
  end
end
close()
local o = {}
for k, n in pairs(other) do o[#o + 1] = k .. ":" .. n end
table.sort(o)
out:write(("# sent=%d acked=%d other=%s\n"):format(sent, acked, table.concat(o, ",")))
out:close()
