/*
** node.c -- one Raft node on one libuv loop (see rafting/node.h).
**
** Every input (a tick, a peer message, a client request) steps the core and
** schedules flush() for the next loop iteration, so that everything that
** arrived in one poll goes out in one ready batch (one AppendEntries per
** follower).  flush() drains ready batches in the order the contract
** demands: persist, send, apply, advance -- a few per iteration, so a long
** replay never keeps the loop from serving peers and clients.  A save that
** completes later (the WAL) schedules the next batch; one is in flight.
*/
#include <stdlib.h>
#include <string.h>

#include "rafting/log.h"
#include "rafting/node.h"
#include "rafting/raft.h"
#include "rafting/sm.h"
#include "rafting/storage.h"
#include "rafting/transport.h"
#include "rafting/wal.h"
#include "http/api.h"
#include "node_internal.h"
#include "snaps.h"

struct rf_node {
  uv_loop_t *loop;
  const rf_config *cfg;
  uint64_t id;
  raft *core;
  rf_storage *storage;
  rf_transport *transport;
  rf_api *api;
  rf_sm *sm;            /* the replicated state machine */
  rf_snaps *snaps;      /* snapshots: taking, streaming, installing */
  char data_dir[4096];  /* "" for memory storage */
  uv_timer_t tick;
  uv_idle_t flusher;    /* runs flush() on the next loop iteration */
  raft_ready rd;        /* the ready being saved */
  int saving;           /* rd is in flight */
  int in_flush;         /* flush() is on the stack */
  int closing;
  int pending;          /* handles and services still to close */
  void (*stop_done)(void *);
  void *stop_ud;
  raft_role last_role;  /* for "became leader" / "lost leadership" lines */
  uint64_t last_leader;
  uint64_t last_term;
  uint64_t applied;     /* last entry applied to the state machine */
  int storage_error;    /* a save failed: this node no longer takes part */
};

static void flush(rf_node *n);

#define READIES_PER_TURN 8

static void on_flusher(uv_idle_t *h) {
  uv_idle_stop(h);
  flush(h->data);
}

/* An active idle handle also makes the next poll return at once. */
static void schedule(rf_node *n) {
  if (!n->closing) uv_idle_start(&n->flusher, on_flusher);
}

/* ------------------------------------------------------------ ready */

static void report_changes(rf_node *n) {
  raft_role role;
  if (n->closing) return;
  role = raft_role_of(n->core);
  uint64_t term = raft_term(n->core), leader = raft_leader(n->core);
  if (role != n->last_role) {
    if (role == RAFT_LEADER)
      rf_log(RF_INFO, "became leader in term %llu", (unsigned long long)term);
    else if (n->last_role == RAFT_LEADER)
      rf_log(RF_INFO, "lost leadership in term %llu, now %s",
             (unsigned long long)term, raft_role_name(role));
    else
      rf_log(RF_DEBUG, "now %s in term %llu", raft_role_name(role),
             (unsigned long long)term);
  }
  if (leader != n->last_leader && leader != RAFT_NONE && leader != n->id)
    rf_log(RF_INFO, "following leader %llu in term %llu",
           (unsigned long long)leader, (unsigned long long)term);
  if (role != n->last_role || leader != n->last_leader)
    rf_api_leader_changed(n->api);
  n->last_role = role;
  n->last_leader = leader;
  n->last_term = term;
}

static void send_all(rf_node *n, const raft_ready *rd) {
  for (size_t i = 0; i < rd->n_msgs; i++) {
    int rc;
    if (rd->msgs[i].type == RAFT_MSG_SNAPSHOT) {
      rf_snaps_send(n->snaps, &rd->msgs[i]); /* streamed in chunks */
      continue;
    }
    rc = rf_transport_send(n->transport, &rd->msgs[i]);
    if (rc < 0 && rf_log_enabled(RF_DEBUG))
      rf_log(RF_DEBUG, "drop %s to %llu: %s",
             raft_msg_type_name(rd->msgs[i].type),
             (unsigned long long)rd->msgs[i].to, rf_transport_strerror(rc));
  }
}

/* Run a committed entry through the state machine, then tell the API,
** which answers whoever waits for that index. */
static void apply(rf_node *n, const raft_entry *e) {
  rf_buf res;
  int rc = 0;
  rf_buf_init(&res);
  if (e->type == RAFT_ENTRY_NORMAL)
    rc = rf_sm_apply(n->sm, e->index, e->data, e->len, &res);
  n->applied = e->index;
  rf_api_applied(n->api, e, rc, res.p ? res.p : "", res.n);
  rf_buf_free(&res);
  rf_snaps_applied(n->snaps, e);
}

