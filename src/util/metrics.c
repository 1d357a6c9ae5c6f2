/*
** metrics.c -- process-wide Prometheus metrics (see rafting/metrics.h).
**
** Updates are relaxed atomic adds: the WAL's worker thread observes fsyncs
** while the loop thread scrapes.  A scrape reads each field once, so a page
** may show a histogram's _sum a little ahead of its buckets; Prometheus
** tolerates that, and nothing here ever blocks the hot path for it.
*/
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "rafting/metrics.h"

rf_metrics rf_metrics_g;

const double rf_histo_le[RF_HISTO_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10};

/* The bounds in nanoseconds, for observing without floating point. */
static const uint64_t le_ns[RF_HISTO_BUCKETS] = {
    100000,    250000,    500000,     1000000,    2500000,   5000000,
    10000000,  25000000,  50000000,   100000000,  250000000, 500000000,
    1000000000, 2500000000u, 5000000000u, 10000000000u};

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

uint64_t rf_metrics_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void rf_histo_observe(rf_histo *h, uint64_t ns) {
  int i = 0;
  while (i < RF_HISTO_BUCKETS && ns > le_ns[i]) i++;
  __atomic_fetch_add(&h->n[i], 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&h->sum_ns, ns, __ATOMIC_RELAXED);
}

void rf_histo_since(rf_histo *h, uint64_t t0) {
  uint64_t t = rf_metrics_now();
  rf_histo_observe(h, t > t0 ? t - t0 : 0);
}

/* ------------------------------------------------------------ raft */

void rf_metrics_raft_state(int role, uint64_t term, uint64_t leader) {
  rf_metrics *m = &rf_metrics_g;
  if (leader != RAFT_NONE &&
      (leader != m->last_leader || term != m->last_leader_term)) {
    RF_METRIC_INC(leader_changes);
    m->last_leader_term = term;
  }
  if ((role == RAFT_CANDIDATE &&
       (m->last_role != RAFT_CANDIDATE || term != m->last_term)) ||
      (role == RAFT_LEADER && term != m->last_term &&
       m->last_role != RAFT_CANDIDATE))
    RF_METRIC_INC(elections);
  m->last_leader = leader;
  m->last_role = role;
  m->last_term = term;
}

/* ------------------------------------------------------------ peers */

/* Slots are only claimed on the loop thread, so the scan needs no lock. */
static rf_metrics_peer *peer_slot(uint64_t id) {
  rf_metrics_peer *free_slot = NULL;
  if (id == 0) return NULL;
  for (size_t i = 0; i < RAFT_MAX_NODES; i++) {
    rf_metrics_peer *p = &rf_metrics_g.peers[i];
    if (p->id == id) return p;
    if (p->id == 0 && free_slot == NULL) free_slot = p;
  }
  if (free_slot) free_slot->id = id;
  return free_slot;
}

void rf_metrics_peer_msg(uint64_t peer, int type, int sent) {
  rf_metrics_peer *p = peer_slot(peer);
  if (p == NULL || type < 0 || type >= RF_MSG_TYPES) return;
  __atomic_fetch_add(sent ? &p->sent[type] : &p->received[type], 1,
                     __ATOMIC_RELAXED);
}

