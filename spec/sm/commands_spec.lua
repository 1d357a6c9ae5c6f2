-- User command scripts: the examples, loading, results, queries, and
-- transactions (a failed command changes nothing).
local H = require("spec.support.sm_helper")
local sm, cjson = H.sm, H.json

describe("the example commands", function()
  local h
  before_each(function() h = H.host({ commands = H.EXAMPLES }) end)
  after_each(function() h:close() end)

  it("incr counts from nothing, by 1 or by a step", function()
    assert.equal(1, H.ok(h, "incr", { key = "n" }))
    assert.equal(6, H.ok(h, "incr", { key = "n", by = 5 }))
    assert.equal(4, H.ok(h, "incr", { key = "n", by = -2 }))
    assert.equal("4", h:get("n"))
  end)

  it("incr takes binary arguments too", function()
    local ok, res = H.bin(h, "incr", { key = "n", by = "3" })
    assert.is_true(ok)
    assert.equal("3", res)
  end)

  it("incr refuses a non-integer step", function()
    assert.matches("examples%.lua:%d+: by must be an integer",
                   H.fails(h, "incr", { key = "n", by = 1.5 }))
    assert.is_nil(h:get("n"))
  end)

  it("append keeps a JSON list", function()
    assert.equal(1, H.ok(h, "append", { key = "l", item = "a" }))
    assert.equal(2, H.ok(h, "append", { key = "l", item = { x = 1 } }))
    assert.equal(3, H.ok(h, "append", { key = "l", item = 3 }))
    assert.equal('["a",{"x":1},3]', h:get("l"))
    local ok, res = h:query("list", '{"key":"l"}')
    assert.is_true(ok)
    assert.equal('["a",{"x":1},3]', res)
    ok, res = h:query("list", '{"key":"none"}')
    assert.equal("[]", res)
  end)

  it("transfer moves money and refuses to overdraw", function()
    assert.equal(100, H.ok(h, "deposit", { account = "alice", amount = 100 }))
    assert.same({ from = 70, to = 30 },
                H.ok(h, "transfer", { from = "alice", to = "bob", amount = 30 }))
    local before = h:digest()
    local msg = H.fails(h, "transfer", { from = "bob", to = "alice", amount = 31 })
    assert.matches("^config/commands/examples%.lua:%d+: insufficient funds: " ..
                   "bob has 30, needs 31$", msg)
    assert.equal(before, h:digest())
    assert.same({ true, "70" }, { h:query("balance", '{"account":"alice"}') })
    assert.same({ true, "30" }, { h:query("balance", '{"account":"bob"}') })
    assert.same({ true, "0" }, { h:query("balance", '{"account":"carol"}') })
  end)

  it("keeps the built-ins beside the user's commands", function()
    assert(H.bin(h, "put", { key = "a", value = "1" }))
    assert.is_true(h:has_command("transfer"))
    assert.is_true(h:has_query("balance"))
    assert.is_false(h:has_command("balance"))
  end)
end)

describe("loading a command script", function()
  local function load_err(name)
    local h, err = sm.new({ commands = H.FIXTURES .. name })
    assert.is_nil(h)
    return err
  end

  it("reports a syntax error with file and line", function()
    assert.matches("^spec/sm/fixtures/syntax_error%.lua:5: unexpected symbol near 'end'$",
                   load_err("syntax_error.lua"))
  end)

  it("reports an error at the top level with file and line", function()
    assert.matches("^spec/sm/fixtures/load_error%.lua:4: attempt to index a nil value",
                   load_err("load_error.lua"))
  end)

  it("insists on a table of commands", function()
    assert.matches("must return a table", load_err("not_table.lua"))
  end)

  it("refuses a key other than commands and queries, naming it", function()
    assert.matches("typo_key%.lua: unexpected key 'command' in the returned table",
                   load_err("typo_key.lua"))
  end)

  it("refuses to redefine a built-in", function()
    assert.matches("command 'put' is already defined by kv%.lua",
                   load_err("redefine.lua"))
  end)

  it("bounds the top level by the budget too", function()
    assert.matches("loop_at_load%.lua:1: instruction budget exceeded",
                   load_err("loop_at_load.lua"))
  end)

  it("names a missing file", function()
    assert.matches("cannot open spec/sm/fixtures/none%.lua", load_err("none.lua"))
  end)

  it("names a broken built-in script", function()
    local h, err = sm.new({ builtin = H.FIXTURES .. "syntax_error.lua" })
    assert.is_nil(h)
    assert.matches("^kv%.lua:5:", err)
  end)
end)

