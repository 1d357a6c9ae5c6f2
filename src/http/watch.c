/*
** watch.c -- GET /watch long-polls and streams (see watch.h).
**
** Each applied entry that wrote records its changes.  Once per loop turn
** after that, the changes are matched against each distinct prefix parked
** requests wait on (a group); the requests of a touched prefix are answered,
** the others only move their group's "seen" up (so history evicted later
** never makes them stale).  One libuv timer, armed for the earliest
** deadline, answers those that time out.
*/
#include <stdlib.h>
#include <string.h>

#include "http/kvjson.h"
#include "http/watch.h"
#include "http/watchlog.h"
#include "rafting/buf.h"
#include "rafting/metrics.h"
#include "rafting/util.h"

#define TIMEOUT_DEFAULT 30000
#define TIMEOUT_MAX 3600000
#define MAX_EVENTS 1000 /* per answer; an entry's changes are never split */

typedef struct group group;

typedef struct waiter {
  struct waiter *prev, *next; /* in its group */
  group *g;
  rf_http_req *req;
  const char *prefix; /* into req's query */
  size_t plen;
  uint64_t since;
  uint64_t deadline; /* uv_now */
  int b64, stream;
  int aborted; /* the client left while feed() wrote to it */
} waiter;

/* The waiters of one prefix: an applied batch is matched against each
** prefix once, and only the waiters of prefixes it touched are visited. */
struct group {
  group *prev, *next;
  waiter *head;
  uint64_t seen; /* no change under the prefix in (a waiter's since, seen] */
  size_t plen;
  char prefix[];
};

struct rf_watch {
  uv_loop_t *loop;
  uv_timer_t timer;
  uv_idle_t wake;  /* answers parked requests after entries applied */
  uint64_t through; /* the last entry observed */
  uint64_t scanned; /* waiters were matched against changes up to here */
  int handles;      /* open, for close */
  uint64_t armed; /* deadline the timer is set for, 0: none */
  rf_sm *sm;
  rf_driver *drv;
  rf_watchlog *log;
  group *groups;
  waiter *feeding; /* the stream feed() writes to: abort must not free it */
  size_t n; /* waiters */
  void (*done)(void *ud);
  void *done_ud;
};

/* ------------------------------------------------------------ answers */

static int matches(const waiter *x, const rf_wev *e) {
  return e->klen >= x->plen && memcmp(e->key, x->prefix, x->plen) == 0;
}

static void event_json(rf_buf *b, const rf_wev *e, int b64) {
  rf_buf_printf(b, "{\"index\":%llu,\"key\":", (unsigned long long)e->index);
  rf_kvjson_bytes(b, e->key, e->klen, b64);
  if (e->val == NULL) {
    rf_buf_str(b, ",\"deleted\":true}");
    return;
  }
  rf_buf_str(b, ",\"value\":");
  rf_kvjson_bytes(b, e->val, e->vlen, b64);
  rf_buf_str(b, "}");
}

/* The answer to x: matching changes above x->since, complete through
** `through` (or through the last entry included, when cut at MAX_EVENTS).
** Returns the number of events. */
static size_t answer_json(rf_watch *w, const waiter *x, uint64_t through,
                          rf_buf *b, uint64_t *nextp) {
  size_t n = 0, pos = rf_watchlog_find(w->log, x->since);
  const rf_wev *e;
  uint64_t next = x->since > through ? x->since : through;
  rf_buf_str(b, "{\"events\":[");
  for (; (e = rf_watchlog_at(w->log, pos)) != NULL; pos++) {
    if (n >= MAX_EVENTS && e->index != next) break;
    if (!matches(x, e)) continue;
    if (n++) rf_buf_str(b, ",");
    event_json(b, e, x->b64);
    if (n >= MAX_EVENTS) next = e->index;
  }
  rf_buf_printf(b, "],\"next\":%llu}", (unsigned long long)next);
  if (nextp) *nextp = next;
  return n;
}

