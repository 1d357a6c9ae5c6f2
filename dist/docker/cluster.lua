-- The config the Docker image runs when none is mounted: one node that
-- listens on every interface of its container and keeps its data in the
-- /var/lib/rafting volume.  Mount your own over /etc/rafting/cluster.lua
-- (see README.md, "Install"); give a multi-node cluster addresses the
-- other containers can reach (e.g. names on one Docker network).
return {
  cluster = "docker",
  nodes = {
    { id = 1, peer = "0.0.0.0:7001", http = "0.0.0.0:8001" },
  },
  timing = { tick_ms = 10, election_ticks = 30, heartbeat_ticks = 5 },
  storage = "/var/lib/rafting/node%d",
}
