/*
** node.c -- one Raft node on one libuv loop (see rafting/node.h).
**
** The node composes the parts and is the driver's I/O (rf_io): saves go to
** the storage (memory or WAL), messages to the peer transport, snapshot
** requests and installs to the snapshots, committed entries to the state
** machine.  The driver alone touches the core.
**
** Scheduling: every input (a tick, a peer message, a client request) wakes
** the driver, which runs in the check phase of the same loop turn -- after
** every callback of that poll, so all that arrived together goes out in one
** ready batch, and without waiting for another turn.  A save the WAL
** completes later runs the driver's next batch from its callback.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "rafting/driver.h"
#include "rafting/log.h"
#include "rafting/metrics.h"
#include "rafting/node.h"
#include "rafting/sm.h"
#include "rafting/storage.h"
#include "rafting/tls.h"
#include "rafting/transport.h"
#include "rafting/util.h"
#include "rafting/wal.h"
#include "bootscript.h"
#include "loopwatch.h"
#include "membership.h"
#include "snaps.h"

/* Committed entries applied per ready, and per rf_driver_process() call: a
** follower catching up after a snapshot applied 8 readies of 4,096 PUTs
** into a 1M-key store in one turn, 104-142 ms (bench/bigstate).  A turn
** runs the driver from a WAL completion and from its check phase, so with
** 1,024 it applies a few thousand entries at most: a few ms. */
#define APPLY_PER_TURN 1024

struct rf_node {
  rf_io io;             /* first: the driver's I/O is the node */
  uv_loop_t *loop;
  const rf_config *cfg; /* the membership's view: nodes = the address book */
  uint64_t id;
  rf_membership *ms;    /* who the members are and where (membership.h) */
  rf_driver *drv;
  rf_storage *storage;
  rf_transport *transport;
  rf_api *api;
  rf_sm *sm;            /* the replicated state machine */
  rf_bootscript *boot;  /* the config's commands file; NULL: none */
  rf_snaps *snaps;      /* snapshots: taking, streaming, installing */
  rf_tls_set tls;       /* all NULL without tls in the config */
  char data_dir[4096];  /* "" for memory storage */
  uv_timer_t tick;
  uv_check_t runner;    /* runs the driver after this turn's callbacks */
  uv_idle_t nowait;     /* keeps the poll from blocking while work waits */
  rf_loopwatch watch;   /* busy time per loop turn */
  int closing;
  int pending;          /* parts still to close */
  void (*stop_done)(void *);
  void *stop_ud;
  raft_role last_role;  /* for "became leader" / "lost leadership" lines */
  uint64_t last_leader;
  int storage_logged;
  uint64_t replay_to;   /* commit restored at start; "node ready" once applied */
  uint64_t skipped_index, skipped_term; /* the log a snapshot covered */
  int final_snap;       /* rf_node_stop: the snapshot before stopping asked */
  uint64_t start_ns;
  int ready_logged;
};

/* ------------------------------------------------------------ scheduling */

static void report_changes(rf_node *n);

/* Nothing to do: an active idle handle only makes the poll not block, and
** on_runner stops it once the driver ran. */
static void on_nowait(uv_idle_t *h) { (void)h; }

static void on_runner(uv_check_t *h) {
  rf_node *n = h->data;
  uv_check_stop(h);
  uv_idle_stop(&n->nowait);
  rf_driver_process(n->drv); /* wakes us again when it leaves work */
  report_changes(n);
  rf_bootscript_sync(n->boot, n->drv, n->ready_logged);
  rf_membership_sync(n->ms); /* may stop the node: it was removed */
}

static void io_wake(rf_io *io) {
  rf_node *n = (rf_node *)io;
  if (n->closing) return;
  uv_check_start(&n->runner, on_runner);
  uv_idle_start(&n->nowait, on_nowait);
}

/* "node ready": the log committed before the start is applied (what
** /health waits for), with how long that took. */
static void report_ready(rf_node *n) {
  uint64_t applied = rf_driver_applied(n->drv);
  rf_logrec r;
  if (n->ready_logged || applied < n->replay_to) return;
  n->ready_logged = 1;
  rf_log_begin(&r, RF_INFO, "node ready");
  rf_log_u64(&r, "applied", applied);
  rf_log_num(&r, "seconds", (double)(uv_hrtime() - n->start_ns) / 1e9);
  rf_log_end(&r);
}

