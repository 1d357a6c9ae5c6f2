return {
  cluster = "fz",
  nodes = {
    { id = 1, peer = "127.0.0.1:7001", http = "[::1]:8001" },
    { id = 7, peer = "localhost:7002", http = "0.0.0.0:8002" },
  },
  timing = { tick_ms = 5, election_ticks = 20, heartbeat_ticks = 2,
             pre_vote = false, check_quorum = false },
  storage = "memory",
  wal = { sync = "none", segment_bytes = 1048576, batch_bytes = 65536 },
  limits = { max_frame_bytes = 8388608, max_msg_bytes = 1048576,
             max_inflight = 8, max_body_bytes = 2048, max_connections = 10,
             sm_instructions = 5000, snapshot_entries = 100 },
}
