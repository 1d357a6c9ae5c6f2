-- auth_spec.lua -- bearer tokens on a real 3-node cluster: the 200/401/403
-- matrix (no header, wrong scheme, unknown token, each role on each route
-- class), /health open, forwarded requests keep the caller's identity, no
-- token in any log; `rafting ctl` with tokens; a config with tokens_file.

local cluster = require "rafting.testing.cluster"
local cjson = require "cjson"
local H = require "spec.support.http_helper"
local X = require "spec.support.ctl_helper"

local TOK = {
  read = "rd-6f1c2a9e4b7d0385",
  write = "wr-a83d5e0f19c2b746",
  admin = "ad-27b94c0e6d1f8a53",
}
local TOKENS = {
  { name = "reader", token = TOK.read, role = "read" },
  { name = "writer", token = TOK.write, role = "write" },
  { name = "ops", token = TOK.admin, role = "admin" },
}
local UNKNOWN = "zz-0000000000000000"

-- route classes: what each needs
local ROUTES = {
  { "GET", "/status", nil, "read" },
  { "GET", "/kv/present", nil, "read" },
  { "GET", "/kv/present?stale", nil, "read" },
  { "GET", "/kv?prefix=p", nil, "read" },
  { "GET", "/query/list?key=todo", nil, "read" },
  { "PUT", "/kv/written", "v", "write" },
  { "DELETE", "/kv/gone", nil, "write" },
  { "POST", "/cmd/incr", '{"key":"n"}', "write" },
}
local RANK = { read = 1, write = 2, admin = 3 }

describe("bearer-token auth (3 real nodes)", function()
  local c, leader, follower

  local function as(tok) return { headers = { Authorization = "Bearer " .. tok } } end

  setup(function()
    c = H.start{ nodes = 3, auth = { tokens = TOKENS }, token = TOK.admin }
    leader = c:leader()
    follower = H.others(c, leader)[1]
    assert.equal(200, (c:http(leader, "PUT", "/kv/present", "here")))
  end)
  teardown(function()
    H.shutdown(c)
    cluster.kill_all()
  end)

  it("/health is open; everything else wants a token (401 with WWW-Authenticate)", function()
    for _, id in ipairs(c.ids) do
      local code, body = c:http(id, "GET", "/health", nil, { headers = {} })
      assert.equal(200, code)
      assert.equal('{"ok":true}\n', body)
    end
    local cases = {
      { "no header", {} },
      { "wrong scheme", { Authorization = "Basic " .. TOK.admin } },
      { "no scheme", { Authorization = TOK.admin } },
      { "empty bearer", { Authorization = "Bearer " } },
      { "unknown token", { Authorization = "Bearer " .. UNKNOWN } },
      { "a real token's prefix", { Authorization = "Bearer " .. TOK.admin:sub(1, -2) } },
    }
    for _, id in ipairs{ leader, follower } do
      for _, case in ipairs(cases) do
        for _, r in ipairs(ROUTES) do
          local code, body, hdrs = c:http(id, r[1], r[2], r[3], { headers = case[2] })
          local what = ("%s %s on node %d, %s"):format(r[1], r[2], id, case[1])
          assert.equal(401, code, what .. ": " .. tostring(body))
          assert.matches("^Bearer", hdrs["www-authenticate"] or "", 1, false, what)
          assert.equal("unauthorized", cjson.decode(body).error, what)
          assert.equal("\n", body:sub(-1))
        end
      end
    end
  end)

  it("each role on each route class: 200 when strong enough, else 403 — on the leader and through a follower", function()
    for _, id in ipairs{ leader, follower } do
      for role, tok in pairs(TOK) do
        for _, r in ipairs(ROUTES) do
          local code, body = c:http(id, r[1], r[2], r[3], as(tok))
          local what = ("%s %s on node %d as %s"):format(r[1], r[2], id, role)
          if RANK[role] >= RANK[r[4]] then
            assert.equal(200, code, what .. ": " .. tostring(body))
          else
            assert.equal(403, code, what .. ": " .. tostring(body))
            local e = cjson.decode(body)
            assert.equal("forbidden", e.error)
            assert.matches("needs the " .. r[4] .. " role", e.message)
          end
        end
      end
    end
  end)

  it("unknown routes stay 404 and wrong methods 405, whatever the token", function()
    assert.equal(404, (c:http(leader, "GET", "/nope", nil, { headers = {} })))
    assert.equal(404, (c:http(leader, "GET", "/nope", nil, as(TOK.read))))
    assert.equal(405, (c:http(leader, "POST", "/status", "", { headers = {} })))
  end)

  it("a follower forwards the caller's token: the leader checks it again", function()
    -- a write through a follower with the writer's token commits ...
    local code, body = c:http(follower, "PUT", "/kv/fwd", "w", as(TOK.write))
    assert.equal(200, code, body)
    -- ... and a linearizable read through it, forwarded, is answered for
    -- the reader; the leader saw the forwarded request's own header
    code, body = c:http(follower, "GET", "/kv/fwd", nil, as(TOK.read))
    assert.equal(200, code, body)
    assert.equal("w", body)
    -- ?redirect answers only after the token was checked
    code = c:http(follower, "GET", "/kv/fwd?redirect", nil, { headers = {} })
    assert.equal(401, code)
    code = c:http(follower, "GET", "/kv/fwd?redirect", nil, as(TOK.read))
    assert.equal(307, code)
  end)

  it("rafting ctl: the token from --token or RAFTING_TOKEN; a bad one exits 4", function()
    local eps = X.endpoints(c)
    local code, out, err = X.run{ "--endpoints", eps, "--token", TOK.write, "put", "ctl", "x" }
    assert.equal(0, code, err)
    code, out, err = X.run({ "--endpoints", eps, "get", "ctl" },
                           { env = { RAFTING_TOKEN = TOK.read } })
    assert.equal(0, code, err)
    assert.equal("x", out)
    code, _, err = X.run{ "--endpoints", eps, "--token", UNKNOWN, "get", "ctl" }
    assert.equal(4, code)
    assert.matches("HTTP 401", err)
    code, _, err = X.run{ "--endpoints", eps, "--token", TOK.read, "put", "ctl", "y" }
    assert.equal(4, code)
    assert.matches("HTTP 403", err)
    code, _, err = X.run{ "--endpoints", eps, "get", "ctl" }
    assert.equal(4, code)
  end)

  it("no token ever appears in a node's log", function()
    for _, id in ipairs(c.ids) do
      local log = c:log(id)
      assert.is_true(#log > 0)
      for _, t in pairs(TOK) do
        assert.is_nil(log:find(t, 1, true), "node " .. id .. " logged a token")
      end
      assert.is_nil(log:find(UNKNOWN, 1, true))
    end
  end)
end)

describe("auth.tokens_file", function()
  it("loads the token list from a Lua file next to the config", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local f = assert(io.open(dir .. "/tokens.lua", "w"))
    f:write('return { { name = "ops", token = "', TOK.admin, '", role = "admin" } }\n')
    f:close()
    local c <close> = H.start{ nodes = 1, auth = { tokens_file = dir .. "/tokens.lua" },
                                token = TOK.admin }
    local code = c:http(1, "GET", "/status")
    assert.equal(200, code)
    code = c:http(1, "GET", "/status", nil, { headers = {} })
    assert.equal(401, code)
    os.execute("rm -rf " .. dir)
  end)
end)
