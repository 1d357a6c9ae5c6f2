-- sandbox_cluster_spec.lua -- issue 8's attacks on the command sandbox,
-- posted to a real 3-node cluster: each fails with the budget error, a
-- follower's /health answers while it runs, and the replicas end equal.
-- The commands file is spec/sm/fixtures/cost.lua (`run` loads args.code).

local socket = require "socket"
local cjson = require "cjson"
local cluster = require "rafting.testing.cluster"
local H = require "spec.support.cluster_helper"

local ATTACKS = {
  [[return string.rep("", 1e9)]],
  [[return string.rep("", math.maxinteger)]],
  [[return table.move({}, 1, 1e8, 1)]],
  [[return table.move({}, 1, math.maxinteger, 1)]],
  [[return ("a"):rep(300):find(".-.-.-b")]],
  [[return ("a"):rep(300):match(".-.-.-b")]],
  [[return ("a"):rep(300):gsub(".-.-.-b", "")]],
  [[for _ in ("a"):rep(300):gmatch(".-.-.-b") do end]],
  [[return table.concat({}, "", 1, 1e9)]],
  [[return select("#", table.unpack({}, 1, 1e8))]],
  [[local s = ("x"):rep(1000):rep(1000) for i = 1, 100 do utf8.len(s) end]],
  [[local s = ("x"):rep(1000):rep(1000) for i = 1, 1000 do s:upper() end]],
}

-- POST without waiting for the answer; returns the socket.
local function post_async(c, id, path, body)
  local host, port = c.nodes[id].http:match("^(.+):(%d+)$")
  local s = assert(socket.connect(host, tonumber(port)))
  s:settimeout(10)
  assert(s:send(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" ..
                 "Content-Length: %d\r\nConnection: close\r\n\r\n%s"):format(path, #body, body)))
  return s
end

local function read_answer(s)
  local status = assert(s:receive("*l"))
  local len = 0
  repeat
    local line = assert(s:receive("*l"))
    local n = line:lower():match("^content%-length:%s*(%d+)")
    if n then len = tonumber(n) end
  until line == ""
  local body = len > 0 and assert(s:receive(len)) or ""
  s:close()
  return tonumber(status:match("^HTTP/1%.%d (%d+)")), body
end

-- Post the command, polling the follower's /health (each poll has a 1 s
-- deadline) until the answer arrives; returns code, body, polls.
local function post_while_polling(c, leader, follower, code_text)
  local s = post_async(c, leader, "/cmd/run", cjson.encode({ code = code_text }))
  local polls, deadline = 0, socket.gettime() + 10
  while true do
    local code, body = c:http(follower, "GET", "/health", nil, { timeout_ms = 1000 })
    assert(code == 200, ("follower %d /health during %q: %s %s")
           :format(follower, code_text, tostring(code), tostring(body)))
    polls = polls + 1
    local ready = socket.select({ s }, nil, 0.005)
    if ready[1] then break end
    assert(socket.gettime() < deadline, "no answer to " .. code_text)
  end
  local code, body = read_answer(s)
  return code, body, polls
end

local function dump(c, id)
  local code, body = c:http(id, "GET", "/kv?prefix=&limit=10000&stale")
  assert(code == 200, body)
  return body
end

describe("the sandbox on a real cluster", function()
  local c
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  it("fails every attack with the budget error, /health answering, replicas equal", function()
    c = H.start{ nodes = 3, commands = "spec/sm/fixtures/cost.lua" }
    local l = c:leader()
    local f = H.others(c, l)[1]
    -- garbage on one node only (queries run there alone)
    for _ = 1, 20 do
      local code = c:http(f, "GET", "/query/run?args=" ..
        cjson.encode({ code = "local t = {} for i = 1, 5000 do t[i] = {i} end return #t" })
        :gsub("[^%w]", function(ch) return ("%%%02X"):format(ch:byte()) end) .. "&stale")
      assert.equal(200, code)
    end
    for _, attack in ipairs(ATTACKS) do
      local t0 = socket.gettime()
      local code, body, polls = post_while_polling(c, l, f, attack)
      assert.equal(422, code, attack .. ": " .. body)
      assert.matches("instruction budget exceeded", body, 1, true)
      print(("\n%-60s %4.0f ms, %d /health polls"):format(attack, (socket.gettime() - t0) * 1000, polls))
    end
    -- the weak-table attack: a table made weak after setmetatable
    local weak = [[
      local mt = {}
      local t = setmetatable({}, mt)
      mt.__mode = "v"
      for i = 1, 2000 do t[i] = {} end
      for i = 1, 50000 do local g = { i } end
      local n = 0
      for _ in pairs(t) do n = n + 1 end
      kv.put("weak", tostring(n))
      return n]]
    local code, body = post_while_polling(c, l, f, weak)
    assert.equal(200, code, body)
    assert.equal(2000, cjson.decode(body).result)
    -- every replica applied everything and holds the same state
    local s = assert(c:status(l))
    for _, id in ipairs(c.ids) do c:wait_index(id, s.commit, nil, "applied") end
    local want = dump(c, l)
    assert.matches('"weak"', want, 1, true)
    for _, id in ipairs(c.ids) do assert.equal(want, dump(c, id), "node " .. id) end
  end)
end)
