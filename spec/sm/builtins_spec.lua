-- Built-in commands (lua/rafting/sm/kv.lua) and the entry codec.
local H = require("spec.support.sm_helper")
local sm, cjson = H.sm, H.json

describe("entries", function()
  it("round-trip binary arguments, time and name", function()
    local e = sm.encode("put", 1234567890123, { key = "k\0\255", value = "\0" })
    assert.equal(1, e:byte(1)) -- version
    local d = assert(sm.decode(e))
    assert.same({ time = 1234567890123, name = "put", kind = "args",
                  args = { key = "k\0\255", value = "\0" } }, d)
  end)

  it("encode equal argument tables to equal bytes", function()
    assert.equal(sm.encode("cas", 1, { key = "a", expect = "b", value = "c" }),
                 sm.encode("cas", 1, { value = "c", expect = "b", key = "a" }))
  end)

  it("round-trip JSON arguments", function()
    local e = assert(sm.encode_json("incr", 7, '{"key":"n"}'))
    assert.same({ time = 7, name = "incr", kind = "json", json = '{"key":"n"}' },
                sm.decode(e))
  end)

  it("refuse invalid JSON at encode time (REST answers 400)", function()
    local e, err = sm.encode_json("incr", 7, '{"key":')
    assert.is_nil(e)
    assert.matches("invalid JSON", err)
  end)

  it("reject truncated, extended and foreign entries", function()
    local e = sm.encode("put", 1, { key = "a", value = "b" })
    local h = H.host()
    for _, bad in ipairs({ "", "x", e:sub(1, -2), e .. "\0", "\2" .. e:sub(2) }) do
      assert.is_nil(sm.decode(bad))
      local ok, msg, code = h:apply(1, bad)
      assert.is_false(ok)
      assert.equal("badentry", code)
      assert.matches("malformed", msg)
    end
    assert.equal(0, h:count())
    h:close()
  end)
end)

describe("built-in commands", function()
  local h
  before_each(function() h = H.host() end)
  after_each(function() h:close() end)

  it("put stores a value and answers true", function()
    local ok, res = H.bin(h, "put", { key = "a", value = "1" })
    assert.is_true(ok)
    assert.equal("true", res)
    assert.equal("1", h:get("a"))
  end)

  it("put and cas keep binary keys and values intact", function()
    local k, v = "\0\255key\0", "\255\0\1value\0"
    assert(H.bin(h, "put", { key = k, value = v }))
    assert.equal(v, h:get(k))
    local ok, res = H.bin(h, "cas", { key = k, expect = v, value = v .. "\255" })
    assert.is_true(ok)
    assert.same({ ok = true }, cjson.decode(res))
    assert.equal(v .. "\255", h:get(k))
  end)

  it("delete answers whether the key existed", function()
    assert(H.bin(h, "put", { key = "a", value = "1" }))
    assert.same({ true, "true" }, { H.bin(h, "delete", { key = "a" }) })
    assert.same({ true, "false" }, { H.bin(h, "delete", { key = "a" }) })
    assert.is_nil(h:get("a"))
  end)

  it("cas swaps only on a matching value", function()
    assert(H.bin(h, "put", { key = "a", value = "1" }))
    local _, res = H.bin(h, "cas", { key = "a", expect = "0", value = "2" })
    assert.same({ ok = false, current = "1" }, cjson.decode(res))
    assert.equal("1", h:get("a"))
    _, res = H.bin(h, "cas", { key = "a", expect = "1", value = "2" })
    assert.same({ ok = true }, cjson.decode(res))
    assert.equal("2", h:get("a"))
  end)

  it("cas on absence creates once, then reports the current value", function()
    local _, res = H.bin(h, "cas", { key = "lock", expect_absent = "1", value = "me" })
    assert.same({ ok = true }, cjson.decode(res))
    _, res = H.bin(h, "cas", { key = "lock", expect_absent = "1", value = "you" })
    assert.same({ ok = false, current = "me" }, cjson.decode(res))
    assert.equal("me", h:get("lock"))
  end)

  it("cas expecting a value of a missing key reports null", function()
    local _, res = H.bin(h, "cas", { key = "nope", expect = "x", value = "y" })
    assert.equal('{"current":null,"ok":false}', res)
  end)

  it("cas without value deletes on a match", function()
    assert(H.bin(h, "put", { key = "a", value = "1" }))
    assert(H.bin(h, "cas", { key = "a", expect = "1" }))
    assert.is_nil(h:get("a"))
  end)

  it("take JSON arguments too (POST /cmd/cas)", function()
    assert.same({ ok = true }, H.ok(h, "cas", { key = "j", expect_absent = true, value = "v" }))
    assert.equal("v", h:get("j"))
  end)

  it("reject missing or mistyped arguments with the script line", function()
    local ok, msg, code = H.bin(h, "put", { key = "a" })
    assert.is_false(ok)
    assert.equal("failed", code)
    assert.matches("^kv%.lua:%d+: put: argument 'value' must be a string$", msg)
    msg = H.fails(h, "cas", { key = "a", value = "b" })
    assert.matches("^kv%.lua:%d+: cas: give 'expect'", msg)
    assert.equal(0, h:count())
  end)

  it("answer notfound for an unknown command", function()
    local ok, msg, code = H.bin(h, "nope", { key = "a" })
    assert.is_false(ok)
    assert.equal("notfound", code)
    assert.equal("unknown command 'nope'", msg)
    assert.is_true(h:has_command("put"))
    assert.is_false(h:has_command("nope"))
  end)

  it("count every entry as applied, failed or not", function()
    H.bin(h, "put", { key = "a", value = "1" })
    H.bin(h, "nope", {})
    h:apply(10, "garbage")
    assert.equal(10, h:applied())
  end)
end)
