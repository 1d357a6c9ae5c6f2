--[[
sm_replica.lua -- a replica in its own process, for spec/sm/determinism_spec.

  lua5.4 spec/support/sm_replica.lua CPATH COMMANDS ENTRIES

Applies the entries of file ENTRIES (each a 10-digit length then the
bytes) to a fresh host, with local queries that churn the heap in between
(replicas serve different reads), then prints one line per result and a
last line with the store's digest.  Lines are %q-quoted, one per apply.
]]
local cpath, commands, file = arg[1], arg[2], arg[3]
package.cpath = cpath .. ";" .. package.cpath
local sm = require("rafting.sm")

local junk = {} -- this process's heap differs from the other replica's
for i = 1, 5000 do junk[i] = { i, tostring(i) } end

local h = assert(sm.new({ commands = commands, memory = 16 * 1024 * 1024 }))
local f = assert(io.open(file, "rb"))
local index = 0
while true do
  local len = f:read(10)
  if not len then break end
  local entry = f:read(tonumber(len))
  index = index + 1
  h:query("hog")
  local ok, text, code = h:apply(index, entry)
  io.write(string.format("%q\n", tostring(ok) .. " " .. tostring(code) .. " " .. text))
end
f:close()
io.write(h:digest(), "\n")
h:close()
