-- The sandbox's metered pattern matcher (src/sm/match.c) against stock
-- Lua: the same probe chunk runs in the sandbox (through `run` in
-- spec/sm/fixtures/cost.lua) and in this interpreter, on hand-written
-- cases and on a random corpus (its seed is printed; RAFTING_SEED=n
-- replays one).
local H = require("spec.support.sm_helper")

-- Runs args.cases; returns one line per case.  Values are written with
-- their types, strings in hex, so JSON cannot blur them.
local PROBE = [[
local args = ...
local function hex(s)
  local t = {}
  for i = 1, #s do t[i] = string.format("%02x", s:byte(i)) end
  return "'" .. table.concat(t)
end
local function ser(...)
  local out = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "string" then out[i] = hex(v)
    elseif type(v) == "number" then out[i] = math.type(v) .. tostring(v)
    else out[i] = tostring(v) end
  end
  return table.concat(out, ",")
end
local repl = {
  t = setmetatable({}, { __index = function(_, k)
    if k == "a" then return "<A>" elseif k == "b" then return false
    elseif type(k) == "number" then return k * 2 end
  end }),
  f = function(...)
    local a = ...
    if a == "a" then return nil elseif a == "b" then return false end
    return "[" .. ser(...) .. "]"
  end,
}
local function one(c)
  local op, s, p = c[1], c[2], c[3]
  if op == "find" then return string.find(s, p, c[4], c[5]) end
  if op == "match" then return string.match(s, p, c[4]) end
  if op == "gsub" then
    local r = c[4]
    if r == "#t" or r == "#f" then r = repl[r:sub(2)] end
    return string.gsub(s, p, r, c[5])
  end
  local out, it = {}, string.gmatch(s, p, c[4])
  for _ = 1, 50 do
    local r = table.pack(it())
    if r[1] == nil then break end
    out[#out + 1] = "{" .. ser(table.unpack(r, 1, r.n)) .. "}"
  end
  return table.concat(out)
end
local lines = {}
for i, c in ipairs(args.cases) do
  local r = table.pack(pcall(one, c))
  if r[1] then lines[i] = "ok " .. ser(table.unpack(r, 2, r.n))
  else lines[i] = "error " .. tostring(r[2]) end
end
return table.concat(lines, "\n")
]]

local HAND = {
  -- anchors
  { "find", "hello", "^h" }, { "find", "hello", "^e" }, { "find", "hello", "o$" },
  { "find", "hello", "l$" }, { "find", "a$b", "a$b" }, { "find", "a^b", "a^b" },
  { "match", "^x", "^^x" }, { "find", "hello", "^" }, { "find", "", "^$" },
  { "gsub", "hello", "^h", "H" }, { "gsub", "hhh", "^h", "H" },
  -- classes and sets
  { "match", "ab12 cd", "%a+" }, { "match", "ab12 cd", "%d+" }, { "match", "x \t\ny", "%s+" },
  { "match", "AbC", "%u%l%u" }, { "match", "a.b", "%." }, { "match", "a%b", "%%" },
  { "match", "Z9_", "[%w_]+" }, { "match", "abc", "[^a]+" }, { "match", "a-z", "[a%-z]+" },
  { "match", "]]x", "[]]+" }, { "match", "^^x", "[^^]" }, { "match", "b-", "[a-]+" },
  { "match", "0x1F", "%x+", 3 }, { "match", "!?.", "%p+" }, { "match", "ab", "%A" },
  { "match", "q", "%q" }, { "match", "\0a\0", "%z" }, { "match", "a\0b", "[\0]" },
  -- repetitions
  { "match", "aaab", "a-b" }, { "match", "aaab", "a*" }, { "match", "b", "a+" },
  { "match", "ab", "a?b" }, { "match", "b", "a?b" }, { "match", "<<x>>", "<(.-)>" },
  { "match", "<<x>>", "<(.*)>" },
  -- captures
  { "match", "key = val", "(%w+)%s*=%s*(%w+)" }, { "find", "hello", "(l)(l)" },
  { "match", "hello", "()ll()" }, { "find", "abc", "()" }, { "match", "abc", "((a)(b))" },
  { "match", "abab", "(ab)%1" }, { "match", "abba", "(a)(b)%2%1" }, { "match", "xx", "(x)%0" },
  { "match", "ab", "%1(a)" }, { "match", "ab", "(a" }, { "match", "ab", "a)" },
  { "match", "a", ("()"):rep(32) }, { "match", "a", ("()"):rep(33) },
  -- %b and %f
  { "match", "f(a(b)c)d", "%b()" }, { "match", "((", "%b()" }, { "match", "x", "%b(" },
  { "gsub", "THE (quick) fox", "%f[%a]%a+", "W" }, { "match", "THE", "%f[%l]" },
  { "find", "hello world", "%f[%w]%w+$" }, { "match", "x", "%fx" }, { "match", "a", "%f[%z]" },
  -- malformed
  { "match", "a", "%" }, { "match", "a", "[a" }, { "match", "a", "[]" }, { "match", "a", "[^]" },
  { "match", "a", "[a%" },
  -- init
  { "find", "hello", "l", -2 }, { "find", "hello", "l", -100 }, { "find", "hello", "l", 0 },
  { "find", "hello", "", 6 }, { "find", "hello", "", 7 }, { "find", "hello", "", 100 },
  { "match", "hello", ".", 6 }, { "find", "a.b", ".", 1, true }, { "find", "a+b", "+", 1, true },
  { "find", "aaa", "", 2, true }, { "find", "abc", "bc", 10, true }, { "find", "x\0y", "\0y" },
  -- gsub replacements
  { "gsub", "hello world", "o", "0" }, { "gsub", "hello", "", "-" },
  { "gsub", "hello world", "(%w+)", "<%1>" }, { "gsub", "abc", "%w", "%0%0" },
  { "gsub", "abc", "%w", "%%" }, { "gsub", "abc", "%w", "%" }, { "gsub", "abc", "%w", "%2" },
  { "gsub", "abc", "(%w)", "%2" }, { "gsub", "abc", "()b", "%1" }, { "gsub", "abc", "%w", "%x" },
  { "gsub", "abc", "%w", "x", 2 }, { "gsub", "abc", "%w", "x", 0 }, { "gsub", "abc", "%w", "x", -1 },
  { "gsub", "a b c d", "%w", "#t" }, { "gsub", "a b c d", "(%w)", "#f" },
  { "gsub", "a b", "()(%w)", "#f" }, { "gsub", "a b", "()", "#t" }, { "gsub", "abc", "", "#f" },
  { "gsub", "abc", "%w", 7 }, { "gsub", "abc", "x*", "-" }, { "gsub", "abc", "b*", "-" },
  -- gmatch: '^' is not an anchor in 5.4; init; empty matches
  { "gmatch", "one two three", "%a+" }, { "gmatch", "k=v, a=b", "(%w+)=(%w+)" },
  { "gmatch", "^a^a", "^a" }, { "gmatch", "abc", "" }, { "gmatch", "abc", "()" },
  { "gmatch", "one two", "%a+", 4 }, { "gmatch", "one two", "%a+", -3 },
  { "gmatch", "abc", "%a", 10 }, { "gmatch", "aaa", "a*" }, { "gmatch", "abab", "b*" },
}

local function stock(cases)
  return assert(load(PROBE, "=probe"))({ cases = cases })
end

local function sandboxed(h, cases)
  local ok, text = H.cmd(h, "run", { code = PROBE, cases = cases })
  assert(ok, text)
  return H.json.decode(text)
end

local function compare(h, cases)
  local want, got = {}, {}
  for l in (stock(cases) .. "\n"):gmatch("(.-)\n") do want[#want + 1] = l end
  for l in (sandboxed(h, cases) .. "\n"):gmatch("(.-)\n") do got[#got + 1] = l end
  for i, c in ipairs(cases) do
    if want[i] ~= got[i] then
      local show = {}
      for k, v in ipairs(c) do show[k] = ("%q"):format(tostring(v)) end
      error(("case %d {%s}: stock %s, sandbox %s"):format(i, table.concat(show, ", "),
                                                        want[i], got[i]), 0)
    end
  end
  return #cases
end

-- random patterns from a small grammar, over a small alphabet
local ATOMS = { "a", "b", "c", ".", "%a", "%d", "%s", "%w", "%A", "%p", "[ab]", "[^a]",
                "[a-c]", "[%d_]", "(", ")", "()", "%b()", "%f[%w]", "%f[%s]", "%1", "%2",
                " ", "1", "x", "$" }
local QUANT = { "", "", "", "*", "+", "-", "?" }
local CHARS = { "a", "b", "c", "(", ")", "1", "2", "_", " ", "x", "." }

local function pattern(rnd)
  local t = {}
  if rnd(4) == 1 then t[1] = "^" end
  for _ = 1, rnd(6) do
    local a = ATOMS[rnd(#ATOMS)]
    t[#t + 1] = a
    if #a == 1 and a ~= "(" and a ~= ")" or a:sub(1, 1) == "[" or a:match("^%%[aAdswp]$") then
      t[#t + 1] = QUANT[rnd(#QUANT)]
    end
  end
  return table.concat(t)
end

local function subject(rnd)
  local t = {}
  for i = 1, rnd(25) - 1 do t[i] = CHARS[rnd(#CHARS)] end
  return table.concat(t)
end

describe("the metered matcher", function()
  local h
  before_each(function()
    h = H.host({ commands = H.FIXTURES .. "cost.lua", budget = 1e9, memory = 64 * 1024 * 1024 })
  end)
  after_each(function() h:close() end)

  it("agrees with stock Lua on hand-written cases", function()
    compare(h, HAND)
  end)

  it("agrees with stock Lua on a random corpus", function()
    local seed = tonumber(os.getenv("RAFTING_SEED")) or os.time()
    print(("\nmatch_spec seed %d (RAFTING_SEED=%d replays it)"):format(seed, seed))
    math.randomseed(seed)
    local rnd = math.random
    local reps = { "x", "%0-", "<%1>", "%%", "#t", "#f", "" }
    local n = 0
    for _ = 1, 10 do
      local cases = {}
      for i = 1, 300 do
        local s, p, init = subject(rnd), pattern(rnd), rnd(3) == 1 and rnd(-5, 30) or nil
        local op = ({ "find", "match", "gsub", "gmatch" })[rnd(4)]
        if op == "gsub" then
          cases[i] = { op, s, p, reps[rnd(#reps)], rnd(3) == 1 and rnd(0, 3) or nil }
        elseif op == "find" then
          cases[i] = { op, s, p, init or 1, rnd(8) == 1 }
        else
          cases[i] = { op, s, p, init }
        end
      end
      n = n + compare(h, cases)
    end
    assert.equal(3000, n)
  end)
end)
