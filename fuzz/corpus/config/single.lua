-- One node: its own quorum, a leader within one election timeout.
return {
  cluster = "single",
  nodes = {
    { id = 1, peer = "127.0.0.1:7001", http = "127.0.0.1:8001" },
  },
  timing = { tick_ms = 10, election_ticks = 30, heartbeat_ticks = 5 },
  storage = "memory",
  commands = "commands/examples.lua", -- extra commands and queries (docs/commands.md)
}
