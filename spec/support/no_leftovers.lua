--[[
no_leftovers.lua -- after a spec run, check that no process the cluster
harness started is still alive.

The harness appends "pid starttime ..." to its pid file at every spawn
(RAFTING_PIDFILE, default $TMPDIR/rafting-harness.pids).  A pid counts as
a leftover only while /proc/<pid>/stat shows the same start time and the
process is not a zombie, so pid reuse cannot fool the check.  Pure Lua
(reads /proc), so it runs without the C module.

As a script, after busted:

    lua5.4 spec/support/no_leftovers.lua [PIDFILE]

prints and SIGKILLs any leftover and exits 1; else removes the pid file
and exits 0.  As a module: require("spec.support.no_leftovers").check(path)
returns the list of leftovers ({ pid =, starttime =, line = }).
]]

local M = {}

function M.default_pidfile()
  return os.getenv("RAFTING_PIDFILE") or
         ((os.getenv("RAFTING_TEST_TMP") or os.getenv("TMPDIR") or "/tmp")
          .. "/rafting-harness.pids")
end

-- state letter and start time of pid, or nil if there is no such process
local function stat(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local rest = s and s:match("^.*%) (.*)$")  -- the name may contain ") "
  if not rest then return nil end
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  -- fields 3 (state), 4 (ppid) and 22 (start time) of stat
  return fields[1], tonumber(fields[20]), tonumber(fields[2])
end

-- alive, and the same process as recorded; a parent pid narrows it down
-- to that parent's children
function M.is_alive(pid, starttime, parent)
  local state, start, ppid = stat(pid)
  if not state or state == "Z" or state == "X" then return false end
  if parent and ppid ~= parent then return false end
  return starttime == nil or starttime == 0 or start == starttime
end

-- check([path], [parent]) -> list of recorded processes still alive
function M.check(path, parent)
  path = path or M.default_pidfile()
  local left = {}
  local f = io.open(path, "r")
  if not f then return left end
  for line in f:lines() do
    local pid, start = line:match("^(%d+) (%d+)")
    pid, start = tonumber(pid), tonumber(start)
    if pid and M.is_alive(pid, start, parent) then
      left[#left + 1] = { pid = pid, starttime = start, line = line }
    end
  end
  f:close()
  return left
end

local function main(path)
  path = path or M.default_pidfile()
  local left = M.check(path)
  if #left == 0 then
    os.remove(path)
    print("no_leftovers: ok, no harness process alive (" .. path .. ")")
    os.exit(0)
  end
  for _, p in ipairs(left) do
    io.stderr:write("no_leftovers: still alive: ", p.line, "\n")
    os.execute("kill -KILL " .. p.pid .. " 2>/dev/null")
  end
  io.stderr:write(("no_leftovers: %d process(es) outlived the spec run\n"):format(#left))
  os.exit(1)
end

if arg and arg[0] and arg[0]:find("no_leftovers%.lua$") then main(arg[1]) end

return M
