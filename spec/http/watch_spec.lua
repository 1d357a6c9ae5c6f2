-- watch_spec.lua -- GET /watch against a real 3-node cluster: long-polls
-- answered by the next change under their prefix, a command's multi-key
-- change under one index, deletes, timeouts, answers from a follower that
-- never run ahead of it, the stream form, a client that leaves, 410 once the
-- bounded history moved on (and the resume from "oldest"), a watch resumed
-- with "next" across a leader change without a gap or a repeat, 410 after a
-- snapshot install, and a node stopping under waiting watches.

local cluster = require "rafting.testing.cluster"
local cjson = require "cjson"
local H = require "spec.support.http_helper"

-- JSON numbers decode as floats: a query wants "12", not "12.0"
local function I(n) return ("%d"):format(n) end

local HISTORY = 16 -- limits.watch_history_entries, small to reach a 410

describe("GET /watch (3 real nodes)", function()
  local c, leader

  setup(function()
    c = H.start{ nodes = 3, limits = { watch_history_entries = HISTORY } }
    leader = c:leader()
  end)
  teardown(function()
    H.shutdown(c)
    cluster.kill_all()
  end)

  local function watch(id, query, timeout_ms)
    local code, body = c:http(id, "GET", "/watch?" .. query, nil,
                              { timeout_ms = timeout_ms or 10000 })
    return code, body and body ~= "" and H.decode(body) or body
  end

  -- the index a watch on node id would start from now
  local function now_index(id)
    local code, v = watch(id, "timeout_ms=0")
    assert.equal(200, code)
    assert.same({}, v.events)
    return v.next
  end

  -- send a watch on its own connection without waiting for the answer
  local function park(id, query)
    local sock = H.connect(c, id, 15000)
    assert(sock:send(H.request_bytes("GET", "/watch?" .. query)))
    return sock
  end

  local function answer(sock)
    local code, body = H.read_response(sock)
    sock:close()
    assert.equal(200, code, body)
    return H.decode(body)
  end

  it("a long-poll is answered by the next change under its prefix, with next = its index", function()
    local since = now_index(leader)
    local sock = park(leader, "prefix=lp%2F&since=" .. I(since))
    H.put(c, leader, "elsewhere", "not watched")
    local put = H.put(c, leader, "lp/a", "one")
    local v = answer(sock)
    assert.same({ { index = put.index, key = "lp/a", value = "one" } }, v.events)
    assert.equal(put.index, v.next)
    -- nothing new above next: a timeout answers no events and the same next
    local code, again = watch(leader, "prefix=lp%2F&timeout_ms=50&since=" .. I(v.next))
    assert.equal(200, code)
    assert.same({}, again.events)
    assert.is_true(again.next >= v.next)
  end)

  it("shows a command's writes under its one index, and deletes as deleted", function()
    local since = now_index(leader)
    assert.equal(200, (H.cmd(c, leader, "deposit", { account = "ann", amount = 100 })))
    local code, body = H.cmd(c, leader, "transfer", { from = "ann", to = "ben", amount = 30 })
    assert.equal(200, code, body)
    local tx = H.decode(body).index
    code, body = c:http(leader, "DELETE", H.kv_path("bank/ben"))
    assert.equal(200, code, body)
    local del = H.decode(body).index
    local _, v = watch(leader, "prefix=bank%2F&since=" .. I(since))
    assert.equal(4, #v.events, cjson.encode(v))
    assert.same({ key = "bank/ann", value = "100" }, { key = v.events[1].key, value = v.events[1].value })
    assert.same({ { index = tx, key = "bank/ann", value = "70" },
                  { index = tx, key = "bank/ben", value = "30" },
                  { index = del, key = "bank/ben", deleted = true } },
                { v.events[2], v.events[3], v.events[4] })
    assert.equal(del, v.next)
    -- encoding=base64 for binary keys and values
    local put = H.put(c, leader, "bank/\255", "\0\1")
    _, v = watch(leader, "prefix=bank%2F&encoding=base64&since=" .. I(del))
    assert.same({ { index = put.index, key = "YmFuay//", value = "AAE=" } }, v.events)
  end)

  it("answers from a follower only what the follower has applied", function()
    for _, f in ipairs(H.others(c, leader)) do
      local since = now_index(f)
      local key = "fol/" .. f
      local sock = park(f, "prefix=" .. H.enc(key) .. "&since=" .. I(since))
      local put = H.put(c, leader, key, "v" .. f)
      local v = answer(sock)
      assert.same({ { index = put.index, key = key, value = "v" .. f } }, v.events)
      -- the follower has the change it showed: a local (stale) read sees it
      local code, body = c:http(f, "GET", H.kv_path(key, "stale"))
      assert.equal(200, code)
      assert.equal("v" .. f, body)
      local s = assert(c:status(f))
      assert.is_true(s.applied >= v.next)
    end
  end)

  -- the next chunk of a chunked answer on sock: its data, or "" for the last
  local function chunk(sock)
    local line = assert(sock:receive("*l"))
    local size = assert(tonumber(line, 16), "chunk size line: " .. line)
    local data = size > 0 and assert(sock:receive(size)) or ""
    assert.equal("", assert(sock:receive("*l")))
    return data
  end

  it("streams one JSON line per change with stream=1, then ends after timeout_ms", function()
    local since = now_index(leader)
    local first = H.put(c, leader, "st/0", "already")
    local sock = park(leader, "prefix=st%2F&stream=1&timeout_ms=2000&since=" .. I(since))
    local code, _, hdrs = H.read_response(sock, true)
    assert.equal(200, code)
    assert.equal("chunked", hdrs["transfer-encoding"])
    assert.is_nil(hdrs["content-length"])
    local line = H.decode(chunk(sock))
    assert.same({ { index = first.index, key = "st/0", value = "already" } }, line.events)
    local puts = {}
    for i = 1, 3 do
      puts[i] = H.put(c, leader, "st/" .. i, "v" .. i)
      H.put(c, leader, "unwatched/" .. i, "x")
      local data = chunk(sock)
      assert.equal("\n", data:sub(-1), "one object per line")
      line = H.decode(data)
      assert.same({ { index = puts[i].index, key = "st/" .. i, value = "v" .. i } }, line.events)
      assert.equal(puts[i].index, line.next)
    end
    -- timeout_ms ends the stream with a last line saying where to resume
    line = H.decode(chunk(sock))
    assert.same({}, line.events)
    assert.is_true(line.next >= puts[3].index)
    assert.equal("", chunk(sock))
    -- the connection stays usable (keep-alive) after the stream
    assert(sock:send(H.request_bytes("GET", "/health")))
    assert.equal(200, (H.read_response(sock)))
    sock:close()
  end)

  it("keeps pipelined answers in order around a stream", function()
    local sock = H.connect(c, leader, 10000)
    assert(sock:send(H.request_bytes("GET", "/health") ..
                     H.request_bytes("GET", "/watch?prefix=pipe%2F&stream=1&timeout_ms=300") ..
                     H.request_bytes("GET", "/kv/pipe%2Fnone?stale")))
    local code, body = H.read_response(sock)
    assert.equal(200, code)
    assert.equal('{"ok":true}\n', body)
    assert.equal(200, (H.read_response(sock, true)))
    assert.same({}, H.decode(chunk(sock)).events) -- the first line, at once
    assert.same({}, H.decode(chunk(sock)).events) -- the last, after 300 ms
    assert.equal("", chunk(sock))
    assert.equal(404, (H.read_response(sock)))
    sock:close()
  end)

  local function waiting(id)
    local code, body = c:http(id, "GET", "/metrics")
    assert.equal(200, code)
    return tonumber(body:match("\nrafting_watch_waiting (%d+)"))
  end

  it("frees the wait of a client that leaves (long-poll and stream)", function()
    local base = waiting(leader)
    local a = park(leader, "prefix=gone%2F")
    local b = park(leader, "prefix=gone%2F&stream=1")
    assert.equal(200, (H.read_response(b, true)))
    c:wait_for(function() return waiting(leader) == base + 2, "waiting" end, 5000,
               "both watches parked")
    a:close()
    b:close()
    c:wait_for(function() return waiting(leader) == base, "waiting" end, 5000,
               "both waits freed")
    H.put(c, leader, "gone/x", "nobody listens")
  end)

  it("answers only the watches whose prefix a change touches; a long quiet wait outlives the history", function()
    local since = now_index(leader)
    local a1 = park(leader, "prefix=grp%2Fa&since=" .. I(since))
    local a2 = park(leader, "prefix=grp%2Fa&since=" .. I(since))
    local b = park(leader, "prefix=grp%2Fb&since=" .. I(since))
    local quiet = park(leader, "prefix=quiet%2F&since=" .. I(since))
    c:wait_for(function() return waiting(leader) >= 4, "waiting" end, 5000,
               "the four watches parked")
    local pb = H.put(c, leader, "grp/b1", "b")
    local v = answer(b)
    assert.same({ { index = pb.index, key = "grp/b1", value = "b" } }, v.events)
    -- more entries than the history holds, none under grp/a or quiet/
    for i = 1, HISTORY + 4 do H.put(c, leader, "noise/" .. i, "n") end
    local pa = H.put(c, leader, "grp/a1", "a")
    for _, s in ipairs{ a1, a2 } do
      v = answer(s)
      assert.same({ { index = pa.index, key = "grp/a1", value = "a" } }, v.events)
      assert.equal(pa.index, v.next)
    end
    local pq = H.put(c, leader, "quiet/1", "q")
    v = answer(quiet) -- not a 410: it waited through the evicted entries
    assert.same({ { index = pq.index, key = "quiet/1", value = "q" } }, v.events)
  end)

  it("answers 400 to bad parameters", function()
    for _, q in ipairs{ "since=abc", "since=-1", "timeout_ms=x", "timeout_ms=99999999",
                        "encoding=hex", "stream=yes" } do
      local code, v = watch(leader, q)
      assert.equal(400, code, q)
      assert.equal("bad_request", v.error)
    end
  end)

  it("answers 410 with the oldest index once the history moved on, and resumes from there", function()
    local since = now_index(leader)
    local want = {}
    for i = 1, HISTORY + 5 do
      want[i] = H.put(c, leader, ("old/%02d"):format(i), "x").index
    end
    local code, v = watch(leader, "prefix=old%2F&since=" .. I(since))
    assert.equal(410, code, cjson.encode(v))
    assert.equal("gone", v.error)
    assert.is_true(v.oldest > since)
    -- the client re-reads the state, then watches from oldest: every change
    -- above it, in log order
    code, v = watch(leader, "prefix=old%2F&timeout_ms=0&since=" .. I(v.oldest))
    assert.equal(200, code)
    assert.is_true(#v.events >= HISTORY - 2, #v.events .. " events")
    for i, e in ipairs(v.events) do
      assert.equal(want[#want - #v.events + i], e.index)
    end
    assert.equal(want[#want], v.next)
  end)

  it("a watch resumed with next on a follower sees every change once across a leader change", function()
    local f = H.others(c, leader)[1]
    local since = now_index(f)
    local want = {}
    for i = 1, 3 do
      want[#want + 1] = ("lc/%d=%d"):format(i, H.put(c, leader, "lc/" .. i, "before").index)
    end
    local old = leader
    local term = assert(c:status(f)).term
    c:kill(old)
    leader = c:leader(nil, { above = term })
    for i = 4, 6 do
      want[#want + 1] = ("lc/%d=%d"):format(i, H.put(c, leader, "lc/" .. i, "after").index)
    end
    local got, next = {}, since
    c:wait_for(function()
      local code, v = watch(f, "prefix=lc%2F&timeout_ms=200&since=" .. I(next))
      if code ~= 200 then return false, "watch answered " .. tostring(code) end
      assert.is_true(v.next >= next, "next never goes back")
      for _, e in ipairs(v.events) do got[#got + 1] = ("%s=%d"):format(e.key, e.index) end
      next = v.next
      return #got >= #want, #got .. " events so far"
    end, 15000, "the watch to see all six writes")
    assert.same(want, got)
  end)
end)

describe("GET /watch and snapshots", function()
  local c

  setup(function()
    c = H.start{ nodes = 3, limits = { snapshot_entries = 20, snapshot_trailing = 5 } }
  end)
  teardown(function()
    H.shutdown(c)
    cluster.kill_all()
  end)

  it("a follower that installs a snapshot answers watches from before it 410, and resumes from oldest", function()
    local leader = c:leader()
    local f = H.others(c, leader)[1]
    c:kill(f) -- memory storage: it comes back empty
    local last
    for i = 1, 60 do last = H.put(c, leader, ("snap/%02d"):format(i), "x").index end
    c:wait_for(function() -- compacted: the follower can only catch up by snapshot
      local s, err = c:status(leader)
      if not s then return false, err end
      return s.first_index > 2, "leader first_index " .. s.first_index
    end, 20000, "the leader's log to be compacted")
    c:start_node(f)
    -- since=0 is this new process's whole history: it waits (or is already
    -- refused) until the snapshot replaces the state
    local code, body = c:http(f, "GET", "/watch?prefix=snap%2F&since=0&timeout_ms=15000",
                              nil, { timeout_ms = 20000 })
    assert.equal(410, code, body)
    local v = H.decode(body)
    assert.equal("gone", v.error)
    assert.is_true(v.oldest > 2 and v.oldest <= last, body)
    local s = c:wait_index(f, last, nil, "applied")
    assert.is_true(s.snapshot ~= nil and s.snapshot.index >= v.oldest)
    -- re-read, then watch from oldest: what the follower applied after it
    code, body = c:http(f, "GET", ("/watch?prefix=snap%%2F&timeout_ms=0&since=%d"):format(v.oldest))
    assert.equal(200, code, body)
    local w = H.decode(body)
    assert.equal(last, w.next)
    for i, e in ipairs(w.events) do assert.equal(last - #w.events + i, e.index) end
  end)

  it("a node that stops answers its waiting long-polls 503, ends its streams, and exits 0", function()
    local id = c:leader()
    local ids = H.others(c, id)
    local n = ids[#ids]
    local a = H.connect(c, n, 10000)
    assert(a:send(H.request_bytes("GET", "/watch?prefix=stop%2F")))
    local b = H.connect(c, n, 10000)
    assert(b:send(H.request_bytes("GET", "/watch?prefix=stop%2F&stream=1")))
    assert.equal(200, (H.read_response(b, true)))
    c:wait_for(function()
      local _, m = c:http(n, "GET", "/metrics")
      return m and m:match("\nrafting_watch_waiting 2\n") ~= nil, "not parked yet"
    end, 5000, "both watches parked")
    assert.is_true(c:stop(n)) -- raises unless it exits 0
    local code, body = H.read_response(a)
    assert.equal(503, code)
    assert.equal("shutting_down", H.decode(body).error)
    local rest = b:receive("*a")
    assert.matches("0\r\n\r\n$", rest)
    a:close()
    b:close()
  end)
end)
