/*
** waits.c -- requests parked on the node's progress (see waits.h).
**
** Two intrusive lists: writes (by index) and reads (a read first waits for
** its ReadIndex round, then for applied >= its index).  A sweep timer
** enforces deadlines; the lists are short (one entry per in-flight client
** request), so linear scans are fine.
*/
#include <stdlib.h>
#include <string.h>

#include "http/waits.h"
#include "node_internal.h"
#include "rafting/buf.h"
#include "rafting/sm.h"

#define SWEEP_MS 50

typedef struct wait {
  struct wait *next, *prev;
  rf_http_req *req;
  uint64_t index, term; /* writes: where proposed; reads: the read index */
  uint64_t ctx;         /* reads: ReadIndex cookie */
  int confirmed;        /* reads: the round came back */
  rf_waits_serve serve;
  uint64_t deadline;    /* uv_now() ms */
} wait;

typedef struct wlist {
  wait *head, *tail;
} wlist;

struct rf_waits {
  uv_loop_t *loop;
  rf_node *node;
  rf_api *api;
  int timeout_ms;
  uint64_t next_ctx;
  wlist writes, reads;
  uv_timer_t sweep;
  void (*done)(void *);
  void *done_ud;
};

static void push(wlist *l, wait *w) {
  w->next = NULL;
  w->prev = l->tail;
  if (l->tail) l->tail->next = w;
  else l->head = w;
  l->tail = w;
}

static void unlink_wait(wlist *l, wait *w) {
  if (w->prev) w->prev->next = w->next;
  else l->head = w->next;
  if (w->next) w->next->prev = w->prev;
  else l->tail = w->prev;
}

static wait *park(rf_waits *ws, wlist *l, rf_http_req *req) {
  wait *w = calloc(1, sizeof(*w));
  if (w == NULL) {
    rf_http_json_error(req, 500, "internal", "out of memory");
    return NULL;
  }
  w->req = req;
  w->deadline = uv_now(ws->loop) + (uint64_t)ws->timeout_ms;
  push(l, w);
  return w;
}

static void retry_later(rf_http_req *req, int status, const char *code,
                        const char *msg) {
  rf_http_add_header(req, "Retry-After", "1");
  rf_http_json_error(req, status, code, msg);
}

/* ------------------------------------------------------------ writes */

void rf_waits_write(rf_waits *ws, rf_http_req *req, uint64_t index,
                    uint64_t term) {
  wait *w = park(ws, &ws->writes, req);
  if (w == NULL) return;
  w->index = index;
  w->term = term;
}

static int error_status(int rc) {
  switch (rc) {
  case RF_SM_ENOTFOUND: return 404;
  case RF_SM_EFAILED: return 422;
  case RF_SM_EBADENTRY: return 400;
  default: return 500;
  }
}

static const char *error_code(int rc) {
  switch (rc) {
  case RF_SM_ENOTFOUND: return "unknown_command";
  case RF_SM_EFAILED: return "command_failed";
  case RF_SM_EBADENTRY: return "bad_request";
  default: return "internal";
  }
}

static void answer_write(wait *w, const raft_entry *e, int rc,
                         const char *res, size_t len) {
  rf_buf b;
  rf_buf_init(&b);
  if (rc == RF_SM_OK) {
    rf_buf_printf(&b, "{\"index\":%llu,\"term\":%llu,\"result\":",
                  (unsigned long long)e->index, (unsigned long long)e->term);
    if (len) rf_buf_add(&b, res, len);
    else rf_buf_str(&b, "null");
    rf_buf_str(&b, "}");
  } else {
    rf_buf_printf(&b, "{\"error\":\"%s\",\"message\":", error_code(rc));
    rf_buf_json_str(&b, res, len);
    rf_buf_printf(&b, ",\"index\":%llu,\"term\":%llu}",
                  (unsigned long long)e->index, (unsigned long long)e->term);
  }
  if (b.oom) rf_http_json_error(w->req, 500, "internal", "out of memory");
  else rf_http_respond(w->req, rc == RF_SM_OK ? 200 : error_status(rc),
                       "application/json", b.p, b.n);
  rf_buf_free(&b);
}

static void writes_applied(rf_waits *ws, const raft_entry *e, int rc,
                           const char *res, size_t len) {
  wait *w = ws->writes.head, *next;
  for (; w != NULL; w = next) {
    next = w->next;
    if (w->index != e->index) continue;
    if (w->term == e->term) {
      answer_write(w, e, rc, res, len);
    } else {
      /* another leader's entry took this index: ours can never commit */
      retry_later(w->req, 503, "not_committed",
                  "leadership changed before the write committed; it was "
                  "not applied; retry");
    }
    unlink_wait(&ws->writes, w);
    free(w);
  }
}

