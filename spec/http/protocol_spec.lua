-- protocol_spec.lua -- HTTP/1.1 over raw sockets against a real 3-node
-- cluster: every error status with its JSON body and headers, malformed
-- requests that leave the node healthy, limits and timeouts, keep-alive
-- and pipelining answered in order.

local cluster = require "rafting.testing.cluster"
local socket = require "socket"
local proc = require "rafting.proc"
local H = require "spec.support.http_helper"

local LIMITS = { request_timeout_ms = 1000, idle_timeout_ms = 1500,
                 max_body_bytes = 65536, max_url_bytes = 4096,
                 max_header_bytes = 8192 }

local function req(method, path, body, headers)
  return H.request_bytes(method, path, body, headers)
end

-- Every malformed request of the spec: name, bytes, status, error code.
local MALFORMED = {
  { "an unknown method", "FOO /health HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
  { "a lower-case method", "get /health HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
  { "a bad HTTP version", "GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 400 },
  { "an HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400 },
  { "a space in the target", "GET /kv/a b HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
  { "a control byte in the target", "GET /kv/a\1b HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
  { "a header without a colon", "GET /health HTTP/1.1\r\nHost x\r\n\r\n", 400 },
  { "a NUL in a header value", "GET /health HTTP/1.1\r\nHost: x\0y\r\n\r\n", 400 },
  { "bare LF line ends", "GET /health HTTP/1.1\nHost: x\n\n", 400 },
  { "a bad chunk size", "PUT /kv/m HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400 },
  { "chunk data without its CRLF", "PUT /kv/m HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", 400 },
  { "a chunk longer than its size", "PUT /kv/m HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n", 400 },
  { "Content-Length with Transfer-Encoding", "PUT /kv/m HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400 },
  { "a request line without an HTTP version", "GET /kv/x\r\n\r\n", 400 },
  { "Transfer-Encoding: gzip", "PUT /kv/m HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc", 501 },
  { "Transfer-Encoding: gzip, chunked", "PUT /kv/m HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501 },
  { "Transfer-Encoding twice (llhttp refuses it first)", "PUT /kv/m HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400 },
  { "two Content-Lengths", "PUT /kv/m HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400 },
  { "a non-numeric Content-Length", "PUT /kv/m HTTP/1.1\r\nHost: x\r\nContent-Length: 3x\r\n\r\nabc", 400 },
  { "a negative Content-Length", "PUT /kv/m HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nabc", 400 },
  { "a bad percent escape in the path", "GET /kv/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
  { "headers over max_header_bytes", "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " .. ("a"):rep(10000) .. "\r\n\r\n", 431 },
  { "too many headers", "GET /health HTTP/1.1\r\nHost: x\r\n" .. ("X-A: b\r\n"):rep(2000) .. "\r\n", 431 },
  { "a target over max_url_bytes", "GET /kv/" .. ("a"):rep(5000) .. " HTTP/1.1\r\nHost: x\r\n\r\n", 414 },
  { "a declared body over max_body_bytes", "PUT /kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n", 413 },
  { "a chunked body over max_body_bytes", "PUT /kv/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      ("8000\r\n" .. ("a"):rep(0x8000) .. "\r\n"):rep(3) .. "0\r\n\r\n", 413 },
}

local CODES = { [400] = "bad_request", [408] = "request_timeout", [413] = "body_too_large",
                [414] = "url_too_long", [431] = "headers_too_large",
                [501] = "not_implemented" }

describe("HTTP protocol and error answers (3 real nodes)", function()
  local c, leader

  setup(function()
    c = H.start{ nodes = 3, limits = LIMITS }
    leader = c:leader()
  end)
  teardown(function()
    H.shutdown(c)
    cluster.kill_all()
  end)

  -- The cluster works: every node healthy, a write through each commits
  -- and is read back on every node.
  local function assert_cluster_works(tag)
    c:wait_healthy()
    for _, id in ipairs(c.ids) do
      local v = tag .. " via " .. id
      H.put(c, id, "alive", v)
      for _, r in ipairs(c.ids) do
        local code, body = c:http(r, "GET", "/kv/alive")
        assert.equal(200, code, body)
        assert.equal(v, body)
      end
    end
  end

  for _, case in ipairs(MALFORMED) do
    it(("%s gets %d with a JSON error, and the connection closes"):format(case[1], case[3]), function()
      for _, id in ipairs(c.ids) do
        local code, body, hdrs, sock = H.raw(c, id, case[2])
        assert.equal(case[3], code, ("node %d: %s"):format(id, tostring(body)))
        assert.equal("application/json", hdrs["content-type"])
        assert.equal("close", hdrs["connection"])
        local e = H.decode(body)
        assert.equal(CODES[case[3]], e.error)
        assert.is_string(e.message)
        assert.is_true(H.closed_within(sock, 5000), "the connection stays open")
        sock:close()
      end
    end)
  end

  it("after every kind of malformed request each node stays healthy and the cluster still commits writes", function()
    for _, case in ipairs(MALFORMED) do
      for _, id in ipairs(c.ids) do
        local sock = H.connect(c, id)
        sock:send(case[2])
        sock:close() -- without reading the answer
      end
    end
    assert_cluster_works("after malformed")
  end)

  it("a body longer than its Content-Length: the declared bytes are the request, the rest is a malformed next request (400) and the connection closes", function()
    local sock = H.connect(c, leader)
    assert(sock:send("PUT /kv/cl HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcdefgh\r\n\r\n"))
    local code, body = H.read_response(sock)
    assert.equal(200, code, body)
    code, body = H.read_response(sock)
    assert.equal(400, code, body)
    assert.is_true(H.closed_within(sock, 5000))
    sock:close()
    code, body = c:http(leader, "GET", "/kv/cl")
    assert.equal(200, code)
    assert.equal("abc", body)
    assert_cluster_works("after an overlong body")
  end)

  it("a request that is not whole within request_timeout_ms gets 408 and a closed connection", function()
    for _, id in ipairs(c.ids) do
      local t0 = proc.now_ms()
      local code, body, hdrs, sock = H.raw(c, id, "PUT /kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", 5000)
      assert.equal(408, code, body)
      assert.equal("request_timeout", H.decode(body).error)
      assert.equal("close", hdrs.connection)
      assert.is_true(proc.now_ms() - t0 >= LIMITS.request_timeout_ms - 50)
      assert.is_true(H.closed_within(sock, 5000))
      sock:close()
    end
    assert.equal(404, (c:http(leader, "GET", "/kv/slow")))
  end)

  it("a client trickling one byte at a time does not hold a connection past request_timeout_ms (408)", function()
    local sock = H.connect(c, leader)
    local bytes = req("GET", "/health")
    local t0 = proc.now_ms()
    local answered = false
    for i = 1, #bytes - 1 do -- never the last byte
      assert(sock:send(bytes:sub(i, i)))
      -- wait up to 100 ms for the server to answer; it must before we finish
      local r = socket.select({ sock }, nil, 0.1)
      if r and #r > 0 then answered = true break end
    end
    assert.is_true(answered, "no answer while trickling")
    local code, body = H.read_response(sock)
    assert.equal(408, code, body)
    assert.is_true(proc.now_ms() - t0 < LIMITS.request_timeout_ms + 1000)
    assert.is_true(H.closed_within(sock, 5000))
    sock:close()
  end)

  it("an idle keep-alive connection is closed after idle_timeout_ms", function()
    local sock = H.connect(c, leader, 10000)
    assert(sock:send(req("GET", "/health")))
    local code = H.read_response(sock)
    assert.equal(200, code)
    local t0 = proc.now_ms()
    assert.is_true(H.closed_within(sock, 10 * LIMITS.idle_timeout_ms))
    assert.is_true(proc.now_ms() - t0 >= LIMITS.idle_timeout_ms - 100)
    sock:close()
  end)

  it("an unknown route answers 404 and a known route with the wrong method 405 with an Allow header", function()
    for _, id in ipairs(c.ids) do
      for _, p in ipairs{ "/", "/nope", "/kvx", "/health/x", "/cmd", "/query" } do
        local code, body = c:http(id, "GET", p)
        assert.equal(404, code, p)
        assert.equal("not_found", H.decode(body).error)
      end
      for _, m in ipairs{
        { "POST", "/kv/x", "GET, PUT, DELETE" }, { "PATCH", "/kv/x", "GET, PUT, DELETE" },
        { "OPTIONS", "/kv/x", "GET, PUT, DELETE" }, { "PUT", "/kv", "GET" },
        { "PUT", "/status", "GET" }, { "POST", "/health", "GET" },
        { "GET", "/cmd/incr", "POST" }, { "DELETE", "/cmd/incr", "POST" },
        { "POST", "/query/list", "GET" },
      } do
        local code, body, hdrs = c:http(id, m[1], m[2], m[1] == "GET" and nil or "")
        assert.equal(405, code, m[1] .. " " .. m[2])
        assert.equal(m[3], hdrs.allow, m[1] .. " " .. m[2])
        assert.equal("method_not_allowed", H.decode(body).error)
      end
    end
  end)

  it("API-level mistakes answer 400 or 404 and keep the connection open", function()
    local cases = {
      { "PUT", "/kv/", "x", 400, "bad_request" },       -- empty key
      { "GET", "/kv/", nil, 400, "bad_request" },
      { "DELETE", "/kv/", nil, 400, "bad_request" },
      { "GET", "/kv?limit=0", nil, 400, "bad_request" },
      { "GET", "/kv?limit=abc", nil, 400, "bad_request" },
      { "GET", "/kv?limit=10001", nil, 400, "bad_request" },
      { "GET", "/kv/never-written", nil, 404, "not_found" },
      { "POST", "/cmd/incr", "[1,", 400, "bad_request" },
      { "POST", "/cmd/nope", "{}", 404, "unknown_command" },
      { "POST", "/cmd/a/b", "{}", 404, "not_found" },
    }
    for _, id in ipairs(c.ids) do
      local sock = H.connect(c, id)
      for _, k in ipairs(cases) do
        assert(sock:send(req(k[1], k[2], k[3])))
        local code, body, hdrs = H.read_response(sock)
        assert.equal(k[4], code, ("%s %s on node %d: %s"):format(k[1], k[2], id, tostring(body)))
        assert.equal(k[5], H.decode(body).error)
        assert.is_nil(hdrs.connection)
      end
      sock:close()
    end
  end)

  it("a request that already went one hop is not forwarded again: a follower answers 503 with Retry-After", function()
    for _, f in ipairs(H.others(c, leader)) do
      local code, body, hdrs = c:http(f, "PUT", "/kv/hop", "x",
                                      { headers = { ["X-Rafting-Forwarded"] = "node-9" } })
      assert.equal(503, code, body)
      assert.equal("1", hdrs["retry-after"])
      assert.equal("not_leader", H.decode(body).error)
    end
    -- the leader serves it
    local code = c:http(leader, "PUT", "/kv/hop", "x",
                        { headers = { ["X-Rafting-Forwarded"] = "node-9" } })
    assert.equal(200, code)
  end)

  it("HEAD answers GET's status and headers without a body", function()
    H.put(c, leader, "headed", "12345")
    for _, id in ipairs(c.ids) do
      local sock = H.connect(c, id)
      assert(sock:send(req("HEAD", "/kv/headed") .. req("GET", "/health")))
      local code, body, hdrs = H.read_response(sock, true)
      assert.equal(200, code)
      assert.equal("5", hdrs["content-length"])
      assert.equal("", body)
      code, body = H.read_response(sock) -- the next answer is not eaten by HEAD's
      assert.equal(200, code)
      assert.equal('{"ok":true}\n', body)
      sock:close()
    end
  end)

  it("Expect: 100-continue gets an interim 100 and then the answer", function()
    local sock = H.connect(c, leader)
    assert(sock:send("PUT /kv/expect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"))
    local code = H.read_response(sock)
    assert.equal(100, code)
    assert(sock:send("hi"))
    local body
    code, body = H.read_response(sock)
    assert.equal(200, code, body)
    sock:close()
    local _, v = c:http(leader, "GET", "/kv/expect")
    assert.equal("hi", v)
  end)

  -- Pipelined requests on one connection, sent in odd-sized pieces, mixing
  -- answers that come at once (health, 404) with ones that wait for a
  -- commit or a ReadIndex round: the answers must come in request order.
  local function pipeline(id, tag)
    local pre = {}
    for i = 1, 20 do pre[i] = tag .. "-pre-" .. i H.put(c, leader, pre[i], "value " .. i) end
    local reqs, checks = {}, {}
    local function add(bytes, check) reqs[#reqs + 1] = bytes checks[#checks + 1] = check end
    local function ok_json(pred)
      return function(code, body)
        assert.equal(200, code, body)
        local v = H.decode(body)
        if pred then pred(v) end
      end
    end
    add(req("PUT", "/kv/" .. tag .. "-p1", "one"), ok_json(function(v) assert.is_true(v.result) end))
    add(req("GET", "/health"), function(code, body) assert.equal(200, code) assert.equal('{"ok":true}\n', body) end)
    add(req("GET", "/kv/" .. pre[1]), function(code, body) assert.equal(200, code) assert.equal("value 1", body) end)
    add(req("GET", "/nope"), function(code) assert.equal(404, code) end)
    add(req("POST", "/cmd/incr", '{"key":"' .. tag .. '-n","by":1}'), ok_json())
    add(req("PUT", "/kv/", "x"), function(code) assert.equal(400, code) end)
    add(req("POST", "/cmd/incr", '{"key":"' .. tag .. '-m","by":5}'), ok_json(function(v) assert.equal(5, v.result) end))
    add(req("GET", "/status"), ok_json(function(v) assert.equal(id, v.id) end))
    add(req("GET", "/kv?prefix=" .. H.enc(tag .. "-pre-1") .. "&limit=2"),
        ok_json(function(v) assert.equal(tag .. "-pre-1", v.items[1].key) assert.is_true(v.more) end))
    add(req("HEAD", "/health"), function(code, body) assert.equal(200, code) assert.equal("", body) end)
    for i = 1, 20 do
      add(req("GET", "/kv/" .. pre[i] .. (i % 2 == 0 and "?stale" or "")), function(code, body)
        assert.equal(200, code, body)
        assert.equal("value " .. i, body)
      end)
    end
    add(req("DELETE", "/kv/" .. tag .. "-p1", nil, { "Connection: close" }),
        ok_json(function(v) assert.is_true(v.result) end))
    -- settle so the ?stale reads of pre-i see them on followers too
    H.settle(c)
    local sock = H.connect(c, id, 10000)
    local all = table.concat(reqs)
    local pos, step = 1, 1
    while pos <= #all do -- pieces of 1, 7, 49, 343, ... bytes
      assert(sock:send(all:sub(pos, pos + step - 1)))
      pos = pos + step
      step = step * 7
    end
    for i, check in ipairs(checks) do
      local code, body = H.read_response(sock, reqs[i]:match("^HEAD"))
      assert(code, ("answer %d on node %d: %s"):format(i, id, tostring(body)))
      check(code, body)
    end
    assert.is_true(H.closed_within(sock, 5000), "Connection: close is honoured")
    sock:close()
    assert.equal(404, (c:http(leader, "GET", "/kv/" .. tag .. "-p1")))
  end

  it("pipelined requests on one keep-alive connection to the leader are answered in order", function()
    pipeline(leader, "lead")
  end)

  it("pipelined requests on one keep-alive connection to a follower (forwarded) are answered in order", function()
    pipeline(H.others(c, leader)[1], "fol")
  end)

  it("many sequential requests share one keep-alive connection", function()
    local sock = H.connect(c, H.others(c, leader)[1])
    for i = 1, 50 do
      assert(sock:send(req("PUT", "/kv/ka", tostring(i))))
      local code, body, hdrs = H.read_response(sock)
      assert.equal(200, code, body)
      assert.is_nil(hdrs.connection)
      assert(sock:send(req("GET", "/kv/ka")))
      code, body = H.read_response(sock)
      assert.equal(200, code)
      assert.equal(tostring(i), body)
    end
    sock:close()
  end)

  it("HTTP/1.0 closes after the answer unless it asks for keep-alive", function()
    local code, body, hdrs, sock = H.raw(c, leader, "GET /health HTTP/1.0\r\n\r\n")
    assert.equal(200, code, body)
    assert.equal("close", hdrs.connection)
    assert.is_true(H.closed_within(sock, 5000))
    sock:close()
    code, body, hdrs, sock = H.raw(c, leader, "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert.equal(200, code, body)
    assert.equal("keep-alive", hdrs.connection)
    assert(sock:send("GET /health HTTP/1.0\r\n\r\n"))
    code = H.read_response(sock)
    assert.equal(200, code)
    sock:close()
  end)

  it("after all of the above the cluster still commits and every node is healthy", function()
    assert_cluster_works("at the end")
  end)
end)

describe("HTTP connection limit (1 real node)", function()
  local c
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  it("a connection over max_connections gets 503 with Retry-After and is closed; a freed slot is reused", function()
    c = H.start{ nodes = 1, limits = { max_connections = 4 } }
    c:leader()
    local held = {}
    -- fill every slot: each holds a live keep-alive exchange
    c:wait_for(function()
      local sock = H.connect(c, 1)
      sock:send(req("GET", "/health"))
      local code = H.read_response(sock)
      if code == 200 then held[#held + 1] = sock else sock:close() end
      return #held == 4, ("%d held, last %s"):format(#held, tostring(code))
    end, 10000, "4 connections held")
    local code, body, hdrs, sock = H.raw(c, 1, req("GET", "/health"))
    assert.equal(503, code, body)
    assert.equal("too_many_connections", H.decode(body).error)
    assert.equal("1", hdrs["retry-after"])
    assert.is_true(H.closed_within(sock, 5000))
    sock:close()
    held[1]:close()
    c:wait_for(function()
      local s = H.connect(c, 1)
      s:send(req("GET", "/health", nil, { "Connection: close" }))
      local code2 = H.read_response(s)
      s:close()
      return code2 == 200, code2
    end, 5000, "a freed slot")
    for i = 2, #held do held[i]:close() end
  end)
end)
