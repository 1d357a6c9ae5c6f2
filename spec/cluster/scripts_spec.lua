-- scripts_spec.lua -- command scripts deployed through the log (issue 11),
-- on real 3-node clusters: deploy through a follower, update and delete,
-- every node answering alike; a restart from a snapshot taken between two
-- versions, and a fresh node catching up from a snapshot, replaying to the
-- same state; every kind of rejected script changing nothing; nodes started
-- with different local `commands` files agreeing on the replicated one;
-- the sandbox's determinism for a script deployed over REST; the reserved
-- "\0rafting/" keys out of users' reach.

local cjson = require "cjson"
local cluster = require "rafting.testing.cluster"
local proc = require "rafting.proc"
local H = require "spec.support.cluster_helper"
local D = require "spec.support.durability_helper"

-- ---- helpers ---------------------------------------------------------------

local function sha256(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  local p = assert(io.popen("sha256sum " .. path))
  local out = p:read("a")
  p:close()
  os.remove(path)
  return (assert(out:match("^(%x+)")))
end

local function spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- `bump` adds STEP to "n" and records the version that ran at its index
-- under seen/<index>; the query `version` says which version this node has.
local function versioned(version, step)
  return ([[
local commands, queries = {}, {}

function commands.bump(args, ctx)
  local n = (tonumber(kv.get("n")) or 0) + %d
  kv.put("n", tostring(n))
  kv.put(("seen/%%08d"):format(ctx.index), %q)
  return n
end

function queries.version() return %q end

return { commands = commands, queries = queries }
]]):format(step, version, version)
end

-- PUT /scripts/NAME on node id: code, decoded body (or the raw one)
local function deploy(c, id, name, source)
  local code, body = c:http(id, "PUT", "/scripts/" .. name, source)
  assert(code, body)
  local ok, v = pcall(cjson.decode, body)
  return code, ok and v or body
end

local function must_deploy(c, id, name, source)
  local code, v = deploy(c, id, name, source)
  assert(code == 200, ("PUT /scripts/%s on node %d: %s %s"):format(
    name, id, tostring(code), type(v) == "table" and cjson.encode(v) or v))
  return v
end

local function cmd(c, id, name, args)
  local code, body = c:http(id, "POST", "/cmd/" .. name,
                            cjson.encode(args or {}))
  assert(code, body)
  local ok, v = pcall(cjson.decode, body)
  return code, ok and v or body
end

-- Every running node has applied what the leader committed.
local function settle(c)
  local l = c:leader()
  local s = assert(c:status(l))
  for _, id in ipairs(c:running()) do c:wait_index(id, s.commit, 10000, "applied") end
end

local function stale(c, id, path)
  local code, body = c:http(id, "GET", path .. (path:find("?", 1, true) and "&" or "?") .. "stale")
  assert(code == 200, ("GET %s on node %d: %s %s"):format(path, id, tostring(code), tostring(body)))
  return body
end

-- the node's store as it answers GET /kv?stale (keys and values in base64)
local function dump(c, id, prefix)
  return stale(c, id, "/kv?limit=10000&encoding=base64&prefix=" .. (prefix or ""))
end

local function digest(c, id)
  local s = assert(c:status(id))
  return assert(s.scripts, "no scripts in /status").digest, s.scripts.count
end

-- Every running node answers the same GET /scripts?stale, /status digest
-- and store; returns the decoded list and the digest.
local function all_agree(c)
  settle(c)
  local ids = c:running()
  local list, dg, store = stale(c, ids[1], "/scripts"), digest(c, ids[1]), dump(c, ids[1])
  for i = 2, #ids do
    assert.equal(list, stale(c, ids[i], "/scripts"), "GET /scripts on node " .. ids[i])
    assert.equal(dg, (digest(c, ids[i])), "/status digest on node " .. ids[i])
    assert.equal(store, dump(c, ids[i]), "the store of node " .. ids[i])
  end
  return cjson.decode(list), dg
end

local function seen(c, id)
  local out = {}
  for _, it in ipairs(cjson.decode(stale(c, id, "/kv?limit=10000&prefix=seen/")).items) do
    out[#out + 1] = { index = tonumber(it.key:match("%d+$")), version = it.value }
  end
  return out
end

-- the decoded JSON log lines of node id with this msg
local function log_lines(c, id, msg)
  local out = {}
  for line in c:log(id):gmatch("[^\n]+") do
    local ok, v = pcall(cjson.decode, line)
    if ok and type(v) == "table" and v.msg == msg then out[#out + 1] = v end
  end
  return out
end

-- ---- specs -----------------------------------------------------------------

describe("scripts through the log (3 real nodes)", function()
  local c
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  it("deploys through a follower, updates at an index, deletes; every node alike", function()
    c = H.start{ nodes = 3 }
    local l = c:leader()
    local f1, f2 = table.unpack(H.others(c, l))
    local list0, dg0 = all_agree(c)
    assert.same({}, list0)
    local v1, v2 = versioned("v1", 1), versioned("v2", 10)

    local r1 = must_deploy(c, f1, "bank.lua", v1)
    assert.equal("bank.lua", r1.result.name)
    assert.equal(sha256(v1), r1.result.sha256)
    assert.same({ "bump" }, r1.result.commands)
    assert.same({ "version" }, r1.result.queries)
    assert.is_true(r1.index > 0)
    -- the command on every node's REST (followers forward)
    for i, id in ipairs(c.ids) do
      local code, v = cmd(c, id, "bump")
      assert.equal(200, code, cjson.encode(v))
      assert.equal(i, v.result)
    end
    local list, dg1 = all_agree(c)
    assert.equal(1, #list)
    assert.same({ name = "bank.lua", sha256 = sha256(v1), index = r1.index,
                  commands = { "bump" }, queries = { "version" } }, list[1])
    assert.are_not.equal(dg0, dg1)

    -- v2: the same command, another effect, from its index on
    local r2 = must_deploy(c, f2, "bank.lua", v2)
    assert.is_true(r2.index > r1.index)
    assert.equal(sha256(v2), r2.result.sha256)
    for i, id in ipairs(c.ids) do
      local code, v = cmd(c, id, "bump")
      assert.equal(200, code, cjson.encode(v))
      assert.equal(3 + 10 * i, v.result)
    end
    local dg2
    list, dg2 = all_agree(c)
    assert.equal(1, #list)
    assert.equal(r2.index, list[1].index)
    assert.equal(sha256(v2), list[1].sha256)
    assert.are_not.equal(dg1, dg2)
    for _, id in ipairs(c.ids) do
      assert.equal('"v2"', stale(c, id, "/query/version"):gsub("%s+$", ""))
      local code, body, h = c:http(id, "GET", "/scripts/bank.lua")
      assert.equal(200, code)
      assert.equal(v2, body)
      assert.matches("^text/plain", h["content-type"])
      -- entries before the update ran v1, after it v2, on every node
      local s = seen(c, id)
      assert.equal(6, #s)
      for _, e in ipairs(s) do
        assert.equal(e.index < r2.index and "v1" or "v2", e.version,
                     ("node %d, entry %d"):format(id, e.index))
      end
    end

    -- delete through the other follower
    local code, body = c:http(f1, "DELETE", "/scripts/bank.lua")
    assert.equal(200, code, body)
    local d = cjson.decode(body)
    assert.same({ name = "bank.lua", deleted = true }, d.result)
    assert.is_true(d.index > r2.index)
    local dg3
    list, dg3 = all_agree(c)
    assert.same({}, list)
    assert.equal(dg0, dg3)
    for _, id in ipairs(c.ids) do
      local cc, v = cmd(c, id, "bump")
      assert.equal(404, cc)
      assert.equal("unknown_command", v.error)
      assert.equal(404, (c:http(id, "GET", "/query/version?stale")))
      assert.equal(404, (c:http(id, "GET", "/scripts/bank.lua")))
      assert.equal("33", (select(2, c:http(id, "GET", "/kv/n?stale"))))
    end
    code, body = c:http(l, "DELETE", "/scripts/bank.lua")
    assert.equal(404, code)
    assert.equal("not_found", cjson.decode(body).error)
  end)

  it("rejects each kind of bad script with 400/409 and changes nothing", function()
    c = H.start{ nodes = 3 }
    local l = c:leader()
    local f = H.others(c, l)[1]
    must_deploy(c, l, "alpha.lua",
      "local c = {}\nfunction c.alpha() return 'a' end\nreturn { commands = c }\n")
    local before, dg = all_agree(c)
    local st = assert(c:status(l))

    local BAD = {
      { "syntax.lua", "local c = {}\nfunction c.x()\n  return 1 +\nend\nreturn { commands = c }\n",
        400, "bad_script", "^syntax%.lua:4:" },
      { "typo.lua", "local c = {}\nfunction c.typo() end\nreturn { command = c }\n",
        400, "bad_script", "^typo%.lua: unexpected key 'command'" },
      { "nonfn.lua", "return { commands = { deposit = 42 } }\n",
        400, "bad_script", "^nonfn%.lua: commands%.deposit must be a function, not a number$" },
      { "reserved.lua", "return { commands = { ['script.put'] = function() end } }\n",
        409, "name_conflict", "'script%.put': the prefix 'script%.' is reserved" },
      { "toplevel.lua", "local c = {}\nerror('refusing to load')\nreturn { commands = c }\n",
        400, "bad_script", "toplevel%.lua:2: refusing to load" },
      { "notable.lua", "return 42\n", 400, "bad_script", "^notable%.lua: the script must return a table" },
      { "budget.lua", "while true do end\n", 400, "bad_script",
        "^budget%.lua:1: instruction budget exceeded" },
      -- (the messages of these two do not name the script yet: see the report)
      { "bytecode.lua", "\27Lua\x54\0junk", 400, "bad_script", "^bytecode%.lua: attempt to load a binary chunk" },
      { "memory.lua", "local s = string.rep('x', 1 << 29)\nreturn {}\n", 400, "bad_script", "^memory%.lua: memory cap exceeded %(%d+ bytes%)$" },
      { "clash.lua", "local c = {}\nfunction c.put() end\nreturn { commands = c }\n",
        409, "name_conflict", "'put' is already defined by kv%.lua" },
      { "clash2.lua", "local c = {}\nfunction c.alpha() end\nfunction c.fresh() end\nreturn { commands = c }\n",
        409, "name_conflict", "'alpha' is already defined by alpha%.lua" },
      { ".hidden", "return {}", 400, "bad_request", "script name" },
      { ("x"):rep(65), "return {}", 400, "bad_request", "script name" },
      { "a%20b.lua", "return {}", 400, "bad_request", "script name" },
      { "a%2Fb.lua", "return {}", 400, "bad_request", "script name" },
    }
    for _, b in ipairs(BAD) do
      for _, id in ipairs{ l, f } do -- on the leader, and forwarded
        local code, v = deploy(c, id, b[1], b[2])
        local what = ("%s on node %d: %s"):format(b[1], id, type(v) == "table" and cjson.encode(v) or v)
        assert.equal(b[3], code, what)
        assert.equal(b[4], v.error, what)
        assert.matches(b[5], v.message, 1, false, what)
      end
    end
    local after, dg2 = all_agree(c)
    assert.same(before, after)
    assert.equal(dg, dg2)
    local st2 = assert(c:status(l))
    if st2.term == st.term then -- no election: a refused script cost no entry
      assert.equal(st.last_index, st2.last_index)
    end
    local code, v = cmd(c, f, "alpha")
    assert.equal(200, code)
    assert.equal("a", v.result)
    for _, name in ipairs{ "x", "typo", "fresh" } do
      assert.equal(404, (cmd(c, f, name)), name)
    end
    -- the entries themselves are not commands anyone may post
    assert.equal(404, (cmd(c, l, "script.put", { name = "p.lua", source = "return {}" })))
    assert.equal(404, (cmd(c, l, "script.delete", { name = "alpha.lua" })))
  end)

  it("a script may replace its own names; a later script cannot take them", function()
    c = H.start{ nodes = 3 }
    local l = c:leader()
    must_deploy(c, l, "one.lua", "return { commands = { a = function() return 1 end } }")
    local r = must_deploy(c, l, "one.lua",
      "return { commands = { a = function() return 2 end, b = function() return 3 end },\n" ..
      "         queries = { q = function() return 4 end } }")
    assert.same({ "a", "b" }, r.result.commands)
    local code, v = deploy(c, l, "two.lua", "return { commands = { b = function() end } }")
    assert.equal(409, code)
    assert.matches("command 'b' is already defined by one%.lua", v.message)
    code, v = deploy(c, l, "two.lua", "return { queries = { q = function() end } }")
    assert.equal(409, code)
    assert.matches("query 'q' is already defined by one%.lua", v.message)
    -- commands and queries are apart: a query may share a command's name
    r = must_deploy(c, l, "two.lua", "return { queries = { b = function() return 5 end } }")
    assert.same({ "b" }, r.result.queries)
    assert.equal(2, select(2, cmd(c, l, "a")).result)
    assert.equal(3, select(2, cmd(c, l, "b")).result)
    assert.equal("5", (select(2, c:http(l, "GET", "/query/b")):gsub("%s+$", "")))
  end)
end)

describe("scripts and snapshots (3 nodes on disk)", function()
  local c
  after_each(function()
    local cc = c
    c = nil
    H.shutdown(cc) -- names the node that did not stop cleanly
  end)
  teardown(function() cluster.kill_all() end)

  it("a node restarting from a snapshot taken between two versions, and a new node, replay to the same state", function()
    c = D.start{ nodes = 3, limits = { snapshot_entries = 20, snapshot_trailing = 5 } }
    local l = c:leader()
    local x = H.others(c, l)[1]
    local r1 = must_deploy(c, l, "bank.lua", versioned("v1", 1))
    for i = 1, 12 do
      local id = c.ids[i % 3 + 1]
      assert.equal(200, (cmd(c, id, "bump")))
      H.put(c, id, "plain/" .. i, "p" .. i)
    end
    settle(c)
    -- a snapshot on x between the two versions
    local code, _, h = c:http(x, "GET", "/snapshot?fresh")
    assert.equal(200, code)
    local snap_index = tonumber(h["x-raft-index"])
    assert.is_true(snap_index > r1.index)

    local r2 = must_deploy(c, x, "bank.lua", versioned("v2", 10))
    assert.is_true(r2.index > snap_index)
    for i = 1, 5 do assert.equal(200, (cmd(c, c.ids[i % 3 + 1], "bump"))) end
    local _, dg = all_agree(c)
    -- x's latest snapshot is still the one between v1 and v2
    code, _, h = c:http(x, "HEAD", "/snapshot")
    assert.equal(200, code)
    assert.equal(snap_index, tonumber(h["x-raft-index"]))
    local want = dump(c, l)
    assert.equal("62", (select(2, c:http(l, "GET", "/kv/n"))))  -- 12 x 1 + 5 x 10

    c:kill(x)
    c:start_node(x)
    settle(c)
    assert.equal(want, dump(c, x))
    assert.equal(dg, (digest(c, x)))
    assert.equal('"v2"', stale(c, x, "/query/version"):gsub("%s+$", ""))
    for _, e in ipairs(seen(c, x)) do
      assert.equal(e.index < r2.index and "v1" or "v2", e.version, "entry " .. e.index)
    end
    -- the cluster goes on alike
    assert.equal(72, select(2, cmd(c, x, "bump")).result)
    all_agree(c)

    -- a new node, from the leader's snapshot (its log no longer starts at 1)
    for i = 1, 25 do H.put(c, l, "more/" .. i, "m") end
    settle(c)
    l = c:leader()
    c:wait_for(function()
      local ls = c:status(l)
      return ls and ls.first_index > r2.index, ls and ("first index " .. ls.first_index)
    end, 10000, "the leader's log to start after v2's entry (a snapshot)")
    local n4 = c:add_node()
    local _, dg4 = all_agree(c)
    assert.equal(dg, dg4)
    assert.equal('"v2"', stale(c, n4, "/query/version"):gsub("%s+$", ""))
    for _, e in ipairs(seen(c, n4)) do
      assert.equal(e.index < r2.index and "v1" or "v2", e.version, "node 4, entry " .. e.index)
    end
    assert.equal(82, select(2, cmd(c, n4, "bump")).result)
    all_agree(c)
  end)
end)

describe("the config's commands file as the bootstrap script", function()
  local c, dir
  after_each(function()
    H.shutdown(c)
    c = nil
    if dir then os.execute("rm -rf '" .. dir .. "'") dir = nil end
  end)
  teardown(function() cluster.kill_all() end)

  local WARN = "commands file differs from the replicated script"

  local function boot(version)
    return ([[
local commands, queries = {}, {}
function commands.which(args, ctx)
  kv.put(("which/%%08d"):format(ctx.index), %q)
  return %q
end
function queries.which() return %q end
return { commands = commands, queries = queries }
]]):format(version, version, version)
  end

  it("nodes started with different files run the replicated one; the differing ones warn", function()
    dir = proc.mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/rafting-boot-XXXXXX")
    local file = dir .. "/boot.lua"
    local v1, v2, v3 = boot("v1"), boot("v2"), boot("v3")
    spit(file, v1)
    c = H.start{ nodes = 3, commands = file, storage = "data-%d", log_format = "json" }
    local l = c:leader()
    local f1, f2 = table.unpack(H.others(c, l))
    local list = all_agree(c)
    assert.equal(1, #list)
    assert.equal("boot.lua", list[1].name)
    assert.equal(sha256(v1), list[1].sha256)
    assert.equal(200, (cmd(c, l, "which")))

    -- f1 restarts with v2 in its file, f2 with v3
    spit(file, v2)
    c:restart(f1)
    spit(file, v3)
    c:restart(f2)
    for _, pair in ipairs{ { f1, v2 }, { f2, v3 } } do
      local id, text = pair[1], pair[2]
      local w = c:wait_for(function()
        return log_lines(c, id, WARN)[1]
      end, 10000, "node " .. id .. "'s warning")
      assert.equal(sha256(text), w.file_sha256)
      assert.equal(sha256(v1), w.replicated_sha256)
      assert.equal("boot.lua", w.script)
      assert.equal("warn", w.level)
    end
    assert.same({}, log_lines(c, l, WARN))
    -- every node answers with the replicated version
    for _, id in ipairs(c.ids) do
      assert.equal('"v1"', stale(c, id, "/query/which"):gsub("%s+$", ""))
      local code, v = cmd(c, id, "which")
      assert.equal(200, code)
      assert.equal("v1", v.result)
    end
    all_agree(c)
    for _, it in ipairs(cjson.decode(stale(c, f2, "/kv?prefix=which/")).items) do
      assert.equal("v1", it.value)
    end

    -- deploying v2: f1's file now matches; the others warn about the new version
    must_deploy(c, f2, "boot.lua", v2)
    for _, pair in ipairs{ { l, v1 }, { f2, v3 } } do
      local id, text = pair[1], pair[2]
      local w = c:wait_for(function()
        for _, r in ipairs(log_lines(c, id, WARN)) do
          if r.replicated_sha256 == sha256(v2) then return r end
        end
      end, 10000, "node " .. id .. "'s warning about v2")
      assert.equal(sha256(text), w.file_sha256)
    end
    for _, id in ipairs(c.ids) do
      assert.equal("v2", select(2, cmd(c, id, "which")).result)
    end
    all_agree(c)
    assert.equal(1, #log_lines(c, f1, WARN)) -- its file is the replicated v2

    -- a restart does not undo the deploy (the seed is spent)
    c:restart(l)
    for _, id in ipairs(c.ids) do
      assert.equal('"v2"', stale(c, id, "/query/which"):gsub("%s+$", ""))
    end

    -- a broken local file still stops the node from starting
    spit(file, "local c = {}\nfunction c.x(\nreturn { commands = c }\n")
    c:stop(f1)
    c:start_node(f1, { wait = false })
    c:wait_for(function() c:reap() return c.nodes[f1].state == "exited" end,
               10000, "node " .. f1 .. " to refuse to start")
    assert.equal(2, c.nodes[f1].exit.code)
    assert.matches("boot%.lua:%d", c:log(f1))
    spit(file, v2)
    c:start_node(f1)
    all_agree(c)
  end)
end)

describe("the bootstrap script and whole-cluster restarts", function()
  local c, dir
  after_each(function()
    local cc = c
    c = nil
    if cc then assert(cc:shutdown()) end
    if dir then os.execute("rm -rf '" .. dir .. "'") dir = nil end
  end)
  teardown(function() cluster.kill_all() end)

  local function restart_all(cc)
    D.kill_all_nodes(cc)
    D.start_all_nodes(cc)
    cc:leader()
  end

  it("neither an update nor a delete is undone by restarting every node", function()
    dir = proc.mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/rafting-boot-XXXXXX")
    local file = dir .. "/boot.lua"
    local v1, v2 = versioned("v1", 1), versioned("v2", 10)
    spit(file, v1)
    c = D.start{ nodes = 3, commands = file }
    local l = c:leader()
    local list = all_agree(c)
    assert.equal(sha256(v1), list[1].sha256)
    assert.equal(1, select(2, cmd(c, l, "bump")).result)
    must_deploy(c, l, "boot.lua", v2)
    assert.equal(11, select(2, cmd(c, l, "bump")).result)

    restart_all(c)
    list = all_agree(c)
    assert.equal(1, #list)
    assert.equal(sha256(v2), list[1].sha256)
    l = c:leader()
    assert.equal(21, select(2, cmd(c, l, "bump")).result)

    local code, body = c:http(l, "DELETE", "/scripts/boot.lua")
    assert.equal(200, code, body)
    restart_all(c)
    list = all_agree(c)
    assert.same({}, list)
    for _, id in ipairs(c.ids) do
      assert.equal(404, (cmd(c, id, "bump")))
    end
    assert.equal("21", (select(2, c:http(c:leader(), "GET", "/kv/n"))))
  end)
end)

describe("deploying scripts with tokens", function()
  local c
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  local TOK = { read = ("r"):rep(20), write = ("w"):rep(20), admin = ("a"):rep(20) }

  it("needs the admin role to deploy or delete, the read role to list", function()
    c = H.start{ nodes = 3, token = TOK.admin, auth = { tokens = {
      { name = "reader", token = TOK.read, role = "read" },
      { name = "writer", token = TOK.write, role = "write" },
      { name = "ops", token = TOK.admin, role = "admin" } } } }
    local l = c:leader()
    local f = H.others(c, l)[1]
    local function as(tok) return { headers = { Authorization = "Bearer " .. tok } } end
    local src = versioned("v1", 1)
    for _, id in ipairs{ l, f } do
      for _, who in ipairs{ "read", "write" } do
        local code, body = c:http(id, "PUT", "/scripts/t.lua", src, as(TOK[who]))
        assert.equal(403, code, body)
        assert.equal(401, (c:http(id, "PUT", "/scripts/t.lua", src, { headers = {} })))
      end
    end
    local code, body = c:http(f, "PUT", "/scripts/t.lua", src, as(TOK.admin))
    assert.equal(200, code, body)
    for _, who in ipairs{ "read", "write", "admin" } do
      code, body = c:http(f, "GET", "/scripts", nil, as(TOK[who]))
      assert.equal(200, code, body)
      assert.equal("t.lua", cjson.decode(body)[1].name)
      assert.equal(200, (c:http(f, "GET", "/scripts/t.lua", nil, as(TOK[who]))))
    end
    assert.equal(200, (c:http(f, "POST", "/cmd/bump", "{}", as(TOK.write))))
    assert.equal(403, (c:http(f, "DELETE", "/scripts/t.lua", nil, as(TOK.write))))
    assert.equal(200, (c:http(f, "DELETE", "/scripts/t.lua", nil, as(TOK.admin))))
    all_agree(c)
  end)
end)

describe("a script deployed over REST runs in the sandbox", function()
  local c
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  local PROBE = [[
local commands, queries = {}, {}

function commands.probe(args, ctx)
  local r = {}
  for _, n in ipairs{ "io", "require", "package", "debug", "dofile", "loadfile",
                      "collectgarbage" } do
    r[n] = type(_G[n])
  end
  r.os = { getenv = type(os.getenv), execute = type(os.execute), exit = type(os.exit),
           time = os.time(), clock = os.clock() }
  r.dump = type(string.dump)
  r.random = { math.random(1, 1000000), math.random(1000000), math.floor(math.random() * 1e9) }
  local t, order = {}, {}
  for i, k in ipairs{ "z", "y", 3, 2, 1, "x", "beta", "alpha", 10 } do t[k] = i end
  t[true], t[false] = 1, 1
  for k in pairs(t) do order[#order + 1] = tostring(k) end
  r.pairs = table.concat(order, ",")
  r.tostring = tostring({}) .. "|" .. tostring(print)
  r.bytecode = select(2, load("\27Lua\x54\0junk")) and "refused" or "loaded"
  local recs = {}
  for i = 1, 50 do recs[i] = { k = i % 3, id = i } end
  table.sort(recs, function(a, b) return a.k < b.k end)
  local ids = {}
  for i, x in ipairs(recs) do ids[i] = x.id end
  r.sort = table.concat(ids, ",")
  r.time = ctx.time
  r.reserved = kv.get("\0rafting/scripts/probe.lua") == nil
  kv.put(("probe/%08d"):format(ctx.index), json.encode(r))
  return r
end

function commands.loop() while true do end end

function commands.reserved() kv.put("\0rafting/scripts/evil.lua", "x") end

function queries.random() return math.random(1, 1000000) end

return { commands = commands, queries = queries }
]]

  it("gives every node the same results for the probes, and the budget error", function()
    c = H.start{ nodes = 3 }
    local l = c:leader()
    local f = H.others(c, l)[1]
    must_deploy(c, f, "probe.lua", PROBE)
    local results = {}
    for i = 1, 6 do
      local code, v = cmd(c, c.ids[i % 3 + 1], "probe")
      assert.equal(200, code, cjson.encode(v))
      results[#results + 1] = v.result
    end
    local code, v = cmd(c, f, "loop")
    assert.equal(422, code)
    assert.matches("^probe%.lua:%d+: instruction budget exceeded", v.message)
    code, v = cmd(c, f, "reserved")
    assert.equal(422, code)
    all_agree(c)
    -- what each node computed is the same text on every node
    local want = dump(c, l, "probe/")
    for _, id in ipairs(c.ids) do assert.equal(want, dump(c, id, "probe/")) end
    assert.equal(6, #cjson.decode(want).items)
    local r = results[1]
    for _, n in ipairs{ "io", "require", "package", "debug", "dofile", "loadfile",
                        "collectgarbage" } do
      assert.equal("nil", r[n], n)
    end
    assert.same({ "nil", "nil", "nil" }, { r.os.getenv, r.os.execute, r.os.exit })
    assert.equal("nil", r.dump)
    assert.equal("1,2,3,10,alpha,beta,x,y,z,false,true", r.pairs)
    assert.equal("table|function", r.tostring)
    assert.equal("refused", r.bytecode)
    assert.is_true(r.reserved)
    assert.equal(r.os.time, r.time // 1000)
    -- math.random is seeded from the entry index: different entries differ
    assert.are_not.same(results[1].random, results[2].random)
    -- a stable sort: equal keys keep their order
    local ids = {}
    for id in r.sort:gmatch("%d+") do ids[#ids + 1] = tonumber(id) end
    for i = 2, #ids do
      local a, b = ids[i - 1], ids[i]
      assert.is_true(a % 3 < b % 3 or (a % 3 == b % 3 and a < b), r.sort)
    end
  end)
end)

describe("the reserved \\0rafting/ keys", function()
  local c
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  it("are refused, never listed, never watched", function()
    c = H.start{ nodes = 3 }
    local l = c:leader()
    local f = H.others(c, l)[1]
    H.put(c, l, "user", "u")
    settle(c)
    local since = assert(c:status(f)).applied
    must_deploy(c, l, "x.lua", versioned("v1", 1))
    H.put(c, l, "after", "a")
    for _, id in ipairs{ l, f } do
      for _, m in ipairs{ "PUT", "DELETE" } do
        local code, body = c:http(id, m, "/kv/%00rafting/scripts/x.lua", "evil")
        assert.equal(400, code, body)
        assert.equal("reserved_key", cjson.decode(body).error)
      end
      assert.equal(404, (c:http(id, "GET", "/kv/%00rafting/scripts/x.lua")))
      for _, q in ipairs{ "/kv?prefix=", "/kv?prefix=%00", "/kv?prefix=%00rafting/" } do
        for _, it in ipairs(cjson.decode(stale(c, id, q .. "&limit=10000&encoding=base64")).items) do
          assert.is_nil(it.key:find("^AH"), q .. " lists a key starting with \\0: " .. it.key)
        end
      end
      local items = cjson.decode(stale(c, id, "/kv?prefix=&limit=10000")).items
      assert.equal(2, #items)
      assert.same({ "after", "user" }, { items[1].key, items[2].key })
    end
    assert.equal('"v1"', stale(c, f, "/query/version"):gsub("%s+$", ""))
    -- the install is not a change a watcher sees; the next write is
    local code, body = c:http(f, "GET", ("/watch?prefix=&since=%d&timeout_ms=5000"):format(since))
    assert.equal(200, code, body)
    local events = cjson.decode(body).events
    assert.equal(1, #events, body)
    assert.equal("after", events[1].key)
    code, body = c:http(f, "GET", ("/watch?prefix=%%00&since=%d&timeout_ms=200"):format(since))
    assert.equal(200, code, body)
    assert.same({}, cjson.decode(body).events)
  end)
end)
