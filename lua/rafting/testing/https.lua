-- rafting.testing.https -- HTTPS requests for the test harness, through the
-- curl command (lua-socket has no TLS).  One request per curl process;
-- curl's own --max-time bounds it.  Returns code, body, headers (names
-- lower-case) like the harness's plaintext client, or nil, err.
local M = {}

local function tmpname()
  return os.tmpname()
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- opts: { ca = path, cert = path, key = path, headers = {}, timeout_ms }
function M.request(host, port, method, path, body, opts)
  local hfile, bfile, efile = tmpname(), tmpname(), tmpname()
  -- curl hangs with the sanitizer runtime preloaded (the ASan runs)
  local args = { "env -u LD_PRELOAD curl", "-sS", "-X", q(method), "--max-time",
                 ("%.3f"):format((opts.timeout_ms or 5000) / 1000),
                 "-D", q(hfile), "-o", q(bfile), "-w", "'%{http_code}'" }
  if opts.ca then args[#args + 1] = "--cacert " .. q(opts.ca) end
  if opts.cert then args[#args + 1] = "--cert " .. q(opts.cert) end
  if opts.key then args[#args + 1] = "--key " .. q(opts.key) end
  if method == "HEAD" then args[#args + 1] = "-I" end
  local dfile
  if body then
    dfile = tmpname()
    local f = assert(io.open(dfile, "wb"))
    f:write(body)
    f:close()
    args[#args + 1] = "--data-binary @" .. q(dfile)
    args[#args + 1] = "-H 'Content-Type:'" -- curl's default form type is not ours
  end
  for k, v in pairs(opts.headers or {}) do
    args[#args + 1] = "-H " .. q(k .. ": " .. v)
  end
  local host_part = host:find(":") and "[" .. host .. "]" or host
  args[#args + 1] = q(("https://%s:%d%s"):format(host_part, port, path))
  args[#args + 1] = "2>" .. q(efile)
  local p = io.popen(table.concat(args, " "))
  local out = p:read("a")
  local ok, _, rc = p:close()
  local code = tonumber(out)
  local data, hdrs, err = slurp(bfile), {}, slurp(efile)
  for line in slurp(hfile):gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then hdrs[k:lower()] = v end
  end
  for _, f in ipairs({ hfile, bfile, efile, dfile }) do os.remove(f) end
  if not ok or not code or code == 0 then
    return nil, ("curl exit %s: %s"):format(tostring(rc), err:gsub("%s+$", ""))
  end
  return code, data, hdrs
end

return M
