-- ctl_tls_spec.lua -- `rafting ctl` over TLS against `openssl s_server`:
-- the server's certificate is verified against --cacert and the host name
-- (DNS or IP SAN); a wrong CA or name fails with exit 3 and says why.

local cluster = require "rafting.testing.cluster"
local proc = require "rafting.proc"
local socket = require "socket"
local X = require "spec.support.ctl_helper"

local function sh(cmd) assert(os.execute(cmd .. " >/dev/null 2>&1"), cmd) end

describe("rafting ctl over TLS", function()
  local dir, port, pid

  setup(function()
    dir = assert(proc.mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/rafting-tls-"))
    local function cert(name, cn, san, ca)
      sh(("openssl req -newkey rsa:2048 -nodes -keyout %s/%s.key -out %s/%s.csr -subj /CN=%s")
         :format(dir, name, dir, name, cn))
      local f = assert(io.open(dir .. "/" .. name .. ".ext", "w"))
      f:write("subjectAltName=", san, "\n")
      f:close()
      sh(("openssl x509 -req -in %s/%s.csr -CA %s/%s.pem -CAkey %s/%s.key " ..
          "-CAcreateserial -out %s/%s.pem -days 1 -extfile %s/%s.ext")
         :format(dir, name, dir, ca, dir, ca, dir, name, dir, name))
    end
    for _, ca in ipairs{ "ca", "otherca" } do
      sh(("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/%s.key -out %s/%s.pem -days 1 -subj /CN=%s")
         :format(dir, ca, dir, ca, ca))
    end
    cert("srv", "localhost", "DNS:localhost,IP:127.0.0.1", "ca")
    port = proc.free_port(1)
    pid = assert(cluster.spawn{ argv = { "openssl", "s_server", "-quiet", "-www",
      "-accept", tostring(port), "-cert", dir .. "/srv.pem", "-key", dir .. "/srv.key" },
      stdout = "/dev/null", stderr = "/dev/null" })
    cluster.wait_until(function()
      local s = socket.tcp()
      local ok = s:connect("127.0.0.1", port)
      s:close()
      return ok
    end, 10000, "openssl s_server listening")
  end)
  teardown(function()
    if pid then proc.kill(pid, "TERM") cluster.wait_pid(pid, 5000) end
    if dir then os.execute("rm -rf " .. dir) end
  end)

  local function ctl(ep, ca)
    local args = { "--endpoints", ep, "--timeout", "2" }
    if ca then args[#args + 1] = "--cacert" args[#args + 1] = dir .. "/" .. ca .. ".pem" end
    args[#args + 1] = "status"
    return X.run(args)
  end

  it("verifies the certificate against --cacert, by DNS name and by IP", function()
    local code, out, err = ctl("https://localhost:" .. port, "ca")
    assert.equal(0, code, err)
    assert.matches("HTML", out) -- s_server -www's status page
    code, out, err = ctl("127.0.0.1:" .. port, "ca") -- --cacert implies TLS
    assert.equal(0, code, err)
  end)

  it("refuses a certificate from another CA", function()
    local code, out, err = ctl("https://localhost:" .. port, "otherca")
    assert.equal(3, code)
    assert.equal("", out)
    assert.matches("certificate", err)
  end)

  it("refuses a certificate for another name", function()
    -- 127.0.0.2 reaches the same listener on Linux but is not in the SANs
    local code, _, err = ctl("https://127.0.0.2:" .. port, "ca")
    assert.equal(3, code)
    assert.matches("certificate", err)
  end)

  it("refuses to talk TLS-less to a TLS port: no answer, exit 3", function()
    local code = ctl("http://127.0.0.1:" .. port, nil)
    assert.equal(3, code)
  end)
end)
