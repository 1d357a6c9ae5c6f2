-- echo.lua -- commands for fuzz/fuzz_entry.c: hand the arguments back, so
-- they go JSON -> Lua -> JSON; store them so the store sees odd bytes too.
local commands, queries = {}, {}

function commands.echo(args)
  if type(args) == "table" and type(args.key) == "string" and #args.key > 0
      and type(args.value) == "string" then
    kv.put(args.key, args.value)
  end
  return args
end

function queries.echo(args) return args end

return { commands = commands, queries = queries }
