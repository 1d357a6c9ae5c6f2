-- tls_spec.lua -- TLS everywhere (docs/security.md) against real nodes:
-- a TLS cluster elects, replicates and forwards over HTTPS; plaintext
-- HTTP clients, HTTPS clients of another CA, and peer connections without
-- a certificate, with another CA's, with an expired one, or from a node
-- whose certificate is node 2 while its frames claim node 3, are all
-- refused (as is node 4's certificate from the right CA in a 3-node
-- cluster), and the cluster stays one cluster with one history.  Also: the
-- start-up checks of the tls files and the plaintext warning.
-- Certificates come from scripts/certs.sh (the openssl command).

local cluster = require "rafting.testing.cluster"
local https = require "rafting.testing.https"
local proc = require "rafting.proc"
local socket = require "socket"
local H = require "spec.support.cluster_helper"

local BIN = os.getenv("RAFTING_BIN") or "./build/rafting"

-- Tools run without the sanitizer runtime the ASan runs preload.
local function sh(cmd)
  cmd = "env -u LD_PRELOAD " .. cmd
  local ok, _, code = os.execute(cmd)
  assert(ok, ("command failed (%s): %s"):format(tostring(code), cmd))
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- CA + node1..3 into dir; with ca_from, that directory's CA signs them.
local function certs(dir, ca_from, days)
  sh("mkdir -p " .. dir)
  if ca_from then sh(("cp %s/ca.pem %s/ca.key %s/"):format(ca_from, ca_from, dir)) end
  sh(("CERT_DAYS=%s sh scripts/certs.sh %s 2>/dev/null"):format(days or 825, dir))
end

local function tls_conf(dir)
  return { ca = dir .. "/ca.pem", cert = dir .. "/node%d.pem",
           key = dir .. "/node%d.key" }
end

local function wait_log(c, id, pattern, what)
  return c:wait_for(function()
    return c:log(id):find(pattern, 1, true) ~= nil, "not in the log yet"
  end, 10000, what)
end

-- One TLS client handshake with the openssl command, then EOF.
local function s_client(addr, ca, cert, key)
  local cmd = ("env -u LD_PRELOAD timeout 5 openssl s_client -connect %s -CAfile %s"):format(addr, ca)
  if cert then cmd = cmd .. (" -cert %s -key %s"):format(cert, key) end
  local p = io.popen(cmd .. " </dev/null 2>&1")
  local out = p:read("a")
  p:close()
  return out
end

local function put_get(c, writer, key, value)
  local code, body = c:http(writer, "PUT", "/kv/" .. key, value)
  assert.equal(200, code, body)
  for _, id in ipairs(c:running()) do
    local gc, got = c:http(id, "GET", "/kv/" .. key)
    assert.equal(200, gc, got)
    assert.equal(value, got)
  end
end

