-- The sandbox's cost rules (docs/commands.md, "What the C library costs"):
-- library functions whose work is not bounded by the VM instruction count
-- are charged to the budget before they run, patterns are matched by a
-- metered matcher that behaves exactly like stock Lua, and no table can
-- become weak or gain a finalizer.  Probes run through `run` in
-- spec/sm/fixtures/cost.lua, which loads args.code in the sandbox.
local H = require("spec.support.sm_helper")

local COST = H.FIXTURES .. "cost.lua"
local BUDGET_ERR = "probe:%d+: instruction budget exceeded %(1000000%)"

local function run(h, code, args)
  args = args or {}
  args.code = code
  return H.cmd(h, "run", args)
end

local function budget_error(h, code)
  local ok, text, c = run(h, code)
  assert(not ok, "expected the budget error, got " .. tostring(text))
  assert.equal("failed", c)
  -- load's parser catches errors in its reader: then no line is known
  assert(text:match(BUDGET_ERR) or text:match("cost%.lua: instruction budget exceeded"), text)
end

describe("the sandbox's costs", function()
  local h
  before_each(function() h = H.host({ commands = COST, log = true }) end)
  after_each(function() h:close() end)

  describe("charges library work to the budget", function()
    -- each would run for seconds (or forever) inside one C call
    local attacks = {
      ["string.rep count"] = [[return string.rep("", 1e9)]],
      ["string.rep maxinteger"] = [[return (""):rep(math.maxinteger)]],
      ["string.rep with separator"] = [[return (""):rep(1e8, "")]],
      ["string.byte range"] = [[
        local s = ("x"):rep(100000) for i = 1, 20 do select('#', s:byte(1, -1)) end]],
      ["string.char arguments"] = [[
        local t = {} for i = 1, 100 do t[i] = 65 end
        for i = 1, 1e5 do string.char(table.unpack(t)) end]],
      ["string.sub copies"] = [[
        local s = ("x"):rep(200000) for i = 1, 1000 do s:sub(1, -1) end]],
      ["string.upper"] = [[local s = ("x"):rep(200000) for i = 1, 1000 do s:upper() end]],
      ["string.lower"] = [[local s = ("x"):rep(200000) for i = 1, 1000 do s:lower() end]],
      ["string.reverse"] = [[local s = ("x"):rep(200000) for i = 1, 1000 do s:reverse() end]],
      ["string.format strings"] = [[
        local s = ("x"):rep(200000) for i = 1, 1000 do string.format("%s", s) end]],
      ["string.pack padding"] = [[for i = 1, 1000 do string.pack("c100000", "") end]],
      ["string.unpack sizes"] = [[
        local s = ("x"):rep(100000) for i = 1, 1000 do string.unpack("c100000", s) end]],
      ["string.find plain"] = [[
        local s = ("a"):rep(200000) for i = 1, 1000 do s:find("b", 1, true) end]],
      ["table.move"] = [[return table.move({}, 1, 1e8, 1)]],
      ["table.move maxinteger"] = [[return table.move({}, 1, math.maxinteger, 1)]],
      ["table.concat range"] = [[return table.concat({}, "", 1, 1e9)]],
      ["table.concat __len"] = [[
        return table.concat(setmetatable({}, { __len = function() return 1e9 end,
                                              __index = function() return "" end }))]],
      ["table.unpack range"] = [[return select('#', table.unpack({}, 1, 1e8))]],
      ["table.insert shifting"] = [[
        local t = {} for i = 1, 100000 do t[i] = i end
        for i = 1, 1000 do table.insert(t, 1, 0) end]],
      ["table.remove shifting"] = [[
        local t = {} for i = 1, 200000 do t[i] = i end
        for i = 1, 1000 do table.remove(t, 1) end]],
      ["table.pack arguments"] = [[
        local t = {} for i = 1, 200 do t[i] = i end
        for i = 1, 1e5 do table.pack(table.unpack(t)) end]],
      ["utf8.len"] = [[local s = ("x"):rep(200000) for i = 1, 1000 do utf8.len(s) end]],
      ["utf8.codepoint"] = [[return select('#', utf8.codepoint(("x"):rep(990000), 1, -1))]],
      ["utf8.offset"] = [[local s = ("x"):rep(200000) for i = 1, 1000 do utf8.offset(s, -1) end]],
      ["utf8.char"] = [[
        local t = {} for i = 1, 200 do t[i] = 65 end
        for i = 1, 1e5 do utf8.char(table.unpack(t)) end]],
      ["utf8.codes continuation bytes"] = [[
        local s = ("\x80"):rep(200000)
        local step = utf8.codes("a" .. s)
        for i = 1, 1000 do pcall(step, s, 0) end]],
      ["tonumber"] = [[local s = (" "):rep(200000) for i = 1, 1000 do tonumber(s) end]],
      ["load text"] = [[local s = ("--x\n"):rep(50000) for i = 1, 1000 do load(s) end]],
      ["load reader"] = [[
        local s = (" "):rep(200000)
        for i = 1, 1000 do
          local n = 0
          load(function() n = n + 1 if n == 1 then return s end end)
        end]],
      ["print"] = [[local s = ("x"):rep(200000) for i = 1, 1000 do print(s) end]],
      ["kv.get copies"] = [[
        kv.put("big", ("x"):rep(200000)) for i = 1, 10000 do kv.get("big") end]],
      ["json.encode strings"] = [[
        local s = ("x"):rep(200000) for i = 1, 1000 do json.encode(s) end]],
      ["json.decode strings"] = [[
        local s = '"' .. ("x"):rep(200000) .. '"' for i = 1, 1000 do json.decode(s) end]],
      ["the .. operator on long strings"] = [[
        local s = ("x"):rep(1e6) for i = 1, 1e6 do local y = s .. i end]],
      ["setmetatable copies"] = [[
        local mt = {} for i = 1, 2000 do mt["k" .. i] = i end
        for i = 1, 1000 do setmetatable({}, mt) end]],
    }
    for name, code in pairs(attacks) do
      it(name, function()
        budget_error(h, code)
        assert(H.bin(h, "put", { key = "after", value = "ok" }))
      end)
    end

    it("and a pcall cannot catch the charge", function()
      budget_error(h, [[return pcall(string.rep, "", 1e9)]])
    end)

    it("even when load's parser swallows the error its reader raised", function()
      local ok, text = run(h, [[
        local n = 0
        local f, err = load(function() n = n + 1 if n == 1 then return (" "):rep(3e6) end end)
        kv.put("swallowed", tostring(err))
        return "done"]])
      assert.is_false(ok)
      assert.matches("instruction budget exceeded", text)
      assert.is_nil(h:get("swallowed"))
    end)

    it("in queries too", function()
      local ok, text = h:query("run", '{"code": "return string.rep(\\"\\", 1e9)"}')
      assert.is_false(ok)
      assert.matches(BUDGET_ERR, text)
    end)

    it("but ordinary work stays cheap", function()
      assert.same({ 1000, "hello, world", 5, "a,b,c", 3, 4 }, H.ok(h, "run", { code = [[
        local s = ("x"):rep(1000)
        local parts = {}
        for w in ("a b c"):gmatch("%a") do parts[#parts + 1] = w end
        local t = table.move({ 1, 2, 3 }, 1, 3, 1, {})
        return { #s, string.format("%s, %s", "hello", "world"), utf8.len("héllo"),
                 table.concat(parts, ","), #t, select('#', table.unpack({ 1, 2, 3, 4 })) }]] }))
    end)
  end)

  describe("patterns", function()
    local slow = {
      [[return ("a"):rep(300):find(".-.-.-b")]],
      [[return ("a"):rep(5000):find(".-.-b")]],
      [[return ("a"):rep(1e5):match("(a*)*b")]],
      [[return ("a"):rep(2e5):gsub("a-b", "")]],
      [[return ("("):rep(1e5):find("%b()")]],
      [[local n = 0 for _ in ("a"):rep(2000):gmatch(".-.-b") do n = n + 1 end return n]],
      [[local s = ("a"):rep(1000) for i = 1, 1000 do s:find("(a+)%1b") end]],
    }
    for _, code in ipairs(slow) do
      it("fail with the budget error: " .. code:gsub("%s+", " "), function()
        budget_error(h, code)
      end)
    end

    it("stop at the recursion limit", function()
      local ok, text = run(h, [[return ("a"):rep(300):match(("(a?)"):rep(31) .. ("a?"):rep(250))]])
      assert.is_false(ok)
      assert.matches("pattern too complex", text)
    end)
  end)

  describe("metatables", function()
    it("refuse __gc and __mode in setmetatable", function()
      assert.matches("__gc is not allowed", select(2, run(h,
        [[setmetatable({}, { __gc = function() end })]])))
      assert.matches("__mode is not allowed", select(2, run(h,
        [[setmetatable({}, { __mode = "k" })]])))
    end)

    -- With stock Lua these tables become weak and lose their garbage values
    -- at the next collection; here the table keeps its own copy.
    local weak = {
      [[mt.__mode = "v"]],
      [[rawset(mt, "__mode", "v")]],
      [[getmetatable(t).__mode = "v"]],
      [[mt.__gc = function() kv.put("gc", "ran") end]],
    }
    for _, how in ipairs(weak) do
      it("written after setmetatable change nothing: " .. how, function()
        local got = H.ok(h, "run", { code = ([[
          local mt = {}
          local t = setmetatable({}, mt)
          %s
          for i = 1, 100 do t[i] = {} end
          for i = 1, 20000 do local g = { i, i } end -- garbage: collections
          local n = 0
          for _ in ipairs(t) do n = n + 1 end
          return { n, getmetatable(t) == mt, kv.get("gc") or "none" }]]):format(how) })
        assert.same({ 100, true, "none" }, got)
      end)
    end

    it("still work as metatables", function()
      assert.same({ "x!", 3, "B.hi", "A.base", true }, H.ok(h, "run", { code = [[
        local mt = { __index = function(_, k) return k .. "!" end }
        local t = setmetatable({}, mt)
        local v = setmetatable({}, { __add = function() return 3 end })
        local A = {} A.__index = A
        function A.base() return "A.base" end
        local B = setmetatable({}, A) B.__index = B
        local obj = setmetatable({}, B)
        function B.hi() return "B.hi" end -- added after: seen through __index
        return { t.x, v + v, obj.hi(), obj.base(), getmetatable(obj) == B }]] }))
    end)

    it("keep __metatable protection", function()
      assert.same({ "locked", true }, H.ok(h, "run", { code = [[
        local t = setmetatable({}, { __metatable = "locked" })
        return { getmetatable(t), not pcall(setmetatable, t, {}) }]] }))
      assert.same({ true, true }, H.ok(h, "run", { code = [[
        local a, b = {}, {}
        local t = setmetatable({}, a)
        setmetatable(t, b)
        local ok = getmetatable(t) == b
        setmetatable(t, nil)
        return { ok, getmetatable(t) == nil }]] }))
      assert.matches("protected metatable", select(2, run(h,
        [[setmetatable(json.array({}), {})]])))
    end)
  end)
end)
