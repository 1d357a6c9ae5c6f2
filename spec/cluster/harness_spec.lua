-- harness_spec.lua -- the cluster harness and rafting.proc, exercised on
-- real processes: spec/support/fake_node.lua stands in for `rafting`.

local cluster = require "rafting.testing.cluster"
local proc = require "rafting.proc"
local leftovers = require "spec.support.no_leftovers"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local FAKE = here .. "../support/fake_node.lua"
local LUA = "lua5.4"

-- Options that start fake nodes able to find the same Lua modules as we do.
local function fake_opts(extra)
  local o = { binary = { LUA, FAKE },
              env = { LUA_CPATH = package.cpath, LUA_PATH = package.path } }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

describe("rafting.proc", function()
  it("spawns, reports exit codes and signals, and reaps", function()
    local pid = assert(proc.spawn{ argv = { "sh", "-c", "exit 7" } })
    assert.same({ "exited", 7 }, { proc.wait(pid) })
    assert.is_false(proc.alive(pid))

    pid = assert(proc.spawn{ argv = { "sleep", "30" } })
    assert.is_true(proc.alive(pid))
    assert.is_nil((proc.wait(pid, true)))          -- still running
    assert.is_true(proc.kill(pid, "KILL"))
    assert.same({ "signaled", 9, "KILL" }, { proc.wait(pid) })
    local ok, err = proc.wait(pid, true)
    assert.is_nil(ok)
    assert.matches("No child", err)
  end)

  it("reports exec failure as nil, message", function()
    local pid, err = proc.spawn{ argv = { "/nonexistent/rafting" } }
    assert.is_nil(pid)
    assert.matches("exec /nonexistent/rafting: No such file", err)
    pid, err = proc.spawn{ argv = { "true" }, stdout = "/nonexistent/dir/log" }
    assert.is_nil(pid)
    assert.matches("open /nonexistent/dir/log", err)
  end)

  it("redirects output, sets the environment and closes inherited fds", function()
    local dir = assert(proc.mkdtemp("/tmp/rafting-proc-spec-"))
    local out = dir .. "/out"
    local pid = assert(proc.spawn{
      argv = { "sh", "-c", 'echo "$A/$HOME"; echo err >&2; ls /proc/self/fd | wc -l' },
      stdout = out, stderr = out, env = { A = "a", HOME = false } })
    assert.same({ "exited", 0 }, { proc.wait(pid) })
    local f = assert(io.open(out))
    local text = f:read("a")
    f:close()
    os.remove(out)
    os.remove(dir)
    -- "a/" (HOME unset), stderr in the same file, and only fds 0-2 plus
    -- the one ls opens for reading /proc/self/fd
    assert.equal("a/\nerr\n4\n", text)
  end)

  it("pauses and continues a process", function()
    local pid = assert(proc.spawn{ argv = { "sleep", "30" } })
    finally(function() proc.kill(pid, "KILL") proc.wait(pid) end)
    proc.kill(pid, "STOP")
    cluster.wait_until(function() return proc.state(pid) == "T" end, 2000, "stopped")
    proc.kill(pid, "CONT")
    cluster.wait_until(function() return proc.state(pid) ~= "T" end, 2000, "continued")
  end)

  it("refuses pid 0 and unknown signals", function()
    assert.has_error(function() proc.kill(0, "TERM") end)
    assert.has_error(function() proc.kill(-1, "KILL") end)
    assert.has_error(function() proc.kill(proc.getpid(), "NOPE") end)
  end)

  it("hands out distinct free ports and a monotonic clock", function()
    local ports = { proc.free_port(8) }
    local seen = {}
    for _, p in ipairs(ports) do
      assert.is_true(p > 0 and p < 65536)
      assert.is_nil(seen[p])
      seen[p] = true
    end
    local t0 = proc.now_ms()
    proc.sleep_ms(5)
    assert.is_true(proc.now_ms() >= t0 + 5)
    assert.equal("number", type(proc.getpid()))
  end)

  it("kills a child whose parent dies (PR_SET_PDEATHSIG)", function()
    local dir = assert(proc.mkdtemp("/tmp/rafting-proc-spec-"))
    local pidfile = dir .. "/grandchild"
    -- A Lua parent that spawns a grandchild, publishes its pid, then waits.
    local script = ([[
      package.cpath = %q
      local proc = require "rafting.proc"
      local pid = assert(proc.spawn{ argv = { "sleep", "60" } })
      local f = io.open(%q .. ".tmp", "w") f:write(pid) f:close()
      os.rename(%q .. ".tmp", %q)
      proc.wait(pid)
    ]]):format(package.cpath, pidfile, pidfile, pidfile)
    local parent = assert(proc.spawn{ argv = { LUA, "-e", script } })
    finally(function()
      if proc.alive(parent) then proc.kill(parent, "KILL") end
      proc.wait(parent, true)
      os.remove(pidfile)
      os.remove(dir)
    end)
    cluster.wait_until(function() return exists(pidfile) end, 5000, "grandchild pid")
    local f = assert(io.open(pidfile))
    local grandchild = tonumber(f:read("a"))
    f:close()
    assert.is_true(proc.alive(grandchild))
    proc.kill(parent, "KILL")
    proc.wait(parent)
    cluster.wait_until(function() return not proc.alive(grandchild) end, 5000,
                       "grandchild killed with its parent")
  end)
end)

