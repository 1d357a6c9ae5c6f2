-- The ordered, binary-safe store under the state machine (through
-- rafting.sm: the built-in put/delete and the host's direct reads).
local H = require("spec.support.sm_helper")

describe("the store", function()
  local h
  before_each(function() h = H.host() end)
  after_each(function() h:close() end)

  local function put(k, v) assert(H.bin(h, "put", { key = k, value = v })) end

  it("keeps keys in byte order, shorter first", function()
    for _, k in ipairs({ "b", "a", "ab", "\255", "\0", "a\0", "B", "" }) do
      put(k, "v")
    end
    local keys = {}
    for _, kv in ipairs(h:scan()) do keys[#keys + 1] = kv[1] end
    assert.same({ "", "\0", "B", "a", "a\0", "ab", "b", "\255" }, keys)
  end)

  it("holds binary keys and values with NUL and 0xff bytes", function()
    local k, v = "k\0\255\1", "\0\255\0v\255"
    put(k, v)
    assert.equal(v, h:get(k))
    assert.is_nil(h:get("k"))
    put("empty", "")
    assert.equal("", h:get("empty"))
  end)

  it("counts keys and bytes, replacing and deleting", function()
    put("a", "123")
    put("bb", "4")
    assert.equal(2, h:count())
    assert.equal(1 + 3 + 2 + 1, h:bytes())
    put("a", "1")
    assert.equal(2, h:count())
    assert.equal(1 + 1 + 2 + 1, h:bytes())
    assert(H.bin(h, "delete", { key = "a" }))
    assert.equal(1, h:count())
    assert.equal(3, h:bytes())
  end)

  it("scans a prefix in order with a limit", function()
    for _, k in ipairs({ "user/3", "user/1", "users", "user/2", "usea", "v" }) do
      put(k, k:upper())
    end
    local got = {}
    for _, kv in ipairs(h:scan("user/")) do got[#got + 1] = kv[1] end
    assert.same({ "user/1", "user/2", "user/3" }, got)
    assert.same({ { "user/1", "USER/1" }, { "user/2", "USER/2" } }, h:scan("user/", 2))
    assert.same({}, h:scan("zz"))
    assert.equal(6, #h:scan(""))
  end)

  it("digests equal contents equally, whatever the order of writes", function()
    local other = H.host()
    put("x", "1"); put("y", "2"); put("z", "3")
    assert(H.bin(other, "put", { key = "z", value = "3" }))
    assert(H.bin(other, "put", { key = "x", value = "0" }))
    assert(H.bin(other, "put", { key = "y", value = "2" }))
    assert.are_not.equal(h:digest(), other:digest())
    assert(H.bin(other, "put", { key = "x", value = "1" }))
    assert.equal(h:digest(), other:digest())
    other:close()
  end)

  it("digests key/value boundaries, not just the bytes", function()
    local other = H.host()
    put("ab", "c")
    assert(H.bin(other, "put", { key = "a", value = "bc" }))
    assert.are_not.equal(h:digest(), other:digest())
    other:close()
  end)
end)