/* A save failed: nothing of the batch may leave (its promises are not
** durable) and the core cannot be told to forget what it handed out, so
** the node stops taking part in Raft -- it stops ticking and talking to
** peers, which elect another leader -- and reports it in /status. */
static void storage_failed(rf_node *n, int status) {
  if (n->closing || n->storage_error) return;
  n->storage_error = status;
  rf_log(RF_ERROR, "storage: save failed: %s; this node stops taking part "
         "in the cluster (restart it once the disk is fixed)",
         uv_strerror(status));
  uv_timer_stop(&n->tick);
  rf_api_leader_changed(n->api);
}

static void release(rf_node *n);

static void on_saved(void *ud, int status) {
  rf_node *n = ud;
  if (n->closing) { /* stopping: the API may be gone; just let go */
    raft_advance(n->core);
    n->saving = 0;
    release(n);
    return;
  }
  if (status < 0) {
    n->saving = 0; /* its batch stays unacknowledged in the core for good */
    storage_failed(n, status);
    return; /* rd stays outstanding: flush() runs no more */
  } else {
    send_all(n, &n->rd);
    for (size_t i = 0; i < n->rd.n_committed; i++)
      apply(n, &n->rd.committed[i]);
    for (size_t i = 0; i < n->rd.n_reads; i++)
      rf_api_read_ready(n->api, &n->rd.reads[i]);
  }
  raft_advance(n->core);
  n->saving = 0;
  report_changes(n);
  if (!n->in_flush) schedule(n);
}

/* The core adopted a snapshot: load it into the state machine, and make
** the storage forget the log it replaces (queued before this ready's save). */
static int adopt_snapshot(rf_node *n) {
  int rc = rf_snaps_install(n->snaps, n->rd.snap_index, n->rd.snap_term);
  if (rc < 0) {
    storage_failed(n, UV_EIO);
    return rc;
  }
  n->applied = n->rd.snap_index;
  rf_node_compact_storage(n, n->rd.snap_index, n->rd.snap_term);
  rf_api_snapshot_installed(n->api, n->rd.snap_index);
  return 0;
}

static void flush(rf_node *n) {
  int turns = 0;
  n->in_flush = 1;
  while (!n->saving && !n->closing && !n->storage_error &&
         raft_has_ready(n->core)) {
    if (++turns > READIES_PER_TURN) { /* let the loop breathe */
      schedule(n);
      break;
    }
    const raft_hard_state *hs;
    int rc;
    raft_ready_get(n->core, &n->rd);
    if (n->rd.snap_index && adopt_snapshot(n) < 0) break;
    hs = n->rd.hs_changed ? &n->rd.hs : NULL;
    n->saving = 1;
    rc = n->storage->ops->save(n->storage, hs, n->rd.entries,
                               n->rd.n_entries, on_saved, n);
    if (rc < 0) on_saved(n, rc);
  }
  n->in_flush = 0;
  report_changes(n);
}

/* ------------------------------------------------------------ inputs */

static void on_tick(uv_timer_t *t) {
  rf_node *n = t->data;
  raft_tick(n->core);
  rf_snaps_tick(n->snaps);
  schedule(n);
}

static void on_peer_msg(void *ud, const raft_msg *m) {
  rf_node *n = ud;
  int rc;
  if (n->storage_error) return;
  if (m->type == RAFT_MSG_SNAPSHOT || m->type == RAFT_MSG_SNAPSHOT_RESP) {
    rf_snaps_recv(n->snaps, m); /* chunks travel between runtimes */
    schedule(n);
    return;
  }
  rc = raft_step(n->core, m);
  if (rc < 0)
    rf_log(RF_WARN, "rejected %s from %llu: %s", raft_msg_type_name(m->type),
           (unsigned long long)m->from, raft_strerror(rc));
  schedule(n);
}

static void on_peer_state(void *ud, uint64_t peer, int connected) {
  rf_node *n = ud; /* the transport already logged it with the reason */
  if (!connected) rf_snaps_peer_down(n->snaps, peer);
  rf_log(RF_DEBUG, "peer %llu %s", (unsigned long long)peer,
         connected ? "up" : "down");
}

static void on_transport_log(void *ud, int level, const char *msg) {
  (void)ud;
  rf_log(level, "peer: %s", msg);
}

/* ------------------------------------------------------------ public */