describe("cluster harness (fake nodes)", function()
  local c
  after_each(function()
    if c then
      local ok, bad = c:shutdown()
      c = nil
      assert(ok, bad and table.concat(bad, "; "))
    end
  end)
  teardown(function() cluster.kill_all() end)

  it("writes a config with free ports, starts N nodes and finds the leader", function()
    c = cluster.start(fake_opts{ nodes = 3, fake = { leader = 2, term = 5 },
                                 timing = { tick_ms = 10 } })
    local f = assert(io.open(c.config_path))
    local text = f:read("a")
    f:close()
    assert.matches("storage = \"memory\"", text, 1, true)
    assert.matches("tick_ms = 10", text, 1, true)
    local cfg = assert(load(text, "config", "t", {}))()
    assert.equal(3, #cfg.nodes)
    local ports = {}
    for _, n in ipairs(cfg.nodes) do
      for _, a in ipairs{ n.peer, n.http } do
        assert.is_nil(ports[a])
        ports[a] = true
      end
    end
    local id, term = c:leader()
    assert.equal(2, id)
    assert.equal(5, term)
    assert.equal(3, #c:running())
    local s = c:status(1)
    assert.equal("follower", s.role)
    assert.equal(2, s.leader)
    assert.equal(math.type(s.term), "integer")
    assert.equal(c.nodes[2].http, s.leader_http)
    local code, body, hdrs = c:http(3, "GET", "/health")
    assert.equal(200, code)
    assert.equal('{"ok":true}', body)
    assert.equal("application/json", hdrs["content-type"])
    assert.matches("listening", c:log(1))
  end)

  it("kills, pauses, resumes, stops and restarts nodes", function()
    c = cluster.start(fake_opts{ nodes = 3 })
    local pid1 = c.nodes[1].pid
    c:kill(1)
    assert.equal("killed", c.nodes[1].state)
    assert.is_false(proc.alive(pid1))
    local s, err = c:status(1)
    assert.is_nil(s)
    assert.equal("killed", err)

    c:pause(2)
    assert.equal("T", proc.state(c.nodes[2].pid))
    assert.same({ 3 }, c:running())
    s, err = c:status(2, 200)
    assert.is_nil(s)
    assert.matches("timeout", err)
    c:resume(2)
    assert.equal("follower", c:status(2).role)

    assert.is_true(c:stop(3))
    assert.equal("stopped", c.nodes[3].state)
    assert.matches("stopping on SIGTERM", c:log(3))

    c:restart(1)
    c:restart(3)
    assert.not_equal(pid1, c.nodes[1].pid)
    assert.equal(2, c.nodes[1].starts)
    assert.matches("start #2 of node 1", c:log(1))
    local id = c:leader()
    assert.equal(1, id)
    c:restart(2)  -- a running node: SIGTERM, then start again
    assert.equal(2, c.nodes[2].starts)
    assert.same({ 1, 2, 3 }, c:running())
  end)

  it("stop() insists on exit 0, and SIGKILLs a node that ignores SIGTERM", function()
    c = cluster.start(fake_opts{ nodes = 2, fake = { term_exit = 3 } })
    local err = select(2, pcall(c.stop, c, 1))
    assert.matches("node 1 stopped with exit 3, want exit 0", err)
    c:shutdown()

    c = cluster.start(fake_opts{ nodes = 1, fake = { ignore_term = true } })
    local pid = c.nodes[1].pid
    err = select(2, pcall(c.stop, c, 1, 300))
    assert.matches("did not exit within 300 ms of SIGTERM", err)
    assert.is_false(proc.alive(pid))
    assert.equal("killed", c.nodes[1].state)
  end)

  it("wait_for raises naming what it waited for, the reason and every node", function()
    c = cluster.start(fake_opts{ nodes = 2 })
    c:status(1)
    local t0 = proc.now_ms()
    local ok, err = pcall(c.wait_for, c, function() return false, "why not" end,
                          200, "a pony")
    assert.is_false(ok)
    assert.is_true(proc.now_ms() - t0 >= 200)
    assert.matches("timed out after 200 ms waiting for a pony", err, 1, true)
    assert.matches("last: why not", err, 1, true)
    assert.matches("node 1 [running pid " .. c.nodes[1].pid .. "]: role=leader", err, 1, true)
    assert.matches("node 2 [running", err, 1, true)
    assert.matches("| [node 1] listening", err, 1, true)
    -- a true value comes back with everything the predicate returned
    assert.same({ "a", "b" }, { c:wait_for(function() return "a", "b" end) })
  end)

  it("tracks terms and indexes, and sees split brains", function()
    c = cluster.start(fake_opts{ nodes = 3 })
    local _, term = c:leader()
    for id = 1, 3 do
      assert.equal(200, (c:http(id, "PUT", "/fake/status",
                                '{"term":7,"commit":4,"last_index":5}')))
    end
    assert.equal(7, c:wait_term_above(term))
    assert.equal(4, c:wait_index(2, 4).commit)
    assert.equal(5, c:wait_index(2, 5, nil, "last_index").last_index)
    assert.has_error(function() c:wait_index(2, 5, 100) end)
    assert.equal(200, (c:http(3, "PUT", "/fake/status", '{"role":"leader"}')))
    local ok, err = pcall(c.leader, c, 200)
    assert.is_false(ok)
    assert.matches("nodes 1 and 3 both say leader", err, 1, true)
    ok, err = pcall(c.holds, c, function() return c:agreed_leader() end, 200, "one leader")
    assert.is_false(ok)
    assert.matches("one leader broke after", err, 1, true)
    assert.is_true(c:holds(function() return c:status(1) ~= nil end, 100, "node 1 up"))
  end)

  it("notices a node that exits on its own", function()
    c = cluster.start(fake_opts{ nodes = 2 })
    c:http(2, "POST", "/fake/exit?code=5")
    c:wait_for(function() return c.nodes[2].state == "exited" end, 5000, "node 2 gone")
    assert.same({ how = "exited", code = 5 }, c.nodes[2].exit)
    local err = select(2, pcall(c.leader, c, 100, { among = { 1, 2 } }))
    assert.matches("node 2 unreachable: exited", err, 1, true)
    assert.matches("node 2 %[exited pid %d+, exit 5%]", err)
    c:restart(2)
    assert.equal(1, (c:leader()))
  end)

  it("fails start() with the node's log when a node cannot start", function()
    local before = #cluster.live_pids()
    local ok, err = pcall(cluster.start, fake_opts{ nodes = 2,
      binary = { LUA, FAKE, "--bogus" } })
    assert.is_false(ok)
    assert.matches("exited while starting (exit 2)", err, 1, true)
    assert.matches("unknown flag --bogus", err, 1, true)
    assert.equal(before, #cluster.live_pids())

    ok, err = pcall(cluster.start, { binary = "/nonexistent/rafting" })
    assert.is_false(ok)
    assert.matches("RAFTING_BIN", err, 1, true)
  end)

  it("starts the nodes of a given config file unchanged", function()
    local dir = assert(proc.mkdtemp("/tmp/rafting-harness-spec-"))
    local path = dir .. "/two.lua"
    local p = { proc.free_port(4) }
    local f = assert(io.open(path, "w"))
    f:write(("return { cluster = 'two', fake = { leader = 9 }, nodes = {\n" ..
             "  { id = 7, peer = '127.0.0.1:%d', http = '127.0.0.1:%d' },\n" ..
             "  { id = 9, peer = '127.0.0.1:%d', http = '127.0.0.1:%d' } } }\n")
            :format(p[1], p[2], p[3], p[4]))
    f:close()
    finally(function() os.remove(path) os.remove(dir) end)
    c = cluster.from_config(path, fake_opts())
    assert.same({ 7, 9 }, c.ids)
    assert.equal(9, (c:leader()))
    assert.equal("127.0.0.1:" .. p[2], c.nodes[7].http)
    assert.equal(path, c.config_path)
  end)

  it("shutdown() reaps every node and removes the temp dir", function()
    c = cluster.start(fake_opts{ nodes = 3 })
    c:pause(1)  -- a paused node too must go
    c:kill(3)
    local dir, pids = c.dir, { c.nodes[1].pid, c.nodes[2].pid }
    assert.is_true(c:shutdown())
    assert.is_true(c:shutdown())  -- idempotent
    c = nil
    for _, pid in ipairs(pids) do assert.is_false(proc.alive(pid)) end
    assert.is_false(exists(dir .. "/cluster.lua"))
  end)

  it("kill_all() and collection of a dropped cluster kill its nodes", function()
    local a = cluster.start(fake_opts{ nodes = 2 })
    local pids = { a.nodes[1].pid, a.nodes[2].pid }
    assert.equal(2, cluster.kill_all())
    for _, pid in ipairs(pids) do assert.is_false(proc.alive(pid)) end
    assert.same({}, cluster.live_pids())

    local b = cluster.start(fake_opts{ nodes = 2 })
    pids = { b.nodes[1].pid, b.nodes[2].pid }
    b = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    for _, pid in ipairs(pids) do assert.is_false(proc.alive(pid)) end
  end)

  it("closes a cluster held in a <close> variable", function()
    local pid
    do
      local d <close> = cluster.start(fake_opts{ nodes = 1 })
      pid = d.nodes[1].pid
      assert.is_true(proc.alive(pid))
    end
    assert.is_false(proc.alive(pid))
  end)
end)

describe("no leftovers", function()
  -- A runner that starts a cluster and then dies without any cleanup: its
  -- nodes must die with it (PR_SET_PDEATHSIG), as the pid file proves.
  local function orphan_run(how)
    local dir = assert(proc.mkdtemp("/tmp/rafting-leftover-spec-"))
    local pidfile = dir .. "/pids"
    local script = ([[
      package.path, package.cpath = %q, %q
      local cluster = require "rafting.testing.cluster"
      local c = cluster.start{ nodes = 3, binary = { %q, %q },
        env = { LUA_CPATH = package.cpath, LUA_PATH = package.path } }
      io.open(%q, "w"):close()
      cluster.wait_until(function() return io.open(%q) end, 60000, "go")
      os.exit(1, false)  -- no lua_close, so no __gc either
    ]]):format(package.path, package.cpath, LUA, FAKE, dir .. "/ready", dir .. "/go")
    local runner = assert(proc.spawn{ argv = { LUA, "-e", script },
                                      env = { RAFTING_PIDFILE = pidfile, RAFTING_TEST_TMP = dir },
                                      stderr = dir .. "/runner.log" })
    finally(function()
      if proc.alive(runner) then proc.kill(runner, "KILL") end
      proc.wait(runner, true)
      for _, p in ipairs(leftovers.check(pidfile)) do proc.kill(p.pid, "KILL") end
      os.execute("rm -rf '" .. dir .. "'")
    end)
    cluster.wait_until(function()
      return exists(dir .. "/ready") or not proc.alive(runner)
    end, 10000, "the runner's cluster")
    assert.is_true(exists(dir .. "/ready"))
    assert.equal(3, #leftovers.check(pidfile))
    if how == "kill" then proc.kill(runner, "KILL")
    else io.open(dir .. "/go", "w"):close() end
    proc.wait(runner)
    cluster.wait_until(function()
      local left = leftovers.check(pidfile)
      return #left == 0, #left .. " alive"
    end, 5000, "no node left after the runner died")
  end

  it("when the runner is SIGKILLed", function() orphan_run("kill") end)
  it("when the runner exits without closing its Lua state", function() orphan_run("exit") end)

  it("this run has none registered", function()
    cluster.kill_all()
    assert.same({}, cluster.live_pids())
    -- the pid file may be shared with other runs: look at our children
    assert.same({}, leftovers.check(cluster.pidfile, proc.getpid()))
  end)
end)
