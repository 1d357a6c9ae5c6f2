/*
** metrics_page.c -- the Prometheus page of GET /metrics (see metrics_page.h).
**
** Gauges the node already tracks are read here, once per scrape, instead of
** being copied on every change: the hot path pays nothing for them.
*/
#include <stdio.h>

#include "http/metrics_page.h"
#include "rafting/metrics.h"

static const char *msg_name(int type) {
  return raft_msg_type_name((raft_msg_type)type);
}

static void gauge(rf_buf *b, const char *name, const char *help, uint64_t v) {
  rf_metrics_family(b, name, "gauge", help);
  rf_metrics_sample(b, name, "", v);
}

static void write_roles(rf_buf *b, raft_role role) {
  static const raft_role roles[] = {RAFT_FOLLOWER, RAFT_PRECANDIDATE,
                                    RAFT_CANDIDATE, RAFT_LEADER};
  char labels[48];
  rf_metrics_family(b, "rafting_raft_role", "gauge",
                    "1 for this node's current role, 0 for the others.");
  for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
    snprintf(labels, sizeof(labels), "role=\"%s\"", raft_role_name(roles[i]));
    rf_metrics_sample(b, "rafting_raft_role", labels, roles[i] == role);
  }
}

/* The leader's view of each follower's log; absent on other roles. */
static void write_match(rf_buf *b, const raft_status *st) {
  char labels[48];
  rf_metrics_family(b, "rafting_peer_match_index", "gauge",
                    "Highest log index known replicated on the peer "
                    "(leader only).");
  if (st->role != RAFT_LEADER) return;
  for (size_t i = 0; i < st->n_peers; i++) {
    if (st->peers[i].id == st->id) continue;
    snprintf(labels, sizeof(labels), "peer=\"%llu\"",
             (unsigned long long)st->peers[i].id);
    rf_metrics_sample(b, "rafting_peer_match_index", labels,
                      st->peers[i].match);
  }
}

void rf_metrics_page(const rf_driver *drv, const rf_http_server *http,
                     rf_buf *b) {
  raft_status st;
  rf_driver_status(drv, &st);
  gauge(b, "rafting_raft_term", "The node's current term.", st.term);
  gauge(b, "rafting_raft_commit_index", "Highest log index known committed.",
        st.commit);
  gauge(b, "rafting_raft_applied_index",
        "Highest log index handed to the state machine.", st.applied);
  write_roles(b, st.role);
  write_match(b, &st);
  gauge(b, "rafting_http_connections", "Open HTTP client connections.",
        (uint64_t)rf_http_connections(http));
  rf_metrics_write(b, msg_name);
}
