-- kv_spec.lua -- the key/value routes against a real 3-node cluster: writes
-- on any node, reads back from every node, binary-safe keys and values,
-- ordered range reads, deletes, redirects.

local cluster = require "rafting.testing.cluster"
local H = require "spec.support.http_helper"

describe("REST key/value (3 real nodes)", function()
  local c, leader

  setup(function()
    c = H.start{ nodes = 3 }
    leader = c:leader()
  end)
  teardown(function()
    H.shutdown(c)
    cluster.kill_all()
  end)

  -- every node answers GET path (linearizable, forwarded by followers)
  -- with 200 and the value
  local function read_everywhere(key, want)
    for _, id in ipairs(c.ids) do
      local code, body = c:http(id, "GET", H.kv_path(key))
      assert.equal(200, code, ("GET %s on node %d: %s"):format(H.show(key), id, body))
      assert.equal(want, body, ("GET %s on node %d"):format(H.show(key), id))
    end
  end

  local function read_stale_everywhere(key, want)
    for _, id in ipairs(c.ids) do
      local code, body = c:http(id, "GET", H.kv_path(key, "stale"))
      assert.equal(200, code, ("GET %s?stale on node %d: %s"):format(H.show(key), id, body))
      assert.equal(want, body, ("GET %s?stale on node %d"):format(H.show(key), id))
    end
  end

  it("a write acknowledged by the leader is read back from every node, linearizably and (once applied) stale", function()
    local ans = H.put(c, leader, "on-leader", "v-leader")
    assert.is_true(ans.result)
    assert.is_true(math.tointeger(ans.index) ~= nil and ans.index > 0)
    assert.is_true(math.tointeger(ans.term) ~= nil and ans.term > 0)
    -- 200 means applied on the node that answered: the leader's local state
    -- already has it
    local code, body = c:http(leader, "GET", H.kv_path("on-leader", "stale"))
    assert.equal(200, code)
    assert.equal("v-leader", body)
    read_everywhere("on-leader", "v-leader")
    H.settle(c)
    read_stale_everywhere("on-leader", "v-leader")
  end)

  it("a write sent to a follower is forwarded, acknowledged, and read back from every node", function()
    for _, f in ipairs(H.others(c, leader)) do
      local key = "on-follower-" .. f
      local ans = H.put(c, f, key, "v" .. f)
      assert.is_true(ans.result)
      read_everywhere(key, "v" .. f)
    end
    H.settle(c)
    for _, f in ipairs(H.others(c, leader)) do
      read_stale_everywhere("on-follower-" .. f, "v" .. f)
    end
  end)

  it("an overwrite is seen by the very next linearizable read on every node", function()
    for i = 1, 5 do
      for _, id in ipairs(c.ids) do
        local v = ("round %d via %d"):format(i, id)
        H.put(c, id, "overwritten", v)
        read_everywhere("overwritten", v)
      end
    end
  end)

  it("keys and values are binary-safe: 0x00, 0xff, '/', spaces, '+', '%' and CRLF round-trip byte for byte", function()
    local all = {}
    for b = 0, 255 do all[#all + 1] = string.char(b) end
    all = table.concat(all)
    local cases = {
      { "nul\0inside", "a\0b" },
      { "\0", "\0\0\0" },
      { "\255\254", "\255" },
      { "dir/sub/leaf", "slashes" },
      { "/leading", "leading slash" },
      { "sp ace", "value with spaces" },
      { "a+b", "plus stays plus" },
      { "%41", "a literal percent sequence" },
      { "?query&not=1#frag", "reserved characters" },
      { "ключ", "utf-8 key" },
      { "crlf\r\nkey", "crlf\r\n\r\nvalue" },
      { "all-bytes", all },
      { "empty-value", "" },
    }
    for i, kv in ipairs(cases) do
      -- alternate the node the write goes to
      H.put(c, c.ids[i % #c.ids + 1], kv[1], kv[2])
    end
    for _, kv in ipairs(cases) do read_everywhere(kv[1], kv[2]) end
    H.settle(c)
    for _, kv in ipairs(cases) do read_stale_everywhere(kv[1], kv[2]) end
    -- '/' may also be sent unencoded, and '%2F' and '/' name the same key
    local code, body = c:http(leader, "GET", "/kv/dir/sub/leaf")
    assert.equal(200, code)
    assert.equal("slashes", body)
    code, body = c:http(leader, "GET", "/kv/dir%2fsub%2Fleaf")
    assert.equal(200, code)
    assert.equal("slashes", body)
    -- '+' in a path is not a space: "a b" was never written
    code = c:http(leader, "GET", "/kv/a%20b")
    assert.equal(404, code)
    -- and the binary keys delete as well
    for i, kv in ipairs(cases) do
      code, body = c:http(c.ids[i % #c.ids + 1], "DELETE", H.kv_path(kv[1]))
      assert.equal(200, code, body)
      assert.is_true(H.decode(body).result)
    end
    for _, kv in ipairs(cases) do
      for _, id in ipairs(c.ids) do
        assert.equal(404, (c:http(id, "GET", H.kv_path(kv[1]))))
      end
    end
  end)

  it("DELETE removes a key on every node and reports whether it existed", function()
    H.put(c, leader, "doomed", "x")
    local f = H.others(c, leader)[1]
    local code, body = c:http(f, "DELETE", H.kv_path("doomed"))
    assert.equal(200, code, body)
    assert.is_true(H.decode(body).result)
    code, body = c:http(leader, "DELETE", H.kv_path("doomed"))
    assert.equal(200, code, body)
    assert.is_false(H.decode(body).result)
    for _, id in ipairs(c.ids) do
      code, body = c:http(id, "GET", H.kv_path("doomed"))
      assert.equal(404, code)
      assert.equal("not_found", H.decode(body).error)
    end
  end)

  it("a range read lists the keys under a prefix in byte order, honours limit and says whether more remain", function()
    local keys = { "r/b", "r/a", "r/c\255", "r/c", "r/", "r/a/1", "r0", "q" }
    for i, k in ipairs(keys) do H.put(c, c.ids[i % 3 + 1], k, "v:" .. k) end
    local want = { "r/", "r/a", "r/a/1", "r/b", "r/c", "r/c\255" }
    for _, id in ipairs(c.ids) do
      local code, body = c:http(id, "GET", "/kv?prefix=" .. H.enc("r/"))
      assert.equal(200, code, body)
      local v = H.decode(body)
      assert.is_false(v.more)
      local got = {}
      for i, item in ipairs(v.items) do
        got[i] = item.key
        if item.key ~= "r/c\255" then assert.equal("v:" .. item.key, item.value) end
      end
      -- JSON cannot carry byte 0xff: it comes as \u00ff (see docs/commands.md)
      got[#got] = got[#got]:gsub("\195\191", "\255")
      assert.same(want, got)
      code, body = c:http(id, "GET", "/kv?prefix=r%2F&limit=2")
      assert.equal(200, code, body)
      v = H.decode(body)
      assert.is_true(v.more)
      assert.same({ "r/", "r/a" }, { v.items[1].key, v.items[2].key })
      assert.equal(2, #v.items)
      code, body = c:http(id, "GET", "/kv?prefix=r%2F&limit=6&stale")
      assert.equal(200, code, body)
      assert.is_false(H.decode(body).more)
      code, body = c:http(id, "GET", "/kv?prefix=none-such")
      assert.equal(200, code, body)
      assert.equal('{"items":[],"more":false}\n', body)
    end
  end)

  it("?redirect on a follower answers 307 with the leader's URL in Location, and the leader serves that URL", function()
    H.put(c, leader, "redirected", "here")
    local ln = c.nodes[leader]
    for _, f in ipairs(H.others(c, leader)) do
      for _, m in ipairs{ "GET", "PUT", "DELETE" } do
        local code, body, hdrs = c:http(f, m, "/kv/redirected?redirect",
                                        m == "PUT" and "again" or nil)
        assert.equal(307, code, body)
        assert.equal("http://" .. ln.http .. "/kv/redirected?redirect", hdrs.location)
        assert.equal("redirect", H.decode(body).error)
      end
      local code, _, hdrs = c:http(f, "POST", "/cmd/incr?redirect", '{"key":"n"}')
      assert.equal(307, code)
      assert.equal("http://" .. ln.http .. "/cmd/incr?redirect", hdrs.location)
      -- following the Location: the leader serves it
      local path = hdrs.location:match("^http://[^/]+(/.*)$")
      local code2, body2 = c:http(leader, "POST", path, '{"key":"n"}')
      assert.equal(200, code2, body2)
    end
    -- the leader itself serves a ?redirect request
    local code, body = c:http(leader, "GET", "/kv/redirected?redirect")
    assert.equal(200, code)
    assert.equal("here", body)
    -- ?stale is served locally even with ?redirect
    H.settle(c)
    local code3, body3 = c:http(H.others(c, leader)[1], "GET", "/kv/redirected?stale&redirect")
    assert.equal(200, code3)
    assert.equal("here", body3)
  end)

  it("GET /status and GET /health answer on every node without forwarding", function()
    for _, id in ipairs(c.ids) do
      local code, body = c:http(id, "GET", "/health")
      assert.equal(200, code)
      assert.is_true(H.decode(body).ok)
      local s = assert(c:status(id))
      assert.equal(id, s.id)
      assert.equal(leader, s.leader)
      assert.equal(id == leader and "leader" or "follower", s.role)
    end
  end)
end)
