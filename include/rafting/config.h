/*
** config.h -- the cluster configuration, loaded from a Lua file.
**
** A config file is a Lua chunk that returns a table (see README, "Config").
** rf_config_load() runs it in a fresh Lua state with no libraries but the
** base ones, validates every field and fills an rf_config.  The rf_config
** owns all of its strings and arrays; rf_config_free() releases them.
*/
#ifndef RAFTING_CONFIG_H
#define RAFTING_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct rf_node_conf {
  uint64_t id;
  char *peer_host; /* numeric IPv4/IPv6 or "localhost" */
  int peer_port;
  char *http_host;
  int http_port;
} rf_node_conf;

/* auth.tokens: who may call the REST API, and what (see src/http/auth.h) */
enum { RF_ROLE_READ = 1, RF_ROLE_WRITE = 2, RF_ROLE_ADMIN = 3 };
typedef struct rf_token_conf {
  char *name;  /* for logs; the token itself is never logged */
  char *token;
  int role;    /* RF_ROLE_* */
} rf_token_conf;

typedef struct rf_config {
  char *path;            /* the file it came from */
  char *cluster;         /* cluster name, carried in every peer frame */
  rf_node_conf *nodes;
  size_t n_nodes;

  /* timing */
  int tick_ms;           /* default 10 */
  int election_ticks;    /* default 30 (> heartbeat_ticks) */
  int heartbeat_ticks;   /* default 5 */
  int pre_vote;          /* default 1 */
  int check_quorum;      /* default 1 */

  /* storage: "memory", or a data directory ("%d" is replaced by the id) */
  char *storage;
  char *commands;        /* Lua file of extra commands, or NULL */
  rf_token_conf *tokens; /* auth = {...}; n_tokens == 0: the API is open */
  size_t n_tokens;

  /* tls = { ca, cert, key }: PEM paths resolved against the config's
  ** directory, "%d" still to be replaced by the node id; NULL: plaintext */
  char *tls_ca, *tls_cert, *tls_key;

  /* wal = { ... }: the write-ahead log of a data directory */
  int wal_sync_none;        /* sync = "none": no fdatasync (benchmarks) */
  size_t wal_segment_bytes; /* default 64 MiB */
  size_t wal_batch_bytes;   /* bytes per write+sync round, default 8 MiB */

  /* log = { level = "info", format = "text" }: RF_INFO.., RF_LOG_TEXT.. */
  int log_level;
  int log_format;

  /* limits */
  size_t max_frame_bytes;    /* peer frame, default 4 MiB */
  size_t max_msg_bytes;      /* entry bytes per AppendEntries, default 2 MiB */
  int max_inflight;          /* appends in flight per follower, default 64 */
  size_t max_inflight_bytes; /* ... and their entry bytes, default 4 MiB */
  size_t send_queue_bytes;   /* per peer, default 8 MiB */
  size_t max_body_bytes;     /* HTTP body, default 1 MiB */
  size_t max_header_bytes;   /* HTTP headers in total, default 8 KiB */
  size_t max_url_bytes;      /* default 4 KiB */
  int max_connections;       /* HTTP connections per node, default 1024 */
  int idle_timeout_ms;       /* keep-alive idle, default 30000 */
  int request_timeout_ms;    /* whole request must arrive in, default 10000 */
  int forward_timeout_ms;    /* follower -> leader hop, default 5000 */
  int commit_timeout_ms;     /* a write waits this long for commit, 5000 */
  size_t sm_instructions;    /* Lua VM instructions per command, 1000000 */
  size_t sm_memory_bytes;    /* Lua heap of the state machine, 64 MiB */
  size_t snapshot_entries;   /* at most N applied entries apart, 0: no cap */
  size_t snapshot_log_bytes; /* ... or this many bytes of entries, 1 GiB */
  size_t snapshot_log_percent; /* log since the last >= N% of the state, 50 */
  size_t snapshot_min_log_bytes; /* ... and at least this much, 4 MiB */
  size_t snapshot_trailing;  /* entries kept behind a snapshot, 1000 */
  size_t snapshot_chunk_bytes; /* InstallSnapshot chunk size, 256 KiB */
  size_t max_snapshot_bytes; /* largest snapshot received, 1 GiB */
  int max_peer_connections;  /* inbound peer connections, 4 per node */
  int peer_handshake_timeout_ms; /* accept to first whole frame, 5000 */
  int peer_frame_timeout_ms; /* a partly received frame must end in, 10000 */
  size_t peer_buffer_bytes;  /* partial frames, all inbound together, 32 MiB */
  size_t watch_history_entries; /* GET /watch history: entries, 10000 */
  size_t watch_history_bytes;   /* ... and bytes, 16 MiB */
  int loop_warn_ms;          /* log a loop turn this long, 100; 0: never */
} rf_config;

/*
** Load and validate path.  On failure returns -1 and writes a message naming
** the file, the field and what is wrong (e.g. "config/x.lua: nodes[2].id:
** duplicate id 1") into err.  The caller exits 2 with it.
*/
int rf_config_load(const char *path, rf_config *out, char *err, size_t errlen);
void rf_config_free(rf_config *c);
/* tmpl with every "%d" replaced by id into buf; -1 if it does not fit. */
int rf_config_path_for(const char *tmpl, uint64_t id, char *buf, size_t len);
const rf_node_conf *rf_config_node(const rf_config *c, uint64_t id);

#endif