/* One line per change: role, leader, storage failure (docs/logging.md). */
static void report_changes(rf_node *n) {
  raft_role role = rf_driver_role(n->drv);
  uint64_t leader = rf_driver_leader(n->drv);
  int failed = rf_driver_failed(n->drv);
  rf_logrec r;
  rf_metrics_raft_state((int)role, rf_driver_term(n->drv), leader);
  if (failed && !n->storage_logged) {
    n->storage_logged = 1;
    rf_log_begin(&r, RF_ERROR, "storage failed");
    rf_log_str(&r, "error", rf_strerror(failed));
    rf_log_str(&r, "effect", "this node stops taking part in the cluster "
               "(restart it once the disk is fixed)");
    rf_log_end(&r);
  }
  if (role != n->last_role) {
    rf_log_begin(&r, RF_INFO, role == RAFT_LEADER ? "became leader"
                 : n->last_role == RAFT_LEADER ? "lost leadership"
                 : "role changed");
    rf_log_str(&r, "role", raft_role_name(role));
    rf_log_str(&r, "from", raft_role_name(n->last_role));
    rf_log_end(&r);
  }
  if (leader != n->last_leader && leader != n->id) {
    rf_log_begin(&r, RF_INFO, leader != RAFT_NONE ? "leader known"
                                                  : "leader lost");
    rf_log_u64(&r, "leader", leader != RAFT_NONE ? leader : n->last_leader);
    rf_log_end(&r);
  }
  if ((role != n->last_role || leader != n->last_leader) && n->api)
    rf_api_leader_changed(n->api); /* a transfer waiting for it */
  n->last_role = role;
  n->last_leader = leader;
  report_ready(n);
}

/* ------------------------------------------------------------ the I/O */

/* "storage error": a WAL or snapshot failure, with what failed. */
static void log_storage_error(int level, const char *err) {
  rf_logrec r;
  rf_log_begin(&r, level, "storage error");
  rf_log_str(&r, "error", err);
  rf_log_end(&r);
}

static void on_compacted(void *ud, int status) {
  (void)ud; /* a failed compaction fails the saves queued behind it too */
  if (status < 0 && status != UV_ECANCELED) {
    rf_logrec r;
    rf_log_begin(&r, RF_WARN, "storage compaction failed");
    rf_log_str(&r, "error", rf_strerror(status));
    rf_log_end(&r);
  }
}

static int io_save(rf_io *io, const rf_io_save *s, rf_io_done done, void *ud) {
  rf_node *n = (rf_node *)io;
  int rc;
  rf_membership_saved(n->ms, s->entries, s->n_entries); /* addresses */
  if (s->snap_index &&
      (rc = n->storage->ops->compact(n->storage, s->snap_index, s->snap_term,
                                     on_compacted, n)) < 0)
    return rc;
  return n->storage->ops->save(n->storage, s->hs, s->entries, s->n_entries,
                               s->must_sync, done, ud);
}

static void io_send(rf_io *io, const raft_msg *m) {
  rf_node *n = (rf_node *)io;
  int rc;
  if (m->type == RAFT_MSG_SNAPSHOT) {
    rf_snaps_send(n->snaps, m); /* streamed in chunks */
    return;
  }
  rc = rf_transport_send(n->transport, m);
  if (rc < 0 && rf_log_enabled(RF_DEBUG))
    rf_log(RF_DEBUG, "drop %s to %llu: %s", raft_msg_type_name(m->type),
           (unsigned long long)m->to, rf_transport_strerror(rc));
}

static int io_install(rf_io *io, uint64_t index, uint64_t term) {
  rf_node *n = (rf_node *)io;
  int rc = rf_snaps_install(n->snaps, index, term);
  return rc < 0 ? RF_ESTORAGE : 0;
}

static int io_apply(rf_io *io, const raft_entry *e, rf_buf *res) {
  rf_node *n = (rf_node *)io;
  int rc = 0;
  if (e->type == RAFT_ENTRY_NORMAL) {
    uint64_t t0 = rf_metrics_now();
    rc = rf_sm_apply(n->sm, e->index, e->data, e->len, res);
    rf_histo_since(&rf_metrics_g.sm_command, t0);
  }
  rf_snaps_applied(n->snaps, e);
  return rc;
}