void rf_node_kick(rf_node *n) { schedule(n); }
raft *rf_node_core(rf_node *n) { return n->core; }
const rf_config *rf_node_config(rf_node *n) { return n->cfg; }
uint64_t rf_node_id(rf_node *n) { return n->id; }
uint64_t rf_node_applied(rf_node *n) { return n->applied; }
rf_sm *rf_node_sm(rf_node *n) { return n->sm; }
int rf_node_failed(rf_node *n) { return n->storage_error != 0; }

int rf_node_send(rf_node *n, const raft_msg *m) {
  if (n->closing) return UV_ECANCELED; /* the transport may be gone */
  return rf_transport_send(n->transport, m);
}

void rf_node_step(rf_node *n, const raft_msg *m) {
  int rc;
  if (n->closing) return;
  rc = raft_step(n->core, m);
  if (rc < 0)
    rf_log(RF_WARN, "core refused %s: %s", raft_msg_type_name(m->type),
           raft_strerror(rc));
  schedule(n);
}

static void on_compacted(void *ud, int status) {
  rf_node *n = ud;
  if (status < 0 && status != UV_ECANCELED) storage_failed(n, status);
}

void rf_node_compact_storage(rf_node *n, uint64_t index, uint64_t term) {
  if (!rf_storage_is_wal(n->storage)) return;
  if (rf_wal_compact(n->storage, index, term, on_compacted, n) < 0)
    rf_log(RF_WARN, "wal: cannot compact to %llu", (unsigned long long)index);
}

static const char *role_json(raft_role r) { return raft_role_name(r); }

void rf_node_status_json(rf_node *n, rf_buf *b) {
  raft_status st;
  const rf_node_conf *lc;
  raft_status_get(n->core, &st);
  lc = st.leader ? rf_config_node(n->cfg, st.leader) : NULL;
  rf_buf_printf(b, "{\"id\":%llu,\"cluster\":", (unsigned long long)st.id);
  rf_buf_json_str(b, n->cfg->cluster, strlen(n->cfg->cluster));
  rf_buf_printf(b, ",\"role\":\"%s\",\"term\":%llu,\"vote\":", role_json(st.role),
                (unsigned long long)st.term);
  if (st.vote) rf_buf_printf(b, "%llu", (unsigned long long)st.vote);
  else rf_buf_str(b, "null");
  rf_buf_str(b, ",\"leader\":");
  if (lc) rf_buf_printf(b, "%llu,\"leader_http\":\"%s:%d\"",
                        (unsigned long long)st.leader, lc->http_host, lc->http_port);
  else rf_buf_str(b, "null,\"leader_http\":null");
  rf_buf_printf(b, ",\"commit\":%llu,\"applied\":%llu,\"last_index\":%llu,"
                "\"last_term\":%llu,\"first_index\":%llu,\"storage\":",
                (unsigned long long)st.commit,
                (unsigned long long)n->applied,
                (unsigned long long)st.last_index,
                (unsigned long long)st.last_term,
                (unsigned long long)st.first_index);
  rf_buf_json_str(b, n->storage->ops->name, strlen(n->storage->ops->name));
  rf_snaps_status_json(n->snaps, b);
  if (n->storage_error) {
    rf_buf_str(b, ",\"storage_error\":");
    rf_buf_json_str(b, uv_strerror(n->storage_error),
                    strlen(uv_strerror(n->storage_error)));
  }
  rf_buf_str(b, ",\"peers\":[");
  for (size_t i = 0, k = 0; i < st.n_peers; i++) {
    const raft_peer_status *p = &st.peers[i];
    if (p->id == n->id) continue;
    rf_buf_printf(b, "%s{\"id\":%llu,\"connected\":%s", k++ ? "," : "",
                  (unsigned long long)p->id,
                  rf_transport_connected(n->transport, p->id) ? "true" : "false");
    if (st.role == RAFT_LEADER)
      rf_buf_printf(b, ",\"match\":%llu,\"next\":%llu,\"state\":\"%s\"",
                    (unsigned long long)p->match, (unsigned long long)p->next,
                    p->state == RAFT_PR_REPLICATE ? "replicate" : "probe");
    rf_buf_str(b, "}");
  }
  rf_buf_str(b, "]}");
}

