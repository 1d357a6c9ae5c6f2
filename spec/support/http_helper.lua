-- http_helper.lua -- what the spec/http/ specs share: a cluster with the
-- example command script, URL encoding, JSON, a raw-socket HTTP/1.1 client
-- (for malformed requests and pipelining) and a driver that runs several
-- clients truly concurrently (non-blocking sockets multiplexed by select).

local cluster = require "rafting.testing.cluster"
local socket = require "socket"
local cjson = require "cjson"
local proc = require "rafting.proc"
local CH = require "spec.support.cluster_helper"

local H = {}

H.TIMING = CH.TIMING
H.ELECTION_MS = CH.ELECTION_MS
H.COMMANDS = "config/commands/examples.lua" -- the harness makes it absolute
H.others = CH.others
H.shutdown = CH.shutdown

-- A 3-node cluster (by default) running the example command script.
function H.start(opts)
  opts = opts or {}
  opts.timing = opts.timing or H.TIMING
  opts.commands = opts.commands or H.COMMANDS
  return cluster.start(opts)
end

-- Percent-encode every byte but the unreserved ones (RFC 3986).
function H.enc(s)
  return (s:gsub("[^%w%-%._~]", function(ch)
    return ("%%%02X"):format(ch:byte())
  end))
end

function H.decode(body)
  local ok, v = pcall(cjson.decode, body)
  if not ok then error("not JSON: " .. tostring(body):sub(1, 300), 2) end
  return v
end

-- A printable form of a byte string, for messages.
function H.show(s)
  if s == nil then return "nil" end
  return '"' .. tostring(s):gsub("[^\32-\126]", function(ch)
    return ("\\x%02x"):format(ch:byte())
  end) .. '"'
end

function H.kv_path(key, flags)
  return "/kv/" .. H.enc(key) .. (flags and ("?" .. flags) or "")
end

function H.cmd(c, id, name, args, opts)
  return c:http(id, "POST", "/cmd/" .. name, cjson.encode(args), opts)
end

function H.query_path(name, args, stale)
  return "/query/" .. name .. "?args=" .. H.enc(cjson.encode(args)) ..
         (stale and "&stale" or "")
end

-- PUT that must succeed; returns the decoded answer.
function H.put(c, id, key, value)
  local code, body = c:http(id, "PUT", H.kv_path(key), value)
  assert(code == 200, ("PUT %s on node %d: %s %s"):format(H.show(key), id,
         tostring(code), tostring(body)))
  return H.decode(body)
end

-- The leader's commit index, once every running node applied it.
function H.settle(c)
  local l = c:leader()
  local s = assert(c:status(l))
  for _, id in ipairs(c:running()) do
    c:wait_index(id, s.commit, nil, "applied")
  end
  return s.commit, l
end

-- -- raw sockets ------------------------------------------------------------

-- A blocking connection to node id; every call has a deadline.
function H.connect(c, id, timeout_ms)
  local n = c.nodes[id]
  local sock = socket.tcp()
  sock:settimeout((timeout_ms or 5000) / 1000)
  assert(sock:connect(n.host, n.port))
  return sock
end

-- One HTTP/1.1 response from sock (Content-Length framed, or up to EOF):
-- code, body, headers (names lower-case) or nil, err.
function H.read_response(sock, head)
  local line, err = sock:receive("*l")
  if not line then return nil, err end
  local code = tonumber(line:match("^HTTP/1%.%d (%d%d%d) "))
  if not code then return nil, "bad status line: " .. line end
  local hdrs = {}
  while true do
    line, err = sock:receive("*l")
    if not line then return nil, "headers: " .. err end
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then hdrs[k:lower()] = v end
  end
  local body = ""
  local len = tonumber(hdrs["content-length"])
  if head or code == 204 or code == 304 or code < 200 or len == 0 then
    body = ""
  elseif len then
    body, err = sock:receive(len)
    if not body then return nil, "body: " .. err end
  else
    body, err = sock:receive("*a")
    if not body then return nil, "body: " .. err end
  end
  return code, body, hdrs
end

-- Whether the server closed sock (EOF) within timeout_ms; data it sent
-- first is returned as the second result.
function H.closed_within(sock, timeout_ms)
  sock:settimeout(timeout_ms / 1000)
  local data, err, partial = sock:receive("*a")
  if data then return true, data end
  return err == "closed", partial
end

-- Send raw bytes to node id on a fresh connection and read one answer.
function H.raw(c, id, bytes, timeout_ms)
  local sock = H.connect(c, id, timeout_ms)
  assert(sock:send(bytes))
  local code, body, hdrs = H.read_response(sock)
  return code, body, hdrs, sock
end