static int io_compact(rf_io *io, uint64_t index, uint64_t term) {
  rf_node *n = (rf_node *)io;
  return n->storage->ops->compact(n->storage, index, term, on_compacted, n);
}

static const rf_io_ops node_io = {io_save, io_send, io_install, io_apply,
                                  io_compact, io_wake};

/* ------------------------------------------------------------ inputs */

static void on_tick(uv_timer_t *t) {
  rf_node *n = t->data;
  rf_driver_tick(n->drv);
  rf_snaps_tick(n->snaps);
  rf_membership_tick(n->ms);
}

static void on_peer_msg(void *ud, const raft_msg *m) {
  rf_node *n = ud;
  int rc;
  rf_metrics_peer_msg(m->from, (int)m->type, 0);
  if (rf_driver_failed(n->drv) || rf_membership_peer_msg(n->ms, m)) return;
  if (m->type == RAFT_MSG_SNAPSHOT || m->type == RAFT_MSG_SNAPSHOT_RESP) {
    rf_snaps_recv(n->snaps, m); /* chunks travel between runtimes */
    return;
  }
  rc = rf_driver_step(n->drv, m);
  if (rc < 0) {
    rf_logrec r;
    /* a forged leader's message is worth an operator's look */
    rf_log_begin(&r, rc == RF_EFORGED ? RF_ERROR : RF_WARN,
                 "message rejected");
    rf_log_str(&r, "type", raft_msg_type_name(m->type));
    rf_log_u64(&r, "from", m->from);
    rf_log_str(&r, "error", rf_strerror(rc));
    rf_log_end(&r);
  }
}

static void on_peer_state(void *ud, uint64_t peer, int connected) {
  rf_node *n = ud; /* the transport logs the reason at debug level */
  rf_logrec r;
  rf_metrics_peer_connected(peer, connected);
  if (!connected) rf_snaps_peer_down(n->snaps, peer);
  rf_log_begin(&r, connected ? RF_INFO : RF_WARN,
               connected ? "peer connected" : "peer disconnected");
  rf_log_u64(&r, "peer", peer);
  rf_log_end(&r);
}

static void on_peer_learn(void *ud, uint64_t id, const char *host, int port) {
  rf_membership_learn(((rf_node *)ud)->ms, id, host, port);
}

static void on_transport_log(void *ud, int level, const char *msg) {
  (void)ud;
  rf_log(level, "peer: %s", msg);
}

/* ------------------------------------------------------------ status */

static void peers_json(rf_node *n, const raft_status *st, rf_buf *b) {
  static const char *const states[] = {"probe", "replicate", "snapshot"};
  rf_buf_str(b, ",\"peers\":[");
  for (size_t i = 0, k = 0; i < st->n_peers; i++) {
    const raft_peer_status *p = &st->peers[i];
    if (p->id == n->id) continue;
    rf_buf_printf(b, "%s{\"id\":%llu,\"connected\":%s", k++ ? "," : "",
                  (unsigned long long)p->id,
                  rf_transport_connected(n->transport, p->id) ? "true" : "false");
    if (st->role == RAFT_LEADER)
      rf_buf_printf(b, ",\"match\":%llu,\"next\":%llu,\"state\":\"%s\"",
                    (unsigned long long)p->match, (unsigned long long)p->next,
                    states[p->state]);
    rf_buf_str(b, "}");
  }
  rf_buf_str(b, "]");
}

