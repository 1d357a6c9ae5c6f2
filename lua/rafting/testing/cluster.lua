--[[
rafting.testing.cluster -- start, fault and observe a local cluster of real
`rafting` processes, for busted specs and for users who write their own.

    local cluster = require "rafting.testing.cluster"
    local c = cluster.start{ nodes = 3 }
    local id, term = c:leader()
    c:kill(id)
    local id2, term2 = c:leader(nil, { above = term })
    c:shutdown()

A cluster owns a temporary directory holding its config and one log per
node, removed by shutdown().  Every pid it starts is recorded in a
process-wide registry (it survives busted reloading this module per file)
and appended to a pid file, so that cluster.kill_all() and the
spec/support/no_leftovers.lua check can find every node ever started.
Children also carry PR_SET_PDEATHSIG(SIGKILL) (see rafting.proc), so a
runner that dies takes its nodes with it.

Waiting is always on a condition with a deadline (wait_for); sleeps are
only the poll interval inside such loops.  See docs/harness.md.
]]

local proc = require "rafting.proc"
local socket = require "socket"
local cjson = require "cjson"

local M = {}

M.DEFAULT_TIMEOUT_MS = 10000  -- wait_for and friends
M.STOP_TIMEOUT_MS = 5000      -- SIGTERM -> exit, before SIGKILL
M.STATUS_TIMEOUT_MS = 500     -- one GET /status
M.HTTP_TIMEOUT_MS = 5000      -- one c:http() call
M.POLL_MS = 20                -- poll interval inside wait loops
M.LOG_TAIL_LINES = 6          -- per node, in timeout messages

-- Options of cluster.start() that are the harness's; any other key is
-- written into the generated config as is.
local HARNESS_KEYS = {
  nodes = true, binary = true, log_dir = true, log_level = true, wait = true,
  timeout_ms = true, env = true, keep = true, log_format = true, token = true,
}

-- -- process-wide registry ------------------------------------------------

local REG_KEY = "rafting.testing.cluster.registry"
local reg = debug.getregistry()[REG_KEY]
if not reg then
  reg = {
    pids = {},                                    -- pid -> { id=, dir= }
    clusters = setmetatable({}, { __mode = "k" }), -- live clusters
  }
  -- Last resort when the Lua state closes (busted exits with os.exit(c, true)).
  reg.sentinel = setmetatable({}, { __gc = function()
    for pid in pairs(reg.pids) do
      proc.kill(pid, "KILL")
      proc.wait(pid)
    end
  end })
  debug.getregistry()[REG_KEY] = reg
end

local function tmp_root()
  return os.getenv("RAFTING_TEST_TMP") or os.getenv("TMPDIR") or "/tmp"
end

-- The pid file: "pid starttime" per line, appended at every spawn.
M.pidfile = os.getenv("RAFTING_PIDFILE") or (tmp_root() .. "/rafting-harness.pids")

local function register(pid, c, id)
  reg.pids[pid] = { id = id, dir = c.dir }
  local f = io.open(M.pidfile, "a")
  if f then
    f:write(pid, " ", proc.starttime(pid) or 0, " node=", id, " ", c.dir, "\n")
    f:close()
  end
end

local function unregister(pid) reg.pids[pid] = nil end

-- -- small helpers ----------------------------------------------------------

local function now() return proc.now_ms() end

local function split_addr(addr)
  local host, port = addr:match("^%[(.+)%]:(%d+)$")
  if not host then host, port = addr:match("^(.+):(%d+)$") end
  if not host then error("cluster: bad address '" .. tostring(addr) .. "'", 3) end
  return host, tonumber(port)
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function cwd()
  local ok, lfs = pcall(require, "lfs")
  if ok and lfs.currentdir then return lfs.currentdir() end
  local p = assert(io.popen("pwd", "r"))
  local d = p:read("l")
  p:close()
  return assert(d, "cluster: cannot tell the working directory")
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  assert(f:close())
end

local function rm_rf(path)
  local ok, lfs = pcall(require, "lfs")
  if not ok then
    os.execute("rm -rf '" .. path:gsub("'", "'\\''") .. "'")
    return
  end
  local function rm(p)
    local attr = lfs.symlinkattributes(p)
    if not attr then return end
    if attr.mode == "directory" then
      for name in lfs.dir(p) do
        if name ~= "." and name ~= ".." then rm(p .. "/" .. name) end
      end
      lfs.rmdir(p)
    else
      os.remove(p)
    end
  end
  rm(path)
end