/* What the node restores: the latest snapshot into the state machine, then
** the log after the WAL's own snapshot point.  A crash can leave a snapshot
** that the WAL never learned about (a follower that was installing one):
** then the snapshot wins and the WAL is reset to it. */
static int load_state(rf_node *n, raft_restore *rs) {
  rf_snap_meta m = {0, 0, 0, 0};
  rf_wal_info wi;
  char err[512];
  uint64_t last;
  int rc;
  memset(rs, 0, sizeof(*rs));
  rc = rf_snaps_restore(n->snaps, &m, err, sizeof(err));
  if (rc < 0 && rc != RF_SNAP_ENONE) {
    rf_log(RF_ERROR, "snapshot: %s", err);
    return RF_NODE_ESTORAGE;
  }
  if ((rc = n->storage->ops->load(n->storage, &rs->hs, &rs->log, &rs->n)) < 0)
    return rc;
  rf_wal_info_get(n->storage, &wi);
  rs->snap_index = wi.snap_index;
  rs->snap_term = wi.snap_term;
  rs->applied = m.index > wi.snap_index ? m.index : wi.snap_index;
  last = rs->snap_index + rs->n;
  if (m.index < wi.snap_index) {
    rf_log(RF_ERROR, "storage: the log starts after %llu but the latest "
           "snapshot is %llu: entries are missing", (unsigned long long)
           wi.snap_index, (unsigned long long)m.index);
    return RF_NODE_ESTORAGE;
  }
  if (m.index > last ||
      (m.index > rs->snap_index && rs->log[m.index - rs->snap_index - 1].term != m.term)) {
    rs->snap_index = m.index;
    rs->snap_term = m.term;
    rs->log = NULL;
    rs->n = 0;
    rf_node_compact_storage(n, m.index, m.term);
  }
  return 0;
}

static int start_core(rf_node *n) {
  uint64_t voters[RAFT_MAX_NODES];
  raft_config rc;
  raft_restore rs;
  int err = 0;
  if (n->cfg->n_nodes > RAFT_MAX_NODES) return RAFT_EINVAL;
  for (size_t i = 0; i < n->cfg->n_nodes; i++) voters[i] = n->cfg->nodes[i].id;
  raft_config_default(&rc);
  rc.id = n->id;
  rc.voters = voters;
  rc.n_voters = n->cfg->n_nodes;
  rc.election_ticks = n->cfg->election_ticks;
  rc.heartbeat_ticks = n->cfg->heartbeat_ticks;
  rc.pre_vote = n->cfg->pre_vote;
  rc.check_quorum = n->cfg->check_quorum;
  rc.max_msg_bytes = n->cfg->max_msg_bytes;
  rc.max_inflight = n->cfg->max_inflight;
  rc.seed = (uint64_t)uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32);
  if ((err = load_state(n, &rs)) < 0) return err;
  n->applied = rs.applied;
  n->core = raft_new_restore(&rc, &rs, &err);
  return n->core ? 0 : err;
}

static void on_script_print(void *ud, const char *msg, size_t len) {
  (void)ud;
  rf_log(RF_INFO, "script: %.*s", (int)(len > 512 ? 512 : len), msg);
}

static void on_wal_log(void *ud, int level, const char *msg) {
  (void)ud;
  rf_log(level, "wal: %s", msg);
}

