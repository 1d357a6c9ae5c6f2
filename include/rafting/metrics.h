/*
** metrics.h -- the node's Prometheus metrics: counters, gauges and
** fixed-bucket histograms, and helpers that write the text format 0.0.4.
**
** Process-wide: one node runs per process, so the counters live in one
** static struct (rf_metrics) that every layer bumps without a pointer to
** the node.  Nothing here allocates; an update is a relaxed atomic add to a
** field (the WAL updates from its libuv worker thread, everything else from
** the loop).  Gauges that the node already knows (term, commit, role, peer
** match indexes, open connections) are not kept here: the page writer
** (src/http/metrics_page.c) reads them when /metrics is scraped.
**
** Memory: all static; the writers append to a caller's rf_buf.
*/
#ifndef RAFTING_METRICS_H
#define RAFTING_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "rafting/buf.h"
#include "rafting/raft.h"

/* Upper bounds (seconds) shared by every histogram: 100 us .. 10 s. */
#define RF_HISTO_BUCKETS 16
extern const double rf_histo_le[RF_HISTO_BUCKETS];

typedef struct rf_histo {
  uint64_t n[RF_HISTO_BUCKETS + 1]; /* per bucket, not cumulative; last +Inf */
  uint64_t sum_ns;
} rf_histo;

/* Routes of the REST API, the `route` label of the HTTP metrics. */
enum {
  RF_ROUTE_KV, RF_ROUTE_KV_RANGE, RF_ROUTE_CMD, RF_ROUTE_QUERY,
  RF_ROUTE_STATUS, RF_ROUTE_HEALTH, RF_ROUTE_METRICS, RF_ROUTE_WATCH,
  RF_ROUTE_OTHER,
  RF_ROUTES
};
#define RF_CODES 500 /* status codes 100..599 */

#define RF_MSG_TYPES (RAFT_MSG_TYPE_MAX + 1)

typedef struct rf_metrics_peer {
  uint64_t id;                    /* 0: free slot */
  uint64_t connected;             /* gauge: 0 or 1 */
  uint64_t sent[RF_MSG_TYPES], received[RF_MSG_TYPES];
} rf_metrics_peer;

typedef struct rf_metrics {
  uint64_t leader_changes, elections, proposals, proposals_failed;
  rf_histo read_index;
  rf_metrics_peer peers[RAFT_MAX_NODES];
  rf_histo wal_fsync;
  uint64_t wal_bytes, wal_segments; /* wal_segments: gauge */
  rf_histo snapshot;
  uint64_t snapshot_bytes;          /* gauge: the latest snapshot taken */
  uint64_t http[RF_ROUTES][RF_CODES];
  rf_histo http_duration[RF_ROUTES];
  rf_histo sm_command;
  rf_histo loop_busy;               /* each event loop turn (loopwatch.c) */
  uint64_t loop_held;               /* turns at or over loop_warn_ms */
  uint64_t sm_budget_instructions, sm_budget_memory;
  /* rf_metrics_raft_state()'s memory of the last state it saw */
  int last_role;
  uint64_t last_term, last_leader, last_leader_term;
} rf_metrics;

extern rf_metrics rf_metrics_g;

#define RF_METRIC_ADD(field, v) \
  __atomic_fetch_add(&rf_metrics_g.field, (uint64_t)(v), __ATOMIC_RELAXED)
#define RF_METRIC_INC(field) RF_METRIC_ADD(field, 1)
#define RF_METRIC_SET(field, v) \
  __atomic_store_n(&rf_metrics_g.field, (uint64_t)(v), __ATOMIC_RELAXED)

/* A monotonic clock in nanoseconds (for durations to observe). */
uint64_t rf_metrics_now(void);
void rf_histo_observe(rf_histo *h, uint64_t ns);
/* Observe the time since t0 (from rf_metrics_now()). */
void rf_histo_since(rf_histo *h, uint64_t t0);

/* The node's role, term and leader after each driver run: counts leader
** changes (a leader known in a term not seen with one before, or another
** leader) and elections (entering candidacy, or leading in a new term
** without having been seen as a candidate: a one-node cluster). */
void rf_metrics_raft_state(int role, uint64_t term, uint64_t leader);

/* Per-peer counters; a peer gets a slot on first use (none past
** RAFT_MAX_NODES: then it is not counted). */
void rf_metrics_peer_msg(uint64_t peer, int type, int sent);
void rf_metrics_peer_connected(uint64_t peer, int connected);

/* The route a path belongs to, and its label value. */
int rf_metrics_route(const char *path, size_t len);
const char *rf_metrics_route_name(int route);
/* One answered HTTP request: its route from the path, status, duration. */
void rf_metrics_http(const char *path, size_t len, int status, uint64_t t0);

/* Zero every counter (tests). */
void rf_metrics_reset(void);

/* ---- text format ---- */

/* "# HELP name help\n# TYPE name type\n" */
void rf_metrics_family(rf_buf *b, const char *name, const char *type,
                       const char *help);
/* "name{labels} value\n"; labels is "" or `k="v",...` without braces. */
void rf_metrics_sample(rf_buf *b, const char *name, const char *labels,
                       uint64_t v);
/* name_bucket{labels,le=...} for each bound and +Inf, name_sum, name_count. */
void rf_metrics_histo(rf_buf *b, const char *name, const char *labels,
                      const rf_histo *h);
/* Every metric kept in rf_metrics_g, with HELP and TYPE lines;
** msg_name names a raft message type (raft_msg_type_name, from the core). */
void rf_metrics_write(rf_buf *b, const char *(*msg_name)(int type));

#endif