static void status_json(void *ud, rf_buf *b) {
  rf_node *n = ud;
  raft_status st;
  const rf_node_conf *lc;
  int failed = rf_driver_failed(n->drv);
  rf_driver_status(n->drv, &st);
  lc = st.leader ? rf_config_node(n->cfg, st.leader) : NULL;
  rf_buf_printf(b, "{\"id\":%llu,\"cluster\":", (unsigned long long)st.id);
  rf_buf_json_str(b, n->cfg->cluster, strlen(n->cfg->cluster));
  rf_buf_printf(b, ",\"role\":\"%s\",\"term\":%llu,\"vote\":",
                raft_role_name(st.role), (unsigned long long)st.term);
  if (st.vote) rf_buf_printf(b, "%llu", (unsigned long long)st.vote);
  else rf_buf_str(b, "null");
  rf_buf_str(b, ",\"leader\":");
  if (lc) {
    char hp[300];
    rf_addr_format(hp, sizeof(hp), lc->http_host, lc->http_port);
    rf_buf_printf(b, "%llu,\"leader_http\":", (unsigned long long)st.leader);
    rf_buf_json_str(b, hp, strlen(hp));
  } else {
    rf_buf_str(b, "null,\"leader_http\":null");
  }
  rf_buf_printf(b, ",\"commit\":%llu,\"applied\":%llu,\"last_index\":%llu,"
                "\"last_term\":%llu,\"first_index\":%llu,\"storage\":",
                (unsigned long long)st.commit, (unsigned long long)st.applied,
                (unsigned long long)st.last_index,
                (unsigned long long)st.last_term,
                (unsigned long long)st.first_index);
  rf_buf_json_str(b, n->storage->ops->name, strlen(n->storage->ops->name));
  rf_buf_printf(b, ",\"store\":{\"keys\":%llu,\"bytes\":%llu}",
                (unsigned long long)rf_store_count(rf_sm_store(n->sm)),
                (unsigned long long)rf_store_bytes(rf_sm_store(n->sm)));
  rf_snaps_status_json(n->snaps, b);
  rf_buf_str(b, ",\"scripts\":");
  rf_sm_scripts_digest_json(n->sm, b);
  if (failed) {
    rf_buf_str(b, ",\"storage_error\":");
    rf_buf_json_str(b, rf_strerror(failed), strlen(rf_strerror(failed)));
  }
  peers_json(n, &st, b);
  rf_buf_str(b, "}");
}

/* ------------------------------------------------------------ start */

/* Where the log handed to the core may start: snapshot_trailing entries
** behind the snapshot at m, as compaction leaves it.  The core takes m's
** configuration as the one there, so with a CONF entry in between the log
** starts after the snapshot instead. */
static uint64_t covered_to(const rf_node *n, const raft_restore *rs,
                           const rf_snap_meta *m) {
  uint64_t trailing = n->cfg->snapshot_trailing, to, i;
  if (m->index <= rs->snap_index + trailing) return rs->snap_index;
  to = m->index - trailing;
  for (i = to + 1; i <= m->index; i++)
    if (rs->log[i - rs->snap_index - 1].type == RAFT_ENTRY_CONF) return m->index;
  return to;
}

/* The log the snapshot at m covers, but for the trailing entries: it is in
** the state machine already, and handing it to the core cost a copy of
** every entry (0.28 s and ~200 bytes an entry for the 929,000 a WAL still
** held behind a 1M-key snapshot, as after a crash right after a snapshot).
** Kept when the snapshot has no configuration (version 1 files): the log's
** is the only one then.  The WAL drops its files that only hold those once
** the core has its copy (start_driver): rs->log points into the WAL's. */
static void skip_covered(rf_node *n, raft_restore *rs, const rf_snap_meta *m) {
  uint64_t to, k;
  if (!m->has_conf || (to = covered_to(n, rs, m)) <= rs->snap_index) return;
  k = to - rs->snap_index;
  n->skipped_index = to;
  n->skipped_term = rs->log[k - 1].term;
  rs->log += k;
  rs->n -= (size_t)k;
  rs->snap_index = n->skipped_index;
  rs->snap_term = n->skipped_term;
}

/* What the node restores: the latest snapshot into the state machine, then
** the log after it.  A crash can leave a snapshot that the storage never
** learned about (a follower that was installing one): then the snapshot
** wins and the log is reset to it. */
static int load_state(rf_node *n, raft_restore *rs, raft_conf *conf) {
  rf_snap_meta m = {0};
  char err[512];
  uint64_t last;
  int rc;
  memset(rs, 0, sizeof(*rs));
  rc = rf_snaps_restore(n->snaps, &m, err, sizeof(err));
  if (rc < 0 && rc != RF_SNAP_ENONE) {
    log_storage_error(RF_ERROR, err);
    return RF_NODE_ESTORAGE;
  }
  if ((rc = n->storage->ops->load(n->storage, &rs->hs, &rs->log, &rs->n)) < 0)
    return rc;
  n->storage->ops->start(n->storage, &rs->snap_index, &rs->snap_term);
  rs->applied = m.index > rs->snap_index ? m.index : rs->snap_index;
  last = rs->snap_index + rs->n;
  if (m.index < rs->snap_index) {
    snprintf(err, sizeof(err), "the log starts after %llu but the latest "
             "snapshot is %llu: entries are missing",
             (unsigned long long)rs->snap_index, (unsigned long long)m.index);
    log_storage_error(RF_ERROR, err);
    return RF_NODE_ESTORAGE;
  }
  if (m.index > last || (m.index > rs->snap_index &&
                         rs->log[m.index - rs->snap_index - 1].term != m.term)) {
    rs->snap_index = m.index;
    rs->snap_term = m.term;
    rs->log = NULL;
    rs->n = 0;
    rf_membership_restore(n->ms, rs);
    if ((rc = n->storage->ops->compact(n->storage, m.index, m.term,
                                       on_compacted, n)) < 0)
      return rc;
  } else {
    rf_membership_restore(n->ms, rs); /* addresses, from the whole log */
    skip_covered(n, rs, &m);
  }
  /* the snapshot's configuration is the one at its index; entries after
  ** it (still in the log) override it.  Version 1 files have none. */
  if (m.has_conf) {
    *conf = m.conf;
    rs->conf = conf;
  }
  /* a data directory made by `rafting restore` has a snapshot and no hard
  ** state: its term starts at the snapshot's, or entries of an earlier
  ** term would follow it */
  if (rs->hs.term < rs->snap_term) {
    rs->hs.term = rs->snap_term;
    rs->hs.vote = 0;
  }
  return 0;
}

