-- install_spec.lua -- `cmake --install` into a temporary prefix, then the
-- installed tree used from elsewhere: the binary runs a 3-node cluster from
-- another directory with LUA_PATH/LUA_CPATH unset and no path of the source
-- tree in it; busted, run from a temp dir with LUA_PATH on the installed
-- share/lua/5.4 only, requires rafting.testing.cluster and runs a cluster
-- of the installed binary; the man page and the systemd unit are sound; the
-- Docker image builds and runs where a Docker daemon and the Debian images
-- are there (else pending).
--
-- The build installed is the directory of $RAFTING_BIN (default ./build).

local cluster = require "rafting.testing.cluster"
local proc = require "rafting.proc"
local cjson = require "cjson"
local socket = require "socket"

local BIN = os.getenv("RAFTING_BIN") or "./build/rafting"
local BUILD = BIN:match("^(.*)/[^/]+$") or "."
local TIMEOUT_MS = 15000

local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok, out, code
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function tmpdir(tag)
  return assert(proc.mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/rafting-" .. tag .. "-"))
end

-- One HTTP/1.1 request on a fresh connection -> code, body | nil, err.
local function http(port, method, path, body)
  local s = socket.tcp()
  s:settimeout(5)
  local ok, err = s:connect("127.0.0.1", port)
  if not ok then s:close(); return nil, err end
  body = body or ""
  s:send(("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" ..
          "Content-Length: %d\r\n\r\n%s"):format(method, path, #body, body))
  local resp = s:receive("*a")
  s:close()
  if not resp then return nil, "no answer" end
  local code = tonumber(resp:match("^HTTP/1%.1 (%d+)"))
  return code, resp:match("\r\n\r\n(.*)$")
end

-- pids of live processes whose executable lies under dir (the prefix is a
-- fresh temp dir, so these are ours)
local function procs_under(dir)
  local found = {}
  local p = io.popen("ls /proc")
  for pid in p:lines() do
    if pid:match("^%d+$") then
      local l = io.popen("readlink /proc/" .. pid .. "/exe 2>/dev/null")
      local exe = l:read("l")
      l:close()
      if exe and exe:sub(1, #dir + 1) == dir .. "/" then found[#found + 1] = pid end
    end
  end
  p:close()
  return found
end

describe("the installed tree", function()
  local prefix, away, root

  setup(function()
    root = assert(io.popen("pwd")):read("l")
    prefix = tmpdir("prefix")
    away = tmpdir("away")
    local ok, out = sh("cmake --install " .. q(BUILD) .. " --prefix " .. q(prefix))
    assert(ok, "cmake --install failed:\n" .. out)
  end)

  teardown(function()
    cluster.kill_all()
    if prefix then sh("rm -rf " .. q(prefix) .. " " .. q(away)) end
  end)

  it("holds the binary, the Lua harness, the man page, the configs and the unit", function()
    for _, f in ipairs{ "bin/rafting", "share/lua/5.4/rafting/testing/cluster.lua",
                        "lib/lua/5.4/rafting/proc.so", "share/man/man1/rafting.1",
                        "share/rafting/local3.lua", "share/rafting/commands/examples.lua",
                        "lib/systemd/system/rafting@.service" } do
      assert.truthy(io.open(prefix .. "/" .. f), f .. " is not installed")
    end
    -- kv.lua is compiled in, not installed
    assert.falsy(io.open(prefix .. "/share/lua/5.4/rafting/sm/kv.lua"))
  end)

  it("has a binary that names no path of the source tree or the build", function()
    local bin = read_file(prefix .. "/bin/rafting")
    if bin:find("__asan_init", 1, true) then
      return pending("a sanitizer build keeps source paths for its reports")
    end
    local build = assert(io.popen("cd " .. q(BUILD) .. " && pwd")):read("l")
    for _, dir in ipairs{ root, build } do
      assert.falsy(bin:find(dir .. "/", 1, true), "the binary contains " .. dir)
    end
    assert.falsy(bin:find("RAFTING_LUA_DIR", 1, true))
  end)

  it("prints version, git revision and build type", function()
    local ok, out = sh("cd " .. q(away) .. " && " .. q(prefix .. "/bin/rafting") .. " --version")
    assert(ok, out)
    assert.truthy(out:match("^rafting %d+%.%d+%.%d+ %(git [%w%-]+, [%w]+ build%)\n$"), out)
  end)

  it("runs a 3-node cluster from another directory without LUA_PATH", function()
    local shared = prefix .. "/share/rafting"
    local ports = { proc.free_port(6) }
    local nodes = {}
    for i = 1, 3 do
      nodes[i] = ("    { id = %d, peer = \"127.0.0.1:%d\", http = \"127.0.0.1:%d\" },")
        :format(i, ports[2 * i - 1], ports[2 * i])
    end
    -- the installed examples, durable storage relative to the working dir
    sh("cp -r " .. q(shared .. "/commands") .. " " .. q(away))
    write_file(away .. "/cluster.lua", table.concat({
      "return {", "  cluster = \"installed\",", "  nodes = {",
      table.concat(nodes, "\n"), "  },",
      "  timing = { tick_ms = 10, election_ticks = 30, heartbeat_ticks = 5 },",
      "  storage = \"data/node%d\",", "  commands = \"commands/examples.lua\",",
      "}" }, "\n") .. "\n")
    local pid = assert(cluster.spawn{
      argv = { prefix .. "/bin/rafting", "cluster", "--config", "cluster.lua" },
      cwd = away, stdout = away .. "/launcher.log", stderr = away .. "/launcher.log",
      env = { LUA_PATH = false, LUA_CPATH = false, LUA_PATH_5_4 = false,
              LUA_CPATH_5_4 = false, LUA_INIT = false, LUA_INIT_5_4 = false },
    })
    local function log() return read_file(away .. "/launcher.log") end
    local leader_port
    local ok, err = pcall(cluster.wait_until, function()
      for i = 1, 3 do
        local code, body = http(ports[2 * i], "GET", "/status")
        local st = code == 200 and cjson.decode(body)
        if st and st.role == "leader" then leader_port = ports[2 * i]; return true end
      end
      return false
    end, TIMEOUT_MS, "a leader among the installed nodes")
    assert(ok, tostring(err) .. "\n" .. log())
    -- a write on a follower (the built-in put, forwarded), a linearizable
    -- read on another, a command of the installed examples
    local follower = leader_port == ports[2] and ports[4] or ports[2]
    local code, body = http(follower, "PUT", "/kv/installed", "yes")
    assert.equal(200, code, body)
    code, body = http(ports[6] == follower and ports[4] or ports[6], "GET", "/kv/installed")
    assert.equal(200, code, body)
    assert.equal("yes", body)
    code, body = http(leader_port, "POST", "/cmd/incr", '{"key":"n","by":2}')
    assert.equal(200, code, body)
    assert.equal(2, cjson.decode(body).result)
    -- storage went to the working directory
    assert.truthy(io.open(away .. "/data/node1/LOCK"), "no data/node1 in the working dir")
    proc.kill(pid, "TERM")
    local how, rc = cluster.wait_pid(pid, 10000)
    assert.equal("exited", how, log())
    assert.equal(0, rc, log())
    assert(cluster.wait_until(function() return #procs_under(prefix) == 0 end,
                              5000, "no installed rafting left"))
  end)

  it("tells systemd READY=1 once it listens and STOPPING=1 on SIGTERM", function()
    local unix = require "socket.unix"
    local ports = { proc.free_port(2) }
    local dir = tmpdir("notify")
    write_file(dir .. "/one.lua", ([[
return { cluster = "notify", storage = "memory",
  nodes = { { id = 1, peer = "127.0.0.1:%d", http = "127.0.0.1:%d" } } }
]]):format(ports[1], ports[2]))
    local sock = assert(unix.dgram())
    assert(sock:bind(dir .. "/notify"))
    local pid = assert(cluster.spawn{
      argv = { prefix .. "/bin/rafting", "--config", "one.lua", "--node", "1" },
      cwd = dir, stdout = dir .. "/log", stderr = dir .. "/log",
      env = { NOTIFY_SOCKET = dir .. "/notify" },
    })
    local ok, err = pcall(function()
      sock:settimeout(TIMEOUT_MS / 1000)  -- the deadline for the datagram
      assert.equal("READY=1", sock:receive())
      -- ready means listening: the first request is answered
      assert.equal(200, (http(ports[2], "GET", "/health")))
      proc.kill(pid, "TERM")
      assert.equal("STOPPING=1", sock:receive())
      local how, rc = cluster.wait_pid(pid, 10000)
      assert.equal("exited", how)
      assert.equal(0, rc)
    end)
    sock:close()
    if not ok then proc.kill(pid, "KILL"); cluster.wait_pid(pid) end
    local logtext = read_file(dir .. "/log")
    sh("rm -rf " .. q(dir))
    assert(ok, tostring(err) .. "\n" .. logtext)
  end)

  it("lets busted outside the tree require rafting.testing.cluster", function()
    local spec = away .. "/outside_spec.lua"
    write_file(spec, [[
local cluster = require "rafting.testing.cluster"
describe("outside", function()
  it("uses the installed harness and binary", function()
    local where = package.searchpath("rafting.testing.cluster", package.path)
    assert.equal(os.getenv("PREFIX") .. "/share/lua/5.4/rafting/testing/cluster.lua", where)
    assert.equal(os.getenv("PREFIX") .. "/lib/lua/5.4/rafting/proc.so",
                 package.searchpath("rafting.proc", package.cpath))
    local c = cluster.start{ nodes = 3 }
    local ok, err = pcall(function()
      local id = c:leader()
      local other = id % 3 + 1
      local code, body = c:http(other, "PUT", "/kv/k", "v")
      assert.equal(200, code, body)
      code, body = c:http(id % 3 + 1 == 3 and 1 or 3, "GET", "/kv/k")
      assert.equal(200, code, body)
      assert.equal("v", body)
    end)
    assert(c:shutdown())
    assert(ok, err)
  end)
end)
]])
    -- only the installed share/lua/5.4 (and lib/lua/5.4) plus Lua's own
    -- defaults (;;), which hold busted, socket and cjson; PATH finds the
    -- installed binary, the source tree is nowhere
    local env = table.concat({
      "env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u RAFTING_BIN",
      "PREFIX=" .. q(prefix),
      "PATH=" .. q(prefix .. "/bin:/usr/local/bin:/usr/bin:/bin"),
      "LUA_PATH=" .. q(prefix .. "/share/lua/5.4/?.lua;;"),
      "LUA_CPATH=" .. q(prefix .. "/lib/lua/5.4/?.so;;"),
    }, " ")
    local ok, out = sh("cd " .. q(away) .. " && " .. env .. " busted -o utfTerminal outside_spec.lua")
    assert(ok, out)
    assert.truthy(out:find("1 success", 1, true), out)
    assert.same({}, procs_under(prefix))
  end)

  it("has a man page that renders without warnings", function()
    if not sh("command -v groff") then return pending("groff not installed") end
    local ok, out = sh("env -u LD_PRELOAD groff -man -Tutf8 -ww -z " .. q(prefix .. "/share/man/man1/rafting.1"))
    assert(ok, out)
    assert.equal("", out)
    -- the page names the version of the binary beside it
    local _, version = sh(q(prefix .. "/bin/rafting") .. " --version")
    local page = read_file(prefix .. "/share/man/man1/rafting.1")
    assert.truthy(page:find('"rafting ' .. version:match("^rafting (%S+)") .. '"', 1, true))
  end)

  it("has a systemd unit for the installed binary", function()
    local unit = read_file(prefix .. "/lib/systemd/system/rafting@.service")
    assert.truthy(unit:find("ExecStart=" .. prefix .. "/bin/rafting --config /etc/rafting/cluster.lua --node %i",
                            1, true), unit)
    assert.truthy(unit:find("Type=notify", 1, true))
    assert.truthy(unit:find("Restart=on-failure", 1, true))
    if not sh("command -v systemd-analyze") then return pending("no systemd-analyze") end
    -- an instance named like a real one; --man=no: the page is not in MANPATH
    local inst = away .. "/rafting@1.service"
    write_file(inst, unit)
    local ok, out = sh("env -u LD_PRELOAD systemd-analyze verify --man=no " .. q(inst))
    assert(ok, out)
    assert.equal("", out)
  end)

  it("runs the installed rafting ctl against an installed node", function()
    local ports = { proc.free_port(2) }
    local dir = tmpdir("ctl")
    write_file(dir .. "/one.lua", ([[
return { cluster = "ctl", storage = "memory",
  nodes = { { id = 1, peer = "127.0.0.1:%d", http = "127.0.0.1:%d" } } }
]]):format(ports[1], ports[2]))
    local pid = assert(cluster.spawn{
      argv = { prefix .. "/bin/rafting", "--config", "one.lua", "--node", "1" },
      cwd = dir, stdout = dir .. "/log", stderr = dir .. "/log",
    })
    local ctl = "cd " .. q(dir) .. " && env -u LUA_PATH -u LUA_CPATH " ..
      q(prefix .. "/bin/rafting") .. " ctl --endpoints http://127.0.0.1:" ..
      ports[2] .. " --timeout 10 "
    local ok, err = pcall(function()
      local put_ok, out = sh(ctl .. "put installed yes")
      assert(put_ok, out)
      local get_ok, value = sh(ctl .. "get installed")
      assert(get_ok, value)
      assert.equal("yes", value)
      local miss_ok, _, code = sh(ctl .. "get missing")
      assert.falsy(miss_ok)
      assert.equal(1, code) -- exit 1: not found
    end)
    proc.kill(pid, "TERM")
    cluster.wait_pid(pid, 10000)
    local logtext = read_file(dir .. "/log")
    sh("rm -rf " .. q(dir))
    assert(ok, tostring(err) .. "\n" .. logtext)
  end)

  it("builds and runs the Docker image (where Docker is)", function()
    if not sh("docker info >/dev/null && docker image inspect debian:12 debian:12-slim >/dev/null") then
      return pending("no Docker daemon or no debian:12 images here; see README.md, Install")
    end
    local tag = "rafting-install-spec:" .. proc.getpid()
    local ok, out = sh("docker build -q -t " .. tag .. " .")
    assert(ok, out)
    ok, out = sh("docker run --rm " .. tag .. " --version")
    sh("docker rmi " .. tag)
    assert(ok, out)
    assert.truthy(out:match("^rafting %d+%.%d+%.%d+ "), out)
  end)
end)
