--[[
bench/apply.lua -- what applying one entry costs the state machine, with
kv.lua's put and delete in C (src/sm/fastkv.c) beside the same entries
through Lua (kv.lua loaded from its file: the reference), in one run.

  lua5.4 bench/apply.lua [N]      (LUA_CPATH=./build/lua/?.so, from the root)

N PUTs of fresh 100-byte values (default 200,000), then N DELETEs of them,
each set applied to a fresh host of each kind, entries encoded beforehand.
Reports CPU seconds (os.clock) and microseconds per entry.  This is what a
node's replay after a crash and every replica's apply of a write cost.
]]
local sm = require("rafting.sm")

local N = tonumber(arg[1]) or 200000
local T = 1700000000000

local function entries(name, value)
  local t = {}
  for i = 1, N do
    t[i] = sm.encode(name, T, { key = ("key.%09d"):format(i), value = value })
  end
  return t
end

local puts, dels = entries("put", ("v"):rep(100)), entries("delete")

local function run(opts)
  local h = assert(sm.new(opts))
  local t0 = os.clock()
  for i = 1, N do assert(h:apply(i, puts[i])) end
  local tp = os.clock() - t0
  t0 = os.clock()
  for i = 1, N do assert(h:apply(N + i, dels[i])) end
  local td = os.clock() - t0
  assert(h:count() == 0)
  h:close()
  return tp, td
end

local rows = {
  { "C (fastkv.c)", run({}) },
  { "kv.lua (reference)", run({ builtin = "lua/rafting/sm/kv.lua" }) },
}
print(("| apply path | %d puts: s | us/put | %d deletes: s | us/delete |"):format(N, N))
print("|---|---:|---:|---:|---:|")
for _, r in ipairs(rows) do
  print(("| %s | %.3f | %.2f | %.3f | %.2f |"):format(r[1], r[2], r[2] / N * 1e6,
                                                     r[3], r[3] / N * 1e6))
end
