-- membership_spec.lua -- the runtime follows the membership (issue 9):
-- real processes, WAL storage, concurrent writers, and at the end every
-- acknowledged write read back from every member's own state.  Growing
-- 3 -> 5, replacing a killed node, removing a follower and the leader (each
-- exits 0 with its log line), the REST errors, and restarts that find the
-- peers in the stored membership although the config's nodes were edited.

local cluster = require "rafting.testing.cluster"
local D = require "spec.support.durability_helper"
local cjson = require "cjson"

local function members(c, id)
  local m = assert(c:members(id))
  local voters, learners = {}, {}
  for _, e in ipairs(m.members) do
    if e.voter then voters[#voters + 1] = e.id else learners[#learners + 1] = e.id end
  end
  table.sort(voters)
  table.sort(learners)
  return voters, learners, m
end

-- Every acknowledged write, in each listed node's own applied state.
local function check_everywhere(c, w, ids, prefix)
  local acks = w:stop()
  assert.is_true(#acks > 0, "no write was acknowledged")
  local top = w:max_index()
  for _, id in ipairs(ids) do
    D.wait_applied(c, id, top)
    local state = D.stale_range(c, id, prefix)
    local missing = {}
    for _, a in ipairs(acks) do
      if state[a.key] ~= a.value then missing[#missing + 1] = a.key end
    end
    assert.equal(0, #missing, ("node %d misses %d of %d acknowledged writes: %s")
                 :format(id, #missing, #acks, table.concat(missing, " ", 1,
                 math.min(#missing, 5))))
  end
  return #acks
end

-- a config table as Lua source (strings, numbers, booleans, tables)
local function lua_text(v)
  if type(v) ~= "table" then
    return type(v) == "string" and ("%q"):format(v) or tostring(v)
  end
  local parts = {}
  if #v > 0 then
    for _, x in ipairs(v) do parts[#parts + 1] = lua_text(x) end
  else
    for k, x in pairs(v) do
      parts[#parts + 1] = ("[%q] = %s"):format(k, lua_text(x))
    end
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

local function removed_line(c, id)
  return c:log(id):match('msg="removed from the cluster" index=%d+') ~= nil
end

describe("membership changes (real nodes, concurrent writers)", function()
  local c, w
  after_each(function()
    if w then w:kill() w = nil end
    D.shutdown(c)
    c = nil
  end)
  teardown(function() cluster.kill_all() end)

  it("grows from 3 to 5 voters; every write reaches the new members", function()
    local seed = D.seed()
    D.report("membership grow seed %d", seed)
    c = D.start{ nodes = 3 }
    c:leader()
    w = D.writers(c, { n = 2, prefix = "g.", seed = seed, deadline_ms = 60000 })
    w:wait_acks(20)
    local now = require("rafting.proc").now_ms
    local t0 = now()
    local four = c:add_node()
    local t1 = now()
    w:wait_acks(w:poll() + 20)
    local t2 = now()
    local five = c:add_node()
    D.report("grow: add_node (start, add, catch up, promote) took %d ms and "
             .. "%d ms under writes", t1 - t0, now() - t2)
    w:wait_acks(w:poll() + 20)
    local voters, learners = members(c, five)
    assert.same({ 1, 2, 3, four, five }, voters)
    assert.same({}, learners)
    -- the new nodes know every member's addresses (from the log)
    local _, _, m = members(c, four)
    for _, e in ipairs(m.members) do
      assert.equal(c.nodes[e.id].peer, e.peer)
      assert.equal(c.nodes[e.id].http, e.http)
    end
    -- and take part: a majority of 5 without two of the originals
    c:stop(1)
    c:stop(2)
    w:wait_acks(w:poll() + 10, 20000)
    local n = check_everywhere(c, w, { 3, four, five }, "g.")
    D.report("grow: %d acknowledged writes on every member", n)
  end)

  it("replaces a killed node: add a fresh one, remove the dead one", function()
    local seed = D.seed()
    D.report("membership replace seed %d", seed)
    c = D.start{ nodes = 3 }
    local l = c:leader()
    local dead = D.others(c, l)[1]
    w = D.writers(c, { n = 2, prefix = "r.", seed = seed, deadline_ms = 60000,
                       targets = { l } })
    w:wait_acks(20)
    c:kill(dead)
    local new = c:add_node()
    c:remove_node(dead)
    w:wait_acks(w:poll() + 20)
    local voters = members(c, new)
    local want = D.others(c, dead)
    table.sort(want)
    assert.same(want, voters)
    -- its peers closed the connections to the removed node
    for _, id in ipairs(want) do
      local s = assert(c:status(id))
      for _, p in ipairs(s.peers) do assert.are_not.equal(dead, p.id) end
    end
    local n = check_everywhere(c, w, want, "r.")
    D.report("replace: %d acknowledged writes on every member", n)
  end)

  it("removes a follower, then the leader: each exits 0 saying so", function()
    local seed = D.seed()
    D.report("membership remove seed %d", seed)
    c = D.start{ nodes = 3 }
    c:leader()
    local four = c:add_node()
    w = D.writers(c, { n = 2, prefix = "x.", seed = seed, deadline_ms = 60000,
                       targets = { four } })
    w:wait_acks(20)
    local l = c:leader()
    local f = D.others(c, l)[1] == four and D.others(c, l)[2] or D.others(c, l)[1]
    c:remove_node(f)
    assert.same({ how = "exited", code = 0 }, { how = c.nodes[f].exit.how,
                                                code = c.nodes[f].exit.code })
    assert.is_true(removed_line(c, f), c:log(f))
    w:wait_acks(w:poll() + 20)
    c:remove_node(l)
    assert.equal(0, c.nodes[l].exit.code)
    assert.is_true(removed_line(c, l), c:log(l))
    local rest = c:running()
    assert.equal(2, #rest)
    local l2 = c:leader()
    assert.are_not.equal(l, l2)
    w:wait_acks(w:poll() + 20, 20000)
    assert.same(rest, (members(c, l2)))
    local n = check_everywhere(c, w, rest, "x.")
    D.report("remove: %d acknowledged writes on the two left", n)
  end)

  it("a second change during a removal's grace period still tells the removed node, which exits 0", function()
    c = D.start{ nodes = 3 }
    c:leader()
    local four = c:add_node()
    local l = c:leader()
    local f = D.others(c, l)[1] == four and D.others(c, l)[2] or D.others(c, l)[1]
    c:pause(f) -- so it cannot hold its removal committed before the next change
    local code = c:to_leader("DELETE", "/cluster/members/" .. f, nil, true, nil,
                             "node " .. f .. " removed")
    assert.equal(200, code)
    code = c:to_leader("DELETE", "/cluster/members/" .. four, nil, true, nil,
                       "node " .. four .. " removed")
    assert.equal(200, code)
    c:resume(f) -- within the first removal's grace (two election timeouts)
    c:wait_for(function()
      c:reap()
      return c.nodes[f].state == "exited" and c.nodes[four].state == "exited"
    end, 10000, "both removed nodes to exit")
    assert.same({ 0, 0 }, { c.nodes[f].exit.code, c.nodes[four].exit.code })
    assert.is_true(removed_line(c, f), c:log(f))
  end)

  it("restarts with only --config --node from the stored membership, "
     .. "whatever the config's nodes say later", function()
    c = D.start{ nodes = 3 }
    local l = c:leader()
    local four = c:add_node()
    assert.equal(200, (c:http(l, "PUT", "/kv/before", "1")))
    -- edit the config: node 1 elsewhere, node 3 gone, a stranger added
    local cfg = dofile(c.config_path)
    cfg.nodes[1].peer = "127.0.0.1:2"
    table.remove(cfg.nodes, 3)
    cfg.nodes[#cfg.nodes + 1] = { id = 7, peer = "127.0.0.1:3",
                                  http = "127.0.0.1:4" }
    local f = assert(io.open(c.config_path, "w"))
    f:write("return " .. lua_text(cfg) .. "\n")
    f:close()
    for _, id in ipairs({ four, 1, 2, 3 }) do
      c:restart(id)
      c:leader()
    end
    assert.truthy(c:log(1):find("differ from the membership stored", 1, true))
    assert.is_nil(c:log(four):find("differ from", 1, true))
    -- everyone talks to everyone at the stored addresses
    c:wait_for(function()
      for _, id in ipairs({ 1, 2, 3, four }) do
        local s = c:status(id)
        if not s then return false, "node " .. id end
        for _, p in ipairs(s.peers) do
          if not p.connected then
            return false, ("node %d: peer %d down"):format(id, p.id)
          end
        end
      end
      return true
    end, 10000, "every peer connected")
    local l2 = c:leader()
    assert.equal(200, (c:http(l2, "PUT", "/kv/after", "2")))
    for _, id in ipairs({ 1, 2, 3, four }) do
      local code, v = c:http(id, "GET", "/kv/after")
      assert.equal(200, code)
      assert.equal("2", v)
    end
  end)
end)

-- Node id knows every member at the harness's addresses, all connected,
-- and a write through it is acknowledged and read back on it.
local function knows_everyone(c, id, ids, key)
  local voters = members(c, id)
  assert.same(ids, voters)
  local _, _, m = members(c, id)
  for _, e in ipairs(m.members) do
    assert.equal(c.nodes[e.id].peer, e.peer)
    assert.equal(c.nodes[e.id].http, e.http)
  end
  c:wait_for(function()
    local s = c:status(id)
    if not s then return false, "no status" end
    for _, p in ipairs(s.peers) do
      if not p.connected then return false, "peer " .. p.id .. " down" end
    end
    return #s.peers == #ids - 1, #s.peers .. " peers"
  end, 10000, "node " .. id .. " connected to every peer")
  c:leader()
  assert.equal(200, (c:http(id, "PUT", "/kv/" .. key, key)))
  local code, v = c:http(id, "GET", "/kv/" .. key)
  assert.equal(200, code)
  assert.equal(key, v)
end

local function put_many(c, prefix, n)
  local l = c:leader()
  for i = 1, n do
    local code, b = c:http(l, "PUT", ("/kv/%s%04d"):format(prefix, i), "v" .. i,
                        { timeout_ms = 5000 })
    assert(code == 200, c:describe(("PUT %s%04d on %d: %s %s"):format(
      prefix, i, l, tostring(code), tostring(b))))
  end
end

describe("membership and compacted logs (real nodes, WAL)", function()
  local c
  after_each(function() D.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  it("a node added after compaction catches up from a snapshot and, restarted "
     .. "with only --config --node, keeps the membership (log, then its own snapshot)", function()
    c = D.start{ nodes = 3, limits = { snapshot_entries = 50, snapshot_trailing = 5 } }
    c:leader()
    put_many(c, "pre.", 120)
    local four = c:add_node()
    assert.truthy(c:log(four):find("snapshot installed", 1, true), c:log(four))
    -- its snapshot predates its addition: the change comes from its log
    c:restart(four)
    knows_everyone(c, four, { 1, 2, 3, four }, "r1")
    -- enough writes that node 4 snapshots past the change and drops that log
    put_many(c, "post.", 120)
    local top = c:wait_for(function()
      local s = c:status(c:leader())
      return s and s.commit, "no status from the leader"
    end, 10000, "the leader's commit index")
    D.wait_applied(c, four, top)
    local snaps = 0
    for _ in c:log(four):gmatch('msg="snapshot taken"') do snaps = snaps + 1 end
    assert.is_true(snaps > 0, "node " .. four .. " took no snapshot")
    c:restart(four)
    knows_everyone(c, four, { 1, 2, 3, four }, "r2")
    for _, k in ipairs{ "pre.0001", "pre.0120", "post.0120" } do
      local code = c:http(four, "GET", "/kv/" .. k)
      assert.equal(200, code, k)
    end
    D.report("compacted add: node %d took %d snapshots of its own", four, snaps)
  end)
end)

describe("membership REST errors", function()
  local c
  after_each(function() D.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  local function call(id, method, path, body)
    local code, data = c:http(id, method, path, body)
    local ok, t = pcall(cjson.decode, data or "")
    return code, ok and t or data
  end

  it("400 and 404 for bad bodies, bad or unknown ids, used addresses, the last voter; "
     .. "409 while a change is pending and while a learner is behind", function()
    -- without check-quorum, so that a leader whose followers are paused
    -- stays leader (and its change pending)
    c = D.start{ nodes = 3, timing = { tick_ms = 10, election_ticks = 30,
                 heartbeat_ticks = 5, pre_vote = true, check_quorum = false } }
    local l = c:leader()
    local f = D.others(c, l)[1]
    for _, body in ipairs{ "", "{", "[]", '{"id":4}', '{"id":0,"peer":"127.0.0.1:1","http":"127.0.0.1:2"}',
                           '{"id":4,"peer":"example.org:1","http":"127.0.0.1:2"}',
                           '{"id":4,"peer":"127.0.0.1:1","http":"127.0.0.1:0"}',
                           '{"id":"4","peer":"127.0.0.1:1","http":"127.0.0.1:2"}',
                           '{"id":4,"peer":"127.0.0.1:1","http":"127.0.0.1:2","x":1}' } do
      local code = call(l, "POST", "/cluster/members", body)
      assert.equal(400, code, body)
    end
    local code, b = call(f, "POST", "/cluster/members", cjson.encode{
      id = 2, peer = "127.0.0.1:1", http = "127.0.0.1:2" })
    assert.equal(400, code) -- forwarded to the leader
    assert.equal("already_member", b.error)
    code, b = call(l, "POST", "/cluster/members", cjson.encode{
      id = 9, peer = c.nodes[f].peer, http = "127.0.0.1:2" })
    assert.equal(400, code)
    assert.equal("address_in_use", b.error)
    assert.truthy(b.message:find("node " .. f, 1, true))
    code, b = call(f, "DELETE", "/cluster/members/9")
    assert.equal(404, code)
    assert.equal("unknown_node", b.error)
    assert.equal(404, (call(l, "POST", "/cluster/members/9/promote")))
    assert.equal(400, (call(l, "POST", "/cluster/members/1/promote")))
    assert.equal(400, (call(l, "DELETE", "/cluster/members/x")))
    assert.equal(404, (call(l, "POST", "/cluster/members/1/demote")))
    assert.equal(405, (call(l, "POST", "/cluster/members/1")))
    assert.equal(405, (call(l, "GET", "/cluster/members")))

    -- 409 pending: with both followers paused the change cannot commit
    local pp = require("rafting.proc").free_port(2)
    for _, id in ipairs(D.others(c, l)) do c:pause(id) end
    local add9 = cjson.encode{ id = 9, peer = "127.0.0.1:" .. pp,
                              http = "127.0.0.1:" .. (pp + 1) }
    local c1 = c:http(l, "POST", "/cluster/members", add9, { timeout_ms = 300 })
    assert.is_nil(c1) -- still waiting for the commit
    local _, _, m = members(c, l)
    assert.is_true(m.pending)
    code, b = call(l, "POST", "/cluster/members/9/promote")
    assert.equal(409, code)
    assert.equal("change_pending", b.error)
    for _, id in ipairs(D.others(c, l)) do c:resume(id) end
    c:wait_for(function()
      local _, _, mm = members(c, l)
      return not mm.pending, "pending"
    end, 10000, "the change to commit")
    local _, learners = members(c, l)
    assert.same({ 9 }, learners)

    -- 409 behind: learner 9 never started; more than 100 entries behind
    code, b = call(l, "POST", "/cluster/members/9/promote")
    assert.equal(409, code)
    assert.equal("learner_behind", b.error)
    for i = 1, 110 do assert.equal(200, (c:http(l, "PUT", "/kv/k" .. i, "v"))) end
    code, b = call(l, "POST", "/cluster/members/9/promote")
    assert.equal(409, code)
    assert.truthy(b.message:find("entries behind", 1, true), b.message)
    -- a learner is removed like a voter
    assert.equal(200, (call(l, "DELETE", "/cluster/members/9")))
    assert.same({}, select(2, members(c, l)))
  end)

  it("rafting ctl members add, promote and remove", function()
    local X = require "spec.support.ctl_helper"
    c = D.start{ nodes = 3 }
    local l = c:leader()
    local ep = { "--endpoints", "http://" .. c.nodes[D.others(c, l)[1]].http }
    local function ctl(...)
      local args = { table.unpack(ep) }
      for _, a in ipairs({ ... }) do args[#args + 1] = a end
      return X.run(args)
    end
    local p = require("rafting.proc").free_port(2)
    local code, out, err = ctl("members", "add", "9", "127.0.0.1:" .. p,
                               "127.0.0.1:" .. (p + 1))
    assert.equal(0, code, err)
    assert.truthy(cjson.decode(out).index)
    local _, learners = members(c, l)
    assert.same({ 9 }, learners)
    code, _, err = ctl("members", "promote", "9") -- never started: behind
    assert.equal(4, code)
    assert.matches("409", err)
    assert.equal(0, (ctl("members", "remove", "9")))
    assert.equal(1, (ctl("members", "remove", "9")))
    assert.equal(4, (ctl("members", "add", "9", "nowhere:1", "127.0.0.1:2")))
    assert.equal(2, (ctl("members", "add", "9")))
    assert.equal(2, (ctl("members", "frob", "9")))
  end)

  it("refuses to remove the last voter", function()
    c = D.start{ nodes = 1 }
    c:leader()
    local code, b = call(1, "DELETE", "/cluster/members/1")
    assert.equal(400, code)
    assert.equal("last_voter", b.error)
  end)
end)
