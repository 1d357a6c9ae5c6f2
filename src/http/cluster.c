/*
** cluster.c -- GET /cluster, POST /cluster/leader and the membership
** routes under /cluster/members (see cluster.h).
**
** A membership change goes through rf_driver_change with, as its context,
** the addresses of every member of the resulting configuration (so each
** CONF entry is self-contained, docs/membership.md), and is answered from
** the driver's callback once committed and applied.
**
** A transfer is asked of the driver (rf_driver_transfer); whether it
** happened shows only in who leads: the node calls rf_cluster_leader_changed
** after each driver run that changed the leader or role, which answers as
** soon as the target leads; a timer answers 504 at the deadline (one
** election timeout plus margin).  One transfer at a time: a second one
** gets 409.
*/
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>

#include "handover.h"
#include "http/cluster.h"
#include "membership.h"
#include "rafting/buf.h"
#include "rafting/error.h"
#include "rafting/util.h"

struct rf_cluster {
  uv_timer_t timer;
  rf_driver *drv;
  const rf_config *cfg;
  uint64_t id;
  rf_membership *ms;
  rf_http_req *waiting; /* the transfer being waited for, or NULL */
  uint64_t target;
  void (*done)(void *);
  void *done_ud;
};

int rf_cluster_new(uv_loop_t *loop, rf_driver *drv, const rf_config *cfg,
                   uint64_t id, rf_membership *ms, rf_cluster **out) {
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
  c->ms = ms;
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

static int peer_up(const void *ud, uint64_t id) {
  return rf_membership_connected(ud, id);
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

/* The target leads (for this node as target: it knows itself leader). */
static int taken_over(const rf_cluster *c) {
  return rf_driver_leader(c->drv) == c->target &&
         (c->target != c->id || rf_driver_role(c->drv) == RAFT_LEADER);
}

void rf_cluster_leader_changed(rf_cluster *c) {
  rf_http_req *req = c->waiting;
  if (req == NULL || !taken_over(c)) return;
  c->waiting = NULL;
  uv_timer_stop(&c->timer);
  answer_led(c, req);
}

static void on_deadline(uv_timer_t *t) {
  rf_cluster *c = t->data;
  rf_http_req *req = c->waiting;
  char msg[128];
  if (req == NULL) return;
  if (taken_over(c)) {
    rf_cluster_leader_changed(c);
    return;
  }
  c->waiting = NULL;
  snprintf(msg, sizeof(msg), "node %llu did not take over in time; "
           "node %llu leads", (unsigned long long)c->target,
           (unsigned long long)rf_driver_leader(c->drv));
  rf_http_json_error(req, 504, "transfer_timeout", msg);
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
  if (target == 0 && (target = rf_successor(&st, peer_up, c->ms)) == 0) {
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
  uv_timer_start(&c->timer, on_deadline,
                 (uint64_t)tick * (uint64_t)(2 * c->cfg->election_ticks) + 200,
                 0);
}

/* ------------------------------------------------------------ members */

static void on_changed(void *ud, int status, uint64_t index, uint64_t term,
                       const char *res, size_t len) {
  rf_http_req *req = ud;
  rf_buf b;
  (void)res, (void)len;
  switch (status) {
  case 0:
    rf_buf_init(&b);
    rf_buf_printf(&b, "{\"index\":%" PRIu64 ",\"term\":%" PRIu64 "}", index,
                  term);
    respond(req, 200, &b);
    return;
  case RF_ENOTCOMMITTED:
  case RF_ENOTLEADER:
    rf_http_add_header(req, "Retry-After", "1");
    rf_http_json_error(req, 503, "not_committed", "leadership changed before "
                       "the change committed; it was not made; retry");
    return;
  default: /* timed out, stopping, storage: it may still commit */
    rf_http_json_error(req, 504, "outcome_unknown", "the change's outcome is "
                       "not known (it may still commit): read GET /cluster");
  }
}

/* The change to the configuration st->conf, carrying every resulting
** member's addresses (extra's for a new node): answered in on_changed. */
static void change(rf_cluster *c, rf_http_req *req, const raft_status *st,
                   int op, uint64_t id, const rf_member *extra) {
  raft_conf next = st->conf;
  raft_conf_change ch = {op, id, NULL, 0};
  size_t i, k = 0;
  rf_buf ctx;
  int rc;
  if (op == RAFT_CONF_ADD_LEARNER) {
    next.learners[next.n_learners++] = id;
  } else { /* promote or remove: id leaves the learners (and voters) */
    for (i = 0; i < st->conf.n_learners; i++)
      if (st->conf.learners[i] != id) next.learners[k++] = st->conf.learners[i];
    next.n_learners = k;
    if (op == RAFT_CONF_ADD_VOTER) next.voters[next.n_voters++] = id;
    for (i = 0, k = 0; op == RAFT_CONF_REMOVE && i < st->conf.n_voters; i++)
      if (st->conf.voters[i] != id) next.voters[k++] = st->conf.voters[i];
    if (op == RAFT_CONF_REMOVE) next.n_voters = k;
  }
  rf_buf_init(&ctx);
  if ((rc = rf_membership_context(c->ms, &next, extra, &ctx)) == 0 &&
      ctx.n > RAFT_CONF_CONTEXT_MAX)
    rc = RF_ETOOBIG;
  ch.context = ctx.p;
  ch.context_len = ctx.n;
  if (rc == 0) rc = rf_driver_change(c->drv, &ch, on_changed, req, NULL, NULL);
  rf_buf_free(&ctx);
  if (rc == 0) return;
  if (rc == RF_EBUSY)
    rf_http_json_error(req, 409, "change_pending", st->transferee
                       ? "a leadership transfer is under way; retry"
                       : "another membership change is not committed yet, "
                         "or this leader has not committed an entry of its "
                         "term yet; retry");
  else if (rc == RF_ENOTLEADER) {
    rf_http_add_header(req, "Retry-After", "1");
    rf_http_json_error(req, 503, "not_leader", "leadership moved; retry");
  } else
    rf_http_json_error(req, rc == RF_EINVAL ? 400 : 500, rc == RF_EINVAL
                       ? "bad_change" : "internal", rf_strerror(rc));
}

/* Refused before asking the core: 409 while a change is pending. */
static int pending(rf_http_req *req, const raft_status *st) {
  if (!st->conf_pending) return 0;
  rf_http_json_error(req, 409, "change_pending", "another membership change "
                     "is not committed yet; retry once GET /cluster shows "
                     "\"pending\": false");
  return 1;
}

static int body_id(json_t *o, uint64_t *id) {
  json_t *v = json_object_get(o, "id");
  if (!json_is_integer(v) || json_integer_value(v) <= 0) return -1;
  *id = (uint64_t)json_integer_value(v);
  return 0;
}

/* A node without a membership (a test's API alone) cannot change it. */
static int no_membership(rf_cluster *c, rf_http_req *req) {
  if (c->ms != NULL) return 0;
  rf_http_json_error(req, 501, "not_supported", "membership changes are not "
                     "available on this server");
  return 1;
}

void rf_cluster_add(rf_cluster *c, rf_http_req *req) {
  raft_status st;
  json_t *o = json_loadb(req->body, req->body_len, 0, NULL);
  const char *peer = json_string_value(json_object_get(o, "peer"));
  const char *http = json_string_value(json_object_get(o, "http"));
  char why[200], msg[300];
  rf_member m;
  uint64_t id = 0, other;
  if (no_membership(c, req)) {
    json_decref(o);
    return;
  }
  if (!json_is_object(o) || body_id(o, &id) < 0 || !peer || !http ||
      json_object_size(o) != 3) {
    json_decref(o);
    rf_http_json_error(req, 400, "bad_request", "the body must be {\"id\": N, "
                       "\"peer\": \"host:port\", \"http\": \"host:port\"}");
    return;
  }
  if (rf_member_parse(&m, id, peer, http, why, sizeof(why)) < 0) {
    json_decref(o);
    rf_http_json_error(req, 400, "bad_request", why);
    return;
  }
  json_decref(o);
  rf_driver_status(c->drv, &st);
  if (st.conf.n_voters + st.conf.n_learners >= RAFT_MAX_NODES) {
    rf_http_json_error(req, 400, "too_many_members", "the cluster has the "
                       "most members rafting supports");
    return;
  }
  if (raft_conf_is_voter(&st.conf, id) || raft_conf_is_learner(&st.conf, id)) {
    snprintf(msg, sizeof(msg), "node %" PRIu64 " is a member already", id);
    rf_http_json_error(req, 400, "already_member", msg);
    return;
  }
  if ((other = rf_membership_clash(c->ms, &st.conf, &m)) != RAFT_NONE) {
    snprintf(msg, sizeof(msg), "node %" PRIu64 " uses that address", other);
    rf_http_json_error(req, 400, "address_in_use", msg);
    return;
  }
  if (!pending(req, &st)) change(c, req, &st, RAFT_CONF_ADD_LEARNER, id, &m);
}

static const raft_peer_status *peer_of(const raft_status *st, uint64_t id) {
  for (size_t i = 0; i < st->n_peers; i++)
    if (st->peers[i].id == id) return &st->peers[i];
  return NULL;
}

/* A learner more than RF_PROMOTE_MAX_LAG entries behind, or silent, would
** stall every commit that needs it once a voter (docs/membership.md). */
static int far_behind(rf_http_req *req, const raft_status *st, uint64_t id) {
  const raft_peer_status *p = peer_of(st, id);
  uint64_t lag = p ? st->last_index - p->match : st->last_index;
  char msg[300];
  if (p && p->active && lag <= RF_PROMOTE_MAX_LAG) return 0;
  if (lag > RF_PROMOTE_MAX_LAG)
    snprintf(msg, sizeof(msg), "learner %" PRIu64 " is %" PRIu64 " entries "
             "behind the leader (it has %" PRIu64 " of %" PRIu64 "); promote "
             "it once it is within %d", id, lag, p ? p->match : 0,
             st->last_index, RF_PROMOTE_MAX_LAG);
  else
    snprintf(msg, sizeof(msg), "learner %" PRIu64 " has not answered the "
             "leader within an election timeout", id);
  rf_http_json_error(req, 409, "learner_behind", msg);
  return 1;
}

/* /cluster/members/{id}[/promote] -> id, *promote; 0 after a 404. */
static uint64_t path_id(rf_http_req *req, int *promote) {
  static const char pre[] = "/cluster/members/", suf[] = "/promote";
  const char *p = req->path + sizeof(pre) - 1;
  size_t n = req->path_len - (sizeof(pre) - 1), k = 0;
  uint64_t id = 0;
  while (k < n && k < 19 && isdigit((unsigned char)p[k]))
    id = id * 10 + (uint64_t)(p[k++] - '0');
  *promote = n - k == sizeof(suf) - 1 && memcmp(p + k, suf, n - k) == 0;
  if (k == 0 || id == 0 || (k < n && !*promote)) {
    rf_http_json_error(req, k == 0 || id == 0 ? 400 : 404, k == 0 || id == 0
                       ? "bad_request" : "not_found", k == 0 || id == 0
                       ? "not a node id" : "no such route");
    return 0;
  }
  return id;
}

void rf_cluster_member(rf_cluster *c, rf_http_req *req, int del) {
  raft_status st;
  char msg[200];
  int promote, voter;
  uint64_t id;
  if (no_membership(c, req) || (id = path_id(req, &promote)) == 0) return;
  if (promote == del) { /* POST .../promote or DELETE .../{id} */
    rf_http_add_header(req, "Allow", promote ? "POST" : "DELETE");
    rf_http_json_error(req, 405, "method_not_allowed", promote
                       ? "use POST to promote" : "use DELETE to remove");
    return;
  }
  rf_driver_status(c->drv, &st);
  voter = raft_conf_is_voter(&st.conf, id);
  if (!voter && !raft_conf_is_learner(&st.conf, id)) {
    snprintf(msg, sizeof(msg), "node %" PRIu64 " is not a member", id);
    rf_http_json_error(req, 404, "unknown_node", msg);
    return;
  }
  if (promote && voter) {
    snprintf(msg, sizeof(msg), "node %" PRIu64 " is a voter already", id);
    rf_http_json_error(req, 400, "already_voter", msg);
    return;
  }
  if (del && voter && st.conf.n_voters == 1) {
    rf_http_json_error(req, 400, "last_voter", "the last voter cannot be "
                       "removed");
    return;
  }
  if (pending(req, &st) || (promote && far_behind(req, &st, id))) return;
  change(c, req, &st, promote ? RAFT_CONF_ADD_VOTER : RAFT_CONF_REMOVE, id,
         NULL);
}