function H.request_bytes(method, path, body, headers)
  local out = { method .. " " .. path .. " HTTP/1.1", "Host: test" }
  if body then out[#out + 1] = "Content-Length: " .. #body end
  for _, h in ipairs(headers or {}) do out[#out + 1] = h end
  return table.concat(out, "\r\n") .. "\r\n\r\n" .. (body or "")
end

-- -- concurrent clients -----------------------------------------------------

-- H.concurrent(c, fns, timeout_ms): run each fn(client, i) as a coroutine.
-- client:request(id, method, path [, body]) sends a request on its own
-- non-blocking connection and yields until the whole answer is in, so the
-- requests of all clients are in flight at once.  Returns a list with what
-- each fn returned (table.pack'ed), and the most requests that were in
-- flight together.  Raises on the deadline, naming the pending requests.
function H.concurrent(c, fns, timeout_ms)
  timeout_ms = timeout_ms or 30000
  local deadline = proc.now_ms() + timeout_ms
  local ops = {}      -- socket -> op
  local results = {}

  local function parse(op, data)
    local head, body = data:match("^(.-)\r\n\r\n(.*)$")
    if not head then return nil, "incomplete answer: " .. H.show(data:sub(1, 200)) end
    local code = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
    local hdrs = {}
    for k, v in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]-)%s*%f[\r\n]") do
      hdrs[k:lower()] = v
    end
    local len = tonumber(hdrs["content-length"])
    if len and #body ~= len then
      return nil, ("body of %d bytes, Content-Length %d"):format(#body, len)
    end
    return code, body, hdrs
  end

  local function resume(co, ...)
    local ok, req = coroutine.resume(co, ...)
    if not ok then error(req, 0) end
    if coroutine.status(co) == "dead" then return end
    -- req = { id, method, path, body }
    local n = c.nodes[req[1]]
    local sock = socket.tcp()
    sock:settimeout(0)
    local r, err = sock:connect(n.host, n.port)
    if not r and err ~= "timeout" and err ~= "Operation already in progress" then
      sock:close()
      return resume(co, nil, "connect: " .. err)
    end
    local out = { req[2] .. " " .. req[3] .. " HTTP/1.1", "Host: test",
                  "Connection: close" }
    if req[4] then out[#out + 1] = "Content-Length: " .. #req[4] end
    ops[sock] = { co = co, sock = sock, req = req, sent = 0, data = {},
                  out = table.concat(out, "\r\n") .. "\r\n\r\n" .. (req[4] or "") }
  end

  local client_mt = { __index = {
    request = function(_, id, method, path, body)
      return coroutine.yield({ id, method, path, body })
    end,
  } }
  for i, fn in ipairs(fns) do
    local co = coroutine.create(function()
      results[i] = table.pack(fn(setmetatable({ i = i }, client_mt), i))
    end)
    resume(co)
  end

  local inflight, most = 0, 0
  while next(ops) do
    inflight = 0
    for _ in pairs(ops) do inflight = inflight + 1 end
    if inflight > most then most = inflight end
    local left = deadline - proc.now_ms()
    if left <= 0 then
      local pending = {}
      for _, op in pairs(ops) do
        pending[#pending + 1] = op.req[2] .. " " .. op.req[3] .. " on node " .. op.req[1]
        op.sock:close()
      end
      error(("concurrent clients: timed out after %d ms; pending: %s")
            :format(timeout_ms, table.concat(pending, ", ")), 2)
    end
    local rd, wr = {}, {}
    for sock, op in pairs(ops) do
      if op.sent < #op.out then wr[#wr + 1] = sock else rd[#rd + 1] = sock end
    end
    local readable, writable = socket.select(rd, wr, math.min(left, 200) / 1000)
    for _, sock in ipairs(writable or {}) do
      local op = ops[sock]
      local i, err, partial = sock:send(op.out, op.sent + 1)
      if i then op.sent = i
      elseif err == "timeout" then op.sent = partial or op.sent
      else
        ops[sock] = nil
        sock:close()
        resume(op.co, nil, "send: " .. err)
      end
    end
    for _, sock in ipairs(readable or {}) do
      local op = ops[sock]
      if op then
        local data, err, partial = sock:receive("*a")
        if data then op.data[#op.data + 1] = data end
        if partial and partial ~= "" then op.data[#op.data + 1] = partial end
        if data or err == "closed" then
          ops[sock] = nil
          sock:close()
          resume(op.co, parse(op, table.concat(op.data)))
        elseif err ~= "timeout" then
          ops[sock] = nil
          sock:close()
          resume(op.co, nil, "receive: " .. err)
        end
      end
    end
  end
  return results, most
end

return H
