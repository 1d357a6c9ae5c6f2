/*
** test_metrics.c -- the metrics module (rafting/metrics.h): histogram
** bucket bounds and the cumulative text, routes, the leader-change and
** election counting, per-peer slots, and the families of the full page.
*/
#include <string.h>

#include "check.h"
#include "rafting/metrics.h"

static int has(const rf_buf *b, const char *line) {
  return b->p != NULL && strstr(b->p, line) != NULL;
}

static void test_histogram(void) {
  rf_histo h;
  rf_buf b;
  memset(&h, 0, sizeof(h));
  rf_histo_observe(&h, 100000);      /* exactly 0.0001 s: le is inclusive */
  rf_histo_observe(&h, 100001);      /* just above: the next bucket */
  rf_histo_observe(&h, 3000000000u); /* 3 s */
  rf_histo_observe(&h, 20000000000u); /* 20 s: only +Inf */
  rf_buf_init(&b);
  rf_metrics_histo(&b, "x_seconds", "route=\"/kv\"", &h);
  CHECK(has(&b, "x_seconds_bucket{route=\"/kv\",le=\"0.0001\"} 1\n"));
  CHECK(has(&b, "x_seconds_bucket{route=\"/kv\",le=\"0.00025\"} 2\n"));
  CHECK(has(&b, "x_seconds_bucket{route=\"/kv\",le=\"2.5\"} 2\n"));
  CHECK(has(&b, "x_seconds_bucket{route=\"/kv\",le=\"5\"} 3\n"));
  CHECK(has(&b, "x_seconds_bucket{route=\"/kv\",le=\"10\"} 3\n"));
  CHECK(has(&b, "x_seconds_bucket{route=\"/kv\",le=\"+Inf\"} 4\n"));
  CHECK(has(&b, "x_seconds_sum{route=\"/kv\"} 23.000200001\n"));
  CHECK(has(&b, "x_seconds_count{route=\"/kv\"} 4\n"));
  rf_buf_reset(&b);
  rf_metrics_histo(&b, "y", "", &h);
  CHECK(has(&b, "y_bucket{le=\"+Inf\"} 4\ny_sum 23.000200001\ny_count 4\n"));
  rf_buf_free(&b);
}

static void test_routes(void) {
  CHECK(rf_metrics_route("/kv/a", 5) == RF_ROUTE_KV);
  CHECK(rf_metrics_route("/kv/", 4) == RF_ROUTE_KV);
  CHECK(rf_metrics_route("/kv", 3) == RF_ROUTE_KV_RANGE);
  CHECK(rf_metrics_route("/kvx", 4) == RF_ROUTE_OTHER);
  CHECK(rf_metrics_route("/cmd/incr", 9) == RF_ROUTE_CMD);
  CHECK(rf_metrics_route("/query/q", 8) == RF_ROUTE_QUERY);
  CHECK(rf_metrics_route("/metrics", 8) == RF_ROUTE_METRICS);
  CHECK(rf_metrics_route("/metricsx", 9) == RF_ROUTE_OTHER);
  CHECK(rf_metrics_route("/status", 7) == RF_ROUTE_STATUS);
  CHECK(rf_metrics_route("/watch", 6) == RF_ROUTE_WATCH);
  CHECK(rf_metrics_route("", 0) == RF_ROUTE_OTHER);
  CHECK(strcmp(rf_metrics_route_name(RF_ROUTE_KV), "/kv/{key}") == 0);
  CHECK(strcmp(rf_metrics_route_name(-1), "other") == 0);
  rf_metrics_reset();
  rf_metrics_http("/kv/a", 5, 200, rf_metrics_now());
  rf_metrics_http("/kv/a", 5, 200, rf_metrics_now());
  rf_metrics_http("/nope", 5, 404, rf_metrics_now());
  rf_metrics_http("/nope", 5, 99, rf_metrics_now()); /* no such code */
  CHECK(rf_metrics_g.http[RF_ROUTE_KV][100] == 2);
  CHECK(rf_metrics_g.http[RF_ROUTE_OTHER][304] == 1);
  {
    uint64_t n = 0;
    for (int i = 0; i <= RF_HISTO_BUCKETS; i++)
      n += rf_metrics_g.http_duration[RF_ROUTE_OTHER].n[i];
    CHECK(n == 2); /* both answers timed, whatever their bucket */
  }
}

