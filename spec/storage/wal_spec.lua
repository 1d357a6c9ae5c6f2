-- wal_spec.lua -- the write-ahead log's format and recovery, through
-- rafting.wal (src/lua/lmod_wal.c): round trips, truncation, torn tails at
-- every byte, corruption, missing and empty segments, the directory lock,
-- rollover, compaction, group commit and I/O failures.

local wal = require "rafting.wal"
local proc = require "rafting.proc"

local TMP = os.getenv("RAFTING_TEST_TMP") or os.getenv("TMPDIR") or "/tmp"
local HDR = 40 -- bytes of a record header

-- ---------------------------------------------------------------- helpers

local dirs = {}
local function tmpdir()
  local d = assert(proc.mkdtemp(TMP .. "/rafting-wal-"))
  dirs[#dirs + 1] = d
  return d .. "/data"
end

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

local function flip(path, off) -- flip every bit of the byte at off (0-based)
  local s = slurp(path)
  spit(path, s:sub(1, off) .. string.char(s:byte(off + 1) ~ 0xff) ..
             s:sub(off + 2))
end

local function segments(dir) -- sorted segment file names
  local out = {}
  local p = io.popen("ls '" .. dir .. "/wal' 2>/dev/null")
  for name in p:lines() do
    if name:match("^%x+%-%x+%.wal$") then out[#out + 1] = name end
  end
  p:close()
  table.sort(out)
  return out
end

local function seg_path(dir, i) -- i-th segment; negative counts from the end
  local s = segments(dir)
  if i < 0 then i = #s + 1 + i end
  return dir .. "/wal/" .. s[i], s[i]
end

-- records of a segment file: { off, size, type, index }
local function records(path)
  local s, out, off = slurp(path), {}, 0
  while off + HDR <= #s do
    local len, typ = string.unpack("<I4B", s, off + 1)
    local index = string.unpack("<I8", s, off + 9)
    out[#out + 1] = { off = off, size = HDR + len, type = typ, index = index }
    off = off + HDR + len
  end
  return out, #s
end

local function ent(index, term, data, typ)
  return { index = index, term = term, data = data or ("e" .. index),
           type = typ or 0 }
end

local function ents(from, to, term, size)
  local out = {}
  for i = from, to do
    out[#out + 1] = ent(i, term or 1, size and string.rep(string.char(
      i % 256), size) or nil)
  end
  return out
end

local function open(dir, opts)
  local w, warns = wal.open(dir, opts)
  assert(w, warns)
  return w, warns
end

-- open, load, close: what a restarted node would see
local function reload(dir, opts)
  local w, warns = open(dir, opts)
  local hs, es = assert(w:load())
  local info = w:info()
  w:close()
  return hs, es, warns, info
end

local function indexes(es)
  local out = {}
  for i, e in ipairs(es) do out[i] = e.index end
  return out
end

local function range(a, b)
  local out = {}
  for i = a, b do out[#out + 1] = i end
  return out
end

local function save(w, hs, es)
  local ok, err = w:save(hs, es)
  assert(ok, err)
end

after_each(function()
  for _, d in ipairs(dirs) do os.execute("rm -rf '" .. d .. "'") end
  dirs = {}
end)

-- ---------------------------------------------------------------- specs

describe("rafting.wal", function()
  it("round-trips entries with binary data and the hard state", function()
    local dir = tmpdir()
    local all = {}
    for b = 0, 255 do all[#all + 1] = string.char(b) end
    local es = {
      ent(1, 1, table.concat(all), 1),
      ent(2, 1, ""),
      ent(3, 2, "\0\0\0"),
      ent(4, 2, string.rep("xy\0", 40000), 2),
    }
    local w, warns = open(dir)
    assert.same({}, warns)
    save(w, { term = 2, vote = 3, commit = 1 }, es)
    save(w, { term = 2, vote = 3, commit = 4 }, nil)
    w:close()
    local hs, got, warns2, info = reload(dir)
    assert.same({}, warns2)
    assert.same({ term = 2, vote = 3, commit = 4 }, hs)
    assert.same(es, got)
    assert.equal(4, info.last_index)
    assert.equal(1, info.first_index)
  end)

  it("starts empty in a new directory and creates it", function()
    local hs, es, warns, info = reload(tmpdir() .. "/a/b")
    assert.same({ term = 0, vote = 0, commit = 0 }, hs)
    assert.same({}, es)
    assert.same({}, warns)
    assert.equal(0, info.last_index)
    assert.equal(1, info.segments)
  end)

  it("truncates from the first index of a save, then re-appends", function()
    local dir = tmpdir()
    local w = open(dir)
    save(w, { term = 1, vote = 1, commit = 0 }, ents(1, 10, 1))
    save(w, { term = 2, vote = 2, commit = 3 }, ents(6, 8, 2))
    local _, es = w:load() -- load re-reads once saves are done
    assert.same(range(1, 8), indexes(es))
    save(w, nil, ents(9, 9, 2))
    save(w, nil, ents(4, 4, 3))       -- truncate again, past a truncation
    save(w, nil, ents(5, 6, 3))
    w:close()
    local hs, got = reload(dir)
    assert.same({ term = 2, vote = 2, commit = 3 }, hs)
    assert.same(range(1, 6), indexes(got))
    assert.same({ 1, 1, 1, 3, 3, 3 }, (function()
      local t = {}
      for i, e in ipairs(got) do t[i] = e.term end
      return t
    end)())
    assert.equal("e4", got[4].data)
  end)

  it("rejects a save that would leave a gap, and keeps going", function()
    local dir = tmpdir()
    local w = open(dir)
    save(w, nil, ents(1, 3))
    local ok, err = w:save(nil, ents(5, 5))
    assert.is_nil(ok)
    assert.matches("invalid argument", err)
    ok, err = w:save(nil, { ent(4, 1), ent(6, 1) }) -- not consecutive
    assert.is_nil(ok)
    save(w, nil, ents(4, 4))
    w:close()
    local _, got = reload(dir)
    assert.same(range(1, 4), indexes(got))
  end)

  describe("recovery", function()
    -- a directory with entries 1..n in one segment; returns the path of
    -- the segment and its records
    local function written(n, size)
      local dir = tmpdir()
      local w = open(dir)
      save(w, { term = 1, vote = 1, commit = 0 }, nil)
      for i = 1, n do save(w, nil, ents(i, i, 1, size)) end
      w:close()
      local path = seg_path(dir, -1)
      return dir, path, records(path)
    end

    it("truncates a torn tail at every byte offset of the last record",
       function()
      local dir, path, recs = written(5, 37)
      local full = slurp(path)
      local last = recs[#recs]
      assert.equal(#full, last.off + last.size)
      for cut = last.off, #full - 1 do
        spit(path, full:sub(1, cut))
        local w, warns = wal.open(dir)
        assert(w, warns)
        local hs, es = w:load()
        assert.same(range(1, 4), indexes(es))
        assert.same({ term = 1, vote = 1, commit = 0 }, hs)
        if cut == last.off then
          assert.same({}, warns)            -- a clean end, nothing torn
        else
          assert.equal(1, #warns)
          assert.matches("torn tail at offset " .. last.off, warns[1])
          assert.matches(select(2, seg_path(dir, -1)), warns[1], 1, true)
        end
        w:close()
        assert.equal(last.off, #slurp(path)) -- cut for good
      end
      -- and the log goes on from there
      local w = open(dir)
      save(w, nil, ents(5, 6, 2))
      w:close()
      local _, es, warns = reload(dir)
      assert.same({}, warns)
      assert.same(range(1, 6), indexes(es))
    end)

    it("truncates a torn hard state record at every byte offset", function()
      local dir = tmpdir()
      local w = open(dir)
      save(w, { term = 1, vote = 1, commit = 0 }, ents(1, 3))
      save(w, { term = 2, vote = 2, commit = 3 }, nil)
      w:close()
      local path = seg_path(dir, -1)
      local full, recs = slurp(path), records(path)
      local last = recs[#recs]
      assert.equal(3, last.type)
      for cut = last.off + 1, #full - 1 do
        spit(path, full:sub(1, cut))
        local hs, es, warns = reload(dir)
        assert.same({ term = 1, vote = 1, commit = 0 }, hs)
        assert.same(range(1, 3), indexes(es))
        assert.equal(1, #warns)
      end
    end)

    it("truncates zeros after the last record", function()
      local dir, path = written(3, 10)
      local size = #slurp(path)
      spit(path, slurp(path) .. string.rep("\0", 4096))
      local _, es, warns = reload(dir)
      assert.same(range(1, 3), indexes(es))
      assert.matches("torn tail at offset " .. size, warns[1])
    end)

    it("keeps every acknowledged entry of a writer killed with SIGKILL",
       function()
      local dir = tmpdir()
      local acks = dir .. "/../acks"
      local script = string.format([[
        package.cpath = %q
        local w = assert(require("rafting.wal").open(%q,
                                                     { segment_bytes = 8192 }))
        local hs, es = w:load()
        local i = #es > 0 and es[#es].index or 0
        local f = assert(io.open(%q, "a"))
        while true do
          i = i + 1
          assert(w:save({ term = 1, vote = 1, commit = i - 1 },
                        { { index = i, term = 1, data = ("v" .. i):rep(20) } }))
          f:write(i, "\n"); f:flush()
        end]], package.cpath, dir, acks)
      local total = 0
      for round = 1, 3 do
        local pid = assert(proc.spawn{ argv = { "lua5.4", "-e", script } })
        proc.sleep_ms(150 + 50 * round)
        assert.is_true(proc.kill(pid, "KILL"))
        proc.wait(pid)
        local acked = 0
        for l in io.lines(acks) do acked = math.max(acked, tonumber(l)) end
        local _, es, warns = reload(dir, { segment_bytes = 8192 })
        -- a process crash leaves no torn page; a segment file it was
        -- creating (never used) may be left and is removed
        for _, w in ipairs(warns) do
          assert.matches("removed unfinished", w, 1, true)
        end
        assert.is_true(#es >= acked, #es .. " entries, " .. acked .. " acked")
        for i, e in ipairs(es) do
          assert.equal(i, e.index)
          assert.equal(("v" .. i):rep(20), e.data)
        end
        total = acked
      end
      assert.is_true(total > 0)
    end)

    it("truncates a last record whose checksum fails", function()
      local _, path, recs = written(4, 20)
      local full = slurp(path)
      local last = recs[#recs]
      -- a byte of the payload, of the header checksum, of the length
      for _, at in ipairs({ last.off + HDR + 3, last.off + 33, last.off }) do
        spit(path, full)
        flip(path, at)
        local hs, es, warns = reload(path:match("^(.*)/wal/"))
        assert.same(range(1, 3), indexes(es))
        assert.equal(1, hs.term)
        assert.equal(1, #warns)
        assert.matches("torn tail at offset " .. last.off, warns[1])
      end
    end)

    it("refuses a corrupt record before the tail, naming file and offset",
       function()
      local dir, path, recs = written(6, 50)
      local full = slurp(path)
      local victim = recs[4]
      local name = select(2, seg_path(dir, -1))
      for _, at in ipairs({ victim.off + HDR + 10, victim.off + 8,
                            victim.off + 1 }) do
        spit(path, full)
        flip(path, at)
        local w, err = wal.open(dir)
        assert.is_nil(w)
        assert.matches("corrupt WAL: .*" .. name:gsub("%-", "%%-") ..
                       " at offset " .. victim.off .. ":", err)
      end
      spit(path, full)                     -- repaired: opens again
      local _, es = reload(dir)
      assert.same(range(1, 6), indexes(es))
    end)

    it("refuses a damaged record at the end of a segment that is not the last",
       function()
      local dir = tmpdir()
      local w = open(dir, { segment_bytes = 1024 })
      for i = 1, 30 do save(w, nil, ents(i, i, 1, 100)) end
      w:close()
      assert.is_true(#segments(dir) >= 3)
      local path, name = seg_path(dir, 1)
      local recs, size = records(path)
      local last = recs[#recs]
      spit(path, slurp(path):sub(1, size - 1))  -- torn, but not the tail
      local w2, err = wal.open(dir)
      assert.is_nil(w2)
      assert.matches(name, err, 1, true)
      assert.matches("at offset " .. last.off .. ": partial record", err)
    end)

    it("refuses a missing segment", function()
      local dir = tmpdir()
      local w = open(dir, { segment_bytes = 1024 })
      for i = 1, 40 do save(w, nil, ents(i, i, 1, 100)) end
      w:close()
      local segs = segments(dir)
      assert.is_true(#segs >= 4)
      -- the middle one
      os.rename(dir .. "/wal/" .. segs[2], dir .. "/" .. segs[2])
      local w2, err = wal.open(dir)
      assert.is_nil(w2)
      assert.matches("missing segment", err)
      assert.matches(segs[3], err, 1, true)
      os.rename(dir .. "/" .. segs[2], dir .. "/wal/" .. segs[2])
      -- the first one: nothing covers the entries it held
      os.rename(dir .. "/wal/" .. segs[1], dir .. "/" .. segs[1])
      w2, err = wal.open(dir)
      assert.is_nil(w2)
      assert.matches("segments before this one are missing", err)
      assert.matches(segs[2], err, 1, true)
      os.rename(dir .. "/" .. segs[1], dir .. "/wal/" .. segs[1])
      local _, es = reload(dir, { segment_bytes = 1024 })
      assert.same(range(1, 40), indexes(es))
    end)

    it("treats a zero-length last segment as never written", function()
      local dir = tmpdir()
      local w = open(dir, { segment_bytes = 1024 })
      for i = 1, 20 do save(w, { term = 1, vote = 2, commit = i - 1 },
                            ents(i, i, 1, 100)) end
      w:close()
      local segs = segments(dir)
      local seq = tonumber(segs[#segs]:sub(1, 16), 16)
      local empty = string.format("%016x-%016x.wal", seq + 1, 21)
      spit(dir .. "/wal/" .. empty, "")
      local hs, es, warns = reload(dir, { segment_bytes = 1024 })
      assert.same(range(1, 20), indexes(es))
      assert.equal(19, hs.commit)
      assert.equal(1, #warns)
      assert.matches(empty .. ": empty file", warns[1], 1, true)
      assert.same(segs, segments(dir))     -- removed
    end)

    it("refuses a zero-length segment before the last one", function()
      local dir = tmpdir()
      local w = open(dir, { segment_bytes = 1024 })
      for i = 1, 30 do save(w, nil, ents(i, i, 1, 100)) end
      w:close()
      local path, name = seg_path(dir, 2)
      spit(path, "")
      local w2, err = wal.open(dir)
      assert.is_nil(w2)
      assert.matches(name .. " at offset 0: zero-length segment", err, 1, true)
    end)

    it("starts empty when the only segment is a zero-length first one",
       function()
      local dir = tmpdir()
      open(dir):close()
      spit(seg_path(dir, 1), "")
      local hs, es, warns = reload(dir)
      assert.same({}, es)
      assert.equal(0, hs.term)
      assert.equal(1, #warns)
      local w = open(dir)
      save(w, nil, ents(1, 2))
      w:close()
      assert.same(range(1, 2), indexes(select(2, reload(dir))))
    end)

    it("removes a segment whose creation was interrupted", function()
      local dir = tmpdir()
      local w = open(dir)
      save(w, nil, ents(1, 2))
      w:close()
      spit(dir .. "/wal/0000000000000002-0000000000000003.wal.tmp", "junk")
      local _, es, warns = reload(dir)
      assert.same(range(1, 2), indexes(es))
      assert.matches("removed unfinished", warns[1])
      assert.same({ "0000000000000001-0000000000000001.wal" }, segments(dir))
    end)
  end)

  describe("the directory lock", function()
    it("lets one process at a time use a directory", function()
      local dir = tmpdir()
      local w = open(dir)
      local w2, err = wal.open(dir)  -- another open file: flock conflicts
      assert.is_nil(w2)
      assert.matches("data directory .* is in use by another process %(pid "
                     .. proc.getpid(), err)
      -- another process likewise
      local script = string.format([[
        package.cpath = %q
        local w, err = require("rafting.wal").open(%q)
        if w then os.exit(0) end
        io.stderr:write(err, "\n")
        os.exit(2)]], package.cpath, dir)
      local log = dir .. "/../child.log"
      local pid = assert(proc.spawn{ argv = { "lua5.4", "-e", script },
                                     stderr = log })
      assert.same({ "exited", 2 }, { proc.wait(pid) })
      assert.matches("in use by another process", slurp(log))
      w:close()
      w2 = open(dir)                 -- free again once closed
      w2:close()
    end)
  end)

  describe("segments", function()
    it("roll over at the segment size and read back in order", function()
      local dir = tmpdir()
      local w = open(dir, { segment_bytes = 1024 })
      for i = 1, 50 do save(w, { term = 1, vote = 1, commit = i },
                            ents(i, i, 1, 100)) end
      local info = w:info()
      w:close()
      local segs = segments(dir)
      assert.is_true(#segs >= 6)
      assert.equal(#segs, info.segments)
      local bytes = 0
      for i, name in ipairs(segs) do
        assert.equal(i, tonumber(name:sub(1, 16), 16))
        local recs, size = records(dir .. "/wal/" .. name)
        bytes = bytes + size
        assert.is_true(size <= 1024)
        -- base in the name = first entry in the file
        local base = tonumber(name:sub(18, 33), 16)
        for _, r in ipairs(recs) do
          if r.type == 2 then assert.equal(base, r.index) break end
        end
      end
      assert.equal(bytes, info.disk_bytes)
      local hs, es = reload(dir, { segment_bytes = 1024 })
      assert.equal(50, hs.commit)
      assert.same(range(1, 50), indexes(es))
      assert.equal(string.rep(string.char(37), 100), es[37].data)
    end)

    it("keep a save larger than a segment whole", function()
      local dir = tmpdir()
      local w = open(dir, { segment_bytes = 512 })
      save(w, nil, ents(1, 1, 1, 100))
      save(w, nil, ents(2, 3, 1, 2000))
      save(w, nil, ents(4, 4, 1, 100))
      w:close()
      assert.equal(3, #segments(dir))
      assert.same(range(1, 4), indexes(select(2, reload(dir))))
    end)

    it("replay a truncation that reaches back into older segments", function()
      local dir = tmpdir()
      local w = open(dir, { segment_bytes = 1024 })
      for i = 1, 30 do save(w, nil, ents(i, i, 1, 100)) end
      save(w, { term = 2, vote = 2, commit = 4 }, ents(5, 5, 2))
      w:close()
      local hs, es = reload(dir)
      assert.same(range(1, 5), indexes(es))
      assert.equal(2, es[5].term)
      assert.equal(4, hs.commit)
    end)
  end)

  describe("compaction", function()
    local function filled(n)
      local dir = tmpdir()
      local w = open(dir, { segment_bytes = 1024 })
      for i = 1, n do save(w, { term = 1, vote = 1, commit = i },
                           ents(i, i, 1, 100)) end
      return dir, w
    end

    it("removes whole segments before the snapshot and keeps the rest",
       function()
      local dir, w = filled(60)
      local before = segments(dir)
      assert(w:compact(33, 1))
      local after = segments(dir)
      local info = w:info()
      assert.equal(33, info.snap_index)
      assert.equal(34, info.first_index)
      assert.equal(#after, info.segments)
      assert.is_true(#after < #before)
      -- what remains starts at or before 34; nothing removed is needed
      assert.is_true(tonumber(after[1]:sub(18, 33), 16) <= 34)
      local kept = {}
      for _, s in ipairs(after) do kept[s] = true end
      for _, s in ipairs(before) do
        if not kept[s] then
          assert.is_true(tonumber(s:sub(1, 16), 16) <
                         tonumber(after[1]:sub(1, 16), 16))
        end
      end
      save(w, nil, ents(61, 62, 2))
      w:close()
      local hs, es, warns, i2 = reload(dir, { segment_bytes = 1024 })
      assert.same({}, warns)
      assert.equal(60, hs.commit)
      assert.same(range(34, 62), indexes(es))
      assert.equal(33, i2.snap_index)
      assert.equal(1, i2.snap_term)
    end)

    -- compacted segments are renamed NAME.tmp at once, then shrunk (here:
    -- tiny, so to nothing) and unlinked one per later batch; the first
    -- eight wait their turn, more are unlinked at once; close removes the
    -- rest (docs/storage.md, "Removing large files")
    it("retires compacted segments as temp files, removed batch by batch",
       function()
      local function tmps(dir)
        local n, p = 0, io.popen("ls '" .. dir .. "/wal'")
        for name in p:lines() do
          if name:match("^%x+%-%x+%.wal%.tmp$") then n = n + 1 end
        end
        p:close()
        return n
      end
      local dir = tmpdir()
      local w = open(dir, { segment_bytes = 1024 })
      for i = 1, 100 do save(w, nil, ents(i, i, 1, 100)) end
      local before = #segments(dir)
      assert(w:compact(95, 1))
      local removed = before - #segments(dir)
      assert.is_true(removed > 9, removed .. " segments compacted")
      -- eight renamed, the rest unlinked; the compaction's batch took one
      assert.equal(7, tmps(dir))
      for k = 1, 7 do
        save(w, nil, ents(100 + k, 100 + k, 1, 100))
        assert.equal(7 - k, tmps(dir))
      end
      assert(w:compact(106, 1))
      w:close()
      assert.equal(0, tmps(dir))
      assert.same(range(107, 107), indexes(select(2, reload(dir, {
        segment_bytes = 1024 }))))
    end)

    it("discards the whole log for a snapshot past its end", function()
      local dir, w = filled(20)
      assert(w:compact(100, 5))
      assert.equal(1, w:info().segments)
      local ok = w:save(nil, ents(100, 100, 5))
      assert.is_nil(ok)                     -- covered by the snapshot
      ok = w:save(nil, ents(102, 102, 5))
      assert.is_nil(ok)                     -- a gap
      save(w, nil, ents(101, 103, 5))
      w:close()
      local _, es, _, info = reload(dir)
      assert.same(range(101, 103), indexes(es))
      assert.equal(100, info.snap_index)
      assert.equal(5, info.snap_term)
    end)

    it("discards the log when the snapshot's term differs there", function()
      local dir, w = filled(20)
      assert(w:compact(10, 7))              -- entry 10 has term 1
      assert.equal(10, w:info().last_index)
      save(w, nil, ents(11, 11, 7))
      w:close()
      local _, es = reload(dir)
      assert.same({ 11 }, indexes(es))
    end)

    it("refuses to go back to an older snapshot", function()
      local _, w = filled(10)
      assert(w:compact(5, 1))
      local ok, err = w:compact(4, 1)
      assert.is_nil(ok)
      assert.matches("invalid argument", err)
      w:close()
    end)

    it("keeps snapshot and hard state across removed segments", function()
      local dir, w = filled(40)
      assert(w:compact(38, 1))
      for i = 41, 80 do save(w, nil, ents(i, i, 1, 100)) end
      assert(w:compact(75, 1))
      w:close()
      local segs = segments(dir)
      assert.is_true(tonumber(segs[1]:sub(1, 16), 16) > 1)
      local hs, es, _, info = reload(dir)
      assert.equal(40, hs.commit)
      assert.same(range(76, 80), indexes(es))
      assert.equal(75, info.snap_index)
    end)
  end)

  describe("group commit", function()
    it("covers saves queued behind a sync with one write and sync", function()
      local dir = tmpdir()
      local w = open(dir)
      local items = {}
      for i = 1, 40 do
        items[i] = { hs = { term = 1, vote = 1, commit = i - 1 },
                     entries = ents(i, i) }
      end
      items[41] = { }                       -- nothing to write: in order too
      items[42] = { compact = { 10, 1 } }
      local st, in_order = w:pipeline(items)
      for i = 1, #items do assert.equal(0, st[i]) end
      assert.is_true(in_order)
      local info = w:info()
      assert.equal(#items, info.saves)
      assert.is_true(info.syncs < 10, "syncs: " .. info.syncs)
      w:close()
      local hs, es = reload(dir)
      assert.equal(39, hs.commit)
      assert.same(range(11, 40), indexes(es))
    end)

    it("never syncs appends with sync = none", function()
      local dir = tmpdir()
      local w = open(dir, { sync = "none" })
      local before = w:info().syncs
      for i = 1, 5 do save(w, nil, ents(i, i)) end
      assert.equal(before, w:info().syncs)
      w:close()
      assert.same(range(1, 5), indexes(select(2, reload(dir))))
    end)

    it("bounds a batch by max_batch_bytes", function()
      local w = open(tmpdir(), { max_batch_bytes = 1000 })
      local items = {}
      for i = 1, 20 do items[i] = { entries = ents(i, i, 1, 400) } end
      local st, in_order = w:pipeline(items)
      assert.is_true(in_order)
      for i = 1, 20 do assert.equal(0, st[i]) end
      assert.is_true(w:info().writes >= 10)
      w:close()
    end)
  end)

  describe("I/O failures", function()
    it("fail that save and every later one", function()
      local dir = tmpdir()
      -- sync #1 creates the first segment; #2 is the first save's
      local w = open(dir, { fail = { sync = 3 } })
      save(w, { term = 1, vote = 1, commit = 0 }, ents(1, 1))
      local ok, err, code = w:save(nil, ents(2, 2))
      assert.is_nil(ok)
      assert.matches("i/o error", err)
      assert.is_true(code < 0)
      ok = w:save(nil, ents(3, 3))
      assert.is_nil(ok)
      local st, in_order = w:pipeline{ { entries = ents(3, 3) }, {},
                                       { compact = { 1, 1 } } }
      assert.is_true(in_order)
      for i = 1, 3 do assert.is_true(st[i] < 0) end
      assert.is_true(w:info().failed < 0)
      w:close()
      -- only what was acknowledged is promised; the rest may or may not
      -- have reached the disk
      local _, es = reload(dir)
      assert.equal(1, es[1].index)
    end)

    it("fail a whole pipelined batch when its write fails", function()
      -- write #1 creates the first segment, #2 is item 1 (alone: nothing
      -- was in flight), #3 is items 2..10, queued behind it
      local w = open(tmpdir(), { fail = { write = 3 } })
      local items = {}
      for i = 1, 10 do items[i] = { entries = ents(i, i) } end
      local st, in_order = w:pipeline(items)
      assert.is_true(in_order)
      assert.equal(0, st[1])
      for i = 2, 10 do assert.is_true(st[i] < 0) end
      w:close()
    end)

    it("fail a compaction whose unlink fails, but not the log", function()
      local dir = tmpdir()
      local w = open(dir, { segment_bytes = 1024, fail = { unlink = 1 } })
      for i = 1, 30 do save(w, nil, ents(i, i, 1, 100)) end
      local ok = w:compact(20, 1)
      assert.is_nil(ok)
      save(w, nil, ents(31, 31))
      assert(w:compact(25, 1))
      w:close()
      assert.same(range(26, 31), indexes(select(2, reload(dir))))
    end)
  end)
end)