/* Fold what x's group knows into x's since. */
static void settle(waiter *x) {
  if (x->since < x->g->seen) x->since = x->g->seen;
}

/* Take x out of its group; an empty group is freed. */
static void unlink_waiter(rf_watch *w, waiter *x) {
  group *g = x->g;
  settle(x);
  x->g = NULL; /* g may be freed below */
  if (x->prev) x->prev->next = x->next;
  else g->head = x->next;
  if (x->next) x->next->prev = x->prev;
  w->n--;
  if (g->head) return;
  if (g->prev) g->prev->next = g->next;
  else w->groups = g->next;
  if (g->next) g->next->prev = g->prev;
  free(g);
}

/* Park x in the group of its prefix.  0, or -1 out of memory. */
static int link_waiter(rf_watch *w, waiter *x) {
  group *g = w->groups;
  while (g && (g->plen != x->plen || memcmp(g->prefix, x->prefix, x->plen)))
    g = g->next;
  if (g == NULL) {
    if ((g = calloc(1, sizeof(*g) + x->plen + 1)) == NULL) return -1;
    memcpy(g->prefix, x->prefix, x->plen);
    g->plen = x->plen;
    g->next = w->groups;
    if (w->groups) w->groups->prev = g;
    w->groups = g;
  }
  x->g = g;
  x->prev = NULL;
  x->next = g->head;
  if (g->head) g->head->prev = x;
  g->head = x;
  w->n++;
  return 0;
}

static void respond(rf_http_req *req, rf_buf *b) {
  rf_buf_add(b, "\n", 1); /* like every JSON answer (api.c) */
  if (b->oom) rf_http_json_error(req, 500, "internal", "out of memory");
  else rf_http_respond(req, 200, "application/json", b->p, b->n);
  rf_buf_free(b);
}

static void gone(rf_watch *w, rf_http_req *req) {
  rf_buf b;
  rf_buf_init(&b);
  rf_buf_printf(&b, "{\"error\":\"gone\",\"message\":\"changes after that "
                "index are no longer held; read the state again and watch "
                "from oldest\",\"oldest\":%llu}\n",
                (unsigned long long)rf_watchlog_floor(w->log));
  if (b.oom) rf_http_json_error(req, 410, "gone", "history compacted");
  else rf_http_respond(req, 410, "application/json", b.p, b.n);
  rf_buf_free(&b);
}

/* A stream's lines up to through: each {"events":[...],"next":N} with
** events (at most MAX_EVENTS a line); an empty one only when `always`. */
static void feed(rf_watch *w, waiter *x, uint64_t through, int always) {
  uint64_t next;
  if (x->g) settle(x);
  w->feeding = x; /* a failed write closes the connection: on_abort */
  do {
    rf_buf b;
    size_t n;
    rf_buf_init(&b);
    n = answer_json(w, x, through, &b, &next);
    rf_buf_str(&b, "\n");
    if (n > 0 || always) rf_http_stream_write(x->req, b.p, b.oom ? 0 : b.n);
    rf_buf_free(&b);
    x->since = next;
  } while (next < through && !x->aborted);
  w->feeding = NULL;
  if (x->aborted) { /* unlinked by rf_watch_abort, left for us to end */
    rf_http_stream_end(x->req);
    free(x);
  }
}

/* End parked x: the rest of its answer, through index; free it. */
static void finish(rf_watch *w, waiter *x, uint64_t through) {
  rf_buf b;
  unlink_waiter(w, x);
  rf_buf_init(&b);
  if (x->stream) {
    if (x->since < rf_watchlog_floor(w->log)) {
      rf_buf_printf(&b, "{\"error\":\"gone\",\"oldest\":%llu}\n",
                    (unsigned long long)rf_watchlog_floor(w->log));
      rf_http_stream_write(x->req, b.p, b.oom ? 0 : b.n);
    } else {
      feed(w, x, through, 1);
    }
    rf_http_stream_end(x->req);
  } else if (x->since < rf_watchlog_floor(w->log)) {
    gone(w, x->req);
  } else {
    answer_json(w, x, through, &b, NULL);
    respond(x->req, &b);
  }
  rf_buf_free(&b);
  free(x);
}

