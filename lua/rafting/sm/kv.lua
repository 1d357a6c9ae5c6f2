--[[
kv.lua -- the built-in commands of the replicated state machine.

Runs in the sandbox like any command script (docs/commands.md): the chunk
runs afresh before each call and returns its handlers.  REST maps
PUT /kv/{key} to put, DELETE /kv/{key} to delete; cas is also reachable as
POST /cmd/cas.  Keys and values are binary strings.
]]

local commands = {}

local function need(args, name, cmd)
  local v = args[name]
  if type(v) ~= "string" then
    error(cmd .. ": argument '" .. name .. "' must be a string", 2)
  end
  return v
end

-- put {key, value} -> true
function commands.put(args)
  kv.put(need(args, "key", "put"), need(args, "value", "put"))
  return true
end

-- delete {key} -> whether the key existed
function commands.delete(args)
  return kv.delete(need(args, "key", "delete"))
end

-- An argument that says "yes": true, or any string but "false"/"0"/"".
local function yes(v)
  if type(v) == "string" then return v ~= "false" and v ~= "0" and v ~= "" end
  return v == true
end

-- cas {key, expect | expect_absent, value?}: compare-and-swap.  Swaps when
-- the current value equals expect (or the key is absent, with
-- expect_absent); without value a matching key is deleted.
-- -> {ok = true} or {ok = false, current = <value or null>}
function commands.cas(args)
  local key = need(args, "key", "cas")
  local absent = yes(args.expect_absent)
  if not absent and type(args.expect) ~= "string" then
    error("cas: give 'expect' (a string) or 'expect_absent'")
  end
  if args.value ~= nil and type(args.value) ~= "string" then
    error("cas: argument 'value' must be a string")
  end
  local current = kv.get(key)
  local match
  if absent then match = current == nil else match = current == args.expect end
  if not match then
    return { ok = false, current = current == nil and json.null or current }
  end
  if args.value == nil then kv.delete(key) else kv.put(key, args.value) end
  return { ok = true }
end

return { commands = commands, queries = {} }
