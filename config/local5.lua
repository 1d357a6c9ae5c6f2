-- A 5-node cluster on loopback: peers on 7001-7005, HTTP on 8001-8005.
-- The node list is computed: a config is an ordinary Lua chunk.
local nodes = {}
for id = 1, 5 do
  nodes[id] = {
    id = id,
    peer = ("127.0.0.1:%d"):format(7000 + id),
    http = ("127.0.0.1:%d"):format(8000 + id),
  }
end

return {
  cluster = "local5",
  nodes = nodes,
  timing = { tick_ms = 10, election_ticks = 30, heartbeat_ticks = 5 },
  storage = "memory",
  commands = "commands/examples.lua", -- extra commands and queries (docs/commands.md)
}
