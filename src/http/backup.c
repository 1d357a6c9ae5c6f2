/*
** backup.c -- GET /snapshot (see backup.h).
**
** A request is a download (dl) in one of two states: waiting for a fresh
** snapshot (D_WAIT, with a deadline), or sending one (D_SEND): the file
** opened once (so a rotation meanwhile does not cut it; a memory store is
** read through rf_snapstore_read), read CHUNK bytes at a time on the thread
** pool, each chunk handed to the HTTP stream; the next read starts only
** once the connection holds less than HIGH_WATER bytes not yet sent.  One
** timer ticks every TICK_MS while anything waits or is paused: it checks
** deadlines, resumes paused sends, and retries a fresh snapshot that could
** not start (a save or a receive was under way) -- the saved callback of
** rf_snaps only makes that sooner.
**
** Memory: each dl is malloc'd with its CHUNK buffer and freed when its
** request is answered; a read in flight keeps it (and the module) alive.
*/
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/backup.h"
#include "rafting/log.h"
#include "snaps.h"

#define CHUNK (256 * 1024)       /* bytes per read */
#define HIGH_WATER (1024 * 1024) /* unsent bytes above which reads wait */
#define TICK_MS 5
#define FRESH_MS 30000           /* default wait for ?fresh */
#define FRESH_MAX_MS 600000

enum { D_WAIT, D_SEND };

typedef struct dl {
  struct dl *next;
  rf_backup *b;
  rf_http_req *req;
  int state;
  uint64_t want;     /* D_WAIT: the applied index the snapshot must cover */
  uint64_t deadline; /* D_WAIT */
  rf_snap_meta m;    /* D_SEND: the snapshot */
  uint64_t off;      /* next byte to read */
  int fd;            /* -1: a memory store */
  int busy;          /* a read is in flight */
  int paused;        /* waiting for the socket to drain */
  int gone;          /* the client left, or closing: end at the next step */
  uv_fs_t fs;
  char buf[];        /* CHUNK bytes (files only) */
} dl;

struct rf_backup {
  uv_loop_t *loop;
  rf_snaps *snaps;
  uint64_t id;
  int taking; /* in rf_snaps_take_now: its failure is answered by its caller */
  dl *head;
  uv_timer_t timer;
  int ticking, closing, busy;
  void (*done)(void *);
  void *done_ud;
};

static void step(dl *d);
static void try_fresh(dl *d);

/* ------------------------------------------------------------ helpers */

static void unlink_dl(dl *d) {
  for (dl **p = &d->b->head; *p; p = &(*p)->next)
    if (*p == d) {
      *p = d->next;
      return;
    }
}

static void maybe_closed(rf_backup *b);

/* Answer or end d's request and free d (no read may be in flight). */
static void finish(dl *d, int status, const char *code, const char *msg) {
  rf_backup *b = d->b;
  unlink_dl(d);
  if (d->fd >= 0) close(d->fd);
  if (d->state == D_SEND) {
    rf_http_stream_end(d->req); /* short of the size: the connection closes */
  } else {
    if (status == 503) rf_http_add_header(d->req, "Retry-After", "1");
    rf_http_json_error(d->req, status, code, msg);
  }
  free(d);
  if (b->closing) maybe_closed(b);
}

static void tick(uv_timer_t *t);

static void need_tick(rf_backup *b) {
  if (b->ticking || b->closing) return;
  b->ticking = 1;
  uv_timer_start(&b->timer, tick, TICK_MS, TICK_MS);
}

/* ------------------------------------------------------------ sending */

static void got(dl *d, ssize_t n, const void *data) {
  d->busy = 0;
  d->b->busy--;
  if (d->gone) {
    finish(d, 0, NULL, NULL);
    return;
  }
  if (n <= 0) {
    rf_log(RF_WARN, "backup: snapshot %" PRIu64 " unreadable at offset %"
           PRIu64 ": %s; download cut short", d->m.index, d->off,
           n < 0 ? rf_snap_strerror((int)n) : "end of file");
    finish(d, 0, NULL, NULL);
    return;
  }
  if (rf_http_stream_write(d->req, data, (size_t)n) < 0) {
    finish(d, 0, NULL, NULL);
    return;
  }
  d->off += (uint64_t)n;
  step(d);
}

static void on_file_read(uv_fs_t *fs) {
  dl *d = fs->data;
  ssize_t n = fs->result;
  uv_fs_req_cleanup(fs);
  got(d, n, d->buf);
}