static uint64_t log_term(void *ud) {
  rf_node *n = ud;
  return n->drv ? rf_driver_term(n->drv) : 0;
}

static int start_driver(rf_node *n) {
  rf_driver_opts o;
  raft_restore rs;
  raft_status st;
  raft_conf conf; /* the snapshot's, read by rf_driver_new */
  int rc;
  memset(&o, 0, sizeof(o));
  raft_config_default(&o.core);
  o.core.id = n->id;
  o.core.voters = rf_membership_boot(n->ms, &o.core.n_voters);
  o.core.election_ticks = n->cfg->election_ticks;
  o.core.heartbeat_ticks = n->cfg->heartbeat_ticks;
  o.core.pre_vote = n->cfg->pre_vote;
  o.core.check_quorum = n->cfg->check_quorum;
  o.core.max_msg_bytes = n->cfg->max_msg_bytes;
  o.core.max_inflight = n->cfg->max_inflight;
  o.core.max_inflight_bytes = n->cfg->max_inflight_bytes;
  o.core.max_apply = APPLY_PER_TURN;
  o.core.seed = (uint64_t)uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32);
  o.request_ticks = (n->cfg->commit_timeout_ms + n->cfg->tick_ms - 1) /
                    n->cfg->tick_ms;
  if ((rc = load_state(n, &rs, &conf)) < 0) return rc;
  n->io.ops = &node_io;
  if ((rc = rf_driver_new(&o, &rs, &n->io, &n->drv)) < 0) return rc;
  if (n->skipped_index &&
      (rc = n->storage->ops->compact(n->storage, n->skipped_index,
                                     n->skipped_term, on_compacted, n)) < 0)
    return rc;
  rf_snaps_attach(n->snaps, n->drv);
  rf_membership_attach(n->ms, n->drv, n->transport);
  rf_log_set_term(log_term, n);
  rf_driver_status(n->drv, &st); /* the restored commit, clamped to the log */
  n->replay_to = st.commit;
  return 0;
}

/* A lone voter leads at once: nobody else can win, and a one-node cluster
** would otherwise wait out an election timeout after every start before it
** serves a write or a linearizable read.  Campaigning wakes the node: its
** handles must be up. */
static void lead_if_alone(rf_node *n) {
  raft_status st;
  rf_driver_status(n->drv, &st);
  if (st.conf.n_voters == 1 && st.conf.voters[0] == n->id)
    (void)rf_driver_campaign(n->drv);
}

static void on_script_print(void *ud, const char *msg, size_t len) {
  char text[513];
  rf_logrec r;
  (void)ud;
  if (len > 512) len = 512;
  memcpy(text, msg, len);
  text[len] = '\0'; /* a NUL inside cuts it: it is a log line */
  rf_log_begin(&r, RF_INFO, "script print");
  rf_log_str(&r, "text", text);
  rf_log_end(&r);
}

static void on_wal_log(void *ud, int level, const char *msg) {
  (void)ud;
  if (level >= RF_ERROR) log_storage_error(level, msg);
  else rf_log(level, "wal: %s", msg);
}

