-- One spec per sandbox rule (docs/commands.md, "The sandbox").  The probes
-- are commands of spec/sm/fixtures/sandbox.lua.
local H = require("spec.support.sm_helper")

describe("the sandbox", function()
  local h
  before_each(function()
    h = H.host({ commands = H.SANDBOX, memory = 16 * 1024 * 1024, log = true })
  end)
  after_each(function() h:close() end)

  -- the host must stay usable after any failure
  local function still_works()
    assert(H.bin(h, "put", { key = "after", value = "ok" }))
    assert.equal("ok", h:get("after"))
  end

  describe("hides", function()
    local g
    before_each(function() g = H.ok(h, "globals") end)

    for _, name in ipairs({ "io", "require", "debug", "collectgarbage", "dofile",
                            "loadfile", "package", "loadstring", "module",
                            "string.dump", "os.getenv", "os.execute", "os.exit" }) do
      it(name, function() assert.equal("nil", g[name]) end)
    end

    it("os but for time and clock", function()
      assert.equal("table", g.os)
      assert.equal("function", g["os.time"])
      assert.equal("function", g["os.clock"])
    end)

    it("nothing a handler needs", function()
      for _, name in ipairs({ "string", "json", "kv", "coroutine", "utf8" }) do
        assert.equal("table", g[name])
      end
      assert.equal("function", g.load)
    end)
  end)

  describe("load", function()
    it("runs text chunks", function() assert.equal(2, H.ok(h, "load_text")) end)

    it("refuses bytecode", function()
      assert.equal("attempt to load a binary chunk (mode is 't')", H.ok(h, "load_binary"))
      assert.matches("sandbox%.lua:%d+: load: only text chunks are allowed",
                     H.fails(h, "load_mode_b"))
    end)

    it("defaults to the call's environment", function()
      assert.equal(42, H.ok(h, "load_env"))
    end)
  end)

  describe("order", function()
    it("pairs walks keys sorted: numbers, strings by bytes, booleans", function()
      assert.same({ "-1", "1", "2.5", "10", "B", "a", "ab", "b", "false", "true" },
                  H.ok(h, "pairs_order", { keys = { "b", "a", 10, 1, "ab", "B" } }))
    end)

    it("next follows the same order", function()
      assert.same({ order = { 3, "a", "b", "c" }, empty = true }, H.ok(h, "next_order"))
    end)

    it("pairs refuses keys that have no stable order", function()
      assert.matches("sandbox%.lua:%d+: table keys of type table have no deterministic order",
                     H.fails(h, "unorderable"))
    end)

    it("next costs budget per key, so a next loop is bounded", function()
      assert.matches("instruction budget exceeded", H.fails(h, "budget_next"))
      still_works()
    end)

    it("table.sort is stable", function()
      local r = H.ok(h, "sort_stable")
      assert.same({ 1, 3, 5, 9 }, r.plain)
      local expect = {}
      for k = 0, 2 do
        for i = 1, 200 do if i % 3 == k then expect[#expect + 1] = i end end
      end
      assert.same(expect, r.ids)
    end)
  end)

  describe("randomness", function()
    it("math.random is seeded by the entry index", function()
      local other = H.host({ commands = H.SANDBOX })
      local a1, b1 = H.ok(h, "random"), H.ok(other, "random")
      local a2, b2 = H.ok(h, "random"), H.ok(other, "random")
      assert.same(a1, b1)
      assert.same(a2, b2)
      assert.are_not.same(a1, a2)
      other:close()
    end)

    it("math.randomseed needs an explicit seed", function()
      assert.matches("bad argument #1 to 'randomseed'", H.fails(h, "randomseed"))
    end)
  end)

  describe("time", function()
    it("os.time and os.clock read the entry's time, not the clock", function()
      local ok, res = H.cmd(h, "clock", nil, 86400123)
      assert.is_true(ok)
      assert.same({ time = 86400, clock = 86400.123, ctx = 86400123, index = h:applied() },
                  H.json.decode(res))
    end)

    it("os.time refuses a date table (it would read the local time zone)", function()
      assert.matches("os%.time: only os%.time%(%)", H.fails(h, "os_time_table"))
    end)
  end)

  describe("the instruction budget", function()
    for _, probe in ipairs({ "loop", "loop_pcall", "loop_coroutine", "loop_wrap" }) do
      it("stops " .. probe .. " with the script line, uncatchably", function()
        assert.matches("^spec/sm/fixtures/sandbox%.lua:%d+: instruction budget exceeded %(1000000%)$",
                       H.fails(h, probe))
        still_works()
      end)
    end

    it("is configurable", function()
      local small = H.host({ commands = H.SANDBOX, budget = 1000 })
      assert.matches("budget exceeded %(1000%)", H.fails(small, "sort_stable"))
      small:close()
    end)
  end)

  describe("the memory cap", function()
    for _, probe in ipairs({ "bigstring", "bigtable", "mem_pcall" }) do
      it("stops " .. probe .. " and leaves a usable state", function()
        local base = h:memory()
        assert.equal("spec/sm/fixtures/sandbox.lua: memory cap exceeded (16777216 bytes)",
                     H.fails(h, probe))
        assert.is_true(h:memory() < base + 1024 * 1024)
        still_works()
        assert.equal(1, H.ok(h, "count"))
      end)
    end

    it("bounds json.decode, whose parse tree lives outside the Lua heap", function()
      assert.equal(1, H.ok(h, "decode_big", { n = 100000 }))
      assert.matches("memory cap exceeded", H.fails(h, "decode_big", { n = 1000000 }))
      still_works()
    end)

    it("counts a call's buffered writes", function()
      local tiny = H.host({ memory = 1024 * 1024 })
      local ok, msg = H.bin(tiny, "put", { key = "k", value = ("v"):rep(900 * 1024) })
      assert.is_false(ok)
      assert.matches("memory cap exceeded", msg)
      assert.equal(0, tiny:count())
      tiny:close()
    end)
  end)

  describe("text never shows addresses", function()
    it("tostring gives the type of tables, functions and threads", function()
      assert.same({ "table", "function", "thread" }, H.ok(h, "tostring"))
    end)

    it("string.format refuses %p and formats references by type", function()
      assert.matches("'%%p' is not available", H.fails(h, "format_p"))
      assert.equal("table|function|  2.2", H.ok(h, "format_s"))
    end)
  end)

  describe("GC-timed behaviour", function()
    it("refuses __gc metamethods", function()
      assert.matches("setmetatable: __gc is not allowed", H.fails(h, "gc_meta"))
    end)

    it("refuses weak tables", function()
      assert.matches("setmetatable: __mode is not allowed", H.fails(h, "weak"))
    end)
  end)

  describe("nothing survives a call", function()
    it("globals", function()
      assert.equal("leaked", H.ok(h, "keep_global", { set = true }))
      assert.equal("fresh", H.ok(h, "keep_global"))
    end)

    it("top-level locals of the script", function()
      assert.equal(1, H.ok(h, "count"))
      assert.equal(1, H.ok(h, "count"))
    end)

    it("changes to library tables: they are read-only", function()
      assert.matches("sandbox%.lua:%d+: library tables are read%-only",
                     H.fails(h, "mutate_libs"))
      assert.matches("library tables are read%-only", H.fails(h, "mutate_rawset"))
      assert.matches("cannot change a protected metatable", H.fails(h, "mutate_meta"))
      assert.same({ "function", math.pi, "function", "A" }, H.ok(h, "check_libs"))
    end)

    it("the string metatable is out of reach", function()
      assert.is_false(H.ok(h, "string_mt"))
    end)

    it("a query's globals", function()
      assert.same({ true, "2000" }, { h:query("hog") })
      assert.equal("fresh", H.ok(h, "keep_global"))
    end)
  end)

  it("print goes to the host's log only", function()
    assert.is_true(H.ok(h, "print"))
    assert.equal("hello\t1\ttable\tnil\n", h:logs())
  end)
end)
