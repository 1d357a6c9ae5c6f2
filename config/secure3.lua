-- A 3-node cluster on loopback with TLS everywhere: HTTPS on 8101-8103,
-- mutual TLS between peers on 7101-7103 (docs/security.md).  Paths are
-- relative to this file; "%d" is the node id.  `./dev run config/secure3.lua`
-- makes the certificates into data/secure3/certs when they are missing
-- (or run: ./dev certs data/secure3/certs config/secure3.lua).
return {
  cluster = "secure3",
  nodes = {
    { id = 1, peer = "127.0.0.1:7101", http = "127.0.0.1:8101" },
    { id = 2, peer = "127.0.0.1:7102", http = "127.0.0.1:8102" },
    { id = 3, peer = "127.0.0.1:7103", http = "127.0.0.1:8103" },
  },
  tls = {
    ca = "../data/secure3/certs/ca.pem",
    cert = "../data/secure3/certs/node%d.pem",
    key = "../data/secure3/certs/node%d.key",
  },
  -- demo tokens for loopback: replace them (and keep them out of version
  -- control, e.g. tokens_file = "/etc/rafting/tokens.lua") on real machines
  auth = {
    tokens = {
      { name = "ops", token = "demo-admin-token-change-me", role = "admin" },
      { name = "app", token = "demo-write-token-change-me", role = "write" },
      { name = "viewer", token = "demo-read-token-change-me", role = "read" },
    },
  },
  storage = "data/secure3/node%d", -- like local3: relative to the working directory
  commands = "commands/examples.lua",
}