/* The config's storage: "memory", or a WAL directory with %d -> node id. */
static int open_storage(rf_node *n) {
  const char *spec = n->cfg->storage;
  char dir[4096], err[1024];
  rf_wal_opts o;
  size_t k = 0;
  if (strcmp(spec, "memory") == 0) {
    n->storage = rf_storage_memory();
    return n->storage ? 0 : RF_ENOMEM;
  }
  for (const char *p = spec; *p && k + 24 < sizeof(dir); p++) {
    if (p[0] == '%' && p[1] == 'd') {
      k += (size_t)snprintf(dir + k, sizeof(dir) - k, "%llu",
                            (unsigned long long)n->id);
      p++;
    } else {
      dir[k++] = *p;
    }
  }
  dir[k] = '\0';
  snprintf(n->data_dir, sizeof(n->data_dir), "%s", dir);
  rf_wal_opts_default(&o);
  o.log = on_wal_log;
  o.progress = 1;
  o.sync = n->cfg->wal_sync_none ? RF_WAL_SYNC_NONE : RF_WAL_SYNC_ALWAYS;
  o.segment_bytes = n->cfg->wal_segment_bytes;
  o.max_batch_bytes = n->cfg->wal_batch_bytes;
  n->storage = rf_storage_wal(n->loop, dir, &o, err, sizeof(err));
  if (n->storage != NULL) return 0;
  log_storage_error(RF_ERROR, err);
  return RF_NODE_ESTORAGE;
}

static int start_sm(rf_node *n) {
  rf_sm_opts o;
  char err[512];
  memset(&o, 0, sizeof(o));
  o.budget = n->cfg->sm_instructions;
  o.memory = n->cfg->sm_memory_bytes;
  o.log = on_script_print;
  n->sm = rf_sm_new(&o, err, sizeof(err));
  if (n->sm != NULL &&
      rf_bootscript_open(n->cfg->commands, n->sm, &n->boot, err,
                         sizeof(err)) == 0)
    return 0;
  rf_log(RF_ERROR, "%s", err);
  return RF_NODE_ESCRIPT;
}

/* No peers yet: the membership gives them once the driver knows the
** configuration (rf_membership_attach). */
static int start_transport(rf_node *n) {
  rf_transport_config tc;
  const rf_node_conf *self = rf_config_node(n->cfg, n->id);
  char advertise[RF_ADDR_MAX];
  rf_addr_format(advertise, sizeof(advertise), self->peer_host,
                 self->peer_port);
  memset(&tc, 0, sizeof(tc));
  tc.cluster = n->cfg->cluster;
  tc.self = n->id;
  tc.listen_host = self->peer_host;
  tc.listen_port = self->peer_port;
  tc.advertise = advertise;
  tc.learn = on_peer_learn;
  tc.max_frame_bytes = n->cfg->max_frame_bytes;
  tc.send_queue_bytes = n->cfg->send_queue_bytes;
  tc.max_inbound = (size_t)n->cfg->max_peer_connections;
  tc.first_frame_ms = (unsigned)n->cfg->peer_handshake_timeout_ms;
  tc.frame_ms = (unsigned)n->cfg->peer_frame_timeout_ms;
  tc.inbound_buffer_bytes = n->cfg->peer_buffer_bytes;
  tc.backoff_min_ms = 20;
  tc.backoff_max_ms = 1000;
  tc.seed = (uint64_t)uv_hrtime() ^ n->id;
  tc.ud = n;
  tc.recv = on_peer_msg;
  tc.peer_state = on_peer_state;
  tc.log = on_transport_log;
  tc.tls_server = n->tls.peer_server;
  tc.tls_client = n->tls.client;
  return rf_transport_start(n->loop, &tc, &n->transport);
}

static int start_snaps(rf_node *n) {
  rf_snaps_deps deps = {n->cfg, n->id, n->sm, n->transport,
                        rf_membership_blob_at, rf_membership_blob_restored,
                        n->ms};
  char err[512];
  if (rf_snaps_open(&deps, n->loop, n->data_dir[0] ? n->data_dir : NULL,
                    &n->snaps, err, sizeof(err)) == 0)
    return 0;
  log_storage_error(RF_ERROR, err);
  return RF_NODE_ESTORAGE;
}

static int start_api(rf_node *n) {
  rf_api_deps deps = {n->drv, n->sm, n->cfg, n->id, status_json, n,
                      n->tls.http_server, n->tls.client, n->snaps, n->ms};
  return rf_api_start(&deps, n->loop, &n->api);
}

