-- backup_spec.lua -- backup and restore on real nodes (issue 9, items 6 and
-- 7): GET /snapshot from a follower and from the leader of a durable
-- 3-node cluster under writes, the whole cluster lost, `rafting restore`
-- into a new data directory, the restored node started as a one-member
-- cluster that serves every write acknowledged before the backup; bad
-- inputs to restore (truncated file, garbage, a non-empty directory, bad
-- arguments) with their exit codes; memory nodes and the admin role.

local cluster = require "rafting.testing.cluster"
local D = require "spec.support.durability_helper"
local snap = require "rafting.snap"
local proc = require "rafting.proc"
local cjson = require "cjson"

local BIN = os.getenv("RAFTING_BIN") or "./build/rafting"

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- `rafting restore ARGS...`: exit code, stdout, stderr
local function restore(c, args)
  local out, err = c.dir .. "/restore.out", c.dir .. "/restore.err"
  os.remove(out)
  os.remove(err)
  local argv = { BIN, "restore" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local pid = assert(cluster.spawn{ argv = argv, stdout = out, stderr = err })
  local how, code = cluster.wait_pid(pid, 20000)
  assert.equals("exited", how)
  local o, e = io.open(out, "rb"), io.open(err, "rb")
  local so, se = o and o:read("a") or "", e and e:read("a") or ""
  if o then o:close() end
  if e then e:close() end
  return code, so, se
end

-- PUT n keys prefix.1..n on node id, every one acknowledged: {key = value}
local function write_keys(c, id, prefix, n, into)
  into = into or {}
  for i = 1, n do
    local k, v = ("%s.%04d"):format(prefix, i), ("value %d of %s"):format(i, prefix)
    local code, body = c:http(id, "PUT", "/kv/" .. k, v)
    assert(code == 200, ("PUT %s: %s %s"):format(k, tostring(code), tostring(body)))
    into[k] = v
  end
  return into
end

-- GET /snapshot[?fresh] from node id: the bytes, checked against the
-- headers and parsed: kv, meta, headers
local function backup(c, id, query)
  local code, body, h = c:http(id, "GET", "/snapshot" .. (query or ""), nil,
                                { timeout_ms = 30000 })
  assert(code == 200, ("GET /snapshot%s on node %d: %s %s"):format(
    query or "", id, tostring(code), tostring(body)))
  assert.equals("application/octet-stream", h["content-type"])
  assert.equals(#body, tonumber(h["content-length"]))
  local kv, m = assert(snap.restore(body))
  assert.equals(m.index, tonumber(h["x-raft-index"]))
  assert.equals(m.term, tonumber(h["x-raft-term"]))
  assert.matches(('filename="rafting%%-node%d%%-%016x%%-%016x%%.snap"'):format(
    id, m.index, m.term), h["content-disposition"])
  return kv, m, body
end

local function holds_all(kv, want, what)
  local n = 0
  for k, v in pairs(want) do
    assert(kv[k] == v, ("%s: key %s is %s, acknowledged %s"):format(
      what, k, tostring(kv[k]), v))
    n = n + 1
  end
  return n
end

describe("backup and restore (real nodes, WAL)", function()
  local c
  after_each(function()
    -- every node still running stops cleanly (exit 0: no sanitizer report)
    local cc = c
    c = nil
    if cc then assert(cc:shutdown()) end
  end)
  teardown(function() cluster.kill_all() end)

  it("backs up from a follower and the leader, and restores a lost cluster on one node", function()
    c = D.start{ nodes = 3, limits = { snapshot_entries = 200, snapshot_trailing = 20 } }
    local leader = c:leader()
    local follower = (leader % 3) + 1
    -- a deployed key set, then enough writes for automatic snapshots too
    local acked = write_keys(c, leader, "deployed", 50)
    write_keys(c, leader, "batch1", 250, acked)
    local st = assert(c:status(leader))
    c:wait_index(follower, st.commit, 10000, "applied")

    -- from a follower: a fresh snapshot covers what it applied when asked
    local kv, m = backup(c, follower, "?fresh")
    assert.is_true(m.index >= st.commit)
    assert.equals(300, holds_all(kv, acked, "follower backup"))
    assert.same({ voters = { 1, 2, 3 }, learners = {} }, m.conf)

    -- from the leader, after more writes; the plain GET then serves it too
    write_keys(c, leader, "batch2", 30, acked)
    local kv2, m2, bytes = backup(c, leader, "?fresh=1")
    assert.is_true(m2.index > m.index)
    assert.equals(330, holds_all(kv2, acked, "leader backup"))
    local _, m3 = backup(c, leader)
    assert.equals(m2.index, m3.index)
    -- HEAD: the headers, no body
    local code, body, h = c:http(leader, "HEAD", "/snapshot")
    assert.equals(200, code)
    assert.equals("", body or "")
    assert.equals(#bytes, tonumber(h["content-length"]))

    -- writes acknowledged after the backup are not in it
    write_keys(c, leader, "after", 5)
    local file = c.dir .. "/backup.snap"
    spit(file, bytes)

    -- the majority is lost: every node dies
    D.kill_all_nodes(c)

    -- node 1's machine is replaced: its old directory is in the way
    local old = D.data_dir(c, 1)
    local rc, _, err = restore(c, { "--snapshot", file, "--config", c.config_path,
                                    "--node", "1" })
    assert.equals(3, rc)
    assert.matches("is not empty", err)
    assert.is_true(os.rename(old, old .. ".lost"))
    local out
    rc, out, err = restore(c, { "--snapshot", file, "--config", c.config_path,
                                "--node", "1" })
    assert.equals(0, rc, err)
    assert.matches(("index %d, term %d, %d keys"):format(m2.index, m2.term,
                                                         m2.nkeys), out)

    -- node 1 alone, with the 3-node config: the snapshot's configuration
    -- (node 1 only) lets it elect itself
    c:start_node(1)
    local l = c:leader(10000, { among = { 1 } })
    assert.equals(1, l)
    local members = assert(c:members(1))
    assert.equals(1, #members.members)
    assert.equals(1, members.members[1].id)
    assert.is_true(members.members[1].voter)
    local s1 = assert(c:status(1))
    assert.is_true(s1.term > m2.term)
    for k, v in pairs(acked) do
      local gc, gv = c:http(1, "GET", "/kv/" .. k)
      assert(gc == 200 and gv == v, ("restored node: %s is %s %s"):format(
        k, tostring(gc), tostring(gv)))
    end
    assert.equals(404, (c:http(1, "GET", "/kv/after.0001")))
    -- it takes writes, and they survive its restart (the log continues
    -- after the snapshot's index)
    write_keys(c, 1, "restored", 10, acked)
    c:restart(1, { kill = true })
    c:leader(10000, { among = { 1 } })
    assert.equals("value 10 of restored", select(2, c:http(1, "GET", "/kv/restored.0010")))
    assert.equals(acked["deployed.0001"], select(2, c:http(1, "GET", "/kv/deployed.0001")))

    -- grown back to 3 by two fresh nodes joining under a writer: every
    -- write acknowledged before the backup and after the restore is on all
    local w = D.writers(c, { n = 1, prefix = "dr.", seed = D.seed(),
                             deadline_ms = 60000, targets = { 1 } })
    local ok, err2 = pcall(function()
      w:wait_acks(10)
      local four = c:add_node({ timeout_ms = 20000 })
      w:wait_acks(w:poll() + 10)
      local five = c:add_node({ timeout_ms = 20000 })
      w:wait_acks(w:poll() + 10)
      local acks = w:stop()
      for _, a in ipairs(acks) do acked[a.key] = a.value end
      local top = w:max_index()
      for _, id in ipairs{ 1, four, five } do
        D.wait_applied(c, id, top)
        local state = {}
        for _, p in ipairs{ "deployed.", "batch1.", "batch2.", "restored.", "dr." } do
          for k, v in pairs(D.stale_range(c, id, p)) do state[k] = v end
        end
        holds_all(state, acked, "node " .. id .. " after the regrowth")
      end
      local voters = {}
      for _, e in ipairs(assert(c:members(five)).members) do
        assert.is_true(e.voter)
        voters[#voters + 1] = e.id
      end
      table.sort(voters)
      assert.same({ 1, four, five }, voters)
      D.report("disaster recovery: %d writes on the 3 regrown nodes, %d during the regrowth",
               #acks + 340, #acks)
    end)
    w:kill()
    assert(ok, err2)
  end)

  it("streams a large snapshot whole; ?fresh answers 503 when the snapshot being written outlasts timeout_ms", function()
    -- every snapshot child holds on 2 s after writing (src/snapfork.h)
    c = D.start{ nodes = 1, commands = "spec/cluster/fixtures/fill_commands.lua",
                 env = { RAFTING_TEST_SNAPSHOT_CHILD = "slow" },
                 limits = { sm_instructions = 100000000, commit_timeout_ms = 20000 } }
    local l = c:leader()
    local KEYS, PER = 60000, 20000
    for i = 0, KEYS // PER - 1 do
      local code, body = c:http(l, "POST", "/cmd/fill", cjson.encode{
        prefix = "big.", from = i * PER, n = PER, vlen = 100 }, { timeout_ms = 30000 })
      assert(code == 200, ("fill %d: %s %s"):format(i, tostring(code), tostring(body)))
    end
    local t0 = proc.now_ms()
    local code, body, h = c:http(l, "GET", "/snapshot?fresh&timeout_ms=300")
    assert.equals(503, code)
    assert.equals("snapshot_busy", cjson.decode(body).error)
    assert.equals("1", h["retry-after"])
    assert.is_true(proc.now_ms() - t0 < 1500)
    -- the default wait outlasts the slow child: the whole state, several
    -- times the 1 MiB the sender lets wait in memory
    local kv, m, bytes = backup(c, l, "?fresh")
    assert.is_true(#bytes > 6 * 1024 * 1024, "only " .. #bytes .. " bytes")
    local user = 0 -- the store also holds the deployed script (\0rafting/)
    for k in pairs(kv) do if k:sub(1, 9) ~= "\0rafting/" then user = user + 1 end end
    assert.equals(KEYS, user)
    assert.equals(KEYS + 2, m.nkeys) -- fill_commands.lua and the seeded mark
    local v = ("v"):rep(100)
    for i = 0, KEYS - 1, 997 do
      assert.equals(v, kv[("big.%08d"):format(i)])
    end

    -- clients that leave mid-download, and one still downloading (not
    -- reading: the node's sender waits on the socket) when the node stops
    local socket = require "socket"
    local host, port = c.nodes[l].http:match("^(.*):(%d+)$")
    local function start_download()
      local s = assert(socket.connect(host, tonumber(port)))
      assert(s:send("GET /snapshot HTTP/1.1\r\nHost: t\r\n\r\n"))
      s:settimeout(5)
      assert.matches("^HTTP/1.1 200", assert(s:receive("*l")))
      assert(s:receive(4096))
      return s
    end
    for _ = 1, 3 do start_download():close() end
    local t1 = proc.now_ms()
    local _, m2, bytes2 = backup(c, l)
    local ms = math.max(1, proc.now_ms() - t1)
    assert.equals(m.index, m2.index)
    assert.equals(#bytes, #bytes2)
    D.report("backup: %d bytes (%d keys) downloaded in %d ms (%.0f MB/s, "
             .. "with the check)", #bytes2, m2.nkeys, ms, #bytes2 / ms / 1000)
    -- a download outlives the rotation of its file: two newer snapshots
    -- later it still gets every byte (a file being read is unlinked, never
    -- shrunk under the reader)
    local slow = assert(socket.connect(host, tonumber(port)))
    slow:settimeout(10)
    assert(slow:send("GET /snapshot HTTP/1.1\r\nHost: t\r\n\r\n"))
    local len
    repeat
      local line = assert(slow:receive("*l"))
      len = len or tonumber(line:lower():match("^content%-length:%s*(%d+)"))
    until line == ""
    local got = { assert(slow:receive(65536)) }
    for i = 1, 2 do
      assert.equals(200, (c:http(l, "PUT", "/kv/rotate" .. i, "x")))
      local code2 = c:http(l, "GET", "/snapshot?fresh", nil, { timeout_ms = 20000 })
      assert.equals(200, code2)
    end
    local _, mnew = backup(c, l)
    assert.is_true(mnew.index > m.index)
    local rest = len - #got[1]
    while rest > 0 do
      local part = assert(slow:receive(math.min(rest, 1 << 20)))
      got[#got + 1] = part
      rest = rest - #part
    end
    slow:close()
    assert.equals(#bytes2, len)
    assert.equals(bytes2, table.concat(got))
    local hanging = start_download()
    c:stop(l, 10000) -- raises unless it exits 0 in time
    hanging:close()
  end)

  it("refuses bad input with clear errors and exit codes", function()
    c = D.start{ nodes = 1 }
    local leader = c:leader()
    write_keys(c, leader, "k", 20)
    local _, _, bytes = backup(c, leader, "?fresh")
    c:kill(1)
    local cfg, dir = c.config_path, c.dir .. "/fresh-dir"
    local function try(name, content, args)
      local f = c.dir .. "/" .. name
      spit(f, content)
      local a = { "--snapshot", f, "--config", cfg, "--node", "1", "--data", dir }
      for _, x in ipairs(args or {}) do a[#a + 1] = x end
      return restore(c, a)
    end
    local rc, _, err = try("trunc.snap", bytes:sub(1, #bytes - 20))
    assert.equals(1, rc)
    assert.matches("trunc%.snap: snapshot at offset %d+: .*truncated", err)
    rc, _, err = try("garbage.snap", ("garbage "):rep(20))
    assert.equals(1, rc)
    assert.matches("bad magic %(not a snapshot%)", err)
    rc, _, err = try("flipped.snap", bytes:sub(1, 100) ..
                     string.char(bytes:byte(101) ~ 1) .. bytes:sub(102))
    assert.equals(1, rc)
    assert.matches("offset %d+", err)
    rc, _, err = try("empty.snap", "")
    assert.equals(1, rc)
    assert.matches("truncated", err)
    rc, _, err = restore(c, { "--snapshot", c.dir .. "/none.snap", "--config", cfg,
                              "--node", "1", "--data", dir })
    assert.equals(1, rc)
    assert.matches("cannot read .*none%.snap: No such file", err)
    -- none of that left a directory behind
    assert.is_nil(io.open(dir .. "/snap", "rb"))
    -- arguments and config
    rc, _, err = try("ok.snap", bytes, {})
    assert.equals(0, rc, err)
    rc, _, err = try("ok.snap", bytes, {})
    assert.equals(3, rc)
    assert.matches("fresh%-dir is not empty", err)
    rc, _, err = restore(c, { "--snapshot", c.dir .. "/ok.snap", "--config", cfg })
    assert.equals(2, rc)
    assert.matches("%-%-node ID is required", err)
    rc, _, err = restore(c, { "--snapshot", c.dir .. "/ok.snap", "--config", cfg,
                              "--node", "9" })
    assert.equals(2, rc)
    assert.matches("no node with id 9", err)
    rc, _, err = restore(c, { "--bogus" })
    assert.equals(2, rc)
    assert.matches("unknown argument '%-%-bogus'", err)
  end)
end)

describe("GET /snapshot (memory nodes, auth)", function()
  local c
  after_each(function()
    -- every node still running stops cleanly (exit 0: no sanitizer report)
    local cc = c
    c = nil
    if cc then assert(cc:shutdown()) end
  end)
  teardown(function() cluster.kill_all() end)

  it("serves a memory node's snapshot from memory; 404 before there is one; bad parameters are 400", function()
    c = cluster.start{ nodes = 1 }
    local l = c:leader()
    local code, body = c:http(l, "GET", "/snapshot")
    assert.equals(404, code)
    assert.equals("no_snapshot", cjson.decode(body).error)
    local acked = write_keys(c, l, "m", 40)
    local kv, m = backup(c, l, "?fresh")
    assert.equals(40, holds_all(kv, acked, "memory backup"))
    assert.same({ voters = { 1 }, learners = {} }, m.conf)
    for _, q in ipairs({ "?fresh=2", "?fresh&timeout_ms=0", "?fresh&timeout_ms=x", "?other" }) do
      code, body = c:http(l, "GET", "/snapshot" .. q)
      assert.equals(400, code, q)
      assert.equals("bad_request", cjson.decode(body).error)
    end
  end)

  it("needs the admin role", function()
    local TOK = { read = "rd-1111111111111111", write = "wr-2222222222222222",
                  admin = "ad-3333333333333333" }
    c = cluster.start{ nodes = 1, token = TOK.admin, auth = { tokens = {
      { name = "r", token = TOK.read, role = "read" },
      { name = "w", token = TOK.write, role = "write" },
      { name = "a", token = TOK.admin, role = "admin" } } } }
    local l = c:leader()
    assert.equals(401, (c:http(l, "GET", "/snapshot?fresh", nil, { headers = {} })))
    for _, t in ipairs({ TOK.read, TOK.write }) do
      local code, body = c:http(l, "GET", "/snapshot?fresh", nil,
                                { headers = { Authorization = "Bearer " .. t } })
      assert.equals(403, code)
      assert.matches("admin", body)
    end
    assert.equals(200, (c:http(l, "GET", "/snapshot?fresh")))
  end)
end)
