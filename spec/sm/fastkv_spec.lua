-- kv.lua's put and delete applied in C (src/sm/fastkv.c) give what kv.lua
-- gives: the same results, errors and store, entry for entry.  A host with
-- kv.lua loaded from its file (rf_sm_opts.builtin) always runs Lua: it is
-- the reference.
local H = require("spec.support.sm_helper")
local sm = H.sm

local KV = "lua/rafting/sm/kv.lua"

local function pair(opts)
  local fast = H.host(opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.builtin = KV
  return fast, H.host(o)
end

local function same(fast, lua, entry, what)
  local a = { fast:apply(fast:applied() + 1, entry) }
  local b = { lua:apply(lua:applied() + 1, entry) }
  assert.same(b, a, what)
  return a[1]
end

local function rand_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

describe("put and delete without Lua", function()
  it("match kv.lua on a random mix of entries (seeded)", function()
    local seed = tonumber(os.getenv("RAFTING_SEED")) or os.time()
    print(("fastkv_spec seed %d (RAFTING_SEED=%d replays it)"):format(seed, seed))
    math.randomseed(seed)
    local fast, lua = pair()
    local keys = { "a", "b", "\0", "\0rafting/scripts/x", "\0rafting/", "k" .. ("x"):rep(300), "" }
    for i = 1, 3000 do
      local key = keys[math.random(#keys)]
      local r = math.random(10)
      local args
      if r <= 5 then
        args = { key = key, value = rand_bytes(math.random(0, 200)) }
      elseif r <= 8 then
        args = { key = key }
      elseif r == 9 then
        args = { value = "v" } -- no key
      else
        args = { key = key, other = "x" }
      end
      local name = (r <= 5 or r == 9) and "put" or "delete"
      if r == 10 then name = "put" end -- put without a value
      same(fast, lua, sm.encode(name, H.T0, args), ("entry %d: %s"):format(i, name))
    end
    assert.equal(lua:digest(), fast:digest())
    assert.equal(lua:count(), fast:count())
    fast:close() lua:close()
  end)

  it("match kv.lua at the memory cap and the instruction budget", function()
    local fast, lua = pair({ memory = 2 * 1024 * 1024, budget = 20000 })
    for _, size in ipairs({ 10, 100000, 600000, 1500000, 3000000 }) do
      same(fast, lua, sm.encode("put", H.T0, { key = "big", value = ("v"):rep(size) }),
           "value of " .. size .. " bytes")
    end
    assert.equal(lua:digest(), fast:digest())
    fast:close() lua:close()
    -- the memory cap alone (a budget that never binds), across the edge
    -- where kv.lua starts refusing: Lua holds the value and the batch
    for _, cap in ipairs({ 1024 * 1024, 4 * 1024 * 1024 }) do
      fast, lua = pair({ memory = cap, budget = 1e9 })
      local failed, passed = 0, 0
      for size = cap // 8, cap, cap // 64 do
        local ok = same(fast, lua, sm.encode("put", H.T0, { key = "k" .. size,
                        value = ("v"):rep(size) }), "cap " .. cap .. ", value of " .. size)
        if ok then passed = passed + 1 else failed = failed + 1 end
        same(fast, lua, sm.encode("delete", H.T0, { key = "k" .. size }), "delete " .. size)
      end
      assert.is_true(failed > 0 and passed > 0, "the sweep crosses the edge")
      assert.equal(lua:digest(), fast:digest())
      fast:close() lua:close()
    end
  end)

  it("match kv.lua when an argument name repeats (the last one counts)", function()
    local fast, lua = pair()
    -- an ARGS entry by hand (rafting/sm.h): lengths under 128 are one byte
    local function str(x) return string.char(#x) .. x end
    local function entry(name, pairs_)
      local t = { "\1", ("\0"):rep(8), str(name), "\1", string.char(#pairs_) }
      for _, p in ipairs(pairs_) do t[#t + 1] = str(p[1]) .. str(p[2]) end
      return table.concat(t)
    end
    local e = entry("put", { { "key", "k" }, { "value", "1" }, { "value", "2" },
                             { "key", "j" } })
    assert.equal("put", sm.decode(e).name)
    same(fast, lua, e, "repeated names")
    assert.equal("2", fast:get("j"))
    same(fast, lua, entry("delete", { { "key", "j" }, { "key", "k" } }), "delete k")
    same(fast, lua, entry("put", { { "key", "\0rafting/x" }, { "key", "ok" },
                                   { "value", "v" } }), "a reserved key replaced")
    same(fast, lua, entry("put", { { "key", "ok" }, { "key", "\0rafting/x" },
                                   { "value", "v" } }), "a reserved key last")
    assert.equal(lua:digest(), fast:digest())
    fast:close() lua:close()
  end)

  it("put answers true, delete whether the key existed", function()
    local fast = H.host()
    local ok, res = fast:apply(1, sm.encode("put", H.T0, { key = "w", value = "1" }))
    assert.is_true(ok)
    assert.equal("true", res)
    ok, res = fast:apply(2, sm.encode("delete", H.T0, { key = "w" }))
    assert.equal("true", res)
    ok, res = fast:apply(3, sm.encode("delete", H.T0, { key = "w" }))
    assert.equal("false", res)
    assert.is_nil(fast:get("w"))
    fast:close()
  end)
end)
