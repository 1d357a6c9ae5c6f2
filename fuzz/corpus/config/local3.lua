-- A 3-node cluster on loopback: peers on 7001-7003, HTTP on 8001-8003.
-- Every key is documented, with its default, in docs/config.md.
return {
  cluster = "local3",
  nodes = {
    { id = 1, peer = "127.0.0.1:7001", http = "127.0.0.1:8001" },
    { id = 2, peer = "127.0.0.1:7002", http = "127.0.0.1:8002" },
    { id = 3, peer = "127.0.0.1:7003", http = "127.0.0.1:8003" },
  },
  timing = {
    tick_ms = 10,          -- one tick every 10 ms
    election_ticks = 30,   -- election timeout: 300..600 ms (randomized)
    heartbeat_ticks = 5,   -- heartbeat every 50 ms
    pre_vote = true,
    check_quorum = true,
  },
  storage = "data/local3/node%d", -- a WAL + snapshots per node ("memory": none)
  commands = "commands/examples.lua", -- extra commands and queries (docs/commands.md)
}
