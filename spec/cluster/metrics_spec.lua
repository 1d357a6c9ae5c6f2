-- metrics_spec.lua -- GET /metrics on a real 3-node cluster: every page is
-- accepted by `promtool check metrics` (during a write workload too), and
-- the counters move as the traffic says they must.

local cluster = require "rafting.testing.cluster"
local D = require "spec.support.durability_helper"

local FIXTURE = "spec/cluster/fixtures/metrics_commands.lua"

-- promtool reads the page on stdin; any complaint fails the spec.
local function promtool(page, what)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(page)
  f:close()
  local p = assert(io.popen("promtool check metrics < " .. path .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("a")
  p:close()
  os.remove(path)
  local rc = out:match("rc=(%d+)%s*$")
  assert(rc == "0" and out:gsub("rc=%d+%s*$", "") == "",
         ("promtool check metrics on %s: %s"):format(what, out))
end

-- { ["name{labels}"] = value } of one page
local function parse(page)
  local m = {}
  for line in page:gmatch("[^\n]+") do
    if line:sub(1, 1) ~= "#" then
      local k, v = line:match("^(%S+) (%S+)$")
      assert(k, "malformed sample line: " .. line)
      m[k] = tonumber(v)
    end
  end
  return m
end

local function scrape(c, id)
  local code, body, headers = c:http(id, "GET", "/metrics")
  assert(code == 200, ("GET /metrics on node %d: %s %s"):format(id, code, body))
  assert.equal("text/plain; version=0.0.4; charset=utf-8", headers["content-type"])
  promtool(body, "node " .. id)
  return parse(body)
end

-- a sample's value; requests_total shows only the (route, code) pairs
-- that happened, so an absent one is 0
local function value(m, key)
  local v = m[key]
  if v == nil and key:find("^rafting_http_requests_total{") then return 0 end
  assert(v ~= nil, "no sample " .. key)
  return v
end

-- wait until fn(scrape of id) is true; returns that scrape
local function wait_metric(c, id, fn, what)
  return c:wait_for(function()
    local m = scrape(c, id)
    local ok, why = fn(m)
    if ok then return m end
    return false, why
  end, nil, ("node %d: %s"):format(id, what))
end

describe("GET /metrics (3 real nodes)", function()
  local c, w
  after_each(function()
    if w then w:kill() w = nil end
    D.shutdown(c) c = nil
  end)
  teardown(function() cluster.kill_all() end)

  it("passes promtool during a workload and counts writes, reads and failures", function()
    c = D.start{ nodes = 3, commands = FIXTURE,
                 limits = { snapshot_entries = 100, snapshot_trailing = 10,
                            sm_instructions = 100000, commit_timeout_ms = 2000,
                            forward_timeout_ms = 2500 } }
    local l = c:leader()
    local f = D.others(c, l)[1]

    -- Pages scraped from every node while writers keep the cluster busy.
    w = D.writers(c, { n = 3, prefix = "m.", max = 400, deadline_ms = 20000 })
    for round = 1, 3 do
      w:wait_acks(round * 60)
      for _, id in ipairs(c.ids) do scrape(c, id) end
    end
    w:stop()
    w = nil

    local L0, F0 = scrape(c, l), scrape(c, f)
    local cl, cf = D.client(c, l), D.client(c, f)
    for i = 1, 10 do assert.equal(200, (cl:request("PUT", "/kv/l" .. i, "v"))) end
    for i = 1, 5 do assert.equal(200, (cf:request("PUT", "/kv/f" .. i, "v"))) end
    assert.equal(200, (cl:request("GET", "/kv/l1")))
    assert.equal(422, (cl:request("POST", "/cmd/spin", "{}")))
    cl:close()
    cf:close()
    local L1, F1 = scrape(c, l), scrape(c, f)

    local function delta(a, b, key) return value(b, key) - value(a, key) end
    local kv200 = 'rafting_http_requests_total{route="/kv/{key}",code="200"}'
    -- 10 direct, 5 forwarded by the follower, 1 command: all proposed here
    assert.equal(16, delta(L0, L1, "rafting_raft_proposals_total"))
    assert.equal(0, delta(L0, L1, "rafting_raft_proposals_failed_total"))
    assert.equal(0, delta(F0, F1, "rafting_raft_proposals_total"))
    -- 15 PUTs and 1 GET answered 200 on the leader, 5 on the follower
    assert.equal(16, delta(L0, L1, kv200))
    assert.equal(5, delta(F0, F1, kv200))
    assert.equal(1, delta(L0, L1,
      'rafting_http_requests_total{route="/cmd/{name}",code="422"}'))
    assert.equal(1, delta(L0, L1, "rafting_raft_read_index_seconds_count"))
    assert.is_true(delta(L0, L1, "rafting_raft_commit_index") >= 16)
    assert.is_true(delta(L0, L1, "rafting_wal_bytes_written_total") > 0)
    assert.is_true(delta(L0, L1, "rafting_wal_fsync_duration_seconds_count") > 0)
    assert.is_true(value(L1, "rafting_wal_segments") >= 1)
    assert.equal(1, value(L1, 'rafting_raft_role{role="leader"}'))
    assert.equal(0, value(F1, 'rafting_raft_role{role="leader"}'))
    assert.equal(1, value(F1, 'rafting_raft_role{role="follower"}'))
    assert.equal(value(L1, "rafting_raft_term"), value(F1, "rafting_raft_term"))
    -- over 180 entries with snapshot_entries = 100: a snapshot is taken
    -- (written off the loop, so it may still be finishing)
    wait_metric(c, l, function(m)
      local n = value(m, "rafting_snapshot_duration_seconds_count")
      return n >= 1 and value(m, "rafting_snapshot_bytes") > 0, "snapshots " .. n
    end, "a snapshot taken")

    for _, p in ipairs(D.others(c, l)) do
      local lbl = ('{peer="%d"}'):format(p)
      assert.equal(1, value(L1, "rafting_peer_connected" .. lbl))
      assert.is_true(delta(L0, L1, ('rafting_peer_messages_sent_total{peer="%d",type="append"}'):format(p)) > 0)
      assert.is_true(delta(L0, L1, ('rafting_peer_messages_received_total{peer="%d",type="append_resp"}'):format(p)) > 0)
      -- the leader sees each follower catch up with its commit index
      wait_metric(c, l, function(m)
        local match, commit = value(m, "rafting_peer_match_index" .. lbl),
                              value(m, "rafting_raft_commit_index")
        return match >= commit, ("match %d, commit %d"):format(match, commit)
      end, "peer " .. p .. " matched")
    end
    -- every replica applies the spinning command and stops it at its budget
    for _, id in ipairs(c.ids) do
      wait_metric(c, id, function(m)
        local n = value(m, 'rafting_sm_budget_exceeded_total{limit="instructions"}')
        return n == 1 and value(m, "rafting_sm_command_duration_seconds_count") > 0,
               "budget exceeded " .. n
      end, "the spinning command to exceed its budget")
    end
  end)

  it("logs and counts an event loop turn that runs for loop_warn_ms or longer", function()
    -- the spinning command runs on the loop until its budget ends: 20M
    -- instructions take well over 20 ms (and well under an election
    -- timeout) on every replica, which must each say so
    c = D.start{ nodes = 3, commands = FIXTURE,
                 limits = { sm_instructions = 20000000, loop_warn_ms = 20,
                            commit_timeout_ms = 20000 } }
    local l = c:leader()
    local before = {}
    for _, id in ipairs(c.ids) do before[id] = scrape(c, id) end
    local code = c:http(l, "POST", "/cmd/spin", "{}", { timeout_ms = 30000 })
    assert.equal(422, code)
    for _, id in ipairs(c.ids) do
      local m = wait_metric(c, id, function(m)
        local n = value(m, "rafting_loop_held_total") - value(before[id], "rafting_loop_held_total")
        return n >= 1, "turns held " .. n
      end, "a held turn counted")
      -- the busy histogram has that turn above 20 ms
      local turns = value(m, "rafting_loop_busy_seconds_count")
      local short = value(m, 'rafting_loop_busy_seconds_bucket{le="0.025"}')
      assert.is_true(turns > short, ("%d turns, %d of them under 25 ms"):format(turns, short))
      assert(c:log(id):find('msg="event loop held" ms=', 1, true),
             "node " .. id .. " logged no held turn")
    end
  end)

  it("counts a leader change on every surviving node", function()
    c = D.start{ nodes = 3 }
    local l, t = c:leader()
    local before = {}
    for _, id in ipairs(c.ids) do
      local m = scrape(c, id)
      before[id] = value(m, "rafting_raft_leader_changes_total")
      assert.is_true(before[id] >= 1, "node " .. id .. " saw the first leader")
    end
    local e0 = {}
    for _, id in ipairs(D.others(c, l)) do
      e0[id] = value(scrape(c, id), "rafting_raft_elections_total")
    end
    c:stop(l)
    local l2 = c:leader(nil, { above = t })
    for _, id in ipairs(D.others(c, l)) do
      wait_metric(c, id, function(m)
        local n = value(m, "rafting_raft_leader_changes_total")
        return n > before[id], ("leader changes %d, before %d"):format(n, before[id])
      end, "a leader change counted")
    end
    local m = scrape(c, l2)
    assert.is_true(value(m, "rafting_raft_elections_total") > e0[l2])
    assert.equal(1, value(m, 'rafting_raft_role{role="leader"}'))
    assert.equal(0, value(m, ('rafting_peer_connected{peer="%d"}'):format(l)))
  end)
end)