describe("a command", function()
  local h
  before_each(function() h = H.host({ commands = H.SANDBOX }) end)
  after_each(function() h:close() end)

  it("is a transaction: an error discards all its writes", function()
    assert(H.bin(h, "put", { key = "a", value = "orig" }))
    assert(H.bin(h, "put", { key = "b", value = "keep" }))
    local before, dump = h:digest(), H.dump(h)
    assert.matches("sandbox%.lua:%d+: boom", H.fails(h, "write_then_fail"))
    assert.equal(before, h:digest())
    assert.same(dump, H.dump(h))
  end)

  it("reads its own writes, including deletes and scans", function()
    assert(H.bin(h, "put", { key = "r/0", value = "zero" }))
    assert.same({ a = "two", existed = true, again = false,
                  scan = { { key = "r/0", value = "zero" }, { key = "r/1", value = "one" },
                           { key = "r/3", value = "three" } } },
                H.ok(h, "kv_roundtrip"))
    assert.same({ "r/0=zero", "r/1=one", "r/3=three" }, H.dump(h))
  end)

  it("scans with a prefix and a limit through the kv API", function()
    for i = 1, 5 do assert(H.bin(h, "put", { key = "p/" .. i, value = tostring(i) })) end
    local r = H.ok(h, "scan", { prefix = "p/", limit = 2 })
    assert.same({ { key = "p/1", value = "1" }, { key = "p/2", value = "2" } }, r)
    local ok, res = H.cmd(h, "scan", { prefix = "none" })
    assert.is_true(ok)
    assert.equal("[]", res)
  end)

  it("pages a scan with start_after: keys above it only, through the write batch", function()
    for i = 1, 5 do assert(H.bin(h, "put", { key = "p/" .. i, value = tostring(i) })) end
    assert(H.bin(h, "put", { key = "q", value = "past the prefix" }))
    local r = H.ok(h, "scan", { prefix = "p/", limit = 2, start_after = "p/2" })
    assert.same({ { key = "p/3", value = "3" }, { key = "p/4", value = "4" } }, r)
    -- a start_after that is not a key, or sorts before the prefix
    r = H.ok(h, "scan", { prefix = "p/", limit = 1, start_after = "p/22" })
    assert.same({ { key = "p/3", value = "3" } }, r)
    r = H.ok(h, "scan", { prefix = "p/", limit = 1, start_after = "a" })
    assert.same({ { key = "p/1", value = "1" } }, r)
    assert.equal("[]", select(2, H.cmd(h, "scan", { prefix = "p/", start_after = "p/5" })))
    assert.equal("[]", select(2, H.cmd(h, "scan", { prefix = "p/", start_after = "p0" })))
    assert.same({ "p/1=1,p/2=2", "p/2b=batch,p/3=three'", "p/5=5" },
                H.ok(h, "scan_pages", { limit = 2 }))
    assert.same({ "p/1=1", "p/2=2", "p/2b=batch", "p/3=three'", "p/5=5" },
                H.ok(h, "scan_pages", { limit = 1 }))
  end)

  it("receives its arguments and the entry's index and time", function()
    assert.same({ a = { 1, 2 }, b = "x", n = 1.5 }, H.ok(h, "echo", { a = { 1, 2 }, b = "x", n = 1.5 }))
    local r = H.ok(h, "clock")
    assert.equal(H.T0, r.ctx)
    assert.equal(h:applied(), r.index)
  end)

  it("returns JSON with sorted keys, integers and floats kept apart", function()
    local ok, res = H.cmd(h, "result")
    assert.is_true(ok)
    assert.equal('{"big":9223372036854775807,"float":2.5,"int":42,' ..
                 '"list_with_null":[1,null,3],"neg":-7,' ..
                 '"nested":{"empty":[],"list":[1,2,3]},"null":null,' ..
                 '"str":"h\195\169llo\\u000a\\"q\\"","whole":3.0}', res)
  end)

  it("fails cleanly on a result JSON cannot hold", function()
    assert.matches("sandbox%.lua: json: cannot encode a function value",
                   H.fails(h, "bad_result"))
  end)

  it("has json.encode/decode that round-trip arguments", function()
    local args = { s = "x", i = 3, f = 0.5, l = { "a", { b = true } }, e = {} }
    local r = H.ok(h, "json_roundtrip", args)
    assert.same({ s = "x", i = 3, f = 0.5, l = { "a", { b = true } }, e = {} }, r)
  end)

  it("turns error objects into text with the line", function()
    assert.matches("^spec/sm/fixtures/sandbox%.lua:%d+: %(error object is a table value%)$",
                   H.fails(h, "error_table"))
    assert.matches("sandbox%.lua:%d+: custom$", H.fails(h, "error_tostring"))
    assert.matches("sandbox%.lua:%d+: no position$", H.fails(h, "error_level0"))
    assert.matches("sandbox%.lua:%d+: bad argument #1 to 'put'", H.fails(h, "bad_arg"))
  end)

  it("cannot yield out of the handler", function()
    assert.matches("yield", H.fails(h, "yield"))
  end)

  it("rejects unparsable JSON arguments in an entry", function()
    local e = sm.encode("x", 1, {}) -- well-formed ARGS entry
    local d = sm.decode(e)
    assert.equal("args", d.kind)
    -- hand-build a JSON entry with bad JSON (encode_json would refuse it)
    local bad = "\1" .. ("\0"):rep(7) .. "\1" .. "\4echo" .. "\2" .. "\1{"
    local ok, msg, code = h:apply(h:applied() + 1, bad)
    assert.is_false(ok)
    assert.equal("badentry", code)
    assert.matches("invalid JSON", msg)
  end)
end)

describe("a query", function()
  local h
  before_each(function() h = H.host({ commands = H.SANDBOX }) end)
  after_each(function() h:close() end)

  it("reads the store", function()
    assert(H.bin(h, "put", { key = "k", value = "v" }))
    assert.same({ true, '"v"' }, { h:query("peek", '{"key":"k"}') })
  end)

  it("cannot write", function()
    local ok, msg, code = h:query("try_write")
    assert.is_false(ok)
    assert.equal("failed", code)
    assert.matches("sandbox%.lua:%d+: kv%.put: queries are read%-only", msg)
    assert.is_nil(h:get("q"))
  end)

  it("sees the last applied index and time", function()
    H.cmd(h, "echo", {}, 5000)
    local _, res = h:query("ctx")
    assert.same({ index = h:applied(), time = 5000, name = "ctx", query = true },
                cjson.decode(res))
  end)

  it("is notfound when unknown, and commands are not queries", function()
    assert.same({ false, "unknown query 'nope'", "notfound" }, { h:query("nope") })
    assert.same({ false, "unknown query 'echo'", "notfound" }, { h:query("echo") })
    assert.equal("badentry", select(3, h:query("peek", "{")))
  end)
end)