static void start_loop(rf_node *n) {
  uv_check_init(n->loop, &n->runner);
  n->runner.data = n;
  uv_idle_init(n->loop, &n->nowait);
  n->nowait.data = n;
  uv_timer_init(n->loop, &n->tick);
  n->tick.data = n;
  uv_timer_start(&n->tick, on_tick, (uint64_t)n->cfg->tick_ms,
                 (uint64_t)n->cfg->tick_ms);
  /* failing, it leaves the node unwatched, not stopped */
  (void)rf_loopwatch_start(&n->watch, n->loop, (unsigned)n->cfg->loop_warn_ms);
  lead_if_alone(n);
  io_wake(&n->io); /* a restored log may already have work (replay) */
}

/* Closing what start() opened before it failed; the loop finishes the
** transport's and the snapshots' handles. */
static void start_failed(rf_node *n) {
  rf_log_set_term(NULL, NULL);
  if (n->drv) rf_driver_close(n->drv, NULL, NULL);
  if (n->snaps) rf_snaps_close(n->snaps, NULL, NULL);
  if (n->transport) rf_transport_close(n->transport, NULL, NULL);
  rf_bootscript_free(n->boot);
  rf_sm_free(n->sm);
  n->storage->ops->close(n->storage);
  rf_tls_set_free(&n->tls);
  rf_membership_free(n->ms);
  free(n);
}

static void log_start_failed(const char *what, const char *host, int port,
                             int rc) {
  char addr[RF_ADDR_MAX];
  rf_logrec r;
  rf_log_begin(&r, RF_ERROR, what);
  if (host) {
    rf_addr_format(addr, sizeof addr, host, port);
    rf_log_str(&r, "addr", addr);
  }
  rf_log_str(&r, "error", rf_strerror(rc));
  rf_log_end(&r);
}

static void log_started(rf_node *n, const rf_node_conf *self) {
  char peer[RF_ADDR_MAX], http[RF_ADDR_MAX];
  rf_logrec r;
  rf_addr_format(peer, sizeof peer, self->peer_host, self->peer_port);
  rf_addr_format(http, sizeof http, self->http_host, self->http_port);
  rf_log_begin(&r, RF_INFO, "node started");
  rf_log_str(&r, "cluster", n->cfg->cluster);
  rf_log_str(&r, "peer", peer);
  rf_log_str(&r, "http", http);
  rf_log_str(&r, "scheme", n->tls.client ? "https" : "http");
  rf_log_str(&r, "storage", n->storage->ops->name);
  rf_log_end(&r);
}

/* TLS contexts from the config (files checked now), or the warning that
** traffic leaves this host in plaintext. */
static int start_tls(rf_node *n) {
  char err[1024];
  if (rf_tls_set_open(n->cfg, n->id, &n->tls, err, sizeof(err)) < 0) {
    rf_log(RF_ERROR, "%s", err);
    return RF_ECONFIG;
  }
  if (n->tls.client == NULL && !rf_tls_node_loopback(n->cfg, n->id))
    rf_log(RF_WARN, "no tls in %s: peer and HTTP traffic to a non-loopback "
           "address is plaintext and unauthenticated (docs/security.md)",
           n->cfg->path);
  return 0;
}

/* Who the members are, before the storage opens (a --join checks that
** the directory is empty); stored once the directory exists. */
static int open_membership(rf_node *n, const rf_config *cfg,
                           const rf_node_opts *no) {
  rf_membership_opts o;
  char dir[4096], err[1024];
  int rc, mem = strcmp(cfg->storage, "memory") == 0;
  if (!mem && rf_config_path_for(cfg->storage, n->id, dir, sizeof(dir)) < 0)
    return RF_ECONFIG;
  memset(&o, 0, sizeof(o));
  o.cfg = cfg;
  o.id = n->id;
  o.data_dir = mem ? NULL : dir;
  if (no != NULL) {
    o.join = no->join;
    o.peer = no->peer;
    o.http = no->http;
    o.removed = no->removed;
    o.ud = no->ud;
  }
  if ((rc = rf_membership_open(&o, &n->ms, err, sizeof(err))) < 0) {
    rf_log(RF_ERROR, "%s", err);
    return rc == RF_ESTORAGE ? RF_NODE_ESTORAGE : RF_ECONFIG;
  }
  n->cfg = rf_membership_config(n->ms);
  return 0;
}

