-- commands_spec.lua -- replicated Lua commands over REST: several truly
-- concurrent clients (non-blocking sockets, spec/support/http_helper.lua)
-- on every node, then every node's state compared key by key; cas
-- contention with exactly one winner per round; command errors.

local cluster = require "rafting.testing.cluster"
local cjson = require "cjson"
local H = require "spec.support.http_helper"

describe("replicated commands over REST (3 real nodes)", function()
  local c, leader

  setup(function()
    c = H.start{ nodes = 3 }
    leader = c:leader()
  end)
  teardown(function()
    H.shutdown(c)
    cluster.kill_all()
  end)

  -- Every key of node id's local state: { [key] = value }, from one range
  -- read and from a ?stale GET of each key (which must agree).
  local function dump(id)
    local code, body = c:http(id, "GET", "/kv?prefix=&limit=10000&stale")
    assert.equal(200, code, body)
    local v = H.decode(body)
    assert.is_false(v.more)
    local out, keys = {}, {}
    for _, item in ipairs(v.items) do
      keys[#keys + 1] = item.key
      local code2, value = c:http(id, "GET", H.kv_path(item.key, "stale"))
      assert.equal(200, code2, ("GET %s?stale on node %d"):format(H.show(item.key), id))
      out[item.key] = value
    end
    return out, keys
  end

  it("incr, append and transfer from several concurrent clients on every node leave every node with the same state, and nothing lost", function()
    local accounts = { "alice", "bob", "carol", "dave" }
    for _, a in ipairs(accounts) do
      local code, body = H.cmd(c, leader, "deposit", { account = a, amount = 100 })
      assert.equal(200, code, body)
    end
    local CLIENTS, OPS = 6, 30
    local fns = {}
    for i = 1, CLIENTS do
      fns[i] = function(cl)
        local stats = { incr = 0, appended = {}, moved = 0, refused = 0 }
        for op = 1, OPS do
          local node = c.ids[(i + op) % #c.ids + 1] -- leader and followers
          local kind = op % 3
          local name, args
          if kind == 0 then
            name, args = "incr", { key = "ctr/" .. (op % 2), by = i }
          elseif kind == 1 then
            name, args = "append", { key = "list/shared", item = ("c%d-%d"):format(i, op) }
          else
            name, args = "transfer", { from = accounts[(i + op) % 4 + 1],
                                       to = accounts[(i + op + 1) % 4 + 1],
                                       amount = 7 * i + op }
          end
          local code, body = cl:request(node, "POST", "/cmd/" .. name, cjson.encode(args))
          assert(code, body)
          if name == "transfer" and code == 422 then
            assert.matches("insufficient funds", H.decode(body).message)
            stats.refused = stats.refused + 1
          else
            assert.equal(200, code, name .. " on node " .. node .. ": " .. tostring(body))
            if name == "incr" then stats.incr = stats.incr + 1
            elseif name == "append" then stats.appended[#stats.appended + 1] = args.item
            else stats.moved = stats.moved + 1 end
          end
        end
        return stats
      end
    end
    local results, together = H.concurrent(c, fns, 60000)
    assert.equal(CLIENTS, together, "all the clients in flight at once")
    H.settle(c)

    -- the same state on every node
    local ref, refkeys = dump(c.ids[1])
    for _, id in ipairs(c.ids) do
      local st, keys = dump(id)
      assert.same(refkeys, keys, "key set of node " .. id)
      for k, v in pairs(ref) do
        assert.equal(v, st[k], ("value of %s on node %d"):format(H.show(k), id))
      end
      -- and the queries agree too
      for _, a in ipairs(accounts) do
        local code, body = c:http(id, "GET", H.query_path("balance", { account = a }, true))
        assert.equal(200, code, body)
        assert.equal(tonumber(ref["bank/" .. a]), H.decode(body))
      end
      local code, body = c:http(id, "GET", H.query_path("list", { key = "list/shared" }, true))
      assert.equal(200, code, body)
      assert.same(H.decode(ref["list/shared"]), H.decode(body))
    end

    -- nothing acknowledged was lost, nothing was applied twice
    local incr_total = 0
    for i = 1, CLIENTS do incr_total = incr_total + results[i][1].incr * i end
    assert.equal(incr_total, tonumber(ref["ctr/0"]) + tonumber(ref["ctr/1"]))
    local list = H.decode(ref["list/shared"])
    local want = 0
    for i = 1, CLIENTS do want = want + #results[i][1].appended end
    assert.equal(want, #list)
    -- each client's items appear once, in the order it sent them (its
    -- requests were sequential, so linearizability orders them)
    local pos = {}
    for p, item in ipairs(list) do
      assert.is_nil(pos[item], "appended twice: " .. item)
      pos[item] = p
    end
    for i = 1, CLIENTS do
      local prev = 0
      for _, item in ipairs(results[i][1].appended) do
        assert.is_truthy(pos[item], "lost: " .. item)
        assert.is_true(pos[item] > prev, "out of order: " .. item)
        prev = pos[item]
      end
    end
    -- transfers conserve money and never overdraw
    local total = 0
    for _, a in ipairs(accounts) do
      local b = tonumber(ref["bank/" .. a])
      assert.is_true(b >= 0, a .. " overdrawn: " .. b)
      total = total + b
    end
    assert.equal(400, total)
  end)

  it("cas under contention from several concurrent clients has exactly one winner per round, and every loser sees the winner's value", function()
    local CLIENTS, ROUNDS = 8, 12
    local prev = nil -- the chain starts absent
    for round = 1, ROUNDS do
      local fns = {}
      for i = 1, CLIENTS do
        fns[i] = function(cl)
          local args = { key = "cas/chain", value = ("r%d-c%d"):format(round, i) }
          if prev then args.expect = prev else args.expect_absent = true end
          local node = c.ids[(i + round) % #c.ids + 1]
          local code, body = cl:request(node, "POST", "/cmd/cas", cjson.encode(args))
          assert.equal(200, code, tostring(body))
          return H.decode(body).result, args.value
        end
      end
      local results, together = H.concurrent(c, fns, 30000)
      assert.equal(CLIENTS, together, "all the clients' requests in flight at once")
      local winners = {}
      for i = 1, CLIENTS do
        local res, value = results[i][1], results[i][2]
        if res.ok then winners[#winners + 1] = value end
      end
      assert.equal(1, #winners, ("round %d: winners %s"):format(round, table.concat(winners, ",")))
      for i = 1, CLIENTS do
        local res = results[i][1]
        if not res.ok then
          assert.equal(winners[1], res.current, ("round %d: a loser saw %s"):format(round, tostring(res.current)))
        end
      end
      -- every node agrees on the winner
      for _, id in ipairs(c.ids) do
        local code, body = c:http(id, "GET", "/kv/cas%2Fchain")
        assert.equal(200, code)
        assert.equal(winners[1], body)
      end
      prev = winners[1]
    end
    -- a cas that deletes: expect the last value, no value
    local code, body = H.cmd(c, leader, "cas", { key = "cas/chain", expect = prev })
    assert.equal(200, code, body)
    assert.is_true(H.decode(body).result.ok)
    assert.equal(404, (c:http(leader, "GET", "/kv/cas%2Fchain")))
  end)

  it("a command that fails answers 422 with the script's message and line, changes nothing, on every node alike", function()
    H.cmd(c, leader, "deposit", { account = "poor", amount = 5 })
    local before = H.settle(c)
    for _, id in ipairs(c.ids) do
      local code, body = H.cmd(c, id, "transfer", { from = "poor", to = "rich", amount = 6 })
      assert.equal(422, code, body)
      local e = H.decode(body)
      assert.equal("command_failed", e.error)
      assert.matches("examples%.lua:%d+: insufficient funds: poor has 5, needs 6", e.message)
      assert.is_truthy(math.tointeger(e.index), "the failed entry's index")
      -- built-ins fail the same way
      code, body = H.cmd(c, id, "cas", { key = "k" })
      assert.equal(422, code, body)
      assert.matches("give 'expect'", H.decode(body).message)
      code, body = H.cmd(c, id, "incr", { key = "n", by = "lots" })
      assert.equal(422, code, body)
      assert.matches("by must be an integer", H.decode(body).message)
    end
    local after = H.settle(c)
    assert.is_true(after >= before + 9, "the failed commands went through the log")
    for _, id in ipairs(c.ids) do
      local code, body = c:http(id, "GET", "/kv/bank%2Fpoor?stale")
      assert.equal(200, code)
      assert.equal("5", body)
      assert.equal(404, (c:http(id, "GET", "/kv/bank%2Frich?stale")))
    end
  end)

  it("an unknown command or query answers 404, bad JSON arguments 400, and neither reaches the log", function()
    local before = H.settle(c)
    for _, id in ipairs(c.ids) do
      local code, body = c:http(id, "POST", "/cmd/no_such", "{}")
      assert.equal(404, code, body)
      assert.equal("unknown_command", H.decode(body).error)
      code, body = c:http(id, "POST", "/cmd/incr", '{"key": "x",')
      assert.equal(400, code, body)
      assert.equal("bad_request", H.decode(body).error)
      code, body = c:http(id, "GET", H.query_path("no_such", {}))
      assert.equal(404, code, body)
      code, body = c:http(id, "GET", "/query/balance?args=" .. H.enc("{nope"))
      assert.equal(400, code, body)
      code, body = c:http(id, "GET", H.query_path("balance", {}))
      assert.equal(422, code, body)
      assert.equal("query_failed", H.decode(body).error)
    end
    local s = assert(c:status(leader))
    assert.equal(before, s.commit)
  end)

  it("a command's JSON result comes back as JSON, an empty body means no arguments", function()
    local code, body = H.cmd(c, leader, "transfer", { from = "alice", to = "bob", amount = 1 })
    if code == 422 then -- alice may be broke after the load test
      H.cmd(c, leader, "deposit", { account = "alice", amount = 10 })
      code, body = H.cmd(c, leader, "transfer", { from = "alice", to = "bob", amount = 1 })
    end
    assert.equal(200, code, body)
    local r = H.decode(body).result
    assert.is_number(r.from)
    assert.is_number(r.to)
    code, body = c:http(leader, "POST", "/cmd/incr", "")
    assert.equal(422, code, body)
    assert.matches("key must be a non%-empty string", H.decode(body).message)
  end)
end)