static void on_mem_read(void *ud, int status, const void *data, size_t len) {
  got(ud, status < 0 ? status : (ssize_t)len, data);
}

/* Read the next chunk, end at the end, or pause while the socket is full. */
static void step(dl *d) {
  uint64_t left = d->m.size - d->off;
  size_t n = left < CHUNK ? (size_t)left : CHUNK;
  int rc;
  d->paused = 0;
  if (d->gone || left == 0) {
    finish(d, 0, NULL, NULL);
    return;
  }
  if (rf_http_stream_queued(d->req) > HIGH_WATER) {
    d->paused = 1;
    need_tick(d->b);
    return;
  }
  if (d->fd >= 0) {
    uv_buf_t ub = uv_buf_init(d->buf, (unsigned)n);
    d->fs.data = d;
    rc = uv_fs_read(d->b->loop, &d->fs, d->fd, &ub, 1, (int64_t)d->off,
                    on_file_read);
  } else {
    rc = rf_snapstore_read(rf_snaps_store(d->b->snaps), d->m.index, d->off,
                           n, on_mem_read, d);
  }
  if (rc < 0) {
    finish(d, 0, NULL, NULL);
    return;
  }
  d->busy = 1;
  d->b->busy++;
}

static void add_headers(dl *d) {
  char v[160];
  snprintf(v, sizeof(v), "%" PRIu64, d->m.index);
  rf_http_add_header(d->req, "X-Raft-Index", v);
  snprintf(v, sizeof(v), "%" PRIu64, d->m.term);
  rf_http_add_header(d->req, "X-Raft-Term", v);
  snprintf(v, sizeof(v), "%" PRIu64, d->m.size);
  rf_http_add_header(d->req, "X-Raft-Size", v);
  snprintf(v, sizeof(v), "attachment; filename=\"rafting-node%" PRIu64
           "-%016" PRIx64 "-%016" PRIx64 ".snap\"", d->b->id, d->m.index,
           d->m.term);
  rf_http_add_header(d->req, "Content-Disposition", v);
}

/* Open the latest snapshot and start streaming it. */
static void start_send(dl *d) {
  rf_snapstore *st = rf_snaps_store(d->b->snaps);
  int fd;
  if (rf_snapstore_latest(st, &d->m) < 0) {
    finish(d, 404, "no_snapshot", "this node has no snapshot yet; "
           "GET /snapshot?fresh takes one");
    return;
  }
  fd = rf_snapstore_open_file(st, d->m.index);
  if (fd < 0 && fd != UV_EINVAL) { /* rotated away just now: ask again */
    finish(d, 503, "snapshot_busy", "the snapshot was replaced while "
           "opening it; retry");
    return;
  }
  d->fd = fd; /* UV_EINVAL: a memory store, read through the snapstore */
  if (fd < 0) d->fd = -1;
  add_headers(d);
  if (rf_http_stream_begin_len(d->req, 200, "application/octet-stream",
                               d->m.size) < 0) {
    finish(d, 500, "internal", "cannot start the answer");
    return;
  }
  d->state = D_SEND;
  if (strcmp(d->req->method, "HEAD") == 0) d->off = d->m.size; /* no body */
  step(d);
}

/* ------------------------------------------------------------ fresh */

static void try_fresh(dl *d) {
  rf_snap_meta m;
  int rc;
  if (rf_snapstore_latest(rf_snaps_store(d->b->snaps), &m) == 0 &&
      m.index >= d->want) {
    start_send(d);
    return;
  }
  d->b->taking = 1;
  rc = rf_snaps_take_now(d->b->snaps);
  d->b->taking = 0;
  if (rc == 1) {
    start_send(d);
  } else if (rc < 0 && rc != RF_EBUSY) {
    finish(d, 500, "snapshot_failed", "taking the snapshot failed; see the "
           "node's log");
  } else {
    need_tick(d->b); /* taking it, or after the one being written */
  }
}

/* A snapshot was saved or installed (status 0), or a save failed. */
static void on_saved(void *ud, int status) {
  rf_backup *b = ud;
  dl *d, *next;
  if (b->taking) return; /* others waiting retry on the tick */
  for (d = b->head; d; d = next) {
    next = d->next;
    if (d->state != D_WAIT) continue;
    if (status < 0)
      finish(d, 500, "snapshot_failed", "taking the snapshot failed; see "
             "the node's log");
    else
      try_fresh(d);
  }
}

