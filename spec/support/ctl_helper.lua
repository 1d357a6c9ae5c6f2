-- ctl_helper.lua -- run `rafting ctl` from a spec: arguments, stdin bytes,
-- and what came back (exit status, stdout, stderr).

local M = {}

local function bin() return os.getenv("RAFTING_BIN") or "./build/rafting" end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- M.run({ "get", "k" }, { stdin = bytes, env = { NAME = v } })
--   -> exit status, stdout, stderr
function M.run(args, opts)
  opts = opts or {}
  local parts = { "env" }
  for k, v in pairs(opts.env or {}) do parts[#parts + 1] = q(k .. "=" .. v) end
  if not (opts.env and opts.env.RAFTING_TOKEN) then
    parts[#parts + 1] = "-u RAFTING_TOKEN"
  end
  parts[#parts + 1] = q(bin())
  parts[#parts + 1] = "ctl"
  for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
  local inp, out, err = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(inp, "wb"))
  f:write(opts.stdin or "")
  f:close()
  local cmd = table.concat(parts, " ") .. " <" .. inp .. " >" .. out ..
              " 2>" .. err
  local _, _, code = os.execute(cmd)
  local o, e = slurp(out), slurp(err)
  os.remove(inp) os.remove(out) os.remove(err)
  return code, o, e
end

-- "http://h:p,..." for the given node ids of cluster c
function M.endpoints(c, ids)
  local t = {}
  for _, id in ipairs(ids or c.ids) do t[#t + 1] = "http://" .. c:node(id).http end
  return table.concat(t, ",")
end

return M