describe("tls", function()
  local root, good, other, expired, stranger
  local c

  setup(function()
    root = assert(proc.mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/rafting-tls-"))
    good, other, expired = root .. "/good", root .. "/other", root .. "/expired"
    certs(good)
    certs(other)              -- another CA altogether
    certs(expired, good, -1)  -- the right CA, but expired a day ago
    stranger = root .. "/stranger" -- the right CA, node 4
    sh("mkdir -p " .. stranger)
    sh(("cp %s/ca.pem %s/ca.key %s/"):format(good, good, stranger))
    write(root .. "/four.lua", "return { nodes = { { id = 4 } } }")
    sh(("sh scripts/certs.sh %s %s 2>/dev/null"):format(stranger, root .. "/four.lua"))
  end)
  after_each(function() H.shutdown(c) c = nil end)
  teardown(function()
    cluster.kill_all()
    if root then os.execute("rm -rf " .. root) end
  end)

  it("a TLS cluster elects, replicates and forwards over HTTPS", function()
    c = H.start{ nodes = 3, tls = tls_conf(good) }
    local l = c:leader()
    for _, id in ipairs(c.ids) do
      local s = assert(c:status(id))
      for _, p in ipairs(s.peers) do assert.is_true(p.connected) end
    end
    put_get(c, l, "direct", "to the leader")
    put_get(c, H.others(c, l)[1], "forwarded", "through a follower")
    assert.truthy(c:log(l):find("scheme=https", 1, true))
  end)

  it("plaintext and foreign-CA clients get nothing", function()
    c = H.start{ nodes = 3, tls = tls_conf(good) }
    local l, term = c:leader()
    local n = c.nodes[l]
    -- plaintext HTTP on the HTTPS port: no HTTP answer at all
    local sock = socket.tcp()
    sock:settimeout(5)
    assert(sock:connect(n.host, n.port))
    sock:send("GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
    local line = sock:receive("*l")
    sock:close()
    assert.is_nil(line and line:match("^HTTP/"))
    -- HTTPS, but the client trusts another CA: verification fails
    local code, err = https.request(n.host, n.port, "GET", "/status", nil,
                                    { ca = other .. "/ca.pem" })
    assert.is_nil(code)
    assert.truthy(err:find("curl exit 60"), err)
    -- plaintext bytes on the peer port: closed, the reason logged
    sock = socket.tcp()
    sock:settimeout(5)
    local ph, pp = n.peer:match("^(.*):(%d+)$")
    assert(sock:connect(ph, tonumber(pp)))
    sock:send("\0\0\0\5hello")
    local data, _, partial = sock:receive("*a")
    assert.is_nil((data or partial or ""):match("hello"))
    sock:close()
    wait_log(c, l, "tls handshake", "the plaintext peer to be refused")
    assert.equal(term, select(2, c:leader()))
  end)

  it("refuses peers without a certificate, with another CA's, or an expired one", function()
    c = H.start{ nodes = 3, tls = tls_conf(good) }
    local l, term = c:leader()
    local f = H.others(c, l)[1]
    local addr = c.nodes[f].peer
    local ca = good .. "/ca.pem"
    s_client(addr, ca)
    wait_log(c, f, "peer did not return a certificate", "no certificate refused")
    s_client(addr, ca, other .. "/node1.pem", other .. "/node1.key")
    wait_log(c, f, "unable to get local issuer certificate", "another CA refused")
    s_client(addr, ca, expired .. "/node1.pem", expired .. "/node1.key")
    wait_log(c, f, "certificate has expired", "an expired certificate refused")
    -- the right CA, but a node this cluster does not have
    s_client(addr, ca, stranger .. "/node4.pem", stranger .. "/node4.key")
    wait_log(c, f, "names no other node of this cluster", "node 4 refused")
    assert.equal(term, select(2, c:leader()))
    put_get(c, f, "after", "attacks")
  end)

  it("a new node joins over TLS: the leader dials it, it learns the leader "
     .. "from the certified hello", function()
    sh(("cp %s/node4.pem %s/node4.key %s/"):format(stranger, stranger, good))
    c = H.start{ nodes = 3, tls = tls_conf(good) }
    local l = c:leader()
    local four = c:add_node()
    assert.equal(4, four)
    assert.truthy(c:log(four):find("learnt from its hello", 1, true))
    put_get(c, four, "joined", "over tls")
    for _, id in ipairs(c.ids) do
      local s = assert(c:status(id))
      for _, p in ipairs(s.peers) do assert.is_true(p.connected, id .. "->" .. p.id) end
    end
    assert.equal(l, (c:leader()))
    os.remove(good .. "/node4.pem")
    os.remove(good .. "/node4.key")
  end)

  it("drops frames whose from is not the certificate's node", function()
    c = H.start{ nodes = 3, tls = tls_conf(good) }
    local l, term = c:leader()
    -- An impostor with node 2's certificate that says it is node 3, on
    -- fresh ports: every frame it sends claims from = 3.
    local p1, p2 = proc.free_port(2)
    local cfg = { "return { cluster = ", ("%q"):format(c.config.cluster),
                  ", nodes = {" }
    for _, id in ipairs({ 1, 2 }) do
      cfg[#cfg + 1] = ("{ id = %d, peer = %q, http = %q },"):format(
        id, c.nodes[id].peer, c.nodes[id].http)
    end
    cfg[#cfg + 1] = ("{ id = 3, peer = '127.0.0.1:%d', http = '127.0.0.1:%d' } },"):format(p1, p2)
    cfg[#cfg + 1] = ("tls = { ca = %q, cert = %q, key = %q } }"):format(
      good .. "/ca.pem", good .. "/node2.pem", good .. "/node2.key")
    local path = root .. "/impostor.lua"
    write(path, table.concat(cfg, "\n"))
    local log = root .. "/impostor.log"
    local pid = assert(cluster.spawn{ argv = { BIN, "--config", path, "--node", "3" },
                                      stdout = log, stderr = log })
    wait_log(c, 1, "claims node 3 but the certificate is node 2",
             "node 1 to drop the impostor's frames")
    -- the impostor's votes never reached anyone: same leader, same term
    c:holds(function()
      local id, t = c:agreed_leader()
      return id == l and t == term, ("leader %s term %s"):format(id, t)
    end, 5 * H.ELECTION_MS, "the leader to stay")
    proc.kill(pid, "KILL")
    cluster.wait_pid(pid)
    put_get(c, 3, "impostor", "ignored")
  end)

  it("checks the tls files at start and names the one that is wrong", function()
    local p1, p2 = proc.free_port(2)
    local function try(tls, want)
      local path = root .. "/bad.lua"
      write(path, ("return { cluster = 'bad', nodes = { { id = 1, peer = " ..
                   "'127.0.0.1:%d', http = '127.0.0.1:%d' } }, tls = { ca = %q, " ..
                   "cert = %q, key = %q } }"):format(p1, p2, tls.ca, tls.cert, tls.key))
      local log = root .. "/bad.log"
      os.remove(log)
      local pid = assert(cluster.spawn{ argv = { BIN, "--config", path, "--node", "1" },
                                        stdout = log, stderr = log })
      local how, code = cluster.wait_pid(pid, 5000)
      assert.equal("exited", how)
      assert.not_equal(0, code)
      local out = read(log)
      assert.truthy(out:find(want, 1, true), out)
    end
    local t = tls_conf(good)
    try({ ca = t.ca, cert = t.cert, key = root .. "/missing.key" }, root .. "/missing.key")
    try({ ca = t.ca, cert = good .. "/node1.pem", key = good .. "/node2.key" },
        "does not match the certificate")
    try({ ca = good .. "/node1.key", cert = t.cert, key = t.key }, "tls.ca")
  end)

  it("warns at start when plaintext leaves loopback", function()
    local p1, p2 = proc.free_port(2)
    local path = root .. "/open.lua"
    write(path, ("return { cluster = 'open', nodes = { { id = 1, peer = " ..
                 "'127.0.0.1:%d', http = '0.0.0.0:%d' } } }"):format(p1, p2))
    c = cluster.from_config(path, {})
    wait_log(c, 1, "plaintext and unauthenticated", "the plaintext warning")
  end)
end)
