-- Scripts as replicated state (src/sm/scripts.c): script.put, script.delete
-- and script.seed entries install, replace and remove command scripts; the
-- set in force is part of the store, so it travels with snapshots, and
-- every replica runs each entry with the version in force at its index.
local H = require("spec.support.sm_helper")
local sm, cjson = H.sm, H.json

local function source(factor)
  return ([[
local commands, queries = {}, {}
function commands.bump(args)
  local n = (tonumber(kv.get(args.key)) or 0) + %d
  kv.put(args.key, tostring(n))
  return n
end
function queries.peek(args) return tonumber(kv.get(args.key)) end
return { commands = commands, queries = queries }
]]):format(factor)
end

local function put(h, name, src)
  return H.bin(h, "script.put", { name = name, source = src })
end

local function delete(h, name)
  return H.bin(h, "script.delete", { name = name })
end

local function seed(h, name, src)
  return H.bin(h, "script.seed", { name = name, source = src })
end

describe("a script deployed through the log", function()
  local h
  before_each(function() h = H.host() end)
  after_each(function() h:close() end)

  it("is installed when its entry applies, and describes itself", function()
    assert.is_false(h:has_command("bump"))
    local ok, res = put(h, "bump.lua", source(1))
    assert.is_true(ok, res)
    res = cjson.decode(res)
    assert.equal("bump.lua", res.name)
    assert.equal(1, res.index)
    assert.same({ "bump" }, res.commands)
    assert.same({ "peek" }, res.queries)
    assert.matches("^%x+$", res.sha256)
    assert.equal(64, #res.sha256)
    assert.is_true(h:has_command("bump"))
    assert.equal(1, H.ok(h, "bump", { key = "k" }))
    local list = cjson.decode(h:scripts())
    assert.equal(1, #list)
    assert.equal(res.sha256, list[1].sha256)
  end)

  it("entries after an update run the new version, entries before it the old one", function()
    assert.is_true((put(h, "bump.lua", source(1))))
    assert.equal(1, H.ok(h, "bump", { key = "k" }))
    assert.is_true((put(h, "bump.lua", source(10))))
    assert.equal(11, H.ok(h, "bump", { key = "k" }))
    assert.equal(1, #cjson.decode(h:scripts()))
  end)

  it("delete removes its commands; a missing script is notfound", function()
    assert.is_true((put(h, "bump.lua", source(1))))
    local ok, res = delete(h, "bump.lua")
    assert.is_true(ok, res)
    assert.same({ name = "bump.lua", deleted = true }, cjson.decode(res))
    assert.is_false(h:has_command("bump"))
    local _, _, code = H.cmd(h, "bump", { key = "k" })
    assert.equal("notfound", code)
    _, _, code = delete(h, "bump.lua")
    assert.equal("notfound", code)
  end)

  it("a script that does not load fails the same way everywhere and changes nothing", function()
    assert.is_true((put(h, "bump.lua", source(1))))
    local before = h:scripts_digest()
    for _, bad in ipairs({
      { "syn.lua", "return {", "syn%.lua:1:" },
      { "shape.lua", "return { command = {} }", "unexpected key 'command'" },
      { "fn.lua", "return { commands = { x = 1 } }", "fn%.lua: commands%.x must be a function, not a number" },
      { "top.lua", "error('boom')", "top%.lua:1: boom" },
      { "clash.lua", "return { commands = { put = function() end } }",
        "'put' is already defined by kv%.lua" },
      { "clash2.lua", "return { commands = { bump = function() end } }",
        "'bump' is already defined by bump%.lua" },
      { "kv.lua", "return {}", "built%-in" },
    }) do
      local ok, msg, code = put(h, bad[1], bad[2])
      assert.is_false(ok, bad[1])
      assert.equal("failed", code)
      assert.matches(bad[3], msg)
    end
    assert.equal(before, h:scripts_digest())
    assert.equal(1, H.ok(h, "bump", { key = "k" }))
  end)

  it("check says what a deploy would, with conflict apart from bad scripts", function()
    assert.is_true((put(h, "bump.lua", source(1))))
    local ok, msg, code = h:check("x.lua", "return {")
    assert.is_false(ok)
    assert.equal("badentry", code)
    assert.matches("x%.lua:1:", msg)
    ok, msg, code = h:check("x.lua", "return { commands = { bump = function() end } }")
    assert.equal("conflict", code)
    assert.matches("already defined by bump%.lua", msg)
    ok, msg, code = h:check("bad name", "return {}")
    assert.equal("badentry", code)
    assert.is_true((h:check("bump.lua", source(2)))) -- an update
    assert.equal(1, #cjson.decode(h:scripts()))       -- check installs nothing
  end)

  it("names may not use the reserved script. prefix", function()
    local ok, msg = put(h, "p.lua", "return { commands = { ['script.put'] = function() end } }")
    assert.is_false(ok)
    assert.matches("reserved", msg)
  end)

  it("a seed installs only while no script entry ever applied", function()
    local ok, res = seed(h, "boot.lua", source(1))
    assert.is_true(ok, res)
    assert.is_true(h:has_command("bump"))
    ok, res = seed(h, "boot.lua", source(5)) -- a second leader's seed
    assert.is_true(ok)
    assert.is_true(cjson.decode(res).skipped)
    assert.equal(1, H.ok(h, "bump", { key = "k" }))
    assert.is_true((delete(h, "boot.lua")))
    assert.is_true(cjson.decode(select(2, seed(h, "boot.lua", source(1)))).skipped)
    assert.is_false(h:has_command("bump")) -- a deliberate delete stays
  end)

  it("kv in scripts neither sees nor writes the reserved keys", function()
    assert.is_true((put(h, "bump.lua", source(1))))
    assert.is_true((put(h, "probe.lua", [[
local c = {}
function c.probe()
  local n = 0
  for _, kv_ in ipairs(kv.scan("")) do n = n + 1 end
  return { scanned = n, got = kv.get("\0rafting/scripts/bump.lua") == nil }
end
function c.write() kv.put("\0rafting/scripts/x", "y") end
return { commands = c }
]])))
    H.ok(h, "bump", { key = "k" })
    assert.same({ scanned = 1, got = true }, H.ok(h, "probe", {}))
    local ok, msg = H.cmd(h, "write", {})
    assert.is_false(ok)
    assert.matches("reserved", msg)
  end)
end)

describe("loading a script is the same on every replica", function()
  it("its top level cannot use kv (the store differs between a check, an apply and a restore)", function()
    local a, b = H.host(), H.host()
    local bad = 'kv.put("leak", "x") return { commands = { c = function() end } }'
    local ok, msg, code = a:check("leak.lua", bad)
    assert.is_false(ok)
    assert.equal("badentry", code)
    assert.matches("leak%.lua:1: kv%.put: not available while the script loads", msg)
    ok, msg = put(a, "leak.lua", bad)
    assert.is_false(ok)
    assert.matches("not available while the script loads", msg)
    for _, h in ipairs({ b }) do assert((put(h, "leak.lua", bad)) == false) end
    -- nothing of the refused loads reaches the store with the next entry
    for _, h in ipairs({ a, b }) do
      assert(h:apply(h:applied() + 1, sm.encode("put", H.T0, { key = "k", value = "v" })))
    end
    assert.is_nil(a:get("leak"))
    assert.equal(b:digest(), a:digest())
    a:close() b:close()
  end)

  it("what one replica's queries left in its Lua heap does not decide whether a script loads", function()
    local cap = 8 * 1024 * 1024
    local a, b = H.host({ memory = cap, budget = 1e7 }), H.host({ memory = cap, budget = 1e7 })
    local junk = [[
local queries = {}
function queries.junk()
  local t = {}
  for i = 1, 50000 do t[i] = ("y"):rep(90) .. i end
  return #t
end
return { queries = queries }
]]
    local big = [[
local t = {}
for i = 1, 25000 do t[i] = ("x"):rep(90) .. i end
return { commands = { big = function() return #t end } }
]]
    for _, h in ipairs({ a, b }) do assert.is_true((put(h, "junk.lua", junk))) end
    for _ = 1, 3 do assert(a:query("junk")) end -- garbage on a only
    assert.is_true(a:memory() > b:memory() + 4 * 1024 * 1024, "garbage: " .. a:memory())
    local ra, rb = { put(a, "big.lua", big) }, { put(b, "big.lua", big) }
    assert.same(rb, ra)
    assert.is_true(ra[1], ra[2])
    assert.equal(b:scripts_digest(), a:scripts_digest())
    a:close() b:close()
  end)

  it("the first mistake reported does not depend on Lua's table order", function()
    local src = "return { commands = { zeta = 6, alpha = 1, mu = 3, beta = 2, " ..
                "epsilon = 5, delta = 4 } }"
    for _ = 1, 10 do
      local h = H.host()
      local ok, msg = put(h, "order.lua", src)
      assert.is_false(ok)
      assert.equal("order.lua: commands.alpha must be a function, not a number", msg)
      -- keys no order applies to: the lowest type is named, not the first met
      ok, msg = put(h, "keys.lua", "local t = { [print] = 1, [{}] = 2, [coroutine.create(print)] = 3 } " ..
                                   "return { commands = t }")
      assert.is_false(ok)
      assert.matches("table keys of type table have no deterministic order", msg, 1, true)
      h:close()
    end
  end)
end)

describe("scripts and snapshots", function()
  it("a replica restored from a snapshot taken between two versions computes what the others did", function()
    local a, b = H.host(), H.host()
    local log = {
      sm.encode("script.put", H.T0, { name = "bump.lua", source = source(1) }),
      assert(sm.encode_json("bump", H.T0, '{"key":"k"}')),
      sm.encode("script.put", H.T0, { name = "bump.lua", source = source(100) }),
      assert(sm.encode_json("bump", H.T0, '{"key":"k"}')),
    }
    for i = 1, 2 do assert(a:apply(i, log[i])) end
    b:restore_from(a)            -- b's snapshot: v1 in force at index 2
    assert.is_true(b:has_command("bump"))
    for i = 3, 4 do
      local ra, rb = { a:apply(i, log[i]) }, { b:apply(i, log[i]) }
      assert.same(ra, rb)
    end
    assert.equal("101", b:get("k"))
    assert.equal(a:digest(), b:digest())
    assert.equal(a:scripts_digest(), b:scripts_digest())
    local c = H.host({ budget = 1000 }) -- too small a budget to load them here
    local big = "local t = {} for i = 1, 50000 do t[i] = i end\n" ..
                "return { commands = { big = function() end } }"
    assert(a:apply(5, sm.encode("script.put", H.T0, { name = "big.lua", source = big })))
    local ok, msg = c:restore_from(a)
    assert.is_false(ok)
    assert.matches("budget", msg)
    a:close() b:close() c:close()
  end)
end)
