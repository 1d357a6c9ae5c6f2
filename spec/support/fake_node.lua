--[[
fake_node.lua -- a stand-in for the `rafting` binary, for the harness's own
specs (spec/cluster/harness_spec.lua): same command line, same config file,
GET /health and GET /status over real HTTP, exit 0 on SIGTERM/SIGINT, exit 2
on a bad flag or config.  It runs no Raft: its status comes from the config's
`fake` table and can be changed over HTTP.

    lua5.4 spec/support/fake_node.lua --config FILE --node ID [--log-level L]

Config `fake = { leader = 1, term = 1, ignore_term = false, term_exit = 0 }`:
the node whose id is `leader` says role "leader", the others "follower";
ignore_term (or env FAKE_IGNORE_TERM) makes SIGTERM do nothing (to test
the SIGKILL paths);
term_exit is the exit code on SIGTERM.  HTTP extras: PUT /fake/status with
a JSON object merges it into the status; POST /fake/exit?code=N exits.
Needs rafting.proc (LUA_CPATH) for the signal trap.
]]

local socket = require "socket"
local cjson = require "cjson"
local proc = require "rafting.proc"

local function die(code, msg)
  io.stderr:write("fake_node: ", msg, "\n")
  os.exit(code)
end

local args = {}
do
  local i = 1
  while i <= #arg do
    local k = arg[i]
    if k == "--config" or k == "--node" or k == "--log-level" then
      args[k:sub(3)] = arg[i + 1] or die(2, k .. " needs a value")
      i = i + 2
    else
      die(2, "unknown flag " .. k)
    end
  end
end
if not args.config or not args.node then die(2, "usage: --config FILE --node ID") end

local chunk, err = loadfile(args.config, "t", {})
if not chunk then die(2, err) end
local ok, cfg = pcall(chunk)
if not ok or type(cfg) ~= "table" then die(2, args.config .. ": not a table") end
local id = math.tointeger(tonumber(args.node))
local fake = cfg.fake or {}
-- for configs that must pass rafting's own validation (no `fake` key)
if os.getenv("FAKE_IGNORE_TERM") then fake.ignore_term = true end
local me, leader_http
for _, n in ipairs(cfg.nodes or {}) do
  if n.id == id then me = n end
  if n.id == (fake.leader or 1) then leader_http = n.http end
end
if not me then die(2, args.config .. ": nodes: no node " .. tostring(args.node)) end

local function log(fmt, ...)
  io.stderr:write(("[node %d] "):format(id), fmt:format(...), "\n")
  io.stderr:flush()
end

local function listen(addr)
  local host, port = addr:match("^%[(.+)%]:(%d+)$")
  if not host then host, port = addr:match("^(.+):(%d+)$") end
  local s = assert(socket.bind(host, tonumber(port)))
  s:settimeout(0)
  return s
end

local http = listen(me.http)
local peer = listen(me.peer)
proc.trap("TERM", "INT")

local status = {
  id = id, role = id == (fake.leader or 1) and "leader" or "follower",
  term = fake.term or 1, leader = fake.leader or 1, leader_http = leader_http,
  commit = 0, applied = 0, last_index = 0, peers = {},
}
for _, n in ipairs(cfg.nodes) do
  if n.id ~= id then
    status.peers[#status.peers + 1] = { id = n.id, match = 0, connected = true }
  end
end

local function reply(c, code, body)
  c:send(("HTTP/1.1 %d X\r\nContent-Type: application/json\r\n" ..
          "Content-Length: %d\r\nConnection: close\r\n\r\n%s"):format(code, #body, body))
end

local function serve(c)
  c:settimeout(1)
  local line = c:receive("*l")
  if not line then return end
  local method, path = line:match("^(%u+) (%S+)")
  local len = 0
  repeat
    local h = c:receive("*l")
    local n = h and h:lower():match("^content%-length:%s*(%d+)")
    if n then len = tonumber(n) end
  until not h or h == ""
  local body = len > 0 and c:receive(len) or ""
  if method == "GET" and path == "/health" then
    reply(c, 200, '{"ok":true}')
  elseif method == "GET" and path == "/status" then
    reply(c, 200, cjson.encode(status))
  elseif method == "PUT" and path == "/fake/status" then
    for k, v in pairs(cjson.decode(body)) do status[k] = v end
    reply(c, 200, cjson.encode(status))
  elseif method == "POST" and path:match("^/fake/exit") then
    reply(c, 200, "{}")
    c:close()
    log("exiting on request")
    os.exit(tonumber(path:match("code=(%d+)")) or 0)
  else
    reply(c, 404, '{"error":"not_found"}')
  end
end

log("listening: peer %s http %s", me.peer, me.http)
while true do
  local sig = proc.caught()
  if sig and not fake.ignore_term then
    log("stopping on SIG%s", sig)
    http:close()
    peer:close()
    os.exit(fake.term_exit or 0)
  elseif sig then
    log("ignoring SIG%s", sig)
  end
  local ready = socket.select({ http, peer }, nil, 0.05)
  for _, s in ipairs(ready) do
    local c = s:accept()
    if c then
      if s == http then serve(c) end
      c:close()  -- peer connections: accepted and dropped
    end
  end
end
