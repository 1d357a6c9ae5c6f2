-- ctl_spec.lua -- `rafting ctl` against a real 3-node cluster: every
-- command (scripts too), stdin values, binary-safe get, exit codes, endpoint failover,
-- 307 following, pretty JSON.

local cluster = require "rafting.testing.cluster"
local cjson = require "cjson"
local proc = require "rafting.proc"
local H = require "spec.support.http_helper"
local X = require "spec.support.ctl_helper"

describe("rafting ctl (3 real nodes)", function()
  local c, leader, eps

  local function ctl(args, opts)
    local full = { "--endpoints", eps, "--timeout", "5" }
    for _, a in ipairs(args) do full[#full + 1] = a end
    return X.run(full, opts)
  end

  setup(function()
    c = H.start{ nodes = 3 }
    leader = c:leader()
    eps = X.endpoints(c)
  end)
  teardown(function()
    H.shutdown(c)
    cluster.kill_all()
  end)

  it("put, get, del: exit 0, raw value, then exit 1 once deleted", function()
    local code, out, err = ctl{ "put", "greeting", "hello" }
    assert.equal(0, code, err)
    local ans = cjson.decode(out)
    assert.is_true(ans.result)
    assert.is_true(ans.index > 0)
    code, out = ctl{ "get", "greeting" }
    assert.equal(0, code)
    assert.equal("hello", out)           -- raw: no newline, no JSON
    code, out, err = ctl{ "del", "greeting" }
    assert.equal(0, code, err)
    assert.is_true(cjson.decode(out).result)
    code, out, err = ctl{ "get", "greeting" }
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("HTTP 404", err)
  end)

  it("put reads the value from stdin when it is absent or '-', binary-safe", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local value = table.concat(bytes) .. "\n"
    local code, _, err = ctl({ "put", "bin/all bytes" }, { stdin = value })
    assert.equal(0, code, err)
    local out
    code, out = ctl{ "get", "bin/all bytes" }
    assert.equal(0, code)
    assert.equal(value, out)
    code, _, err = ctl({ "put", "dash", "-" }, { stdin = "from stdin" })
    assert.equal(0, code, err)
    code, out = ctl{ "get", "--stale", "dash" }
    -- --stale is an option: given after the command it is a key argument
    assert.equal(2, code)
    code, out = ctl{ "get", "dash" }
    assert.equal("from stdin", out)
  end)

  it("ls prints the range as indented JSON, and says when --limit cut it", function()
    for i = 1, 3 do assert.equal(0, (ctl{ "put", "ls/k" .. i, "v" .. i })) end
    local code, out, err = ctl{ "ls", "ls/" }
    assert.equal(0, code, err)
    assert.matches('\n  "items": %[\n', out)
    local v = cjson.decode(out)
    assert.equal(3, #v.items)
    assert.same({ key = "ls/k1", value = "v1" }, v.items[1])
    assert.is_false(v.more)
    assert.equal("", err)
    code, out, err = ctl{ "--limit", "2", "ls", "ls/" }
    assert.equal(0, code)
    assert.equal(2, #cjson.decode(out).items)
    assert.matches("more keys", err)
  end)

  it("ls pages through more keys than one page holds, without gap or repeat", function()
    -- 2,345 keys: three GET /kv pages of 1,000 (LS_PAGE in src/ctl/ctl.c)
    local n = 2345
    for i = 1, n do
      local code, body = c:http(leader, "PUT", ("/kv/pg/%05d"):format(i), tostring(i))
      assert.equal(200, code, body)
    end
    local code, out, err = ctl{ "ls", "pg/" }
    assert.equal(0, code, err)
    local v = cjson.decode(out)
    assert.equal(n, #v.items)
    for i = 1, n do
      assert.equal(("pg/%05d"):format(i), v.items[i].key)
      assert.equal(tostring(i), v.items[i].value)
    end
    assert.is_false(v.more)
    assert.equal("", err)
    -- --limit across a page boundary
    code, out, err = ctl{ "--limit", "1500", "ls", "pg/" }
    assert.equal(0, code, err)
    v = cjson.decode(out)
    assert.equal(1500, #v.items)
    assert.equal("pg/01500", v.items[1500].key)
    assert.is_true(v.more)
    assert.matches("more keys", err)
  end)

  it("watch prints each change under the prefix as a JSON line as it comes", function()
    local out = os.tmpname()
    local pid = assert(cluster.spawn{
      argv = { os.getenv("RAFTING_BIN") or "./build/rafting", "ctl",
               "--endpoints", eps, "watch", "wt/" },
      stdout = out, stderr = out })
    local function text()
      local f = io.open(out, "rb")
      local s = f and f:read("a") or ""
      if f then f:close() end
      return s
    end
    local ok, err = pcall(function()
      -- the stream's first line: listening from the applied index
      assert(cluster.wait_until(function() return text():find("\n") end,
                                10000, "the watch's first line"))
      for _, kv in ipairs{ { "wt/a", "1" }, { "other", "x" }, { "wt/b", "2" } } do
        assert.equal(0, (ctl{ "put", kv[1], kv[2] }))
      end
      assert(cluster.wait_until(function() return text():find("wt/b", 1, true) end,
                                10000, "the change to wt/b on the stream"))
    end)
    proc.kill(pid, "TERM")
    cluster.wait_pid(pid, 5000)
    local s = text()
    os.remove(out)
    assert(ok, tostring(err) .. "\n" .. s)
    local keys = {}
    for line in s:gmatch("[^\n]+") do
      for _, e in ipairs(cjson.decode(line).events) do keys[#keys + 1] = e.key end
    end
    assert.same({ "wt/a", "wt/b" }, keys)
  end)

  it("cmd and query", function()
    local code, out, err = ctl{ "cmd", "incr", '{"key":"hits","by":2}' }
    assert.equal(0, code, err)
    assert.equal(2, cjson.decode(out).result)
    code, out, err = ctl({ "cmd", "append", "-" },
                         { stdin = '{"key":"todo","item":"milk"}' })
    assert.equal(0, code, err)
    code, out, err = ctl{ "query", "list", "key=todo" }
    assert.equal(0, code, err)
    assert.same({ "milk" }, cjson.decode(out))
    code, _, err = ctl{ "cmd", "no_such_command", "{}" }
    assert.equal(1, code)
    assert.matches("unknown_command", err)
    code, _, err = ctl{ "cmd", "incr", "{not json" }
    assert.equal(4, code)
    assert.matches("HTTP 400", err)
  end)

  it("script put (file or stdin), list, get, delete; a bad script exits 4", function()
    local v1 = "local c = {}\nfunction c.ctlver() return 1 end\nreturn { commands = c }\n"
    local v2 = v1:gsub("return 1", "return 2")
    local file = os.tmpname()
    local f = assert(io.open(file, "wb"))
    f:write(v1)
    f:close()
    local code, out, err = ctl{ "script", "put", "ctlver.lua", file }
    os.remove(file)
    assert.equal(0, code, err)
    local ans = cjson.decode(out)
    assert.equal("ctlver.lua", ans.result.name)
    assert.same({ "ctlver" }, ans.result.commands)
    assert.equal(1, cjson.decode((select(2, ctl{ "cmd", "ctlver" }))).result)
    code, out, err = ctl({ "script", "put", "ctlver.lua", "-" }, { stdin = v2 })
    assert.equal(0, code, err)
    assert.equal(2, cjson.decode((select(2, ctl{ "cmd", "ctlver" }))).result)
    code, out = ctl{ "script", "get", "ctlver.lua" }
    assert.equal(0, code)
    assert.equal(v2, out)                -- raw source, as deployed
    code, out, err = ctl{ "script", "list" }
    assert.equal(0, code, err)
    local names = {}
    for _, s in ipairs(cjson.decode(out)) do names[#names + 1] = s.name end
    assert.is_truthy(table.concat(names, " "):find("ctlver.lua", 1, true))
    -- rejected by the leader: 400 bad_script, exit 4, the message on stderr
    code, out, err = ctl({ "script", "put", "broken.lua", "-" },
                         { stdin = "local x =\nreturn {" })
    assert.equal(4, code)
    assert.equal("", out)
    assert.matches("HTTP 400", err)
    assert.matches("broken.lua:%d", err)
    code, _, err = ctl{ "script", "delete", "ctlver.lua" }
    assert.equal(0, code, err)
    code, _, err = ctl{ "script", "get", "ctlver.lua" }
    assert.equal(1, code)
    assert.matches("HTTP 404", err)
    code, _, err = ctl{ "script", "delete", "ctlver.lua" }
    assert.equal(1, code)
    code, _, err = ctl{ "cmd", "ctlver" }
    assert.equal(1, code)
    assert.matches("unknown_command", err)
    -- usage: missing arguments, an unknown subcommand, an unreadable file
    for _, args in ipairs{ { "script" }, { "script", "frob" }, { "script", "get" },
                           { "script", "put", "x.lua" }, { "script", "list", "x" },
                           { "script", "put", "x.lua", "/nonexistent/file" } } do
      code, out, err = ctl(args)
      assert.equal(2, code, table.concat(args, " ") .. ": " .. err)
      assert.equal("", out)
    end
  end)

  it("status prints the node's /status", function()
    local code, out, err = ctl{ "status" }
    assert.equal(0, code, err)
    local st = cjson.decode(out)
    assert.equal(c.ids[1], st.id)
    assert.is_truthy(st.role)
  end)

  it("usage errors exit 2", function()
    for _, args in ipairs{ {}, { "frobnicate" }, { "get" }, { "get", "a", "b" },
                           { "--limit", "0", "ls" }, { "--bogus", "status" },
                           { "query", "list", "novalue" },
                           { "leader", "transfer", "x" } } do
      local code, out, err = ctl(args)
      assert.equal(2, code, table.concat(args, " ") .. ": " .. err)
      assert.equal("", out)
      assert.matches("rafting ctl: ", err)
    end
    local code, out = X.run{ "--help" }
    assert.equal(0, code)
    assert.matches("Exit status: 0 ok, 1 not found", out)
  end)

  it("exits 3 when no endpoint answers, after --timeout", function()
    local p1, p2 = proc.free_port(2)
    local t0 = proc.now_ms()
    local code, _, err = X.run{ "--endpoints", ("http://127.0.0.1:%d,http://127.0.0.1:%d"):format(p1, p2),
                                "--timeout", "1", "get", "x" }
    local took = proc.now_ms() - t0
    assert.equal(3, code)
    assert.matches("unavailable", err)
    assert.is_true(took >= 900 and took < 5000, "took " .. took .. " ms")
  end)

  it("fails over to the next endpoint when the first is down", function()
    local dead = proc.free_port(1)
    local code, out, err = X.run{ "--endpoints",
      ("http://127.0.0.1:%d,%s"):format(dead, X.endpoints(c, { leader })),
      "put", "failover", "ok" }
    assert.equal(0, code, err)
    assert.is_true(cjson.decode(out).result)
  end)

  it("follows a follower's 307 to the leader (--redirect)", function()
    local f = H.others(c, leader)[1]
    local code, out, err = X.run{ "--endpoints", X.endpoints(c, { f }),
                                  "--redirect", "put", "redirected", "yes" }
    assert.equal(0, code, err)
    code, out = X.run{ "--endpoints", X.endpoints(c, { f }), "--redirect",
                       "get", "redirected" }
    assert.equal(0, code)
    assert.equal("yes", out)
  end)

  it("members lists the cluster; leader transfer to an unknown id exits 1", function()
    local code, out, err = ctl{ "members" }
    assert.equal(0, code, err)
    local v = cjson.decode(out)
    assert.equal(3, #v.members)
    assert.equal(leader, v.leader)
    code, _, err = ctl{ "leader", "transfer", "99" }
    assert.equal(1, code)
    assert.matches("HTTP 404", err)
  end)
end)

describe("rafting ctl retries 503 until its deadline", function()
  local c
  setup(function() c = H.start{ nodes = 3 } end)
  teardown(function()
    H.shutdown(c)
    cluster.kill_all()
  end)

  it("a write while the cluster has no quorum waits, then succeeds once a quorum is back", function()
    local leader = c:leader()
    local others = H.others(c, leader)
    c:kill(others[1])
    c:kill(others[2])
    -- the leader steps down (check-quorum): it answers 503 from then on
    c:wait_for(function()
      local code = c:http(leader, "GET", "/kv/x")
      return code == 503
    end, 5000, "the lone node to answer 503")
    -- with a short timeout: exit 3, the 503 named
    local code, _, err = X.run{ "--endpoints", X.endpoints(c, { leader }),
                                "--timeout", "0.5", "put", "q", "1" }
    assert.equal(3, code)
    assert.matches("503", err)
    -- a long one outlasts the outage
    local out = os.tmpname()
    local pid = assert(cluster.spawn{
      argv = { os.getenv("RAFTING_BIN") or "./build/rafting", "ctl",
               "--endpoints", X.endpoints(c, { leader }), "--timeout", "20",
               "put", "q", "after-outage" },
      stdout = out, stderr = out })
    c:start_node(others[1])
    local how, status = cluster.wait_pid(pid, 25000)
    local f = io.open(out, "rb")
    local text = f and f:read("a") or ""
    if f then f:close() end
    os.remove(out)
    assert.equal("exited", how, text)
    assert.equal(0, status, text)
    assert.is_true(cjson.decode(text).result)
    local code2, body = c:http(leader, "GET", "/kv/q")
    assert.equal(200, code2)
    assert.equal("after-outage", body)
  end)
end)
