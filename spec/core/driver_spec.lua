-- The node driver (rafting.driver) on its own: a one-node cluster over an
-- I/O that completes every write at once.  What a service relies on: every
-- request is answered exactly once, even when an answer's callback closes
-- the driver or calls back into it (ASan runs this too).
local driver = require("rafting.driver")

local function node(opts)
  local io = {
    save = function() return true end,
    send = function() end,
    install = function() return true end,
    apply = function(e) if e.type == "normal" then return '"' .. e.data .. '"' end end,
    compact = function() end,
  }
  local d = driver.new({ id = 1, voters = { 1 }, seed = 1,
                         request_ticks = opts and opts.request_ticks or 50 }, io)
  assert(d:campaign())
  d:process()
  assert.equal("leader", (d:state()))
  return d
end

describe("the node driver", function()
  it("answers a write once it is committed and applied, with its result",
     function()
    local d = node()
    local got
    local index = assert(d:propose("a", function(status, i, term, res)
      got = { status = status, index = i, term = term, res = res }
    end))
    assert.is_nil(got)  -- nothing before the driver runs
    d:process()
    assert.same({ index = index, term = 1, res = '"a"' }, got)
    assert.equal(0, d:waiting())
    d:close()
  end)

  it("answers every request exactly once when an answer closes it", function()
    local d = node()
    local answers = {}
    local function cb(name, close)
      return function(status)
        answers[#answers + 1] = name .. ":" .. tostring(status)
        if close then d:close() end
      end
    end
    assert(d:propose("a", cb("a", true)))
    assert(d:propose("b", cb("b")))
    assert(d:read(cb("r")))
    d:process()
    table.sort(answers)
    -- the read may be served before "a" applies (its index may be below)
    assert.equal(3, #answers)
    assert.same({ "a:nil", "b:stopping" }, { answers[1], answers[2] })
    assert.truthy(answers[3] == "r:nil" or answers[3] == "r:stopping")
    assert.has_error(function() d:process() end, "attempt to use a closed driver")
  end)

  it("applies at most max_apply entries a process(), so a replay lets the loop breathe",
     function()
    -- a restart with 1,000 committed entries and nothing to write: each
    -- batch only applies, and without the bound one process() ran them all
    local log = {}
    for i = 1, 1000 do log[i] = { term = 1, data = "e" .. i } end
    local applied = 0
    local d = driver.new({ id = 1, voters = { 1 }, seed = 1, max_apply = 64,
                           hard_state = { term = 1, vote = 1, commit = 1000 },
                           log = log },
      { save = function() return true end, send = function() end,
        install = function() return true end,
        apply = function(e) if e.type == "normal" then applied = applied + 1 end end,
        compact = function() end })
    local calls, before = 0, 0
    repeat
      local more = d:process()
      calls = calls + 1
      assert.is_true(applied - before <= 64,
                     ("%d entries applied in one process()"):format(applied - before))
      before = applied
    until not more
    assert.equal(1000, applied)
    assert.is_true(calls >= 1000 // 64, calls .. " calls")
    d:close()
  end)

  it("takes new requests from inside an answer, and answers them too",
     function()
    local d = node()
    local second
    assert(d:propose("a", function()
      assert(d:propose("b", function(status, _, _, res)
        second = { status = status, res = res }
      end))
    end))
    d:process()
    d:process()
    assert.same({ res = '"b"' }, second)
    d:close()
  end)

  it("tells a write it timed out when it cannot commit in time", function()
    local sent = {}
    local d = driver.new({ id = 1, voters = { 1, 2 }, seed = 1,
                           request_ticks = 3 },
      { save = function() return true end,
        send = function(m) sent[#sent + 1] = m end,
        install = function() return true end, apply = function() end,
        compact = function() end })
    assert(d:campaign())
    d:process()
    assert(d:step{ type = "vote_resp", from = 2, to = 1, term = 1 })
    d:process()
    assert.equal("leader", (d:state()))
    local st = "none"
    assert(d:propose("x", function(s) st = s end))
    d:process()
    for _ = 1, 2 do d:tick(); d:process() end
    assert.equal("none", st)       -- node 2 never acknowledges
    d:tick()
    assert.equal("timedout", st)   -- the outcome is unknown: it may commit
    assert.equal(0, d:waiting())
    d:close()
  end)
end)
