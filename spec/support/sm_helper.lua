--[[
sm_helper.lua -- shared by spec/sm/*: hosts of rafting.sm fed entries with
consecutive indexes, results decoded with cjson.
]]
local sm = require("rafting.sm")
local cjson = require("cjson")

local M = { sm = sm, json = cjson }

M.FIXTURES = "spec/sm/fixtures/"
M.SANDBOX = M.FIXTURES .. "sandbox.lua"
M.EXAMPLES = "config/commands/examples.lua"
M.T0 = 1700000000123 -- a leader's time stamp, ms

function M.host(opts)
  return assert(sm.new(opts or {}))
end

-- apply an entry at the next index: ok, text, code
function M.apply(h, entry)
  return h:apply(h:applied() + 1, entry)
end

-- a JSON-argument command (POST /cmd): ok, text, code
function M.cmd(h, name, args, time)
  local entry = assert(sm.encode_json(name, time or M.T0,
                                      args and cjson.encode(args) or "{}"))
  return M.apply(h, entry)
end

-- a binary-argument command (PUT/DELETE/cas): ok, text, code
function M.bin(h, name, args, time)
  return M.apply(h, sm.encode(name, time or M.T0, args))
end

-- the decoded result of a command that must succeed
function M.ok(h, name, args)
  local ok, text = M.cmd(h, name, args)
  assert(ok, text)
  return cjson.decode(text)
end

-- the error message of a command that must fail with code (default failed)
function M.fails(h, name, args, code)
  local ok, text, c = M.cmd(h, name, args)
  assert(not ok, "expected " .. name .. " to fail, got " .. tostring(text))
  assert(c == (code or "failed"), "code " .. tostring(c) .. ": " .. text)
  return text
end

-- every key and value, in order
function M.dump(h)
  local out = {}
  for _, kv in ipairs(h:scan("")) do out[#out + 1] = kv[1] .. "=" .. kv[2] end
  return out
end

return M
