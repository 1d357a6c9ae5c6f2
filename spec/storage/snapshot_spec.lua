-- snapshot_spec.lua -- the snapshot format and the snapshot store, through
-- rafting.snap (src/lua/lmod_snap.c): round trips with binary data,
-- determinism, corruption at every kind of place, and the store's contract
-- on a directory and in memory (save, rotation, reopen, chunked reads,
-- chunked receives, cancellation, I/O failures).

local snap = require "rafting.snap"
local proc = require "rafting.proc"

local TMP = os.getenv("RAFTING_TEST_TMP") or os.getenv("TMPDIR") or "/tmp"
local HDR = 40 -- header bytes (32 + two empty length-prefixed parts); the trailer is 8

-- ---------------------------------------------------------------- helpers

local dirs = {}
local function tmpdir()
  local d = assert(proc.mkdtemp(TMP .. "/rafting-snap-"))
  dirs[#dirs + 1] = d
  return d .. "/data"
end

after_each(function()
  for _, d in ipairs(dirs) do os.execute("rm -rf '" .. d .. "'") end
  dirs = {}
end)

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function ls(dir) -- sorted names in dir
  local out = {}
  local p = io.popen("ls -A '" .. dir .. "' 2>/dev/null")
  for name in p:lines() do out[#out + 1] = name end
  p:close()
  table.sort(out)
  return out
end

local function name_of(index, term)
  return ("%016x-%016x.snap"):format(index, term)
end

local function flip(s, off, mask) -- xor the byte at off (0-based)
  return s:sub(1, off) .. string.char(s:byte(off + 1) ~ (mask or 0xff)) ..
         s:sub(off + 2)
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- A store of n keys with data derived from seed, as a Lua map.
local function sample(n, seed)
  local kv = {}
  for i = 1, n do
    kv[("k%08d\0%d"):format(i, seed or 0)] = ("v%d-"):format(i):rep(i % 5)
  end
  return kv
end

local BINARY = {
  [""] = "empty key",
  ["\0"] = "",
  ["\0\0"] = "\0",
  ["\255"] = "\255\255\0",
  ["a\0b"] = ("\0\1\2\255"):rep(100),
  ["a"] = "",
  ["long"] = ("x"):rep(70000), -- a 3-byte uvarint length
}
local SMALL = {} -- BINARY but short: for the exhaustive loops
for k, v in pairs(BINARY) do SMALL[k] = v:sub(1, 40) end

-- Offsets of the parts of a serialized kv: record starts and the fields.
local function uvarint(s, off) -- value, bytes
  local v, shift, i = 0, 0, 0
  repeat
    local b = s:byte(off + i + 1)
    v = v | ((b & 0x7f) << shift)
    shift = shift + 7
    i = i + 1
  until b < 0x80
  return v, i
end

-- Where the records start: after the header and, in version 2, the
-- length-prefixed configuration and blob.
local function rec_start(s)
  if s:sub(1, 8) == "RFSNAP01" then return 32 end
  local clen = string.unpack("<I4", s, 33)
  local blen = string.unpack("<I4", s, 33 + 4 + clen)
  return 32 + 8 + clen + blen
end

local function records(s)
  local out, off = {}, rec_start(s)
  local nkeys = string.unpack("<I8", s, 25)
  for _ = 1, nkeys do
    local r = { off = off }
    local kl, a = uvarint(s, off)
    r.key = off + a
    local vl, b = uvarint(s, r.key + kl)
    r.vlen = r.key + kl
    r.val = r.vlen + b
    r.klen, r.len = kl, vl
    off = r.val + vl
    out[#out + 1] = r
  end
  return out, off
end

local function corrupt(bytes)
  local kv, msg, code = snap.restore(bytes)
  assert.is_nil(kv)
  assert.equals(snap.CORRUPT, code)
  assert.matches("offset %d+", msg)
  local m, msg2, code2 = snap.check(bytes)
  assert.is_nil(m)
  assert.equals(snap.CORRUPT, code2)
  assert.equals(msg, msg2)
  return msg, tonumber(msg:match("offset (%d+)"))
end

-- ---------------------------------------------------------------- format

describe("snapshot format", function()
  it("round-trips binary keys and values", function()
    local bytes, m = snap.serialize(BINARY, 42, 7)
    assert.equals(42, m.index)
    assert.equals(7, m.term)
    assert.equals(#bytes, m.size)
    assert.equals(count(BINARY), m.nkeys)
    assert.equals("RFSNAP02", bytes:sub(1, 8))
    local kv, m2 = assert(snap.restore(bytes))
    assert.same(BINARY, kv)
    assert.same(m, m2)
  end)

  it("writes keys in ascending byte order", function()
    local bytes = snap.serialize(BINARY, 1, 1)
    local recs = records(bytes)
    local prev
    for _, r in ipairs(recs) do
      local k = bytes:sub(r.key + 1, r.key + r.klen)
      if prev then assert.is_true(prev < k) end
      prev = k
    end
    assert.equals(count(BINARY), #recs)
  end)

  it("serializes an empty store to header and trailer", function()
    local bytes, m = snap.serialize({}, 0, 0)
    assert.equals(snap.MIN, #bytes)
    assert.equals(0, m.nkeys)
    local kv = assert(snap.restore(bytes))
    assert.same({}, kv)
  end)

  it("gives equal bytes for equal stores, whatever their history", function()
    local a = snap.serialize(BINARY, 9, 2)
    local ops = {}
    for k, v in pairs(BINARY) do ops[#ops + 1] = { k, v .. "old" } end
    for k in pairs(BINARY) do ops[#ops + 1] = { k, false } end
    ops[#ops + 1] = { "gone", "x" }
    local keys = {}
    for k in pairs(BINARY) do keys[#keys + 1] = k end
    table.sort(keys, function(x, y) return x > y end) -- reverse order
    for _, k in ipairs(keys) do ops[#ops + 1] = { k, BINARY[k] } end
    ops[#ops + 1] = { "gone", false }
    local b = snap.serialize(ops, 9, 2)
    assert.equals(a, b)
    assert.are_not.equal(a, snap.serialize(BINARY, 9, 3))
  end)

  it("round-trips 100,000 keys", function()
    local kv = sample(100000, 1)
    local bytes, m = snap.serialize(kv, 100000, 5)
    assert.equals(100000, m.nkeys)
    local back, m2 = assert(snap.restore(bytes))
    assert.same(m, m2)
    assert.equals(100000, count(back))
    for k, v in pairs(kv) do
      if back[k] ~= v then error("mismatch at " .. k) end
    end
    assert.equals(bytes, snap.serialize(back, 100000, 5))
  end)

  describe("detects corruption", function()
    local bytes = snap.serialize(BINARY, 42, 7)
    local recs, trailer = records(bytes)

    it("in the header", function()
      local msg, off = corrupt(flip(bytes, 0))
      assert.matches("magic", msg)
      assert.equals(0, off)
      for _, at in ipairs({ 8, 15, 16, 23 }) do -- index, term
        msg, off = corrupt(flip(bytes, at, 1))
        assert.matches("checksum", msg)
        assert.equals(#bytes - 8, off)
      end
      msg, off = corrupt(flip(bytes, 24, 1)) -- nkeys one less
      assert.matches("unexpected bytes after the last of 6 records", msg)
      assert.equals(recs[7].off, off)
      msg, off = corrupt(flip(bytes, 31, 1)) -- nkeys huge
      assert.matches("cannot fit", msg)
      assert.equals(24, off)
    end)

    it("in a record: lengths, keys, values", function()
      local r = recs[3]
      corrupt(flip(bytes, r.off))                  -- key length
      corrupt(flip(bytes, r.key))                  -- key byte
      corrupt(flip(bytes, r.vlen))                 -- value length
      local msg, off = corrupt(flip(bytes, r.val)) -- value byte
      assert.matches("checksum", msg)
      assert.equals(trailer, off)
      -- a key length pointing far past the end
      msg, off = corrupt(bytes:sub(1, r.off) .. "\255\255\255\127" ..
                         bytes:sub(r.key + 1))
      assert.matches("runs past the end", msg)
      assert.equals(r.off, off)
    end)

    it("in key order", function()
      -- swap two well-formed records of one size: "x" and "y"
      local b = snap.serialize({ x = "1", y = "2" }, 1, 1)
      local r = records(b)
      local swapped = b:sub(1, HDR) .. b:sub(r[2].off + 1, r[2].off + 4) ..
                      b:sub(r[1].off + 1, r[1].off + 4) .. b:sub(-8)
      local msg, off = corrupt(swapped)
      assert.matches("record 1: key not above", msg)
      assert.equals(r[2].off, off)
      -- a duplicate key
      local dup = b:sub(1, HDR) .. b:sub(r[1].off + 1, r[1].off + 4):rep(2) ..
                  b:sub(-8)
      msg = corrupt(dup)
      assert.matches("not above", msg)
    end)

    it("in the trailer", function()
      for at = #bytes - 8, #bytes - 1 do
        local msg, off = corrupt(flip(bytes, at, 0x10))
        assert.matches("checksum mismatch", msg)
        assert.equals(#bytes - 8, off)
      end
    end)

    it("at every byte, every bit", function()
      local small = snap.serialize(SMALL, 42, 7)
      for at = 0, #small - 1 do
        for _, mask in ipairs({ 0x01, 0x80, 0xff }) do
          local kv, msg, code = snap.restore(flip(small, at, mask))
          if kv or code ~= snap.CORRUPT or not msg:match("offset %d+") then
            error(("flip 0x%02x at %d: %s"):format(mask, at, tostring(msg)))
          end
        end
      end
    end)

    it("when truncated anywhere", function()
      local msg, off = corrupt(bytes:sub(1, 10))
      assert.matches("truncated", msg)
      assert.equals(10, off)
      corrupt("")
      local small = snap.serialize(SMALL, 42, 7)
      for len = 0, #small - 1 do
        local kv, m, code = snap.restore(small:sub(1, len))
        if kv or code ~= snap.CORRUPT or not m:match("offset %d+") then
          error(("truncated to %d: %s"):format(len, tostring(m)))
        end
      end
    end)

    it("with trailing garbage", function()
      for _, junk in ipairs({ "\0", "x", ("\0"):rep(8), ("junk"):rep(100) }) do
        local msg, off = corrupt(bytes .. junk)
        assert.matches("unexpected bytes", msg)
        assert.equals(#bytes - 8, off)
      end
    end)
  end)

  it("refuses a malformed or overlong length", function()
    local bytes = snap.serialize({ a = "b" }, 1, 1)
    local r = records(bytes)[1]
    -- non-minimal: 1 as 0x81 0x00
    local msg, off = corrupt(bytes:sub(1, r.off) .. "\129\0" ..
                             bytes:sub(r.key + 1))
    assert.matches("malformed key length", msg)
    assert.equals(r.off, off)
  end)
end)

-- ---------------------------------------------------------------- store

-- The contract both kinds of store keep.  open() opens the store to test
-- (again, for reopen-able kinds).
local function contract(kind, open)
  local function save(st, kv, index, term)
    local bytes, m = snap.serialize(kv, index, term or 1)
    assert(st:save(bytes, m))
    return bytes, m
  end

  local function read_all(st, index, chunk)
    local parts, off = {}, 0
    while true do
      local data = assert(st:read(index, off, chunk))
      if #data == 0 then break end
      assert.is_true(#data <= chunk)
      parts[#parts + 1] = data
      off = off + #data
    end
    return table.concat(parts)
  end

  local function send(st, bytes, m, chunk, from)
    assert(st:recv_begin(m))
    for off = from or 0, #bytes - 1, chunk do
      assert(st:recv_chunk(off, bytes:sub(off + 1, off + chunk)))
    end
  end

  describe("snapshot store (" .. kind .. ")", function()
    it("starts with no snapshot", function()
      local st = open()
      assert.is_nil(st:latest())
      local b, msg, code = st:load()
      assert.is_nil(b)
      assert.equals(snap.NONE, code)
      assert.truthy(msg)
      local d, _, rc = st:read(1, 0, 10)
      assert.is_nil(d)
      assert.equals(snap.NONE, rc)
      st:close()
    end)

    it("saves, tells the latest and loads it", function()
      local st = open()
      local bytes, m = save(st, BINARY, 10, 2)
      assert.same(m, st:latest())
      local b, m2 = assert(st:load())
      assert.equals(bytes, b)
      assert.same(m, m2)
      local bytes2, m3 = save(st, sample(50), 20, 3)
      assert.same(m3, st:latest())
      assert.equals(bytes2, (st:load()))
      st:close()
    end)

    it("reads in chunks that reassemble the same bytes", function()
      local st = open()
      local small = save(st, SMALL, 6, 1)
      for _, chunk in ipairs({ 1, 7 }) do
        assert.equals(small, read_all(st, 6, chunk))
      end
      local bytes, m = save(st, sample(2000), 7, 1)
      for _, chunk in ipairs({ 999, 4096, #bytes - 1, #bytes, #bytes + 100 }) do
        assert.equals(bytes, read_all(st, 7, chunk))
      end
      assert.equals("", assert(st:read(7, m.size, 10)))
      assert.equals(bytes:sub(-5), assert(st:read(7, m.size - 5, 10)))
      local d, _, code = st:read(7, m.size + 1, 10)
      assert.is_nil(d)
      assert.equals(snap.INVAL, code)
      st:close()
    end)

    it("refuses a save whose meta does not match the bytes", function()
      local st = open()
      local bytes, m = snap.serialize(BINARY, 3, 1)
      local ok, _, code = st:save(bytes, { index = 4, term = 1,
                                           size = m.size, nkeys = m.nkeys })
      assert.is_nil(ok)
      assert.equals(snap.INVAL, code)
      ok, _, code = st:save(bytes:sub(1, -2), m)
      assert.equals(snap.INVAL, code)
      assert.is_nil(st:latest())
      st:close()
    end)

    it("refuses a save older than the latest (STALE)", function()
      local st = open()
      local _, m = save(st, BINARY, 10, 2)
      local bytes, old = snap.serialize(BINARY, 9, 2)
      local ok, msg, code = st:save(bytes, old)
      assert.is_nil(ok)
      assert.equals(snap.STALE, code)
      assert.matches("older", msg)
      assert.same(m, st:latest())
      local _, _, rc = st:recv_begin(old)
      assert.equals(snap.STALE, rc)
      st:close()
    end)

    it("takes one save at a time (BUSY), in order with the rest", function()
      local st = open()
      save(st, BINARY, 1, 1)
      local b2, m2 = snap.serialize(BINARY, 2, 1)
      local b3, m3 = snap.serialize(BINARY, 3, 1)
      local res, in_order = st:batch({ { "save", b2, m2 }, { "save", b3, m3 },
                                       { "read", 1, 0, 8 } })
      assert.equals(0, res[1].status)
      assert.equals(snap.BUSY, res[2].status)
      assert.is_true(res[2].sync)
      if kind == "memory" then -- only the latest is kept, and 2 came first
        assert.equals(snap.NONE, res[3].status)
      else
        assert.equals(0, res[3].status)
        assert.equals("RFSNAP02", res[3].data)
      end
      assert.is_true(in_order)
      assert.is_false(st:saving())
      assert.same(m2, st:latest())
      st:close()
    end)

    it("cancels queued operations on close", function()
      local st = open()
      save(st, BINARY, 1, 1)
      local b2, m2 = snap.serialize(sample(10), 2, 1)
      local res, in_order = st:batch({ { "read", 1, 0, 4 },
                                       { "save", b2, m2 },
                                       { "read", 1, 4, 4 } }, true)
      assert.equals(0, res[1].status) -- in flight: runs to completion
      assert.equals("RFSN", res[1].data)
      assert.equals(snap.CANCELED, res[2].status)
      assert.equals(snap.CANCELED, res[3].status)
      assert.is_true(in_order)
      assert.has_error(function() st:latest() end)
    end)

    describe("receiving", function()
      it("in order, then finish: the latest", function()
        local st = open()
        save(st, { old = "1" }, 5, 1)
        local bytes, m = snap.serialize(sample(3000), 100, 4)
        send(st, bytes, m, 1000)
        assert.equals(#bytes, st:recv_offset())
        assert(st:recv_finish())
        assert.equals(0, st:recv_offset())
        assert.same(m, st:latest())
        assert.equals(bytes, (st:load()))
        assert.equals(bytes, read_all(st, 100, 777))
        st:close()
      end)

      it("refuses a chunk at the wrong offset or past the end", function()
        local st = open()
        local bytes, m = snap.serialize(BINARY, 10, 1)
        local _, _, code = st:recv_chunk(0, bytes) -- no transfer begun
        assert.equals(snap.INVAL, code)
        assert(st:recv_begin(m))
        _, _, code = st:recv_chunk(5, bytes:sub(6, 10))
        assert.equals(snap.INVAL, code)
        assert(st:recv_chunk(0, bytes:sub(1, 10)))
        _, _, code = st:recv_chunk(0, bytes:sub(1, 10)) -- a repeat
        assert.equals(snap.INVAL, code)
        _, _, code = st:recv_chunk(11, bytes:sub(12, 20)) -- a gap
        assert.equals(snap.INVAL, code)
        _, _, code = st:recv_chunk(10, bytes:sub(11) .. "x") -- past size
        assert.equals(snap.INVAL, code)
        _, _, code = st:recv_finish() -- not all there
        assert.equals(snap.INVAL, code)
        assert.equals(10, st:recv_offset())
        assert(st:recv_chunk(10, bytes:sub(11)))
        assert(st:recv_finish())
        assert.same(m, st:latest())
        st:close()
      end)

      it("restarts cleanly when begun again mid-way", function()
        local st = open()
        local b1, m1 = snap.serialize(sample(500, 1), 50, 2)
        local b2, m2 = snap.serialize(sample(400, 2), 60, 3)
        assert(st:recv_begin(m1))
        assert(st:recv_chunk(0, b1:sub(1, 1000)))
        assert(st:recv_chunk(1000, b1:sub(1001, 2000)))
        send(st, b2, m2, 999) -- a different snapshot from 0
        assert(st:recv_finish())
        assert.same(m2, st:latest())
        assert.equals(b2, (st:load()))
        -- the same snapshot again from 0, after a partial send
        local b3, m3 = snap.serialize(sample(600, 3), 70, 3)
        send(st, b3:sub(1, 3000), m3, 1000)
        send(st, b3, m3, 1024)
        assert(st:recv_finish())
        assert.equals(b3, (st:load()))
        st:close()
      end)

      it("cancels the queued chunks of a transfer begun again", function()
        local st = open()
        local b1, m1 = snap.serialize(sample(500, 1), 50, 2)
        local b2, m2 = snap.serialize(sample(400, 2), 60, 3)
        local res, in_order = st:batch({
          { "begin", m1 },
          { "chunk", 0, b1:sub(1, 100) },   -- in flight at once
          { "chunk", 100, b1:sub(101, 200) },
          { "begin", m2 },
          { "chunk", 0, b2 },
          { "finish" },
        })
        assert.equals(0, res[2].status)
        assert.equals(snap.CANCELED, res[3].status)
        assert.equals(0, res[5].status)
        assert.equals(0, res[6].status)
        assert.is_true(in_order)
        assert.same(m2, st:latest())
        st:close()
      end)

      it("aborts: the transfer is gone", function()
        local st = open()
        local bytes, m = snap.serialize(sample(100), 9, 1)
        send(st, bytes:sub(1, 500), m, 100)
        st:recv_abort()
        assert.equals(0, st:recv_offset())
        local _, _, code = st:recv_chunk(500, bytes:sub(501))
        assert.equals(snap.INVAL, code)
        _, _, code = st:recv_finish()
        assert.equals(snap.INVAL, code)
        assert.is_nil(st:latest())
        send(st, bytes, m, 4096)
        assert(st:recv_finish())
        assert.same(m, st:latest())
        st:close()
      end)

      it("fails finish on corrupt bytes and keeps the latest", function()
        local st = open()
        local old, mold = save(st, BINARY, 5, 1)
        local bytes, m = snap.serialize(sample(300), 50, 2)
        local bad = {
          flip(bytes, 100),                       -- a record
          flip(bytes, #bytes - 1),                -- the trailer
          flip(bytes, 0),                         -- the magic
          (snap.serialize(sample(300), 51, 2)),   -- another index
        }
        for _, b in ipairs(bad) do
          send(st, b, { index = 50, term = 2, size = #b }, 1000)
          local ok, msg, code = st:recv_finish()
          assert.is_nil(ok)
          assert.equals(snap.CORRUPT, code)
          assert.matches("offset %d+", msg)
          assert.same(mold, st:latest())
          assert.equals(old, (st:load()))
          assert.equals(0, st:recv_offset())
        end
        send(st, bytes, m, 1000)
        assert(st:recv_finish())
        assert.same(m, st:latest())
        st:close()
      end)

      it("refuses a transfer smaller than a snapshot can be", function()
        local st = open()
        local _, _, code = st:recv_begin({ index = 1, term = 1, size = 10 })
        assert.equals(snap.INVAL, code)
        st:close()
      end)
    end)
  end)
end

-- ---------------------------------------------------------------- directory

local current -- the directory the contract's stores use
contract("directory", function()
  current = current or tmpdir()
  return assert(snap.open(current))
end)
after_each(function() current = nil end)

describe("snapshot store on a directory", function()
  local function files(dir) return ls(dir .. "/snap") end

  it("creates DIR/snap and names files by index and term", function()
    local dir = tmpdir()
    local st = assert(snap.open(dir))
    local bytes, m = snap.serialize(BINARY, 0x1234, 0xab)
    assert(st:save(bytes, m))
    assert.same({ name_of(0x1234, 0xab) }, files(dir))
    assert.equals(bytes, slurp(dir .. "/snap/" .. name_of(0x1234, 0xab)))
    st:close()
  end)

  it("loads the latest after a reopen", function()
    local dir = tmpdir()
    local st = assert(snap.open(dir))
    local b1, m1 = snap.serialize(sample(10, 1), 10, 1)
    local b2, m2 = snap.serialize(sample(20, 2), 20, 2)
    assert(st:save(b1, m1))
    assert(st:save(b2, m2))
    st:close()
    st = assert(snap.open(dir))
    assert.same(m2, st:latest())
    local b, m = assert(st:load())
    assert.equals(b2, b)
    assert.same(m2, m)
    assert.equals(b1, assert(st:read(10, 0, #b1 + 1))) -- the one before
    st:close()
  end)

  it("keeps the latest two", function()
    local dir = tmpdir()
    local st = assert(snap.open(dir))
    local saved = {}
    for i = 1, 5 do
      local b, m = snap.serialize(sample(i * 10, i), i * 100, 1)
      assert(st:save(b, m))
      saved[i] = b
      local want = { name_of(i * 100, 1) }
      if i > 1 then table.insert(want, 1, name_of((i - 1) * 100, 1)) end
      assert.same(want, files(dir))
    end
    local _, _, code = st:read(300, 0, 10)
    assert.equals(snap.NONE, code)
    assert.equals(saved[4], assert(st:read(400, 0, 1e6)))
    assert.equals(saved[5], assert(st:read(500, 0, 1e6)))
    -- the same index again replaces it
    assert(st:save(saved[5], (snap.check(saved[5]))))
    assert.same({ name_of(400, 1), name_of(500, 1) }, files(dir))
    st:close()
  end)

  it("removes leftover temp files and extra snapshots at open", function()
    local dir = tmpdir()
    local st = assert(snap.open(dir))
    local b, m = snap.serialize(BINARY, 30, 2)
    assert(st:save(b, m))
    st:close()
    local d = dir .. "/snap/"
    spit(d .. name_of(40, 2) .. ".tmp", b:sub(1, 20))
    spit(d .. "receiving.snap.tmp", b:sub(1, 7))
    spit(d .. name_of(10, 1), b) -- as if a crash cut a rotation short
    spit(d .. name_of(20, 1), b)
    spit(d .. "README", "not ours")
    st = assert(snap.open(dir))
    assert.same({ name_of(20, 1), name_of(30, 2), "README" }, files(dir))
    assert.same(m, st:latest())
    st:close()
  end)

  it("names file and offset when the latest is corrupt", function()
    local dir = tmpdir()
    local st = assert(snap.open(dir))
    local b, m = snap.serialize(sample(100), 30, 2)
    assert(st:save(b, m))
    st:close()
    local path = dir .. "/snap/" .. name_of(30, 2)
    for _, bad in ipairs({ flip(b, 200), b:sub(1, 100), b .. "zz",
                           (snap.serialize(sample(100), 31, 2)) }) do
      spit(path, bad)
      st = assert(snap.open(dir))
      local ok, msg, code = st:load()
      assert.is_nil(ok)
      assert.equals(snap.CORRUPT, code)
      assert.matches(name_of(30, 2), msg, 1, true)
      assert.matches("offset %d+", msg)
      st:close()
    end
  end)

  it("leaves no temp file after a receive, finished or not", function()
    local dir = tmpdir()
    local st = assert(snap.open(dir))
    local b, m = snap.serialize(sample(100), 30, 2)
    assert(st:recv_begin(m))
    assert(st:recv_chunk(0, b:sub(1, 100)))
    assert.same({ "receiving.snap.tmp" }, files(dir))
    st:recv_abort()
    assert.same({}, files(dir))
    assert(st:recv_begin(m))
    assert(st:recv_chunk(0, flip(b, 50)))
    assert.is_nil(st:recv_finish())
    assert.same({}, files(dir))
    assert(st:recv_begin(m))
    assert(st:recv_chunk(0, b:sub(1, 100)))
    st:close()
    assert.same({}, files(dir))
  end)

  describe("on I/O failure", function()
    local function failing(what)
      local dir = tmpdir()
      local st = assert(snap.open(dir))
      local b, m = snap.serialize(BINARY, 10, 1)
      assert(st:save(b, m))
      st:fail({ [what] = 1 })
      return st, dir, b, m
    end

    for _, what in ipairs({ "write", "sync", "rename", "syncdir" }) do
      it("of " .. what .. " fails the save and keeps the latest", function()
        local st, dir, b, m = failing(what)
        local b2, m2 = snap.serialize(sample(10), 20, 1)
        local ok, msg, code = st:save(b2, m2)
        assert.is_nil(ok)
        assert.equals(snap.IO, code)
        assert.truthy(#msg > 0)
        assert.same(m, st:latest())
        assert.equals(b, (st:load()))
        assert.is_false(st:saving())
        if what ~= "syncdir" then -- after a rename the new file may stay
          assert.same({ name_of(10, 1) }, files(dir))
        end
        assert(st:save(b2, m2)) -- the next one goes through
        assert.same(m2, st:latest())
        st:close()
      end)
    end

    it("of unlink keeps the extra file until the next rotation", function()
      local st, dir = failing("unlink")
      for i = 2, 3 do
        local b, m = snap.serialize(BINARY, i * 10, 1)
        assert(st:save(b, m))
      end
      assert.same({ name_of(10, 1), name_of(20, 1), name_of(30, 1) },
                  files(dir))
      local b, m = snap.serialize(BINARY, 40, 1)
      assert(st:save(b, m))
      assert.same({ name_of(30, 1), name_of(40, 1) }, files(dir))
      st:close()
    end)

    it("of a chunk write ends the transfer", function()
      local st, dir = failing("write")
      local b, m = snap.serialize(sample(100), 30, 2)
      assert(st:recv_begin(m))
      local ok, _, code = st:recv_chunk(0, b:sub(1, 100))
      assert.is_nil(ok)
      assert.equals(snap.IO, code)
      assert.equals(0, st:recv_offset())
      _, _, code = st:recv_chunk(100, b:sub(101))
      assert.equals(snap.INVAL, code)
      assert(st:recv_begin(m))
      assert(st:recv_chunk(0, b))
      assert(st:recv_finish())
      assert.same(m, st:latest())
      assert.same({ name_of(10, 1), name_of(30, 2) }, files(dir))
      st:close()
    end)

    it("of the final sync fails finish and keeps the latest", function()
      local st, dir, _, m0 = failing("sync")
      local b, m = snap.serialize(sample(100), 30, 2)
      assert(st:recv_begin(m))
      assert(st:recv_chunk(0, b))
      local ok, _, code = st:recv_finish()
      assert.is_nil(ok)
      assert.equals(snap.IO, code)
      assert.same(m0, st:latest())
      assert.same({ name_of(10, 1) }, files(dir))
      st:close()
    end)
  end)

  it("fails to open where the directory cannot be made", function()
    local dir = tmpdir()
    spit(dir, "a file, not a directory")
    local st, msg = snap.open(dir .. "/x")
    assert.is_nil(st)
    assert.matches("cannot create", msg)
    assert.falsy(exists(dir .. "/x"))
  end)
end)

-- ---------------------------------------------------------------- memory

contract("memory", function() return assert(snap.open(nil)) end)

describe("snapshot store in memory", function()
  it("keeps only the latest", function()
    local st = assert(snap.open())
    local b1, m1 = snap.serialize(sample(10, 1), 10, 1)
    local b2, m2 = snap.serialize(sample(20, 2), 20, 1)
    assert(st:save(b1, m1))
    assert(st:save(b2, m2))
    local _, _, code = st:read(10, 0, 10)
    assert.equals(snap.NONE, code)
    assert.equals(b2, assert(st:read(20, 0, #b2)))
    assert.same(m2, st:latest())
    st:close()
  end)
end)

describe("streamed snapshots (rf_snap_write, what a snapshot child runs)", function()
  -- a seeded state with empty, binary and larger-than-the-buffer values
  local function state(seed, n)
    math.randomseed(seed)
    local kv = { [""] = "empty key", ["bin\0key"] = "v\0\255" }
    for i = 1, n do
      local len = math.random(0, 3) == 0 and math.random(0, 5000) or math.random(0, 40)
      kv[("k%06d"):format(math.random(1, n * 4))] = ("x"):rep(len) .. i
    end
    return kv
  end

  it("gives the bytes rf_snap_serialize gives, whatever the buffer size", function()
    local seed = os.time()
    print(("# streamed snapshots: seed %d"):format(seed))
    local kv = state(seed, 500)
    local want, wm = assert(snap.serialize(kv, 77, 5))
    for _, cap in ipairs({ 32, 33, 100, 4096, 65536, 1 << 20 }) do
      local got, gm = assert(snap.stream(kv, 77, 5, cap))
      assert.equals(#want, #got)
      assert.is_true(want == got, "bytes differ with a buffer of " .. cap)
      assert.same(wm, gm)
    end
    local back = assert(snap.restore(want))
    assert.same(kv, back)
  end)

  it("streams an empty store and refuses a buffer smaller than the header", function()
    local got, m = assert(snap.stream({}, 1, 1, 32))
    assert.equals(48, #got)
    assert.equals(0, m.nkeys)
    assert.equals(assert(snap.serialize({}, 1, 1)), got)
    local none, _, code = snap.stream({}, 1, 1, 31)
    assert.is_nil(none)
    assert.equals(snap.INVAL, code)
  end)
end)

-- ---------------------------------------------------------------- format v2

describe("format version 2: configuration and membership blob", function()
  local EXTRA = { voters = { 1, 2, 3 }, learners = { 9 }, blob = "book\0\255" }

  -- bytes with the part at [at, at + 4) replaced by the u32 v and the
  -- checksum made right again, so only the length check can object
  local function with_u32(b, at, v)
    local body = b:sub(1, at) .. string.pack("<I4", v) .. b:sub(at + 5, -9)
    return body .. snap.checksum(body)
  end

  -- the same state as a version 1 file: no prefixed parts
  local function as_v1(b)
    local body = "RFSNAP01" .. b:sub(9, 32) .. b:sub(rec_start(b) + 1, -9)
    return body .. snap.checksum(body)
  end

  it("records the configuration and the blob, and reads them back", function()
    local b, m = snap.serialize(BINARY, 42, 7, EXTRA)
    assert.equals("RFSNAP02", b:sub(1, 8))
    assert.same({ voters = { 1, 2, 3 }, learners = { 9 } }, m.conf)
    assert.equals(EXTRA.blob, m.blob)
    local kv, m2 = assert(snap.restore(b))
    assert.same(BINARY, kv)
    assert.same(m, m2)
    assert.same(m, assert(snap.check(b)))
    assert.same(m, assert(snap.head(b)))
    -- the head alone is enough for rf_snap_head, given the file's size
    assert.same(m, assert(snap.head(b:sub(1, rec_start(b)), #b)))
    -- streamed from a buffer smaller than any part: the same bytes
    for _, cap in ipairs({ 32, 33, 4096 }) do
      local got, gm = assert(snap.stream(BINARY, 42, 7, cap, EXTRA))
      assert.is_true(got == b, "differs with a buffer of " .. cap)
      assert.same(m, gm)
    end
    -- no configuration, empty blob: neither in the meta
    local b0, m0 = snap.serialize(BINARY, 42, 7)
    assert.is_nil(m0.conf)
    assert.is_nil(m0.blob)
    assert.equals(#b - #b0, 8 * 4 + 3 + #EXTRA.blob)
  end)

  it("reads version 1 files: no configuration, no blob", function()
    local v1 = as_v1(snap.serialize(BINARY, 42, 7, EXTRA))
    local kv, m = assert(snap.restore(v1))
    assert.same(BINARY, kv)
    assert.is_nil(m.conf)
    assert.is_nil(m.blob)
    assert.equals(42, m.index)
    assert.equals(#v1, m.size)
    -- an empty version 1 file is 40 bytes
    local e = as_v1(snap.serialize({}, 1, 1))
    assert.equals(40, #e)
    assert(snap.check(e))
    corrupt(e:sub(1, 39))
    -- and from a data directory, after a reopen
    local dir = tmpdir()
    local st = assert(snap.open(dir))
    st:close()
    spit(dir .. "/snap/" .. name_of(42, 7), v1)
    st = assert(snap.open(dir))
    local bytes, lm = assert(st:load())
    assert.equals(v1, bytes)
    assert.is_nil(lm.conf)
    local h = assert(st:head(42))
    assert.is_nil(h.conf)
    assert.is_nil(h.blob)
    st:close()
  end)

  it("keeps them through a data directory and a memory store", function()
    for _, where in ipairs({ "dir", "memory" }) do
      local st = assert(snap.open(where == "dir" and tmpdir() or nil))
      local b, m = snap.serialize(BINARY, 50, 3, EXTRA)
      assert(st:save(b, m))
      local h = assert(st:head(50))
      assert.same(m.conf, h.conf)
      assert.equals(EXTRA.blob, h.blob)
      local _, lm = assert(st:load())
      assert.same(m.conf, lm.conf)
      local _, _, code = st:head(49)
      assert.equals(snap.NONE, code)
      st:close()
    end
  end)

  describe("refuses a bad length in either part", function()
    local b = snap.serialize({ a = "1", b = "2" }, 9, 2, EXTRA)
    local clen = string.unpack("<I4", b, 33)
    local bat = 32 + 4 + clen -- the blob's length field

    it("the configuration's", function()
      for _, v in ipairs({ 0xffffffff, #b, #b - 32 - 4 - 8 + 1 }) do
        local msg, off = corrupt(with_u32(b, 32, v))
        assert.matches("configuration of %d+ bytes runs past the end", msg)
        assert.equals(32, off)
      end
      -- a length that fits but cuts the configuration short
      local msg, off = corrupt(with_u32(b, 32, clen - 8))
      assert.matches("malformed configuration", msg)
      assert.equals(36, off)
      -- zero: the configuration's bytes are read as the blob's length
      corrupt(with_u32(b, 32, 0))
      -- a bad encoding inside (a repeated voter id)
      local bad = b:sub(1, 36 + 3) .. b:sub(36 + 4, 36 + 11):rep(2) ..
                  b:sub(36 + 20)
      bad = bad:sub(1, -9) .. snap.checksum(bad:sub(1, -9))
      msg = corrupt(bad)
      assert.matches("malformed configuration", msg)
    end)

    it("the configuration's, when bytes follow it (a CONF entry's context)", function()
      local x = b:sub(1, 32) .. string.pack("<I4", clen + 8) ..
                b:sub(37, 36 + clen) .. ("\9"):rep(8) .. b:sub(37 + clen, -9)
      x = x .. snap.checksum(x)
      local msg, off = corrupt(x)
      assert.matches("malformed configuration", msg)
      assert.equals(36, off)
    end)

    it("the blob's", function()
      local msg, off = corrupt(with_u32(b, bat, 0xffffffff))
      assert.matches("over the %d+%-byte limit", msg)
      assert.equals(bat, off)
      msg, off = corrupt(with_u32(b, bat, #b))
      assert.matches("membership blob of %d+ bytes runs past the end", msg)
      assert.equals(bat, off)
      -- shorter or longer than the blob: the records no longer parse
      for _, v in ipairs({ 0, #EXTRA.blob - 1, #EXTRA.blob + 1 }) do
        corrupt(with_u32(b, bat, v))
      end
    end)

    it("when truncated at every length, and at every flipped bit", function()
      for len = 0, #b - 1 do
        local kv, msg, code = snap.restore(b:sub(1, len))
        if kv or code ~= snap.CORRUPT or not msg:match("offset %d+") then
          error(("truncated to %d: %s"):format(len, tostring(msg)))
        end
        local m, msg2 = snap.head(b:sub(1, len))
        if len < rec_start(b) and m then
          error(("head of %d bytes accepted"):format(len))
        end
        assert(m or msg2:match("offset %d+"))
      end
      for at = 0, #b - 1 do
        for _, mask in ipairs({ 0x01, 0x80, 0xff }) do
          local kv, msg, code = snap.restore(flip(b, at, mask))
          if kv or code ~= snap.CORRUPT or not msg:match("offset %d+") then
            error(("flip 0x%02x at %d: %s"):format(mask, at, tostring(msg)))
          end
        end
      end
    end)

    it("names a version it does not know", function()
      local v3 = "RFSNAP03" .. b:sub(9)
      local msg, off = corrupt(v3)
      assert.matches("unsupported format version 3", msg)
      assert.equals(6, off)
    end)
  end)
end)