static void test_raft_state(void) {
  rf_metrics_reset();
  rf_metrics_raft_state(RAFT_FOLLOWER, 1, RAFT_NONE);
  rf_metrics_raft_state(RAFT_FOLLOWER, 1, 2);   /* first leader: 1 */
  rf_metrics_raft_state(RAFT_FOLLOWER, 1, 2);
  rf_metrics_raft_state(RAFT_PRECANDIDATE, 1, RAFT_NONE);
  CHECK(rf_metrics_g.elections == 0);           /* pre-vote is no election */
  rf_metrics_raft_state(RAFT_CANDIDATE, 2, RAFT_NONE);
  rf_metrics_raft_state(RAFT_CANDIDATE, 2, RAFT_NONE);
  rf_metrics_raft_state(RAFT_CANDIDATE, 3, RAFT_NONE); /* split vote, again */
  CHECK(rf_metrics_g.elections == 2);
  rf_metrics_raft_state(RAFT_LEADER, 3, 1);     /* we lead: 2 */
  CHECK(rf_metrics_g.elections == 2);
  rf_metrics_raft_state(RAFT_FOLLOWER, 4, 2);   /* another leader: 3 */
  rf_metrics_raft_state(RAFT_FOLLOWER, 5, 2);   /* same one, new term: 4 */
  CHECK(rf_metrics_g.leader_changes == 4);
  rf_metrics_raft_state(RAFT_LEADER, 6, 1);     /* one node: no candidacy seen */
  CHECK(rf_metrics_g.elections == 3);
  CHECK(rf_metrics_g.leader_changes == 5);
}

static const char *name_of(int t) { return t == RAFT_MSG_APPEND ? "append" : "other"; }

static void test_peers_and_page(void) {
  rf_buf b;
  rf_metrics_reset();
  rf_metrics_peer_msg(7, RAFT_MSG_APPEND, 1);
  rf_metrics_peer_msg(7, RAFT_MSG_APPEND, 1);
  rf_metrics_peer_msg(7, RAFT_MSG_APPEND, 0);
  rf_metrics_peer_msg(0, RAFT_MSG_APPEND, 1);  /* no node 0 */
  rf_metrics_peer_msg(7, 99, 1);               /* no such type */
  rf_metrics_peer_connected(9, 1);
  for (uint64_t id = 100; id < 100 + RAFT_MAX_NODES; id++)
    rf_metrics_peer_connected(id, 1);          /* past the slots: ignored */
  rf_buf_init(&b);
  rf_metrics_write(&b, name_of);
  CHECK(!b.oom);
  CHECK(has(&b, "rafting_peer_messages_sent_total{peer=\"7\",type=\"append\"} 2\n"));
  CHECK(has(&b, "rafting_peer_messages_received_total{peer=\"7\",type=\"append\"} 1\n"));
  CHECK(has(&b, "rafting_peer_connected{peer=\"9\"} 1\n"));
  CHECK(has(&b, "rafting_peer_connected{peer=\"7\"} 0\n"));
  CHECK(!has(&b, "peer=\"0\""));
  CHECK(has(&b, "# HELP rafting_wal_fsync_duration_seconds "));
  CHECK(has(&b, "# TYPE rafting_wal_fsync_duration_seconds histogram\n"));
  CHECK(has(&b, "# TYPE rafting_raft_leader_changes_total counter\n"));
  CHECK(has(&b, "# TYPE rafting_wal_segments gauge\n"));
  CHECK(has(&b, "rafting_sm_budget_exceeded_total{limit=\"memory\"} 0\n"));
  /* a family's TYPE comes once, before its samples */
  CHECK(strstr(b.p, "# TYPE rafting_http_requests_total counter\n") <
        strstr(b.p, "# TYPE rafting_http_request_duration_seconds histogram\n"));
  rf_buf_free(&b);
}

int main(void) {
  test_histogram();
  test_routes();
  test_raft_state();
  test_peers_and_page();
  return check_summary("test_metrics");
}