static void tick(uv_timer_t *t) {
  rf_backup *b = t->data;
  uint64_t now = uv_now(b->loop);
  int again = 0;
  dl *d, *next;
  for (d = b->head; d; d = next) {
    next = d->next;
    if (d->state == D_WAIT && now >= d->deadline) {
      finish(d, 503, "snapshot_busy", "a snapshot is being written and did "
             "not finish in time; retry");
    } else if (d->state == D_WAIT) {
      try_fresh(d);
      again = 1;
    } else if (d->paused) {
      step(d);
      again = 1;
    }
  }
  if (!again || b->closing) {
    uv_timer_stop(&b->timer);
    b->ticking = 0;
  }
}

/* ------------------------------------------------------------ requests */

/* ?fresh, ?fresh=1 or true: 1; absent, 0 or false: 0; else -1. */
static int fresh_param(rf_http_req *req) {
  size_t n;
  const char *v = rf_http_query_get(req, "fresh", &n);
  if (v == NULL) return 0;
  if (n == 0 || strcmp(v, "1") == 0 || strcmp(v, "true") == 0) return 1;
  if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0) return 0;
  return -1;
}

static int timeout_param(rf_http_req *req, uint64_t *ms) {
  size_t n;
  const char *v = rf_http_query_get(req, "timeout_ms", &n);
  char *end;
  unsigned long long x;
  *ms = FRESH_MS;
  if (v == NULL) return 0;
  x = strtoull(v, &end, 10);
  if (n == 0 || *end != '\0' || v[0] == '-' || x == 0 || x > FRESH_MAX_MS)
    return -1;
  *ms = x;
  return 0;
}

void rf_backup_get(rf_backup *b, rf_http_req *req) {
  int fresh = fresh_param(req);
  uint64_t ms;
  dl *d;
  if (fresh < 0 || timeout_param(req, &ms) < 0) {
    rf_http_json_error(req, 400, "bad_request", fresh < 0
                       ? "fresh takes no value, 1/true or 0/false"
                       : "timeout_ms must be 1..600000");
    return;
  }
  if (b->closing || (d = calloc(1, sizeof(*d) + CHUNK)) == NULL) {
    rf_http_add_header(req, "Retry-After", "1");
    rf_http_json_error(req, 503, "unavailable", "cannot serve a backup now");
    return;
  }
  d->b = b;
  d->req = req;
  d->fd = -1;
  d->state = D_WAIT;
  d->next = b->head;
  b->head = d;
  if (!fresh) {
    start_send(d);
    return;
  }
  d->want = rf_snaps_applied_index(b->snaps);
  d->deadline = uv_now(b->loop) + ms;
  try_fresh(d);
}

int rf_backup_abort(rf_backup *b, rf_http_req *req) {
  for (dl *d = b->head; d; d = d->next) {
    if (d->req != req) continue;
    d->gone = 1;
    if (d->state == D_WAIT) finish(d, 503, "gone", "the client left");
    else if (!d->busy) finish(d, 0, NULL, NULL);
    return 1; /* else the read in flight ends it */
  }
  return 0;
}

/* ------------------------------------------------------------ lifecycle */

int rf_backup_new(uv_loop_t *loop, rf_snaps *snaps, uint64_t id,
                  rf_backup **out) {
  rf_backup *b = calloc(1, sizeof(*b));
  *out = NULL;
  if (b == NULL) return UV_ENOMEM;
  b->loop = loop;
  b->snaps = snaps;
  b->id = id;
  uv_timer_init(loop, &b->timer);
  b->timer.data = b;
  if (snaps) rf_snaps_on_saved(snaps, on_saved, b);
  *out = b;
  return 0;
}

static void on_timer_closed(uv_handle_t *h) {
  rf_backup *b = h->data;
  if (b->done) b->done(b->done_ud);
  free(b);
}

static void maybe_closed(rf_backup *b) {
  if (b->head != NULL || b->busy > 0 || b->closing != 1) return;
  b->closing = 2; /* once */
  uv_close((uv_handle_t *)&b->timer, on_timer_closed);
}

void rf_backup_close(rf_backup *b, void (*done)(void *ud), void *ud) {
  dl *d, *next;
  b->closing = 1;
  b->done = done;
  b->done_ud = ud;
  if (b->snaps) rf_snaps_on_saved(b->snaps, NULL, NULL);
  uv_timer_stop(&b->timer);
  for (d = b->head; d; d = next) {
    next = d->next;
    d->gone = 1;
    if (d->state == D_WAIT)
      finish(d, 503, "shutting_down", "the node is stopping");
    else if (!d->busy)
      finish(d, 0, NULL, NULL);
  }
  maybe_closed(b);
}