/* ------------------------------------------------------------ reads */

int rf_waits_read(rf_waits *ws, rf_http_req *req, rf_waits_serve serve) {
  uint64_t ctx = ++ws->next_ctx;
  int rc = raft_read_index(rf_node_core(ws->node), ctx);
  wait *w;
  if (rc < 0) return rc;
  if ((w = park(ws, &ws->reads, req)) == NULL) return 0;
  w->ctx = ctx;
  w->serve = serve;
  return 0;
}

static void serve_read(rf_waits *ws, wait *w) {
  unlink_wait(&ws->reads, w);
  w->serve(ws->api, w->req);
  free(w);
}

void rf_waits_read_ready(rf_waits *ws, const raft_read_state *rs) {
  for (wait *w = ws->reads.head; w != NULL; w = w->next) {
    if (w->ctx != rs->ctx) continue;
    w->confirmed = 1;
    w->index = rs->index;
    if (rf_node_applied(ws->node) >= w->index) serve_read(ws, w);
    return;
  }
}

static void reads_applied(rf_waits *ws, uint64_t applied) {
  wait *w = ws->reads.head, *next;
  for (; w != NULL; w = next) {
    next = w->next;
    if (w->confirmed && w->index <= applied) serve_read(ws, w);
  }
}

void rf_waits_applied(rf_waits *ws, const raft_entry *e, int rc,
                      const char *res, size_t len) {
  writes_applied(ws, e, rc, res, len);
  reads_applied(ws, e->index);
}

/* Unconfirmed reads died with the leadership: safe to retry elsewhere.
** Writes keep waiting: a new leader may still commit them. */
void rf_waits_lost_leadership(rf_waits *ws) {
  wait *w = ws->reads.head, *next;
  for (; w != NULL; w = next) {
    next = w->next;
    if (w->confirmed) continue;
    unlink_wait(&ws->reads, w);
    retry_later(w->req, 503, "not_leader", "leadership moved; retry");
    free(w);
  }
}

void rf_waits_jumped(rf_waits *ws, uint64_t index) {
  wait *w = ws->writes.head, *next;
  for (; w != NULL; w = next) {
    next = w->next;
    if (w->index > index) continue;
    unlink_wait(&ws->writes, w);
    rf_http_json_error(w->req, 504, "outcome_unknown",
                       "this node caught up from a snapshot that covers the "
                       "write; it may have committed");
    free(w);
  }
  reads_applied(ws, index);
}

/* ------------------------------------------------------------ deadlines */

static void expire(wlist *l, uint64_t now, int is_write) {
  wait *w = l->head, *next;
  for (; w != NULL; w = next) {
    next = w->next;
    if (now != UINT64_MAX && w->deadline > now) continue;
    unlink_wait(l, w);
    if (now == UINT64_MAX)
      retry_later(w->req, 503, "shutting_down", "the node is stopping");
    else if (is_write)
      rf_http_json_error(w->req, 504, "outcome_unknown",
                         "the write did not commit in time; it may still "
                         "commit");
    else
      retry_later(w->req, 503, "no_quorum",
                  "the leader could not confirm the read with a quorum");
    free(w);
  }
}

static void on_sweep(uv_timer_t *t) {
  rf_waits *ws = t->data;
  uint64_t now = uv_now(ws->loop);
  expire(&ws->writes, now, 1);
  expire(&ws->reads, now, 0);
}

int rf_waits_init(uv_loop_t *loop, rf_node *node, rf_api *api, int timeout_ms,
                  rf_waits **out) {
  rf_waits *ws = calloc(1, sizeof(*ws));
  *out = NULL;
  if (ws == NULL) return UV_ENOMEM;
  ws->loop = loop;
  ws->node = node;
  ws->api = api;
  ws->timeout_ms = timeout_ms;
  uv_timer_init(loop, &ws->sweep);
  ws->sweep.data = ws;
  uv_timer_start(&ws->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
  *out = ws;
  return 0;
}

static void on_closed(uv_handle_t *h) {
  rf_waits *ws = h->data;
  if (ws->done) ws->done(ws->done_ud);
  free(ws);
}

void rf_waits_close(rf_waits *ws, void (*done)(void *ud), void *ud) {
  expire(&ws->writes, UINT64_MAX, 1);
  expire(&ws->reads, UINT64_MAX, 0);
  ws->done = done;
  ws->done_ud = ud;
  uv_close((uv_handle_t *)&ws->sweep, on_closed);
}
