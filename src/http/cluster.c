/*
** cluster.c -- GET /cluster and POST /cluster/leader (see cluster.h).
**
** A transfer is asked of the driver (rf_driver_transfer); whether it
** happened shows only in who leads, so a timer polls the driver's leader
** every tick until the target leads or the deadline (one election timeout
** plus margin) passes.  One transfer at a time: a second one gets 409.
*/
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http/cluster.h"
#include "rafting/buf.h"
#include "rafting/error.h"
#include "rafting/util.h"

struct rf_cluster {
  uv_timer_t timer;
  rf_driver *drv;
  const rf_config *cfg;
  uint64_t id;
  rf_http_req *waiting; /* the transfer being waited for, or NULL */
  uint64_t target;
  uint64_t deadline;    /* uv_now, ms */
  void (*done)(void *);
  void *done_ud;
};

int rf_cluster_new(uv_loop_t *loop, rf_driver *drv, const rf_config *cfg,
                   uint64_t id, rf_cluster **out) {
  rf_cluster *c = calloc(1, sizeof(*c));
  int rc;
  *out = NULL;
  if (c == NULL) return UV_ENOMEM;
  if ((rc = uv_timer_init(loop, &c->timer)) < 0) {
    free(c);
    return rc;
  }
  c->timer.data = c;
  c->drv = drv;
  c->cfg = cfg;
  c->id = id;
  *out = c;
  return 0;
}

static void on_closed(uv_handle_t *h) {
  rf_cluster *c = h->data;
  if (c->done) c->done(c->done_ud);
  free(c);
}

void rf_cluster_close(rf_cluster *c, void (*done)(void *ud), void *ud) {
  if (c->waiting) {
    rf_http_add_header(c->waiting, "Retry-After", "1");
    rf_http_json_error(c->waiting, 503, "shutting_down", "the node stopped "
                       "before the transfer finished");
    c->waiting = NULL;
  }
  c->done = done;
  c->done_ud = ud;
  uv_close((uv_handle_t *)&c->timer, on_closed);
}

static void respond(rf_http_req *req, int status, rf_buf *b) {
  rf_buf_str(b, "\n");
  if (b->oom) rf_http_json_error(req, 500, "internal", "out of memory");
  else rf_http_respond(req, status, "application/json", b->p, b->n);
  rf_buf_free(b);
}

/* ------------------------------------------------------------ GET */

static void add_member(rf_cluster *c, rf_buf *b, uint64_t id, int voter,
                       int first) {
  const rf_node_conf *nc = rf_config_node(c->cfg, id);
  char addr[300];
  rf_buf_printf(b, "%s{\"id\":%llu,\"peer\":", first ? "" : ",",
                (unsigned long long)id);
  if (nc) {
    rf_addr_format(addr, sizeof(addr), nc->peer_host, nc->peer_port);
    rf_buf_json_str(b, addr, strlen(addr));
    rf_addr_format(addr, sizeof(addr), nc->http_host, nc->http_port);
    rf_buf_str(b, ",\"http\":");
    rf_buf_json_str(b, addr, strlen(addr));
  } else {
    rf_buf_str(b, "null,\"http\":null");
  }
  rf_buf_printf(b, ",\"voter\":%s}", voter ? "true" : "false");
}

void rf_cluster_get(rf_cluster *c, rf_http_req *req) {
  raft_status st;
  rf_buf b;
  rf_driver_status(c->drv, &st);
  rf_buf_init(&b);
  rf_buf_printf(&b, "{\"leader\":%llu,\"term\":%llu,\"members\":[",
                (unsigned long long)st.leader, (unsigned long long)st.term);
  for (size_t i = 0; i < st.conf.n_voters; i++)
    add_member(c, &b, st.conf.voters[i], 1, i == 0);
  for (size_t i = 0; i < st.conf.n_learners; i++)
    add_member(c, &b, st.conf.learners[i], 0, i == 0 && st.conf.n_voters == 0);
  rf_buf_printf(&b, "],\"pending\":%s}", st.conf_pending ? "true" : "false");
  respond(req, 200, &b);
}

/* ------------------------------------------------------------ transfer */

uint64_t rf_cluster_successor(const rf_driver *drv) {
  raft_status st;
  uint64_t best = 0, match = 0;
  rf_driver_status(drv, &st);
  for (size_t i = 0; i < st.n_peers; i++) {
    const raft_peer_status *p = &st.peers[i];
    if (p->id == st.id || !p->voter || !p->active) continue;
    if (best == 0 || p->match > match) {
      best = p->id;
      match = p->match;
    }
  }
  return best;
}