/* ------------------------------------------------------------ timeouts */

static void on_timer(uv_timer_t *t);

static void arm(rf_watch *w) {
  uint64_t first = 0;
  for (group *g = w->groups; g; g = g->next)
    for (waiter *x = g->head; x; x = x->next)
      if (first == 0 || x->deadline < first) first = x->deadline;
  if (first == w->armed) return;
  w->armed = first;
  if (first == 0) uv_timer_stop(&w->timer);
  else {
    uint64_t now = uv_now(w->loop);
    uv_timer_start(&w->timer, on_timer, first > now ? first - now : 0, 0);
  }
}

static void on_timer(uv_timer_t *t) {
  rf_watch *w = t->data;
  uint64_t now = uv_now(w->loop), applied = rf_driver_applied(w->drv);
  group *g, *gnext;
  w->armed = 0;
  for (g = w->groups; g; g = gnext) { /* g may go with its last waiter */
    waiter *x, *next;
    gnext = g->next;
    for (x = g->head; x; x = next) {
      next = x->next;
      if (x->deadline <= now) finish(w, x, applied);
    }
  }
  arm(w);
}

/* ------------------------------------------------------------ changes */

/* Record the entry's writes: live batch nodes are puts; dead ones delete
** a key only if the store has it (a key put and deleted in one command
** never existed). */
static int record(rf_watch *w, uint64_t index, const rf_store *batch,
                  const rf_store *store) {
  rf_store_iter it;
  rf_store_kv kv;
  const void *v;
  size_t vl;
  int any = 0;
  rf_store_seek(batch, &it, NULL, 0);
  while (rf_store_next(&it, &kv)) {
    if (kv.dead && !rf_store_get(store, kv.key, kv.klen, &v, &vl)) continue;
    if (rf_watchlog_add(w->log, index, kv.key, kv.klen, kv.val, kv.vlen,
                        kv.dead) < 0)
      return 0; /* reset to index: parked requests get 410 */
    any = 1;
  }
  rf_watchlog_seal(w->log, index);
  return any;
}

/* Whether a change in (w->scanned, through] is under g's prefix. */
static int group_hit(rf_watch *w, const group *g, uint64_t through) {
  const rf_wev *e;
  for (size_t p = rf_watchlog_find(w->log, w->scanned);
       (e = rf_watchlog_at(w->log, p)) && e->index <= through; p++)
    if (e->klen >= g->plen && memcmp(e->key, g->prefix, g->plen) == 0)
      return 1;
  return 0;
}

/* x's group was touched: answer x if a change above its since is its. */
static void visit(rf_watch *w, waiter *x, uint64_t through, uint64_t floor) {
  const rf_wev *e;
  int hit;
  settle(x);
  hit = x->since < floor;
  for (size_t p = rf_watchlog_find(w->log, x->since);
       !hit && (e = rf_watchlog_at(w->log, p)) && e->index <= through; p++)
    hit = matches(x, e);
  if (hit && x->stream && x->since >= floor) feed(w, x, through, 0);
  else if (hit) finish(w, x, through);
  else if (x->since < through) x->since = through;
}

/* Parked requests are visited once per loop turn, not per entry: a batch
** of entries applied together wakes each watch once, with all of them.
** Every parked request's since is >= w->scanned (it parked at the applied
** index, or was visited since), so only newer changes need matching. */
static void on_wake(uv_idle_t *h) {
  rf_watch *w = h->data;
  uint64_t through = w->through, floor = rf_watchlog_floor(w->log);
  int all = floor > w->scanned; /* history lost: some may be stale */
  group *g, *gnext;
  uv_idle_stop(h);
  for (g = w->groups; g; g = gnext) {
    waiter *x, *next;
    gnext = g->next;
    if (!all && !group_hit(w, g, through)) {
      if (g->seen < through) g->seen = through;
      continue;
    }
    for (x = g->head; x; x = next) { /* g may go with its last waiter */
      next = x->next;
      visit(w, x, through, floor);
    }
  }
  w->scanned = through;
}

