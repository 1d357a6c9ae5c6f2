-- snapshot.lua -- the cost of a snapshot of N keys: building the store,
-- fork() with it in the heap (the pause a snapshot child costs the loop),
-- streaming it to a file and fsyncing (the child's work), serializing it
-- into one buffer (the pause of memory nodes), saving it durably
-- (write + fsync + rename + directory fsync, off the loop), and at restart
-- loading it, checking it and restoring it into an empty store.
--
--   lua5.4 bench/snapshot.lua [N] [KLEN] [VLEN] [DIR] [ROUNDS]
--
-- with package.cpath reaching build/lua/?.so (docs/storage.md, Snapshots).
-- Defaults: 1,000,000 keys of 16 bytes with 32-byte values, in $TMPDIR,
-- 3 rounds; prints each round and the median.
local snap = require "rafting.snap"

local n = tonumber(arg[1]) or 1000000
local klen = tonumber(arg[2]) or 16
local vlen = tonumber(arg[3]) or 32
local base = arg[4] or os.getenv("TMPDIR") or "/tmp"
local rounds = tonumber(arg[5]) or 3

local cols = { "build_ms", "fork_ms", "stream_ms", "serialize_ms", "save_ms", "load_ms", "check_ms",
               "restore_ms", "free_ms" }
local all = {}
for r = 1, rounds do
  local dir = ("%s/rafting-snapbench-%d-%d"):format(base, os.time(), r)
  local t = snap.bench{ n = n, klen = klen, vlen = vlen, dir = dir }
  os.execute("rm -rf '" .. dir .. "'")
  assert(t.same, "restored store differs")
  all[r] = t
  local line = {}
  for _, c in ipairs(cols) do line[#line + 1] = ("%s=%.1f"):format(c, t[c]) end
  print(("round %d: %d keys, %d bytes (%.1f MiB; %d bytes of keys+values)  %s")
        :format(r, t.nkeys, t.size, t.size / 1048576, t.store_bytes,
                table.concat(line, " ")))
end
local med = {}
for _, c in ipairs(cols) do
  local v = {}
  for r = 1, rounds do v[r] = all[r][c] end
  table.sort(v)
  med[#med + 1] = ("%s=%.1f"):format(c, v[(rounds + 1) // 2])
end
print("median: " .. table.concat(med, " "))
