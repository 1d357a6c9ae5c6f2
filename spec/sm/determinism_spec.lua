-- Two independent replicas -- one here, one in another process with a
-- different heap, address layout, start time and string hash seed -- fed
-- the same entries end with identical results and identical stores,
-- including after handlers that try every forbidden thing and that blow
-- the instruction budget and the memory cap.
local H = require("spec.support.sm_helper")
local sm, cjson = H.sm, H.json

local function entries()
  local list = {}
  local function add(e) list[#list + 1] = e end
  local function cmd(name, args, t)
    add(assert(sm.encode_json(name, t or H.T0 + #list, cjson.encode(args or {}))))
  end
  for i = 1, 20 do
    add(sm.encode("put", H.T0, { key = "k" .. i, value = ("\0\255"):rep(i) }))
  end
  cmd("evil")
  cmd("loop")
  cmd("loop_pcall")
  cmd("loop_coroutine")
  cmd("bigstring")
  cmd("bigtable")
  cmd("mem_pcall")
  cmd("write_then_fail")
  cmd("evil")
  cmd("random")
  cmd("clock")
  cmd("kv_roundtrip")
  cmd("sort_stable")
  cmd("pairs_order", { keys = { "z", "y", 3, 2, 1, "x" } })
  cmd("keep_global", { set = true })
  cmd("keep_global")
  cmd("count")
  cmd("budget_next")
  add(sm.encode("cas", H.T0, { key = "k1", expect = "\0\255", value = "swapped" }))
  add(sm.encode("delete", H.T0, { key = "k2" }))
  cmd("nope")
  add("garbage")
  cmd("evil")
  return list
end

local function here(list)
  local h = H.host({ commands = H.SANDBOX, memory = 16 * 1024 * 1024 })
  local out = {}
  for i, e in ipairs(list) do
    local ok, text, code = h:apply(i, e)
    out[#out + 1] = string.format("%q", tostring(ok) .. " " .. tostring(code) .. " " .. text)
  end
  out[#out + 1] = h:digest()
  local stored = h:get("evil/21")
  h:close()
  return out, stored
end

local function elsewhere(list)
  local file = os.tmpname()
  local f = assert(io.open(file, "wb"))
  for _, e in ipairs(list) do f:write(string.format("%010d", #e), e) end
  f:close()
  local cmd = string.format("lua5.4 spec/support/sm_replica.lua '%s' '%s' '%s'",
                            package.cpath, H.SANDBOX, file)
  local p = assert(io.popen(cmd, "r"))
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  local ok = p:close()
  os.remove(file)
  assert(ok, "replica process failed")
  return out
end

describe("replicas", function()
  it("agree on every result and the final store", function()
    local list = entries()
    local mine, stored = here(list)
    local theirs = elsewhere(list)
    assert.equal(#list + 1, #mine)
    assert.same(mine, theirs)
    -- and the probes really ran: the evil handler stored what it saw
    assert.matches("io=false:.-attempt to index a nil value", stored)
    assert.matches("format%%p=false:.-'%%p' is not available", stored)
    assert.matches("tostring=true:tablefunctionfunction", stored)
  end)

  it("agree with each other when built side by side", function()
    local list = entries()
    local a, b = here(list), here(list)
    assert.same(a, b)
  end)
end)
