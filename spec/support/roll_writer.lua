--[[
roll_writer.lua -- one client process of the rolling-restart spec and
bench: PUTs distinct keys one at a time over a keep-alive connection to
whichever node answers, retrying like `rafting ctl` does, and appends
every acknowledged write with the time of its acknowledgement.

    lua5.4 spec/support/roll_writer.lua OUT NODES PREFIX DEADLINE_MS STOP

  OUT          one line per acknowledged write, flushed per line:
               "<key> <value> <index> <ack_ms>" (ack_ms: rafting.proc's
               monotonic clock when loadable -- the caller passes its
               LUA_CPATH -- else the wall clock); "! <ms> <what>" for every
               failed attempt; a last line
               "# sent=N acked=N other=what:count,..." when it exits
  NODES        host:port,host:port,... -- the first is tried first
  PREFIX       keys are PREFIX .. 7-digit sequence number
  DEADLINE_MS  milliseconds from start, at most
  STOP         a path: the writer exits once it exists (checked per write)

Retries, as src/ctl/ctl.c: a 503 (any reason) or a connection that cannot
be made goes to the next node at once; a 307/308 is followed; after a
whole round of nodes failed in a row the writer backs off, 10 ms doubling
to 200 ms (ctl starts at 100 ms; a shorter first step measures the
cluster, not the client).  A 504 or a connection cut after the request
was sent is an unknown outcome: PUT of the same value is idempotent, so
the same key is retried, and acknowledged once it gets a 200.  Any other
answer (4xx, 500) is counted and the writer moves on to a new key.  Each
request has a 4 s deadline.  Needs lua-socket.
]]

local socket = require "socket"

local out_path, nodes_arg, prefix, deadline_ms, stop_path =
  arg[1], arg[2], arg[3], tonumber(arg[4]), arg[5]
assert(out_path and nodes_arg and prefix and deadline_ms and stop_path,
       "usage: roll_writer.lua OUT NODES PREFIX DEADLINE_MS STOP")

local ok_proc, proc = pcall(require, "rafting.proc")
local now = ok_proc and proc.now_ms or function() return socket.gettime() * 1000 end

local nodes = {}
for hp in nodes_arg:gmatch("[^,]+") do
  local h, p = hp:match("^(.+):(%d+)$")
  nodes[#nodes + 1] = { host = h, port = tonumber(p) }
end

local t_end = now() + deadline_ms
local out = assert(io.open(out_path, "a"))
local sock, cur, target = nil, 1, nil -- target: a redirect's host/port
local sent, acked, other = 0, 0, {}

local function close()
  if sock then sock:close() sock = nil end
end

local function exists(p)
  local f = io.open(p, "r")
  if f then f:close() return true end
  return false
end

-- One request: code, body, location | nil, err, sent (the request left).
local function request(method, path, body)
  if not sock then
    local n = target or nodes[cur]
    sock = socket.tcp()
    sock:settimeout(4)
    local ok, err = sock:connect(n.host, n.port)
    if not ok then close() return nil, "connect", false end
  end
  local ok = sock:send(("%s %s HTTP/1.1\r\nHost: w\r\nContent-Length: %d\r\n\r\n%s")
                       :format(method, path, #body, body))
  if not ok then close() return nil, "send", true end
  local line, err = sock:receive("*l")
  local code = line and tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  if not code then close() return nil, err == "timeout" and "timeout" or "cut", true end
  local len, keep, loc = 0, true, nil
  while true do
    line = sock:receive("*l")
    if not line then close() return nil, "cut", true end
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then
      k = k:lower()
      if k == "content-length" then len = tonumber(v)
      elseif k == "location" then loc = v
      elseif k == "connection" and v:lower() == "close" then keep = false end
    end
  end
  local data = ""
  if len > 0 then
    data = sock:receive(len)
    if not data then close() return nil, "cut", true end
  end
  if not keep then close() end
  return code, data, loc
end

local function failed(what)
  other[what] = (other[what] or 0) + 1
  out:write("! ", ("%.1f"):format(now()), " ", what, "\n")
end

local seq, streak, backoff = 0, 0, 10
local key, val
while now() < t_end and not exists(stop_path) do
  if not key then
    seq = seq + 1
    key = ("%s%07d"):format(prefix, seq)
    val = ("v%d"):format(seq)
  end
  sent = sent + 1
  local code, body, loc = request("PUT", "/kv/" .. key, val)
  if code == 200 then
    acked = acked + 1
    out:write(key, " ", val, " ", body:match('"index":(%d+)') or "0", " ",
              ("%.1f"):format(now()), "\n")
    out:flush()
    key, streak, backoff, target = nil, 0, 10, nil
  elseif code == 307 or code == 308 then
    local h, p = (loc or ""):match("^https?://([^/:]+):(%d+)")
    failed(tostring(code))
    close()
    target = h and { host = h, port = tonumber(p) } or nil
  else
    local retry = code == nil or code == 503 or code == 504
    failed(code and (code .. (body:match('"error":"([^"]+)"') and
                              ("." .. body:match('"error":"([^"]+)"')) or ""))
           or body)
    if not retry then key = nil end
    close()
    target = nil
    cur = cur % #nodes + 1
    streak = streak + 1
    if streak % #nodes == 0 then
      socket.sleep(backoff / 1000)
      backoff = math.min(backoff * 2, 200)
    end
  end
end
close()
local o = {}
for k, n in pairs(other) do o[#o + 1] = k .. ":" .. n end
table.sort(o)
out:write(("# sent=%d acked=%d other=%s\n"):format(sent, acked, table.concat(o, ",")))
out:close()
