--[[
examples.lua -- example replicated commands: a counter, a list, a bank.

Name it in a cluster config (commands = "config/commands/examples.lua") and
call it over REST:

  curl -X POST localhost:8001/cmd/incr -d '{"key":"hits","by":2}'
  curl -X POST localhost:8001/cmd/append -d '{"key":"todo","item":"milk"}'
  curl -X POST localhost:8001/cmd/deposit -d '{"account":"alice","amount":100}'
  curl -X POST localhost:8001/cmd/transfer -d '{"from":"alice","to":"bob","amount":30}'
  curl 'localhost:8001/query/balance?account=bob'

Runs in the sandbox described in docs/commands.md: kv is the store, json
encodes and decodes, nothing survives a call but what kv.put wrote.
]]

local commands, queries = {}, {}

local function integer(v, what)
  local n = math.tointeger(tonumber(v))
  if n == nil then error(what .. " must be an integer", 2) end
  return n
end

local function str(v, what)
  if type(v) ~= "string" or v == "" then
    error(what .. " must be a non-empty string", 2)
  end
  return v
end

-- counter ------------------------------------------------------------------

-- incr {key, by = 1} -> the new value.  The value is a decimal string.
function commands.incr(args)
  local key = str(args.key, "key")
  local by = args.by == nil and 1 or integer(args.by, "by")
  local n = integer(kv.get(key) or 0, "the stored value of " .. key) + by
  kv.put(key, tostring(n))
  return n
end

-- list ---------------------------------------------------------------------

-- append {key, item} -> the new length.  The value is a JSON array.
function commands.append(args)
  local key = str(args.key, "key")
  if args.item == nil then error("item is required") end
  local list = json.array(json.decode(kv.get(key) or "[]"))
  list[#list + 1] = args.item
  kv.put(key, json.encode(list))
  return #list
end

-- list {key} -> the list (a query: read-only, served by one node)
function queries.list(args)
  return json.array(json.decode(kv.get(str(args.key, "key")) or "[]"))
end

-- bank ---------------------------------------------------------------------

local function account(name) return "bank/" .. str(name, "account") end

local function balance(name) return integer(kv.get(account(name)) or 0, "balance") end

-- deposit {account, amount} -> the new balance
function commands.deposit(args)
  local amount = integer(args.amount, "amount")
  if amount <= 0 then error("amount must be positive") end
  local b = balance(args.account) + amount
  kv.put(account(args.account), tostring(b))
  return b
end

-- transfer {from, to, amount} -> {from = balance, to = balance}; refuses to
-- overdraw: the error leaves both accounts as they were.
function commands.transfer(args)
  local amount = integer(args.amount, "amount")
  if amount <= 0 then error("amount must be positive") end
  if args.from == args.to then error("from and to must differ") end
  local from, to = balance(args.from), balance(args.to)
  if from < amount then
    error(string.format("insufficient funds: %s has %d, needs %d",
                        args.from, from, amount))
  end
  kv.put(account(args.from), tostring(from - amount))
  kv.put(account(args.to), tostring(to + amount))
  return { from = from - amount, to = to + amount }
end

-- balance {account} -> integer
function queries.balance(args) return balance(args.account) end

return { commands = commands, queries = queries }