/* {"id": N} with N > 0, or an empty body (or {}): *id = 0.  -1 if bad. */
static int parse_body(const char *s, size_t n, uint64_t *id) {
  size_t i = 0;
  char num[24];
  size_t k = 0;
  *id = 0;
#define WS() while (i < n && isspace((unsigned char)s[i])) i++
  WS();
  if (i == n) return 0;
  if (s[i++] != '{') return -1;
  WS();
  if (i < n && s[i] == '}') goto end;
  if (n - i < 4 || memcmp(s + i, "\"id\"", 4) != 0) return -1;
  i += 4;
  WS();
  if (i == n || s[i++] != ':') return -1;
  WS();
  while (i < n && isdigit((unsigned char)s[i]) && k + 1 < sizeof(num))
    num[k++] = s[i++];
  if (k == 0 || k > 19 || (i < n && isdigit((unsigned char)s[i]))) return -1;
  num[k] = '\0';
  errno = 0;
  *id = strtoull(num, NULL, 10);
  if (errno || *id == 0) return -1;
  WS();
  if (i == n || s[i] != '}') return -1;
end:
  i++;
  WS();
#undef WS
  return i == n ? 0 : -1;
}

static void answer_led(rf_cluster *c, rf_http_req *req) {
  rf_buf b;
  rf_buf_init(&b);
  rf_buf_printf(&b, "{\"leader\":%llu,\"term\":%llu}",
                (unsigned long long)rf_driver_leader(c->drv),
                (unsigned long long)rf_driver_term(c->drv));
  respond(req, 200, &b);
}

static void on_tick(uv_timer_t *t) {
  rf_cluster *c = t->data;
  rf_http_req *req = c->waiting;
  if (req == NULL) return;
  if (rf_driver_leader(c->drv) == c->target &&
      (c->target != c->id || rf_driver_role(c->drv) == RAFT_LEADER)) {
    c->waiting = NULL;
    uv_timer_stop(t);
    answer_led(c, req);
  } else if (uv_now(t->loop) >= c->deadline) {
    char msg[128];
    c->waiting = NULL;
    uv_timer_stop(t);
    snprintf(msg, sizeof(msg), "node %llu did not take over in time; "
             "node %llu leads", (unsigned long long)c->target,
             (unsigned long long)rf_driver_leader(c->drv));
    rf_http_json_error(req, 504, "transfer_timeout", msg);
  }
}

void rf_cluster_transfer(rf_cluster *c, rf_http_req *req) {
  raft_status st;
  uint64_t target;
  int tick = c->cfg->tick_ms > 0 ? c->cfg->tick_ms : 10, rc;
  if (parse_body(req->body, req->body_len, &target) < 0) {
    rf_http_json_error(req, 400, "bad_request", "the body must be {\"id\": N} "
                       "with N a node id, or empty");
    return;
  }
  rf_driver_status(c->drv, &st);
  if (c->waiting || st.transferee != 0) {
    rf_http_json_error(req, 409, "transfer_in_progress",
                       "a leadership transfer is already under way");
    return;
  }
  if (target == 0 && (target = rf_cluster_successor(c->drv)) == 0) {
    rf_http_add_header(req, "Retry-After", "1");
    rf_http_json_error(req, 503, "no_successor",
                       "no other voter is reachable");
    return;
  }
  if (!raft_conf_is_voter(&st.conf, target)) {
    int learner = raft_conf_is_learner(&st.conf, target);
    rf_http_json_error(req, learner ? 400 : 404, learner ? "not_a_voter"
                       : "unknown_node", learner ? "a learner cannot lead"
                       : "no such node in the cluster");
    return;
  }
  if (target == c->id) { /* already leads: nothing to hand over */
    answer_led(c, req);
    return;
  }
  if ((rc = rf_driver_transfer(c->drv, target)) < 0) {
    rf_http_add_header(req, "Retry-After", "1");
    rf_http_json_error(req, 503, rc == RF_ENOTLEADER ? "not_leader"
                       : "transfer_refused", rf_strerror(rc));
    return;
  }
  c->waiting = req;
  c->target = target;
  c->deadline = uv_now(c->timer.loop) +
                (uint64_t)tick * (uint64_t)(2 * c->cfg->election_ticks) + 200;
  uv_timer_start(&c->timer, on_tick, (uint64_t)tick, (uint64_t)tick);
}