static int store_membership(rf_node *n) {
  char err[1024];
  if (rf_membership_store(n->ms, err, sizeof(err)) == 0) return 0;
  log_storage_error(RF_ERROR, err);
  return RF_NODE_ESTORAGE;
}

int rf_node_start(uv_loop_t *loop, const rf_config *cfg, uint64_t id,
                  const rf_node_opts *no, rf_node **out) {
  const rf_node_conf *self;
  rf_node *n;
  int rc;
  *out = NULL;
  if ((n = calloc(1, sizeof(*n))) == NULL) return RF_ENOMEM;
  n->loop = loop;
  n->id = id;
  n->start_ns = uv_hrtime();
  if ((rc = open_membership(n, cfg, no)) < 0) {
    free(n);
    return rc;
  }
  self = rf_config_node(n->cfg, id);
  if ((rc = open_storage(n)) < 0) {
    rf_membership_free(n->ms);
    free(n);
    return rc;
  }
  if ((rc = store_membership(n)) < 0) goto fail;
  if ((rc = start_sm(n)) < 0) goto fail;
  if ((rc = start_tls(n)) < 0) goto fail;
  if ((rc = start_transport(n)) < 0) {
    log_start_failed("cannot listen for peers", self->peer_host,
                     self->peer_port, rc);
    goto fail;
  }
  if ((rc = start_snaps(n)) < 0) goto fail;
  if ((rc = start_driver(n)) < 0) {
    log_start_failed("cannot start the Raft core", NULL, 0, rc);
    goto fail;
  }
  if ((rc = start_api(n)) < 0) {
    log_start_failed("cannot listen for HTTP", self->http_host,
                     self->http_port, rc);
    goto fail;
  }
  start_loop(n);
  log_started(n, self);
  *out = n;
  return 0;
fail:
  start_failed(n);
  return rc;
}

/* ------------------------------------------------------------ stop */

static void release(rf_node *n) {
  if (--n->pending > 0) return;
  rf_bootscript_free(n->boot);
  rf_sm_free(n->sm);
  n->storage->ops->close(n->storage);
  rf_tls_set_free(&n->tls);
  rf_membership_free(n->ms);
  if (n->stop_done) n->stop_done(n->stop_ud);
  free(n);
}

static void on_part_closed(void *ud) { release(ud); }
static void on_handle_closed(uv_handle_t *h) { release(h->data); }

struct rf_driver *rf_node_driver(rf_node *n) { return n->drv; }

void rf_node_drain(rf_node *n) { rf_api_drain(n->api); }

size_t rf_node_in_flight(const rf_node *n) {
  return rf_driver_waiting(n->drv) + (size_t)rf_api_forwarding(n->api);
}

int rf_node_peer_connected(const rf_node *n, uint64_t peer) {
  return rf_transport_connected(n->transport, peer);
}

static void on_final_snapshot(void *ud) {
  rf_node *n = ud;
  rf_node_stop(n, n->stop_done, n->stop_ud);
}

/* A clean stop snapshots first when the log since the last snapshot is
** long (rf_snaps_final): the restart loads it instead of replaying.  A
** second call meanwhile stops at once.
** The driver closes first (its close answers waiting requests while the
** HTTP server still runs, and waits for an in-flight save), then the rest. */
void rf_node_stop(rf_node *n, void (*done)(void *ud), void *ud) {
  if (n->closing) return;
  n->stop_done = done;
  n->stop_ud = ud;
  if (!n->final_snap++ && rf_snaps_final(n->snaps, on_final_snapshot, n))
    return;
  n->closing = 1;
  rf_log_set_term(NULL, NULL); /* the driver goes away */
  n->pending = 8;
  rf_driver_close(n->drv, on_part_closed, n);
  uv_close((uv_handle_t *)&n->tick, on_handle_closed);
  uv_close((uv_handle_t *)&n->runner, on_handle_closed);
  uv_close((uv_handle_t *)&n->nowait, on_handle_closed);
  if (rf_loopwatch_close(&n->watch, on_part_closed, n) < 0) release(n);
  rf_snaps_close(n->snaps, on_part_closed, n);
  if (rf_transport_close(n->transport, on_part_closed, n) < 0) release(n);
  rf_api_stop(n->api, on_part_closed, n);
}
