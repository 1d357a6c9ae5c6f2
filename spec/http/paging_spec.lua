-- paging_spec.lua -- GET /kv in pages: ?start_after resumes after the
-- "next" of the previous page, with binary keys (base64 round trip), a
-- prefix at the very end of the key space, and unknown query parameters
-- refused with 400 on every route.

local cluster = require "rafting.testing.cluster"
local mime = require "mime"
local H = require "spec.support.http_helper"

describe("paged range reads (GET /kv)", function()
  local c, leader

  setup(function()
    c = H.start{ nodes = 1 }
    leader = c:leader()
  end)
  teardown(function()
    H.shutdown(c)
    cluster.kill_all()
  end)

  local function b64(s) return (mime.b64(s)) or "" end
  local function unb64(s) return (mime.unb64(s)) or "" end

  -- every page of prefix (raw bytes), limit at a time: the keys in order and
  -- the number of pages
  local function pages(prefix, limit, encoding)
    local keys, n, after = {}, 0, nil
    repeat
      local path = ("/kv?prefix=%s&limit=%d"):format(H.enc(prefix), limit)
      if encoding then path = path .. "&encoding=" .. encoding end
      if after then path = path .. "&start_after=" .. H.enc(after) end
      local code, body = c:http(leader, "GET", path)
      assert.equal(200, code, body)
      local v = H.decode(body)
      n = n + 1
      for _, item in ipairs(v.items) do
        keys[#keys + 1] = encoding and unb64(item.key) or item.key
      end
      assert.equal(v.more, v.next ~= nil, "next is there exactly when more")
      if v.more then
        assert.equal(limit, #v.items)
        assert.equal(v.items[#v.items].key, v.next, "next is the last key returned")
      end
      after = v.next
      assert.is_true(n < 1000, "paging does not end")
    until not v.more
    return keys, n
  end

  it("pages through a prefix with start_after = next, without gap or repeat", function()
    local want = {}
    for i = 1, 23 do
      local k = ("page/%03d"):format(i)
      H.put(c, leader, k, "v" .. i)
      want[#want + 1] = k
    end
    H.put(c, leader, "pagf", "after the prefix")
    H.put(c, leader, "pag", "before the prefix")
    for _, limit in ipairs{ 1, 5, 22, 23, 100 } do
      local keys, n = pages("page/", limit)
      assert.same(want, keys)
      assert.equal(math.ceil(23 / limit), n, "no empty last page")
    end
    -- start_after need not be a key, and may sort before the prefix
    local code, body = c:http(leader, "GET", "/kv?prefix=page%2F&limit=2&start_after=page%2F0105")
    assert.equal(200, code, body)
    local v = H.decode(body)
    assert.same({ "page/011", "page/012" }, { v.items[1].key, v.items[2].key })
    code, body = c:http(leader, "GET", "/kv?prefix=page%2F&limit=1&start_after=a")
    assert.equal("page/001", H.decode(body).items[1].key)
    code, body = c:http(leader, "GET", "/kv?prefix=page%2F&start_after=page%2F023")
    assert.equal('{"items":[],"more":false}\n', body)
    code, body = c:http(leader, "GET", "/kv?prefix=page%2F&start_after=pagf&stale")
    assert.equal('{"items":[],"more":false}\n', body)
  end)

  it("pages binary keys with encoding=base64: next and start_after in base64", function()
    local want = {}
    for _, k in ipairs{ "bin/\0", "bin/\0\0", "bin/\1\255", "bin/\127", "bin/\195\191",
                         "bin/\255", "bin/\255\0", "bin/\255\255" } do
      H.put(c, leader, k, "x")
      want[#want + 1] = k
    end
    for _, limit in ipairs{ 1, 3, 8 } do
      assert.same(want, (pages("bin/", limit, "base64")))
    end
    local code, body = c:http(leader, "GET", "/kv?prefix=bin%2F&encoding=base64&start_after=" ..
                              H.enc(b64("bin/\255")))
    assert.equal(200, code, body)
    local v = H.decode(body)
    assert.same({ "bin/\255\0", "bin/\255\255" }, { unb64(v.items[1].key), unb64(v.items[2].key) })
    code, body = c:http(leader, "GET", "/kv?prefix=bin%2F&encoding=base64&start_after=%2A%2A")
    assert.equal(400, code, body)
    assert.matches("start_after is not valid base64", H.decode(body).message)
  end)

  it("pages a prefix at the end of the key space (0xff bytes)", function()
    local want = {}
    for i = 0, 6 do
      local k = "\255\255" .. string.rep("\255", i)
      H.put(c, leader, k, tostring(i))
      want[#want + 1] = k
    end
    assert.same(want, (pages("\255\255", 2, "base64")))
    assert.same(want, (pages("\255\255", 7, "base64")))
    local keys = pages("\255\255\255\255\255\255\255\255", 1, "base64")
    assert.same({ string.rep("\255", 8) }, keys)
    keys = pages("\255\255\255\255\255\255\255\255\255", 3, "base64")
    assert.same({}, keys)
  end)

  it("answers 400 naming an unknown query parameter, on every route", function()
    local cases = {
      { "GET", "/kv?prefix=a&limt=3", "limt" },
      { "GET", "/kv/a?stael", "stael" },
      { "PUT", "/kv/a?ttl=5", "ttl" },
      { "DELETE", "/kv/a?x=1", "x" },
      { "POST", "/cmd/incr?nope", "nope" },
      { "GET", "/health?verbose=1", "verbose" },
      { "GET", "/status?x", "x" },
      { "GET", "/metrics?format=json", "format" },
      { "GET", "/watch?prefix=a&sinse=3", "sinse" },
    }
    for _, t in ipairs(cases) do
      local code, body = c:http(leader, t[1], t[2], t[1] == "PUT" and "v" or nil)
      assert.equal(400, code, t[2] .. ": " .. tostring(body))
      local v = H.decode(body)
      assert.equal("bad_request", v.error)
      assert.matches('unknown query parameter "' .. t[3] .. '"', v.message, 1, true)
    end
    -- ?stale is for reads: on a write it would promise what a write cannot
    for _, t in ipairs({ { "PUT", "/kv/a?stale" }, { "DELETE", "/kv/a?stale" },
                         { "PUT", "/scripts/s.lua?stale" } }) do
      local code, body = c:http(leader, t[1], t[2], t[1] == "PUT" and "return {}" or nil)
      assert.equal(400, code, t[2] .. ": " .. tostring(body))
      assert.matches("stale is for reads", H.decode(body).message, 1, true)
    end
    -- the known ones still work; /query/ takes any parameter as an argument
    local code, body = c:http(leader, "GET", "/kv?prefix=page%2F&limit=1&encoding=utf8&stale")
    assert.equal(200, code, body)
    code = c:http(leader, "GET", "/query/balance?account=nobody")
    assert.equal(200, code)
  end)
end)