-- Lua source for a config value: sorted keys, so the file is reproducible.
local function serialize(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return string.format("%q", v)
  elseif t == "number" or t == "boolean" then return tostring(v)
  elseif t ~= "table" then error("cluster: cannot write a " .. t .. " into a config", 3) end
  local inner, out = indent .. "  ", {}
  local n = #v
  for i = 1, n do out[#out + 1] = inner .. serialize(v[i], inner) end
  local keys = {}
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local key = (type(k) == "string" and k:match("^[%a_][%w_]*$")) and k
                or "[" .. serialize(k) .. "]"
    out[#out + 1] = inner .. key .. " = " .. serialize(v[k], inner)
  end
  if #out == 0 then return "{}" end
  return "{\n" .. table.concat(out, ",\n") .. ",\n" .. indent .. "}"
end

-- cjson decodes JSON null as a sentinel and every number as a float; a
-- status wants plain nil and integer ids, terms and indexes.
local function normalize(v)
  if v == cjson.null then return nil end
  if type(v) == "number" then return math.tointeger(v) or v end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = normalize(x) end
  end
  return v
end

-- -- a minimal HTTP/1.1 client (one request per connection) ----------------

local function receive_chunked(sock)
  local parts = {}
  while true do
    local line, err = sock:receive("*l")
    if not line then return nil, err end
    local size = tonumber(line:match("^%x+"), 16)
    if not size then return nil, "bad chunk size" end
    if size == 0 then
      repeat line, err = sock:receive("*l") until not line or line == ""
      return table.concat(parts)
    end
    local data, e = sock:receive(size)
    if not data then return nil, e end
    parts[#parts + 1] = data
    sock:receive("*l")
  end
end

local function http_request(host, port, method, path, body, headers, timeout_ms)
  local sock = socket.tcp()
  sock:settimeout(timeout_ms / 1000, "t")  -- total, for the whole exchange
  local ok, err = sock:connect(host, port)
  if not ok then sock:close() return nil, "connect: " .. err end
  local req = { method .. " " .. path .. " HTTP/1.1",
                "Host: " .. host .. ":" .. port, "Connection: close" }
  if body then req[#req + 1] = "Content-Length: " .. #body end
  for k, v in pairs(headers or {}) do req[#req + 1] = k .. ": " .. v end
  ok, err = sock:send(table.concat(req, "\r\n") .. "\r\n\r\n" .. (body or ""))
  if not ok then sock:close() return nil, "send: " .. err end
  local line
  line, err = sock:receive("*l")
  local code = line and tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
  if not code then sock:close() return nil, "status line: " .. (err or line) end
  local hdrs = {}
  while true do
    line, err = sock:receive("*l")
    if not line then sock:close() return nil, "headers: " .. err end
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then hdrs[k:lower()] = v end
  end
  local data = ""
  if method ~= "HEAD" and code ~= 204 and code ~= 304 then
    local len = tonumber(hdrs["content-length"])
    if len == 0 then
      data = ""  -- receive(0) fails once the server has closed
    elseif len then
      data, err = sock:receive(len)
    elseif (hdrs["transfer-encoding"] or ""):lower():find("chunked") then
      data, err = receive_chunked(sock)
    else
      data, err = sock:receive("*a")
    end
  end
  sock:close()
  if not data then return nil, "body: " .. err end
  return code, data, hdrs
end

-- -- the cluster object ------------------------------------------------------

local C = {}
C.__index = C

local function live(n) return n.state == "running" or n.state == "paused" end

-- $RAFTING_BIN, else the source tree's build (specs run from its root),
-- else `rafting` from PATH (an installed harness).
local function default_binary()
  local bin = os.getenv("RAFTING_BIN")
  if bin and bin ~= "" then return bin end
  local f = io.open("./build/rafting", "rb")
  if f then f:close(); return "./build/rafting" end
  return "rafting"
end

local function new_cluster(opts)
  local binary = opts.binary or default_binary()
  local argv = type(binary) == "table" and { table.unpack(binary) } or { binary }
  if argv[1]:find("/") then
    local f = io.open(argv[1], "rb")
    if not f then
      error("cluster: rafting binary not found at " .. argv[1] ..
            " (build it, or set RAFTING_BIN or opts.binary)", 3)
    end
    f:close()
  end
  local dir = assert(proc.mkdtemp(tmp_root() .. "/rafting-cluster-"))
  local c = setmetatable({
    dir = dir, argv = argv, env = opts.env, token = opts.token,
    log_dir = opts.log_dir or dir,
    log_level = opts.log_level or "info",
    log_format = opts.log_format, -- nil: the config's log.format
    keep = opts.keep or os.getenv("RAFTING_KEEP_TMP") ~= nil,
    nodes = {}, ids = {}, observed = {},
  }, C)
  reg.clusters[c] = true
  return c
end

local function add_node(c, id, peer, http)
  local host, port = split_addr(http)
  c.nodes[id] = { id = id, peer = peer, http = http, host = host, port = port,
                  state = "new", starts = 0,
                  log = c.log_dir .. "/node" .. id .. ".log" }
  c.ids[#c.ids + 1] = id
  table.sort(c.ids)
end

local function start_all(c, opts)
  local ok, err = pcall(function()
    for _, id in ipairs(c.ids) do c:start_node(id, { wait = false }) end
    if opts.wait ~= false then c:wait_healthy(nil, opts.timeout_ms) end
  end)
  if not ok then
    c:shutdown()  -- never leave a half-started cluster behind
    error(err, 0)
  end
  return c
end

-- cluster.start{ nodes = N, binary = path|argv, timing = {...},
--   storage = "memory", log_dir = dir, log_level = "info", env = {...},
--   wait = true, timeout_ms = ..., <any other config field> }
function M.start(opts)
  opts = opts or {}
  local n = opts.nodes or 3
  local c = new_cluster(opts)
  local ports = { proc.free_port(2 * n) }
  local cfg = { cluster = "test-" .. c.dir:match("([^/]+)$"),
                nodes = {}, storage = "memory" }
  for k, v in pairs(opts) do
    if not HARNESS_KEYS[k] then cfg[k] = v end
  end
  -- A storage directory given relative lands in the cluster's temp dir.
  if cfg.storage ~= "memory" and not cfg.storage:find("^/") then
    cfg.storage = c.dir .. "/" .. cfg.storage
  end
  -- A commands script given relative is the caller's file, taken from the
  -- working directory (the config itself lives in the temp dir).
  if type(cfg.commands) == "string" and not cfg.commands:find("^/") then
    cfg.commands = cwd() .. "/" .. cfg.commands
  end
  for i = 1, n do
    local node = { id = i, peer = "127.0.0.1:" .. ports[2 * i - 1],
                   http = "127.0.0.1:" .. ports[2 * i] }
    cfg.nodes[i] = node
    add_node(c, i, node.peer, node.http)
  end
  c.config = cfg
  c.tls_ca = cfg.tls and cfg.tls.ca -- give tls paths absolute
  c.config_path = c.dir .. "/cluster.lua"
  write_file(c.config_path, "-- written by rafting.testing.cluster\nreturn "
             .. serialize(cfg) .. "\n")
  return start_all(c, opts)
end

-- cluster.from_config(path, opts): the nodes of an existing config file,
-- started unchanged (same ports, same storage).
function M.from_config(path, opts)
  opts = opts or {}
  local chunk, err = loadfile(path, "t", setmetatable({}, { __index = _G }))
  if not chunk then error("cluster: " .. err, 2) end
  local cfg = chunk()
  if type(cfg) ~= "table" or type(cfg.nodes) ~= "table" then
    error("cluster: " .. path .. " does not return a table with nodes", 2)
  end
  local c = new_cluster(opts)
  c.config, c.config_path = cfg, path
  if cfg.tls then -- tls paths are relative to the config file
    local ca = cfg.tls.ca
    c.tls_ca = ca:find("^/") and ca or (path:match("^(.*)/") or ".") .. "/" .. ca
  end
  for _, node in ipairs(cfg.nodes) do add_node(c, node.id, node.peer, node.http) end
  return start_all(c, opts)
end

function C:node(id)
  local n = self.nodes[id]
  if not n then error("cluster: no node " .. tostring(id), 3) end
  return n
end

-- ids of nodes whose process runs and is not paused
function C:running()
  local out = {}
  for _, id in ipairs(self.ids) do
    if self.nodes[id].state == "running" then out[#out + 1] = id end
  end
  return out
end

-- Notice nodes that exited on their own (reaping them).
function C:reap()
  for _, id in ipairs(self.ids) do
    local n = self.nodes[id]
    if live(n) then
      local how, code, name = proc.wait(n.pid, true)
      if how then
        unregister(n.pid)
        n.state, n.exit = "exited", { how = how, code = code, name = name }
      end
    end
  end
end

local function exit_str(e)
  if not e then return "?" end
  if e.how == "exited" then return "exit " .. e.code end
  return "signal " .. (e.name or e.code)
end

-- Poll waitpid until pid exits or the deadline passes; returns how, code, name.
local function reap_until(pid, deadline)
  while true do
    local how, code, name = proc.wait(pid, true)
    if how then return how, code, name end
    if now() >= deadline then return nil end
    proc.sleep_ms(math.min(M.POLL_MS, math.max(1, deadline - now())))
  end
end

function C:start_node(id, opts)
  opts = opts or {}
  local n = self:node(id)
  if live(n) then error("cluster: node " .. id .. " is already " .. n.state, 2) end
  local argv = { table.unpack(self.argv) }
  for _, a in ipairs{ "--config", self.config_path, "--node", tostring(id),
                      "--log-level", self.log_level } do
    argv[#argv + 1] = a
  end
  if self.log_format then
    argv[#argv + 1] = "--log-format"
    argv[#argv + 1] = self.log_format
  end
  -- a node added with add_node: its addresses and --join on the first
  -- start only; later it finds them in its data directory
  for _, a in ipairs(n.starts == 0 and n.join_args or {}) do
    argv[#argv + 1] = a
  end
  n.starts = n.starts + 1
  local f = io.open(n.log, "a")
  if f then
    f:write(("== harness: start #%d of node %d ==\n"):format(n.starts, id))
    f:close()
  end
  local pid, err = proc.spawn{ argv = argv, stdout = n.log, stderr = n.log,
                               env = self.env }
  if not pid then error("cluster: cannot start node " .. id .. ": " .. err, 2) end
  register(pid, self, id)
  n.pid, n.state, n.exit = pid, "running", nil
  if opts.wait ~= false then self:wait_healthy({ id }, opts.timeout_ms) end
  return pid
end

-- Wait until every node in ids (default: all running) answers GET /health
-- with 200; a node that exits meanwhile fails at once, with its log.
function C:wait_healthy(ids, timeout_ms)
  ids = ids or self:running()
  return self:wait_for(function()
    for _, id in ipairs(ids) do
      local n = self.nodes[id]
      if n.state == "exited" then
        error(self:describe(("node %d exited while starting (%s)")
                            :format(id, exit_str(n.exit))), 0)
      end
      local code, body = self:http(id, "GET", "/health", nil,
                                   { timeout_ms = M.STATUS_TIMEOUT_MS })
      if code ~= 200 then
        return false, ("node %d /health: %s"):format(id, code or body)
      end
    end
    return true
  end, timeout_ms, "nodes " .. table.concat(ids, ",") .. " healthy")
end

function C:kill(id)
  local n = self:node(id)
  if not live(n) then error("cluster: node " .. id .. " is not running (" .. n.state .. ")", 2) end
  proc.kill(n.pid, "KILL")
  local how, code, name = reap_until(n.pid, now() + M.STOP_TIMEOUT_MS)
  if not how then error("cluster: node " .. id .. " survived SIGKILL", 2) end
  unregister(n.pid)
  n.state, n.exit = "killed", { how = how, code = code, name = name }
end

-- SIGTERM, then the node must exit 0 within timeout_ms (else SIGKILL and
-- an error).
function C:stop(id, timeout_ms)
  local n = self:node(id)
  if not live(n) then error("cluster: node " .. id .. " is not running (" .. n.state .. ")", 2) end
  if n.state == "paused" then proc.kill(n.pid, "CONT") end
  proc.kill(n.pid, "TERM")
  timeout_ms = timeout_ms or M.STOP_TIMEOUT_MS
  local how, code, name = reap_until(n.pid, now() + timeout_ms)
  if not how then
    proc.kill(n.pid, "KILL")
    how, code, name = reap_until(n.pid, now() + M.STOP_TIMEOUT_MS)
    unregister(n.pid)
    n.state, n.exit = "killed", { how = how, code = code, name = name }
    error(self:describe(("node %d did not exit within %d ms of SIGTERM; killed it")
                        :format(id, timeout_ms)), 2)
  end
  unregister(n.pid)
  n.exit = { how = how, code = code, name = name }
  if how ~= "exited" or code ~= 0 then
    n.state = "exited"
    error(self:describe(("node %d stopped with %s, want exit 0")
                        :format(id, exit_str(n.exit))), 2)
  end
  n.state = "stopped"
  return true
end

-- Wait (bounded) until /proc shows the process in the wanted state class.
local function wait_state(self, n, stopped, what)
  self:wait_for(function()
    local st = proc.state(n.pid)
    return st == nil or (st == "T") == stopped
  end, M.STOP_TIMEOUT_MS, what)
end

function C:pause(id)
  local n = self:node(id)
  if n.state ~= "running" then error("cluster: node " .. id .. " is " .. n.state .. ", cannot pause", 2) end
  assert(proc.kill(n.pid, "STOP"))
  n.state = "paused"
  wait_state(self, n, true, "node " .. id .. " stopped by SIGSTOP")
end

function C:resume(id)
  local n = self:node(id)
  if n.state ~= "paused" then error("cluster: node " .. id .. " is " .. n.state .. ", cannot resume", 2) end
  assert(proc.kill(n.pid, "CONT"))
  n.state = "running"
  wait_state(self, n, false, "node " .. id .. " continued by SIGCONT")
end

-- restart(id, { kill = true, wait = true }): stop (SIGTERM, or SIGKILL with
-- kill = true) if it runs, then start it again with the same config.
function C:restart(id, opts)
  opts = opts or {}
  local n = self:node(id)
  if live(n) then
    if opts.kill then self:kill(id) else self:stop(id) end
  end
  return self:start_node(id, opts)
end

-- c:http(id, method, path, body, { headers =, timeout_ms = })
--   -> code, body, headers | nil, err
-- Without opts.headers, a cluster started with token = T sends
-- "Authorization: Bearer T" (so status and waits work under auth).
function C:http(id, method, path, body, opts)
  opts = opts or {}
  local n = self:node(id)
  local headers = opts.headers
  if headers == nil and self.token then
    headers = { Authorization = "Bearer " .. self.token }
  end
  if self.tls_ca then -- a tls config: HTTPS only (rafting.testing.https)
    return require("rafting.testing.https").request(n.host, n.port, method,
      path, body, { ca = self.tls_ca, headers = headers,
                    timeout_ms = opts.timeout_ms or M.HTTP_TIMEOUT_MS })
  end
  return http_request(n.host, n.port, method, path, body, headers,
                      opts.timeout_ms or M.HTTP_TIMEOUT_MS)
end

-- c:members(id) -> the decoded GET /cluster of node id (default: the
-- first running node), or nil, err.
function C:members(id)
  id = id or self:running()[1]
  local code, body = self:http(id, "GET", "/cluster")
  if code ~= 200 then return nil, ("GET /cluster on node %s: %s %s"):format(id, code, body) end
  return cjson.decode(body)
end

-- Send method path body to the leader until it answers something other
-- than 503 (no leader, leadership moved) or 409 (busy, when retry_busy):
-- code, decoded body.
function C:to_leader(method, path, body, retry_busy, timeout_ms, what)
  return self:wait_for(function()
    local l = self:agreed_leader(self:members_running())
    if not l then return false, "no leader" end
    local code, data = self:http(l, method, path, body)
    if not code then return false, data end
    if code == 503 or (retry_busy and code == 409) then
      return false, ("%s %s: %d %s"):format(method, path, code, data)
    end
    local ok, t = pcall(cjson.decode, data)
    return code, ok and t or data
  end, timeout_ms, what or (method .. " " .. path .. " answered by the leader"))
end

-- Running nodes that are members (a node still joining knows no leader).
function C:members_running()
  local out = {}
  for _, id in ipairs(self:running()) do
    if not self.nodes[id].joining then out[#out + 1] = id end
  end
  return out
end

-- c:add_node([{ voter = true, timeout_ms }]) -> id: a fresh node (the next
-- id, new ports, empty data) started with --join, added as a learner,
-- caught up, then promoted (unless voter = false).
function C:add_node(opts)
  opts = opts or {}
  local id = 0
  for _, k in ipairs(self.ids) do id = math.max(id, k) end
  id = id + 1
  local pp, hp = proc.free_port(2)
  local peer, http = "127.0.0.1:" .. pp, "127.0.0.1:" .. hp
  add_node(self, id, peer, http)
  local n = self.nodes[id]
  n.join_args = { "--peer", peer, "--http", http, "--join" }
  n.joining = true
  self:start_node(id, { timeout_ms = opts.timeout_ms })
  local code, body = self:to_leader("POST", "/cluster/members",
    cjson.encode({ id = id, peer = peer, http = http }), true, opts.timeout_ms,
    "node " .. id .. " added as a learner")
  if code ~= 200 then
    error(self:describe(("adding node %d: %s %s"):format(id, code,
                        cjson.encode(body))), 2)
  end
  n.joining = nil
  self:wait_for(function()
    local s = self:status(id)
    return s and s.applied >= body.index and s.leader ~= nil,
           s and ("applied " .. s.applied) or "no status"
  end, opts.timeout_ms, "learner " .. id .. " to catch up")
  if opts.voter == false then return id end
  self:promote(id, opts.timeout_ms)
  return id
end

-- c:promote(id) -> 200, body once the learner is a voter (retries while the
-- leader says it is behind or busy).
function C:promote(id, timeout_ms)
  local code, body = self:to_leader("POST", "/cluster/members/" .. id ..
    "/promote", "", true, timeout_ms, "learner " .. id .. " promoted")
  if code ~= 200 then
    error(self:describe(("promoting node %d: %s %s"):format(id, code,
                        cjson.encode(body))), 2)
  end
  return code, body
end

-- c:remove_node(id [, timeout_ms]) -> the change's index: DELETE
-- /cluster/members/{id} on the leader; if the node runs, waits until it
-- exits (0) on its own.
function C:remove_node(id, timeout_ms)
  local code, body = self:to_leader("DELETE", "/cluster/members/" .. id, nil,
    true, timeout_ms, "node " .. id .. " removed")
  if code ~= 200 then
    error(self:describe(("removing node %d: %s %s"):format(id, code,
                        cjson.encode(body))), 2)
  end
  local n = self:node(id)
  if live(n) then
    self:wait_for(function()
      self:reap()
      return n.state == "exited", n.state
    end, timeout_ms, "removed node " .. id .. " to exit")
  end
  return body.index
end

-- c:transfer(to, via) -> status, decoded body: POST /cluster/leader
-- {"id": to} (to nil: an empty body, the leader picks) sent to node via
-- (default: the current leader).  200 means node `to` leads.
function C:transfer(to, via)
  via = via or self:leader()
  local body = to and cjson.encode({ id = to }) or ""
  local code, data = self:http(via, "POST", "/cluster/leader", body)
  if not code then return nil, data end
  local ok, t = pcall(cjson.decode, data)
  return code, ok and t or data
end

-- c:status(id) -> the decoded /status table, or nil, err.  Every answer is
-- remembered for the message of a timed out wait.
function C:status(id, timeout_ms)
  local n = self:node(id)
  local st, err
  if not live(n) then
    err = n.state
  else
    local code, body = self:http(id, "GET", "/status", nil,
                                 { timeout_ms = timeout_ms or M.STATUS_TIMEOUT_MS })
    if code == 200 then
      local ok, v = pcall(cjson.decode, body)
      if ok and type(v) == "table" then st = normalize(v)
      else err = "bad JSON: " .. tostring(body):sub(1, 200) end
    else
      err = code and ("HTTP " .. code) or body
    end
  end
  self.observed[id] = { at = now(), status = st, err = err }
  return st, err
end

-- statuses() -> { [id] = status } for every running node that answered
function C:statuses()
  local out = {}
  for _, id in ipairs(self:running()) do out[id] = self:status(id) end
  return out
end

function C:log(id)
  return read_file(self:node(id).log) or ""
end

local function status_str(s)
  if not s then return "-" end
  local peers = {}
  for _, p in ipairs(s.peers or {}) do
    peers[#peers + 1] = ("%s%s%s"):format(p.id, p.match and (":" .. p.match) or "",
                                           p.connected == false and "!" or "")
  end
  return ("role=%s term=%s leader=%s commit=%s applied=%s last=%s peers=[%s]")
    :format(s.role, s.term, s.leader, s.commit, s.applied, s.last_index,
            table.concat(peers, " "))
end

-- A report of every node: state, pid, last observed status, log tail.
function C:describe(headline)
  local out = { "cluster: " .. headline, "  dir: " .. self.dir }
  for _, id in ipairs(self.ids) do
    local n, o = self.nodes[id], self.observed[id]
    local state = n.state .. (n.pid and (" pid " .. n.pid) or "")
    if n.exit then state = state .. ", " .. exit_str(n.exit) end
    local seen = o and (o.status and status_str(o.status) or ("unreachable: " .. tostring(o.err)))
                 or "never observed"
    if o then seen = seen .. (" (%d ms ago)"):format(now() - o.at) end
    out[#out + 1] = ("  node %d [%s]: %s"):format(id, state, seen)
    local lines = {}
    for line in (self:log(id)):gmatch("[^\n]+") do lines[#lines + 1] = line end
    for i = math.max(1, #lines - M.LOG_TAIL_LINES + 1), #lines do
      out[#out + 1] = "      | " .. lines[i]
    end
  end
  return table.concat(out, "\n")
end

-- c:wait_for(fn, timeout_ms, what): call fn(c) until it returns a true
-- value (then return all it returned) or the deadline passes (then raise,
-- naming what, fn's last second result as the reason, and describe()).
function C:wait_for(fn, timeout_ms, what)
  timeout_ms = timeout_ms or M.DEFAULT_TIMEOUT_MS
  local deadline = now() + timeout_ms
  while true do
    self:reap()
    local r = table.pack(fn(self))
    if r[1] then return table.unpack(r, 1, r.n) end
    local left = deadline - now()
    if left <= 0 then
      local why = r[2] and ("\n  last: " .. tostring(r[2])) or ""
      error(self:describe(("timed out after %d ms waiting for %s%s")
                          :format(timeout_ms, what or "a condition", why)), 2)
    end
    proc.sleep_ms(math.min(M.POLL_MS, left))
  end
end

-- cluster.wait_until(fn, timeout_ms, what): wait_for without a cluster,
-- for conditions on plain processes.
function M.wait_until(fn, timeout_ms, what)
  timeout_ms = timeout_ms or M.DEFAULT_TIMEOUT_MS
  local deadline = now() + timeout_ms
  while true do
    local r = table.pack(fn())
    if r[1] then return table.unpack(r, 1, r.n) end
    local left = deadline - now()
    if left <= 0 then
      error(("timed out after %d ms waiting for %s%s"):format(timeout_ms,
            what or "a condition", r[2] and (": " .. tostring(r[2])) or ""), 2)
    end
    proc.sleep_ms(math.min(M.POLL_MS, left))
  end
end

-- c:holds(fn, duration_ms, what): fn(c) must stay true at every poll for
-- the whole duration (a safety property over a window, not a sync).
function C:holds(fn, duration_ms, what)
  local start = now()
  local deadline = start + duration_ms
  repeat
    self:reap()
    local ok, why = fn(self)
    if not ok then
      error(self:describe(("%s broke after %d ms%s"):format(what or "condition",
            now() - start, why and (": " .. tostring(why)) or "")), 2)
    end
    proc.sleep_ms(math.min(M.POLL_MS, math.max(0, deadline - now())))
  until now() >= deadline
  return true
end

-- The leader every node in ids agrees on: exactly one says leader, every
-- other names it and has its term.  Returns id, term or false, reason.
function C:agreed_leader(ids, above)
  ids = ids or self:running()
  if #ids == 0 then return false, "no running node" end
  local st = {}
  local lead
  for _, id in ipairs(ids) do
    local s, err = self:status(id)
    if not s then return false, ("node %d unreachable: %s"):format(id, err) end
    st[id] = s
    if s.role == "leader" then
      if lead then return false, ("nodes %d and %d both say leader"):format(lead, id) end
      lead = id
    end
  end
  if not lead then return false, "no node says leader" end
  local term = st[lead].term
  for _, id in ipairs(ids) do
    if st[id].leader ~= lead or st[id].term ~= term then
      return false, ("node %d: leader=%s term=%s, leader node %d is in term %s")
                    :format(id, st[id].leader, st[id].term, lead, term)
    end
  end
  if above and term <= above then
    return false, ("leader %d in term %d, want a term above %d"):format(lead, term, above)
  end
  return lead, term
end

-- c:leader(timeout_ms, { above = term, among = {ids} }) -> id, term
function C:leader(timeout_ms, opts)
  opts = opts or {}
  return self:wait_for(function()
    return self:agreed_leader(opts.among, opts.above)
  end, timeout_ms, "one leader all running nodes agree on" ..
     (opts.above and (" in a term above " .. opts.above) or ""))
end

-- c:wait_term_above(term, timeout_ms, ids) -> the lowest term seen, once
-- every node in ids (default: running) reports a term above term
function C:wait_term_above(term, timeout_ms, ids)
  return self:wait_for(function()
    local low
    for _, id in ipairs(ids or self:running()) do
      local s, err = self:status(id)
      if not s then return false, ("node %d: %s"):format(id, err) end
      if s.term <= term then return false, ("node %d in term %d"):format(id, s.term) end
      low = math.min(low or s.term, s.term)
    end
    return low or false, "no running node"
  end, timeout_ms, "term above " .. term)
end

-- c:wait_index(id, idx, timeout_ms, field) -> status, once node id's
-- status[field] (default "commit") and its last_index reach idx
function C:wait_index(id, idx, timeout_ms, field)
  field = field or "commit"
  return self:wait_for(function()
    local s, err = self:status(id)
    if not s then return false, err end
    if s[field] >= idx and s.last_index >= idx then return s end
    return false, ("node %d: %s=%d last_index=%d"):format(id, field, s[field], s.last_index)
  end, timeout_ms, ("node %d %s >= %d"):format(id, field, idx))
end

-- Stop every node: SIGCONT the paused, SIGTERM all at once, SIGKILL what
-- is left after timeout_ms, reap all, remove the temp dir (unless keep).
-- Returns true, or false and a list of nodes that did not exit 0.
-- Idempotent; opts.force skips SIGTERM.
function C:shutdown(opts)
  opts = opts or {}
  local bad = {}
  local pending = {}
  for _, id in ipairs(self.ids) do
    local n = self.nodes[id]
    if live(n) then
      if opts.force then
        proc.kill(n.pid, "KILL")
      else
        if n.state == "paused" then proc.kill(n.pid, "CONT") end
        proc.kill(n.pid, "TERM")
      end
      pending[#pending + 1] = n
    end
  end
  local deadline = now() + (opts.timeout_ms or M.STOP_TIMEOUT_MS)
  for _, n in ipairs(pending) do
    local how, code, name = reap_until(n.pid, deadline)
    if not how then
      proc.kill(n.pid, "KILL")
      how, code, name = reap_until(n.pid, now() + M.STOP_TIMEOUT_MS)
      bad[#bad + 1] = ("node %d: killed after SIGTERM timed out"):format(n.id)
    elseif not opts.force and (how ~= "exited" or code ~= 0) then
      bad[#bad + 1] = ("node %d: %s"):format(n.id, exit_str{ how = how, code = code, name = name })
    end
    if how then unregister(n.pid) end
    n.state, n.exit = "stopped", { how = how, code = code, name = name }
  end
  if not self.keep and not self.removed then
    rm_rf(self.dir)
    self.removed = true
  end
  reg.clusters[self] = nil
  if #bad > 0 then return false, bad end
  return true
end

C.__close = function(self) self:shutdown() end
-- Dropped without shutdown: kill, do not wait for a graceful exit.
C.__gc = function(self) if not self.removed then self:shutdown{ force = true } end end

-- SIGKILL every node any cluster of this process started; for busted
-- teardown()/finally().  Returns how many processes were killed.
function M.kill_all()
  local count = 0
  local cs = {}
  for c in pairs(reg.clusters) do cs[#cs + 1] = c end
  for _, c in ipairs(cs) do
    for _, n in pairs(c.nodes) do if live(n) then count = count + 1 end end
    c:shutdown{ force = true }
  end
  -- pids whose cluster object is gone (module reloaded, or collected)
  for pid in pairs(reg.pids) do
    if proc.kill(pid, "KILL") then count = count + 1 end
    reap_until(pid, now() + M.STOP_TIMEOUT_MS)
    unregister(pid)
  end
  return count
end

-- -- helper processes ------------------------------------------------------

-- cluster.spawn{ argv = {...}, stdout =, stderr =, env =, cwd = } -> pid:
-- a process that is not a node (a load generator, a second rafting on a
-- node's data directory), recorded like a node: in the pid file, killed by
-- kill_all() and by the kernel if the runner dies.  Reap it with
-- cluster.wait_pid().
function M.spawn(opts)
  local pid, err = proc.spawn(opts)
  if not pid then return nil, err end
  reg.pids[pid] = { id = "helper", dir = "-" }
  local f = io.open(M.pidfile, "a")
  if f then
    f:write(pid, " ", proc.starttime(pid) or 0, " helper ", tostring(opts.argv[1]), "\n")
    f:close()
  end
  return pid
end

-- cluster.wait_pid(pid, timeout_ms) -> how, code, name: wait (deadline)
-- for a process from cluster.spawn to exit; past the deadline SIGKILL it,
-- and return nil, "killed after N ms" (the caller decides if that fails).
function M.wait_pid(pid, timeout_ms)
  timeout_ms = timeout_ms or M.STOP_TIMEOUT_MS
  local how, code, name = reap_until(pid, now() + timeout_ms)
  if not how then
    proc.kill(pid, "KILL")
    reap_until(pid, now() + M.STOP_TIMEOUT_MS)
    unregister(pid)
    return nil, ("killed after %d ms"):format(timeout_ms)
  end
  unregister(pid)
  return how, code, name
end

-- pids started by this process and not yet reaped
function M.live_pids()
  local out = {}
  for pid in pairs(reg.pids) do out[#out + 1] = pid end
  table.sort(out)
  return out
end

M.http_request = http_request
M.serialize = serialize

return M