static void on_change(void *ud, uint64_t index, const rf_store *batch,
                      const rf_store *store) {
  rf_watch *w = ud;
  if (batch == NULL) /* a snapshot replaced everything */
    rf_watchlog_reset(w->log, index);
  else
    record(w, index, batch, store);
  w->through = index;
  if (w->groups) uv_idle_start(&w->wake, on_wake);
  else w->scanned = index;
}

/* ------------------------------------------------------------ requests */

static int query_u64(rf_http_req *req, const char *name, uint64_t dflt,
                     uint64_t max, uint64_t *out) {
  size_t n;
  const char *s = rf_http_query_get(req, name, &n);
  uint64_t v = 0;
  if (s == NULL) {
    *out = dflt;
    return 1;
  }
  for (size_t i = 0; i < n && v <= max; i++) {
    if (s[i] < '0' || s[i] > '9') v = max + 1;
    else v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (n == 0 || n > 20 || v > max) {
    char msg[96];
    snprintf(msg, sizeof(msg), "%s must be an integer 0..%llu", name,
             (unsigned long long)max);
    rf_http_json_error(req, 400, "bad_request", msg);
    return 0;
  }
  *out = v;
  return 1;
}

/* ?stream=1 (or a bare ?stream): 1; absent or 0: 0; else 400 and -1. */
static int stream_flag(rf_http_req *req) {
  size_t n;
  const char *s = rf_http_query_get(req, "stream", &n);
  if (s == NULL || (n == 1 && *s == '0')) return 0;
  if (n == 0 || (n == 1 && *s == '1')) return 1;
  rf_http_json_error(req, 400, "bad_request", "stream must be 0 or 1");
  return -1;
}

void rf_watch_get(rf_watch *w, rf_http_req *req) {
  uint64_t applied = rf_driver_applied(w->drv), timeout;
  waiter *x = calloc(1, sizeof(*x));
  rf_buf b;
  if (x == NULL) {
    rf_http_json_error(req, 500, "internal", "out of memory");
    return;
  }
  x->req = req;
  x->prefix = rf_http_query_get(req, "prefix", &x->plen);
  if (x->prefix == NULL) x->prefix = "", x->plen = 0;
  x->stream = stream_flag(req);
  if (x->stream < 0 || !rf_kvjson_encoding(req, &x->b64) ||
      !query_u64(req, "since", applied, UINT64_MAX / 2, &x->since) ||
      !query_u64(req, "timeout_ms", TIMEOUT_DEFAULT, TIMEOUT_MAX, &timeout)) {
    free(x);
    return;
  }
  if (x->since < rf_watchlog_floor(w->log)) {
    gone(w, req);
    free(x);
    return;
  }
  if (x->stream && rf_http_stream_begin(req, 200, "application/x-ndjson") < 0) {
    rf_http_json_error(req, 400, "bad_request", "stream=1 needs an HTTP/1.1 GET");
    free(x);
    return;
  }
  if (x->stream) {
    feed(w, x, applied, 1);
  } else {
    rf_buf_init(&b);
    if (answer_json(w, x, applied, &b, NULL) > 0 || timeout == 0) {
      respond(req, &b);
      free(x);
      return;
    }
    rf_buf_free(&b);
  }
  if (x->stream && timeout == 0) {
    rf_http_stream_end(req);
    free(x);
    return;
  }
  if (x->since < applied) x->since = applied; /* nothing up to there */
  x->deadline = uv_now(w->loop) + timeout;
  if (link_waiter(w, x) < 0) {
    if (x->stream) rf_http_stream_end(req);
    else rf_http_json_error(req, 500, "internal", "out of memory");
    free(x);
    return;
  }
  if (w->armed == 0 || x->deadline < w->armed) {
    w->armed = x->deadline;
    uv_timer_start(&w->timer, on_timer, timeout, 0);
  }
}

int rf_watch_abort(rf_watch *w, rf_http_req *req) {
  for (group *g = w->groups; g; g = g->next)
    for (waiter *x = g->head; x; x = x->next) {
      if (x->req != req) continue;
      unlink_waiter(w, x); /* the timer may fire for nothing: harmless */
      if (x == w->feeding) {
        x->aborted = 1; /* feed() is still using it: it ends and frees x */
        return 1;
      }
      if (x->stream) rf_http_stream_end(req); /* dropped: it is gone */
      else rf_http_json_error(req, 503, "client_closed", "the client left");
      free(x);
      return 1;
    }
  return 0;
}

size_t rf_watch_parked(const rf_watch *w) { return w->n; }

static void gauge(rf_buf *b, const char *name, const char *help, uint64_t v) {
  rf_metrics_family(b, name, "gauge", help);
  rf_metrics_sample(b, name, "", v);
}

void rf_watch_metrics(const rf_watch *w, rf_buf *b) {
  gauge(b, "rafting_watch_waiting", "GET /watch requests waiting for a "
        "change (long-polls and streams).", w->n);
  gauge(b, "rafting_watch_history_changes", "Changes held for GET /watch.",
        rf_watchlog_count(w->log));
  gauge(b, "rafting_watch_history_bytes", "Bytes the GET /watch history "
        "holds.", rf_watchlog_bytes(w->log));
  gauge(b, "rafting_watch_history_oldest_index", "Lowest since= GET /watch "
        "accepts (older gets 410).", rf_watchlog_floor(w->log));
}

/* ------------------------------------------------------------ lifecycle */

int rf_watch_new(uv_loop_t *loop, rf_sm *sm, rf_driver *drv,
                 size_t history_entries, size_t history_bytes,
                 rf_watch **out) {
  rf_watch *w = calloc(1, sizeof(*w));
  uint64_t floor = rf_driver_applied(drv);
  *out = NULL;
  if (w == NULL) return UV_ENOMEM;
  if (rf_sm_applied(sm) > floor) floor = rf_sm_applied(sm);
  w->log = rf_watchlog_new(history_entries, history_bytes, floor);
  if (w->log == NULL) {
    free(w);
    return UV_ENOMEM;
  }
  w->loop = loop;
  w->sm = sm;
  w->drv = drv;
  uv_timer_init(loop, &w->timer);
  uv_idle_init(loop, &w->wake);
  w->timer.data = w->wake.data = w;
  w->handles = 2;
  w->scanned = w->through = floor;
  rf_sm_observe(sm, on_change, w);
  *out = w;
  return 0;
}

static void on_closed(uv_handle_t *h) {
  rf_watch *w = h->data;
  void (*done)(void *) = w->done;
  void *ud = w->done_ud;
  if (--w->handles > 0) return;
  rf_watchlog_free(w->log);
  free(w);
  if (done) done(ud);
}

void rf_watch_close(rf_watch *w, void (*done)(void *ud), void *ud) {
  w->done = done;
  w->done_ud = ud;
  rf_sm_observe(w->sm, NULL, NULL);
  while (w->groups) {
    waiter *x = w->groups->head;
    unlink_waiter(w, x);
    if (x->stream) {
      rf_http_stream_end(x->req); /* the client resumes from the last next */
    } else {
      rf_http_add_header(x->req, "Retry-After", "1");
      rf_http_json_error(x->req, 503, "shutting_down", "the node is stopping");
    }
    free(x);
  }
  uv_close((uv_handle_t *)&w->timer, on_closed);
  uv_close((uv_handle_t *)&w->wake, on_closed);
}