/* The config's storage: "memory", or a WAL directory with %d -> node id. */
static int open_storage(rf_node *n) {
  const char *spec = n->cfg->storage;
  char dir[4096], err[1024];
  rf_wal_opts o;
  size_t k = 0;
  if (strcmp(spec, "memory") == 0) {
    n->storage = rf_storage_memory();
    return n->storage ? 0 : RAFT_ENOMEM;
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
  o.sync = n->cfg->wal_sync_none ? RF_WAL_SYNC_NONE : RF_WAL_SYNC_ALWAYS;
  o.segment_bytes = n->cfg->wal_segment_bytes;
  o.max_batch_bytes = n->cfg->wal_batch_bytes;
  n->storage = rf_storage_wal(n->loop, dir, &o, err, sizeof(err));
  if (n->storage != NULL) return 0;
  rf_log(RF_ERROR, "storage: %s", err);
  return RF_NODE_ESTORAGE;
}

static int start_sm(rf_node *n) {
  rf_sm_opts o;
  char err[512];
  memset(&o, 0, sizeof(o));
  o.commands = n->cfg->commands;
  o.budget = n->cfg->sm_instructions;
  o.memory = n->cfg->sm_memory_bytes;
  o.log = on_script_print;
  n->sm = rf_sm_new(&o, err, sizeof(err));
  if (n->sm != NULL) return 0;
  rf_log(RF_ERROR, "%s", err);
  return RF_NODE_ESCRIPT;
}

static int start_transport(rf_node *n) {
  rf_peer_addr peers[RAFT_MAX_NODES];
  rf_transport_config tc;
  const rf_node_conf *self = rf_config_node(n->cfg, n->id);
  size_t np = 0;
  for (size_t i = 0; i < n->cfg->n_nodes; i++) {
    const rf_node_conf *c = &n->cfg->nodes[i];
    if (c->id == n->id) continue;
    peers[np].id = c->id;
    peers[np].host = c->peer_host;
    peers[np].port = c->peer_port;
    np++;
  }
  memset(&tc, 0, sizeof(tc));
  tc.cluster = n->cfg->cluster;
  tc.self = n->id;
  tc.listen_host = self->peer_host;
  tc.listen_port = self->peer_port;
  tc.peers = peers;
  tc.n_peers = np;
  tc.max_frame_bytes = n->cfg->max_frame_bytes;
  tc.send_queue_bytes = n->cfg->send_queue_bytes;
  tc.backoff_min_ms = 20;
  tc.backoff_max_ms = 1000;
  tc.seed = (uint64_t)uv_hrtime() ^ n->id;
  tc.ud = n;
  tc.recv = on_peer_msg;
  tc.peer_state = on_peer_state;
  tc.log = on_transport_log;
  return rf_transport_start(n->loop, &tc, &n->transport);
}

int rf_node_start(uv_loop_t *loop, const rf_config *cfg, uint64_t id,
                  rf_node **out) {
  rf_node *n;
  int rc;
  char errbuf[512];
  const rf_node_conf *self = rf_config_node(cfg, id);
  *out = NULL;
  if (self == NULL) return RAFT_EINVAL;
  n = calloc(1, sizeof(*n));
  if (n == NULL) return RAFT_ENOMEM;
  n->loop = loop;
  n->cfg = cfg;
  n->id = id;
  if ((rc = open_storage(n)) < 0) {
    free(n);
    return rc;
  }
  if ((rc = start_sm(n)) < 0) goto fail;
  if ((rc = rf_snaps_open(n, loop, n->data_dir[0] ? n->data_dir : NULL,
                          &n->snaps, errbuf, sizeof(errbuf))) < 0) {
    rf_log(RF_ERROR, "snapshot: %s", errbuf);
    rc = RF_NODE_ESTORAGE;
    goto fail;
  }
  if ((rc = start_core(n)) < 0) {
    rf_log(RF_ERROR, "cannot start the Raft core: %s", raft_strerror(rc));
    goto fail;
  }
  if ((rc = start_transport(n)) < 0) {
    rf_log(RF_ERROR, "cannot listen for peers on %s:%d: %s", self->peer_host,
           self->peer_port, uv_strerror(rc));
    goto fail;
  }
  if ((rc = rf_api_start(n, loop, &n->api)) < 0) {
    rf_log(RF_ERROR, "cannot listen for HTTP on %s:%d: %s", self->http_host,
           self->http_port, uv_strerror(rc));
    rf_transport_close(n->transport, NULL, NULL);
    n->transport = NULL;
    goto fail;
  }
  uv_idle_init(loop, &n->flusher);
  n->flusher.data = n;
  uv_timer_init(loop, &n->tick);
  n->tick.data = n;
  uv_timer_start(&n->tick, on_tick, (uint64_t)cfg->tick_ms, (uint64_t)cfg->tick_ms);
  rf_log(RF_INFO, "node %llu of cluster '%s': peers on %s:%d, http on %s:%d, "
         "storage %s", (unsigned long long)id, cfg->cluster, self->peer_host,
         self->peer_port, self->http_host, self->http_port,
         n->storage->ops->name);
  *out = n;
  return 0;
fail:
  raft_free(n->core);
  if (n->snaps) rf_snaps_close(n->snaps, NULL, NULL);
  rf_sm_free(n->sm);
  n->storage->ops->close(n->storage);
  free(n);
  return rc;
}

/* ------------------------------------------------------------ stop */

static void release(rf_node *n) {
  if (--n->pending > 0) return;
  raft_free(n->core);
  rf_sm_free(n->sm);
  n->storage->ops->close(n->storage);
  if (n->stop_done) n->stop_done(n->stop_ud);
  free(n);
}

static void on_part_closed(void *ud) { release(ud); }
static void on_tick_closed(uv_handle_t *h) { release(h->data); }

void rf_node_stop(rf_node *n, void (*done)(void *ud), void *ud) {
  if (n->closing) return;
  n->closing = 1;
  n->stop_done = done;
  n->stop_ud = ud;
  n->pending = 5 + n->saving; /* an in-flight save must call back first */
  uv_close((uv_handle_t *)&n->tick, on_tick_closed);
  uv_close((uv_handle_t *)&n->flusher, on_tick_closed);
  rf_snaps_close(n->snaps, on_part_closed, n);
  if (rf_transport_close(n->transport, on_part_closed, n) < 0) release(n);
  rf_api_stop(n->api, on_part_closed, n);
}