void rf_metrics_peer_connected(uint64_t peer, int connected) {
  rf_metrics_peer *p = peer_slot(peer);
  if (p) __atomic_store_n(&p->connected, connected ? 1u : 0u, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ HTTP */

static const char *const route_names[RF_ROUTES] = {
    "/kv/{key}", "/kv", "/cmd/{name}", "/query/{name}",
    "/status",   "/health", "/metrics", "/watch", "other"};

static int is(const char *path, size_t len, const char *p, int prefix) {
  size_t n = strlen(p);
  return prefix ? len >= n && memcmp(path, p, n) == 0
                : len == n && memcmp(path, p, n) == 0;
}

int rf_metrics_route(const char *path, size_t len) {
  if (is(path, len, "/kv/", 1)) return RF_ROUTE_KV;
  if (is(path, len, "/kv", 0)) return RF_ROUTE_KV_RANGE;
  if (is(path, len, "/cmd/", 1)) return RF_ROUTE_CMD;
  if (is(path, len, "/query/", 1)) return RF_ROUTE_QUERY;
  if (is(path, len, "/status", 0)) return RF_ROUTE_STATUS;
  if (is(path, len, "/health", 0)) return RF_ROUTE_HEALTH;
  if (is(path, len, "/metrics", 0)) return RF_ROUTE_METRICS;
  if (is(path, len, "/watch", 0)) return RF_ROUTE_WATCH;
  return RF_ROUTE_OTHER;
}

const char *rf_metrics_route_name(int route) {
  return route >= 0 && route < RF_ROUTES ? route_names[route] : "other";
}

void rf_metrics_http(const char *path, size_t len, int status, uint64_t t0) {
  int r = rf_metrics_route(path, len);
  if (status >= 100 && status < 100 + RF_CODES)
    RF_METRIC_INC(http[r][status - 100]);
  rf_histo_since(&rf_metrics_g.http_duration[r], t0);
}

void rf_metrics_reset(void) { memset(&rf_metrics_g, 0, sizeof(rf_metrics_g)); }

/* ------------------------------------------------------------ text format */

void rf_metrics_family(rf_buf *b, const char *name, const char *type,
                       const char *help) {
  rf_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void rf_metrics_sample(rf_buf *b, const char *name, const char *labels,
                       uint64_t v) {
  if (labels[0]) rf_buf_printf(b, "%s{%s} %llu\n", name, labels,
                               (unsigned long long)v);
  else rf_buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

void rf_metrics_histo(rf_buf *b, const char *name, const char *labels,
                      const rf_histo *h) {
  const char *sep = labels[0] ? "," : "";
  uint64_t cum = 0;
  for (int i = 0; i <= RF_HISTO_BUCKETS; i++) {
    cum += LOAD(h->n[i]);
    if (i < RF_HISTO_BUCKETS)
      rf_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                    rf_histo_le[i], (unsigned long long)cum);
    else
      rf_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                    (unsigned long long)cum);
  }
  if (labels[0]) {
    rf_buf_printf(b, "%s_sum{%s} %.9f\n", name, labels,
                  (double)LOAD(h->sum_ns) / 1e9);
    rf_buf_printf(b, "%s_count{%s} %llu\n", name, labels,
                  (unsigned long long)cum);
  } else {
    rf_buf_printf(b, "%s_sum %.9f\n", name, (double)LOAD(h->sum_ns) / 1e9);
    rf_buf_printf(b, "%s_count %llu\n", name, (unsigned long long)cum);
  }
}

static void counter(rf_buf *b, const char *name, const char *help,
                    uint64_t v) {
  rf_metrics_family(b, name, "counter", help);
  rf_metrics_sample(b, name, "", v);
}

static void histo(rf_buf *b, const char *name, const char *help,
                  const rf_histo *h) {
  rf_metrics_family(b, name, "histogram", help);
  rf_metrics_histo(b, name, "", h);
}

static void write_raft(rf_buf *b) {
  rf_metrics *m = &rf_metrics_g;
  counter(b, "rafting_raft_leader_changes_total",
          "Times this node saw a new leader (a new leader or a new term).",
          LOAD(m->leader_changes));
  counter(b, "rafting_raft_elections_total",
          "Elections this node started as a candidate (not pre-votes).",
          LOAD(m->elections));
  counter(b, "rafting_raft_proposals_total",
          "Writes proposed to the Raft core on this node (as leader).",
          LOAD(m->proposals));
  counter(b, "rafting_raft_proposals_failed_total",
          "Proposals refused, or not committed and applied (timeout, lost "
          "leadership, storage failure).", LOAD(m->proposals_failed));
  histo(b, "rafting_raft_read_index_seconds",
        "Time from a linearizable read's start to the state machine being "
        "readable (ReadIndex round plus apply).", &m->read_index);
}

/* One family over every peer seen so far and every message type (zeros
** included: a counter that appears late would hide its first increase). */
static void write_peer_msgs(rf_buf *b, const char *name, const char *help,
                            int sent, const char *(*msg_name)(int)) {
  char labels[96];
  rf_metrics_family(b, name, "counter", help);
  for (size_t i = 0; i < RAFT_MAX_NODES; i++) {
    const rf_metrics_peer *p = &rf_metrics_g.peers[i];
    if (p->id == 0) continue;
    for (int t = 1; t < RF_MSG_TYPES; t++) {
      uint64_t v = sent ? LOAD(p->sent[t]) : LOAD(p->received[t]);
      snprintf(labels, sizeof(labels), "peer=\"%llu\",type=\"%s\"",
               (unsigned long long)p->id, msg_name(t));
      rf_metrics_sample(b, name, labels, v);
    }
  }
}

static void write_peers(rf_buf *b, const char *(*msg_name)(int)) {
  char labels[48];
  write_peer_msgs(b, "rafting_peer_messages_sent_total",
                  "Raft messages handed to the transport, per peer and type.",
                  1, msg_name);
  write_peer_msgs(b, "rafting_peer_messages_received_total",
                  "Raft messages received, per peer and type.", 0, msg_name);
  rf_metrics_family(b, "rafting_peer_connected", "gauge",
                    "1 while the peer connection is up.");
  for (size_t i = 0; i < RAFT_MAX_NODES; i++) {
    const rf_metrics_peer *p = &rf_metrics_g.peers[i];
    if (p->id == 0) continue;
    snprintf(labels, sizeof(labels), "peer=\"%llu\"", (unsigned long long)p->id);
    rf_metrics_sample(b, "rafting_peer_connected", labels, LOAD(p->connected));
  }
}

static void write_storage(rf_buf *b) {
  rf_metrics *m = &rf_metrics_g;
  histo(b, "rafting_wal_fsync_duration_seconds",
        "Duration of each WAL fdatasync.", &m->wal_fsync);
  counter(b, "rafting_wal_bytes_written_total",
          "Bytes written to WAL segments.", LOAD(m->wal_bytes));
  rf_metrics_family(b, "rafting_wal_segments", "gauge",
                    "WAL segment files on disk.");
  rf_metrics_sample(b, "rafting_wal_segments", "", LOAD(m->wal_segments));
  histo(b, "rafting_snapshot_duration_seconds",
        "Time to take a snapshot: serialize, write, sync, rename.",
        &m->snapshot);
  rf_metrics_family(b, "rafting_snapshot_bytes", "gauge",
                    "Size of the latest snapshot this node took.");
  rf_metrics_sample(b, "rafting_snapshot_bytes", "", LOAD(m->snapshot_bytes));
}

static void write_http(rf_buf *b) {
  char labels[80];
  rf_metrics_family(b, "rafting_http_requests_total", "counter",
                    "HTTP requests answered, per route and status code.");
  for (int r = 0; r < RF_ROUTES; r++)
    for (int c = 0; c < RF_CODES; c++) {
      uint64_t v = LOAD(rf_metrics_g.http[r][c]);
      if (v == 0) continue;
      snprintf(labels, sizeof(labels), "route=\"%s\",code=\"%d\"",
               route_names[r], c + 100);
      rf_metrics_sample(b, "rafting_http_requests_total", labels, v);
    }
  rf_metrics_family(b, "rafting_http_request_duration_seconds", "histogram",
                    "Time from a request's arrival to its answer, per route.");
  for (int r = 0; r < RF_ROUTES; r++) {
    snprintf(labels, sizeof(labels), "route=\"%s\"", route_names[r]);
    rf_metrics_histo(b, "rafting_http_request_duration_seconds", labels,
                     &rf_metrics_g.http_duration[r]);
  }
}

static void write_sm(rf_buf *b) {
  rf_metrics *m = &rf_metrics_g;
  histo(b, "rafting_sm_command_duration_seconds",
        "Time to apply one committed command in the Lua state machine.",
        &m->sm_command);
  rf_metrics_family(b, "rafting_sm_budget_exceeded_total", "counter",
                    "Commands stopped by their instruction budget or memory "
                    "cap.");
  rf_metrics_sample(b, "rafting_sm_budget_exceeded_total",
                    "limit=\"instructions\"", LOAD(m->sm_budget_instructions));
  rf_metrics_sample(b, "rafting_sm_budget_exceeded_total", "limit=\"memory\"",
                    LOAD(m->sm_budget_memory));
}

static void write_loop(rf_buf *b) {
  rf_metrics *m = &rf_metrics_g;
  histo(b, "rafting_loop_busy_seconds",
        "Time each event loop turn spent running callbacks (not waiting).",
        &m->loop_busy);
  counter(b, "rafting_loop_held_total",
          "Event loop turns busy for limits.loop_warn_ms or longer.",
          LOAD(m->loop_held));
}

void rf_metrics_write(rf_buf *b, const char *(*msg_name)(int type)) {
  write_raft(b);
  write_peers(b, msg_name);
  write_storage(b);
  write_http(b);
  write_sm(b);
  write_loop(b);
}
