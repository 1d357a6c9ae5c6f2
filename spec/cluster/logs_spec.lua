-- logs_spec.lua -- structured logs (docs/logging.md): every JSON line
-- parses with the fixed fields, text lines are key=value, state changes
-- are one line each, WAL replay reports progress, /health says "starting"
-- until the restored log is applied.

local cjson = require "cjson"
local cluster = require "rafting.testing.cluster"
local H = require "spec.support.cluster_helper"

local LEVELS = { debug = true, info = true, warn = true, error = true }
local TS = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"

-- The node's own lines (the harness adds "== harness: ..." markers).
local function lines(c, id)
  local out = {}
  for line in c:log(id):gmatch("[^\n]+") do
    if not line:find("^== harness: ") then out[#out + 1] = line end
  end
  return out
end

-- Every line of node id decoded; fails on the first that is not a JSON
-- object with ts, level, node = id and msg.
local function json_lines(c, id)
  local out = {}
  for i, line in ipairs(lines(c, id)) do
    local ok, v = pcall(cjson.decode, line)
    assert(ok and type(v) == "table",
           ("node %d line %d is not a JSON object: %s"):format(id, i, line))
    assert(type(v.ts) == "string" and v.ts:find(TS), "bad ts: " .. line)
    assert(LEVELS[v.level], "bad level: " .. line)
    assert.equal(id, v.node, line)
    assert(type(v.msg) == "string" and #v.msg > 0, "no msg: " .. line)
    assert(v.term == nil or (type(v.term) == "number" and v.term >= 1 and
                             v.term == math.floor(v.term)), "bad term: " .. line)
    out[#out + 1] = v
  end
  return out
end

local function find(recs, msg)
  for _, r in ipairs(recs) do if r.msg == msg then return r end end
end

-- A text line: "<ts> <LEVEL> key=value ...", a value bare or a JSON string.
-- Returns the fields, or nil and where it stopped.
local function parse_text(line)
  local ts, level, rest = line:match("^(%S+) (%u+) +(.*)$")
  if not ts or not ts:find(TS) then return nil, "no timestamp/level" end
  local f, pos = { ts = ts, level = level:lower() }, 1
  while pos <= #rest do
    local k, p = rest:match("^([%w_]+)=()", pos)
    if not k then return nil, "no key at " .. pos end
    local v, q
    if rest:sub(p, p) == '"' then
      q = p + 1
      while true do -- the closing quote: one not escaped
        local c = rest:sub(q, q)
        if c == "" then return nil, "unterminated string" end
        if c == "\\" then q = q + 2 elseif c == '"' then break else q = q + 1 end
      end
      v = cjson.decode(rest:sub(p, q))
      q = q + 1
    else
      v, q = rest:match("^([^ ]+)()", p)
      if not v then return nil, "empty value for " .. k end
    end
    f[k] = v
    if rest:sub(q, q) == " " then q = q + 1 elseif q <= #rest then return nil, "junk at " .. q end
    pos = q
  end
  return f
end

describe("structured logs (real nodes)", function()
  local c
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function() cluster.kill_all() end)

  it("json: every line parses, with ts, level, node, msg; state changes are one line each", function()
    c = H.start{ nodes = 3, storage = "memory", log = { format = "json" } }
    local l, t = c:leader()
    for i = 1, 5 do H.put(c, l, "k" .. i, "v" .. i) end
    -- the new leader's change, and every follower learning it
    c:kill(l)
    local l2, t2 = c:leader(nil, { above = t })
    local recs = json_lines(c, l)
    local won = find(recs, "became leader")
    assert(won, "the first leader logged no 'became leader'")
    assert.equal(t, won.term)
    assert.equal("leader", won.role)
    local recs2 = json_lines(c, l2)
    local won2
    for _, r in ipairs(recs2) do
      if r.msg == "became leader" and r.term == t2 then won2 = r end
    end
    assert(won2, ("node %d logged no 'became leader' in term %d"):format(l2, t2))
    for _, id in ipairs(H.others(c, l)) do
      local down = c:wait_for(function()
        for _, r in ipairs(json_lines(c, id)) do
          if r.msg == "peer disconnected" and r.peer == l then return r end
        end
        return false, "no 'peer disconnected' peer=" .. l
      end, 5000, ("node %d to log peer %d down"):format(id, l))
      assert.equal("warn", down.level)
      recs = json_lines(c, id)
      assert(find(recs, "node started"), "no 'node started' line")
      assert(find(recs, "peer connected"), "no 'peer connected' line")
      if id ~= l2 then
        local known
        for _, r in ipairs(recs) do
          if r.msg == "leader known" and r.leader == l2 then known = r end
        end
        assert(known, ("node %d logged no 'leader known' leader=%d"):format(id, l2))
      end
    end
  end)

  it("text: every line is a timestamp, a level and key=value fields", function()
    c = H.start{ nodes = 3, storage = "memory" } -- text is the default
    local l, t = c:leader()
    H.put(c, l, "k1", 'a "quoted" value')
    local seen = false
    for _, id in ipairs(c.ids) do
      for i, line in ipairs(lines(c, id)) do
        local f, err = parse_text(line)
        assert(f, ("node %d line %d: %s: %s"):format(id, i, err, line))
        assert.equal(tostring(id), f.node, line)
        assert(LEVELS[f.level], line)
        assert(f.msg, line)
        if id == l and f.msg == "became leader" and f.term == tostring(t) then seen = true end
      end
    end
    assert(seen, "the leader logged no 'became leader' with term=" .. t)
  end)

  it("print in a command is logged at info as a 'script print' line on every node", function()
    c = H.start{ nodes = 3, storage = "memory", log = { format = "json" },
                 commands = "spec/cluster/fixtures/printing.lua" }
    local l = c:leader()
    local text = 'say "hi"\tthere'
    local code, body = c:http(l, "POST", "/cmd/shout", cjson.encode{ text = text })
    assert.equal(200, code, body)
    for _, id in ipairs(c.ids) do
      c:wait_for(function()
        for _, r in ipairs(json_lines(c, id)) do
          if r.msg == "script print" then
            assert.equal("info", r.level)
            assert.equal("shout:\t" .. text, r.text)
            return true
          end
        end
        return false, "no 'script print' line"
      end, 5000, ("node %d to log the print"):format(id))
    end
  end)

  it("--log-format overrides the config's log.format", function()
    c = H.start{ nodes = 1, storage = "memory", log = { format = "text" },
                 log_format = "json" }
    c:leader()
    c:wait_for(function() -- /status may answer before the line is written
      local recs = json_lines(c, 1)
      return find(recs, "node started") and find(recs, "became leader")
    end, 5000, "the JSON lines of the start and the election")
  end)

  it("a bad log option in the config is refused with a clear error", function()
    local ok, err = pcall(H.start, { nodes = 1, storage = "memory",
                                     log = { format = "xml" } })
    assert.is_false(ok)
    assert.matches('log.format: must be "text" or "json", got "xml"', tostring(err), 1, true)
    ok, err = pcall(H.start, { nodes = 1, storage = "memory", log = { colour = 1 } })
    assert.is_false(ok)
    assert.matches("log.colour: unknown key", tostring(err), 1, true)
  end)

  it("a node with a long log reports WAL replay progress and /health 'starting' until it has applied it", function()
    local wal = require "rafting.wal"
    local sm = require "rafting.sm"
    local N = 100000
    c = H.start{ nodes = 1, storage = "data-%d", log = { format = "json" },
                 wal = { sync = "none" },
                 limits = { snapshot_entries = 1000000, snapshot_log_bytes = 1 << 30 } }
    c:leader()
    c:stop(1)
    -- append N committed puts behind what the node wrote itself
    local w = assert(wal.open(c.dir .. "/data-1", { sync = "none" }))
    local hs, ents = w:load()
    local last = #ents > 0 and ents[#ents].index or 0
    local term = hs.term
    local batch = {}
    for i = 1, N do
      batch[#batch + 1] = { index = last + i, term = term, type = 0,
                            data = sm.encode("put", 0, { key = "k" .. i, value = ("v"):rep(64) }) }
    end
    assert(w:save(nil, batch))
    assert(w:save({ term = term, vote = hs.vote, commit = last + N }, {}))
    w:close()
    -- probe /health from the start: no answer (reading the WAL), 503
    -- starting (applying it between the driver's batches), then 200
    c:start_node(1, { wait = false })
    local starting
    -- A probe waits: the loop accepts it between two turns of the driver
    -- and reads it after the next one, and a turn may take seconds under
    -- a sanitizer.  Refused connections (the WAL is being read) retry at once.
    local deadline = os.time() + 120
    while true do
      local code, body = c:http(1, "GET", "/health", nil, { timeout_ms = 60000 })
      if code == 503 then
        local v = cjson.decode(body)
        assert.equal("starting", v.status)
        assert(v.applied < v.target and v.target == last + N, body)
        starting = v
      elseif code == 200 then
        break
      end
      assert(os.time() < deadline, "node 1 not healthy: " .. tostring(code) .. " " .. tostring(body))
    end
    local s = c:status(1)
    assert(s.applied >= last + N, "healthy before applying the log: applied " .. s.applied)
    local recs = json_lines(c, 1)
    local done, ready
    for _, r in ipairs(recs) do
      if r.msg == "wal replay done" then done = r end
      if r.msg == "node ready" then ready = r end
      if r.msg == "wal replay progress" then
        assert(r.done <= r.total and r.rate >= 0 and r.unit == "bytes", cjson.encode(r))
      end
    end
    assert(done, "no 'wal replay done' line")
    assert.equal(done.total, done.done)
    assert(done.entries >= N, "replayed only " .. done.entries .. " entries")
    assert(done.seconds >= 0 and done.rate >= 0)
    assert(ready and ready.applied >= last + N, "no 'node ready' line")
    print(("replayed %d entries (%d bytes) in %.3f s, applied in %.3f s; /health said starting: %s")
          :format(done.entries, done.total, done.seconds, ready.seconds,
                  starting and ("yes, applied " .. starting.applied .. "/" .. starting.target) or "no"))
    -- the driver lets the loop run between every 8 batches of 4096 entries:
    -- 100,000 entries take 4 such turns, and a probe connected before the
    -- second ends is answered before the last.  Only a fast apply (turns
    -- shorter than the probe's scheduling delay) may finish first.
    if ready.seconds > 1 then assert(starting, "/health never said starting") end
  end)
end)
