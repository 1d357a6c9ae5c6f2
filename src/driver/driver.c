/*
** driver.c -- the node driver (see rafting/driver.h).
**
** One ready batch is out at a time.  process() takes it, sends what a
** leader may send before its own write, starts the write; saved() sends
** the rest, installs an adopted snapshot, applies the committed entries
** (answering the writes that wait on them), releases confirmed reads, and
** advances the core -- then takes the next batch at once, so a commit
** that arrived while the write ran is applied without waiting for a tick.
**
** Waiting requests sit on two lists: writes (by index) and reads (by
** ReadIndex cookie, then by index).  Each is answered exactly once.
**
** Memory: the driver and its waits come from the core's allocator
** (raft_config.realloc).  Out of memory a request is refused (RF_ENOMEM)
** and a ready the core cannot build waits for the next tick.
*/
#include <stdlib.h>
#include <string.h>

#include "rafting/driver.h"

#define READIES_PER_TURN 8

typedef struct wait {
  struct wait *next, *prev;
  uint64_t index, term;  /* writes: where proposed; reads: the read index */
  uint64_t ctx;          /* reads: the ReadIndex cookie */
  int confirmed;         /* reads: a quorum confirmed the round */
  uint64_t deadline;     /* in ticks */
  rf_driver_write_cb wcb;
  rf_driver_read_cb rcb;
  void *ud;
} wait;

typedef struct wlist {
  wait *head, *tail;
} wlist;

struct rf_driver {
  void *(*alloc)(void *ud, void *ptr, size_t size); /* NULL: the C library */
  void *alloc_ud;
  raft *core;
  rf_io *io;
  uint64_t id;
  int request_ticks;
  int per_turn;
  uint64_t apply_per_turn; /* entries applied before the loop breathes */
  raft_ready rd;          /* the batch being written */
  int saving;             /* rd is out */
  int in_process;         /* process() is on the stack */
  int depth;              /* driver calls on the stack (callbacks may nest) */
  int early;              /* rd's leader messages already left */
  raft_hard_state durable; /* last hard state known durable */
  uint64_t stable_last;   /* last log index known durable here */
  size_t applied_early;   /* rd's committed entries applied before its write */
  uint64_t applied;       /* last index applied to the state machine */
  uint64_t ticks;
  uint64_t next_ctx;
  int failed;             /* a save failed: RF_E* code */
  int closing;
  void (*close_done)(void *);
  void *close_ud;
  wlist writes, reads;
  rf_buf res;             /* an entry's result, reused */
};

/* ------------------------------------------------------------ memory */

static void *mem_alloc(void *(*fn)(void *, void *, size_t), void *ud,
                       size_t size) {
  return fn != NULL ? fn(ud, NULL, size) : malloc(size);
}

static void mem_free(rf_driver *d, void *p) {
  if (p == NULL) return;
  if (d->alloc != NULL) d->alloc(d->alloc_ud, p, 0);
  else free(p);
}

/* ------------------------------------------------------------ waits */

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

static void answer_write(rf_driver *d, wait *w, int status, const char *res,
                         size_t len) {
  unlink_wait(&d->writes, w);
  w->wcb(w->ud, status, w->index, w->term, res ? res : "", len);
  mem_free(d, w);
}

static void answer_read(rf_driver *d, wait *w, int status) {
  unlink_wait(&d->reads, w);
  w->rcb(w->ud, status);
  mem_free(d, w);
}

/* A callback may propose, read, step or even close the driver, so every
** scan asks afresh for the first wait that matches after each answer, and
** stops once the driver is closing (whose close answered everyone). */
typedef int (*wait_match)(const wait *w, uint64_t arg);

static wait *first(const rf_driver *d, const wlist *l, wait_match m,
                   uint64_t arg) {
  if (d->closing) return NULL;
  for (wait *w = l->head; w != NULL; w = w->next)
    if (m(w, arg)) return w;
  return NULL;
}

static int at_index(const wait *w, uint64_t i) { return w->index == i; }
static int up_to(const wait *w, uint64_t i) { return w->index <= i; }
static int due(const wait *w, uint64_t now) { return w->deadline <= now; }
static int unconfirmed(const wait *w, uint64_t unused) {
  (void)unused;
  return !w->confirmed;
}
static int readable(const wait *w, uint64_t applied) {
  return w->confirmed && w->index <= applied;
}

/* Entry e was applied with result (rc, res): answer whoever proposed at
** its index -- or tell them another leader's entry took their place. */
static void writes_applied(rf_driver *d, const raft_entry *e, int rc,
                           const rf_buf *res) {
  wait *w;
  while ((w = first(d, &d->writes, at_index, e->index)) != NULL) {
    if (w->term == e->term) answer_write(d, w, rc, res->p, res->n);
    else answer_write(d, w, RF_ENOTCOMMITTED, NULL, 0);
  }
}

static void reads_applied(rf_driver *d) {
  wait *w;
  while ((w = first(d, &d->reads, readable, d->applied)) != NULL)
    answer_read(d, w, 0);
}

static void read_confirmed(rf_driver *d, const raft_read_state *rs) {
  for (wait *w = d->reads.head; w != NULL; w = w->next) {
    if (w->ctx != rs->ctx) continue;
    w->confirmed = 1;
    w->index = rs->index;
    if (w->index <= d->applied) answer_read(d, w, 0);
    return;
  }
}

/* Unconfirmed reads died with the leadership (safe to retry elsewhere);
** writes keep waiting: a new leader may still commit them. */
static void check_role(rf_driver *d) {
  wait *w;
  if (raft_role_of(d->core) == RAFT_LEADER && !d->failed) return;
  while ((w = first(d, &d->reads, unconfirmed, 0)) != NULL)
    answer_read(d, w, RF_ENOTLEADER);
}

/* A snapshot moved the state machine to index: a write at or below it can
** no longer be matched to its entry. */
static void jumped(rf_driver *d, uint64_t index) {
  wait *w;
  while ((w = first(d, &d->writes, up_to, index)) != NULL)
    answer_write(d, w, RF_ESNAPSHOT, NULL, 0);
  reads_applied(d);
}

static void expire(rf_driver *d, uint64_t now) {
  wait *w;
  while ((w = first(d, &d->writes, due, now)) != NULL)
    answer_write(d, w, RF_ETIMEDOUT, NULL, 0);
  while ((w = first(d, &d->reads, due, now)) != NULL)
    answer_read(d, w, RF_ETIMEDOUT);
}

static void destroy(rf_driver *d);

/* Around every driver call that may run a callback: the driver is freed by
** whichever call leaves last once it is closing (and no write is out).
** release() says 1 when d is gone. */
static void hold(rf_driver *d) { d->depth++; }

static int release(rf_driver *d) {
  if (--d->depth > 0 || !d->closing || d->saving) return 0;
  destroy(d);
  return 1;
}

static void cancel_all(rf_driver *d, int status) {
  while (d->writes.head) answer_write(d, d->writes.head, status, NULL, 0);
  while (d->reads.head) answer_read(d, d->reads.head, status);
}

static wait *new_wait(rf_driver *d, void *ud) {
  wait *w = mem_alloc(d->alloc, d->alloc_ud, sizeof(*w));
  if (w == NULL) return NULL;
  memset(w, 0, sizeof(*w));
  w->deadline = d->ticks + (uint64_t)d->request_ticks;
  w->ud = ud;
  return w;
}

/* ------------------------------------------------------------ ready */

static void wake(rf_driver *d) {
  if (!d->in_process && !d->closing) d->io->ops->wake(d->io);
}

/* Messages a leader may send before its own write of the batch (thesis
** 10.2.1): they carry entries and commit of a term already durable, and
** the leader counts itself in no quorum until the write is done. */
static int leader_msg(const rf_driver *d, const raft_msg *m) {
  return (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
          m->type == RAFT_MSG_SNAPSHOT) && m->term == d->durable.term;
}

static void send_msgs(rf_driver *d, int early) {
  const raft_ready *rd = &d->rd;
  for (size_t i = 0; i < rd->n_msgs; i++) {
    int lm = d->early && leader_msg(d, &rd->msgs[i]);
    if (early ? lm : !lm) d->io->ops->send(d->io, &rd->msgs[i]);
  }
}

static void apply_entry(rf_driver *d, const raft_entry *e) {
  int rc = 0;
  rf_buf_reset(&d->res);
  rc = d->io->ops->apply(d->io, e, &d->res); /* every type: the I/O picks */
  if (d->res.oom) rf_buf_reset(&d->res); /* applied: answered without result */
  d->applied = e->index;
  writes_applied(d, e, rc, &d->res);
  reads_applied(d);
}

/* A save failed: nothing more of the batch may leave (its promises are not
** durable) and the core cannot forget what it handed out, so the node
** stops taking part: no ticks, no steps, no new requests.  Waiting writes
** may still commit through the others; they time out as unknown. */
static void storage_failed(rf_driver *d, int status) {
  d->failed = status < 0 ? status : RF_ESTORAGE;
  while (d->reads.head && !d->closing)
    answer_read(d, d->reads.head, RF_ESTORAGE);
}

/* Committed entries that are already durable here need not wait for this
** batch's write (which may be a whole fsync of new entries): apply them,
** and answer their writers, now.  Not those this batch rewrites, nor any
** behind a snapshot still to install. */
static void apply_durable(rf_driver *d) {
  const raft_ready *rd = &d->rd;
  uint64_t limit = d->stable_last;
  size_t k = 0;
  d->applied_early = 0;
  if (rd->snap_index > 0) return;
  if (rd->n_entries > 0 && rd->entries[0].index <= limit)
    limit = rd->entries[0].index - 1;
  while (k < rd->n_committed && rd->committed[k].index <= limit &&
         !d->closing)
    apply_entry(d, &rd->committed[k++]);
  d->applied_early = k;
}

static void saved_batch(rf_driver *d, int status);

static void saved(void *ud, int status) {
  rf_driver *d = ud;
  hold(d);
  if (d->closing) d->saving = 0;
  else saved_batch(d, status);
  release(d);
}

static void saved_batch(rf_driver *d, int status) {
  const raft_ready *rd = &d->rd;
  if (status < 0) { /* rd stays out for good: process() runs no more */
    d->saving = 0;
    storage_failed(d, status);
    return;
  }
  if (rd->hs_changed) d->durable = rd->hs;
  if (rd->n_entries > 0) d->stable_last = rd->entries[rd->n_entries - 1].index;
  else if (rd->snap_index > 0) d->stable_last = rd->snap_index;
  send_msgs(d, 0);
  if (rd->snap_index) {
    int rc = d->io->ops->install(d->io, rd->snap_index, rd->snap_term);
    if (rc < 0) {
      d->saving = 0;
      storage_failed(d, rc);
      return;
    }
    d->applied = rd->snap_index;
    jumped(d, rd->snap_index);
  }
  for (size_t i = d->applied_early; i < rd->n_committed && !d->closing; i++)
    apply_entry(d, &rd->committed[i]);
  for (size_t i = 0; i < rd->n_reads && !d->closing; i++)
    read_confirmed(d, &rd->reads[i]);
  d->saving = 0;
  if (d->closing) return; /* raft_free() lets the batch go */
  raft_advance(d->core);
  check_role(d);
  if (!d->in_process && !d->closing && raft_has_ready(d->core))
    rf_driver_process(d);
}

/* Must the batch be synced?  Not when only the commit index moved: a lost
** commit index is learnt again from the leader (etcd's MustSync). */
static int must_sync(const rf_driver *d, const raft_ready *rd) {
  return rd->n_entries > 0 || rd->snap_index > 0 ||
         (rd->hs_changed && (rd->hs.term != d->durable.term ||
                             rd->hs.vote != d->durable.vote));
}

/* 0, or RAFT_ENOMEM: the core could not build the batch (nothing taken). */
static int start_batch(rf_driver *d) {
  raft_ready *rd = &d->rd;
  rf_io_save s;
  int rc;
  if ((rc = raft_ready_get(d->core, rd)) < 0) return rc;
  d->saving = 1;
  d->early = raft_role_of(d->core) == RAFT_LEADER &&
             (!rd->hs_changed || (rd->hs.term == d->durable.term &&
                                  rd->hs.vote == d->durable.vote));
  if (d->early) send_msgs(d, 1);
  apply_durable(d);
  if (d->closing) { /* an answer closed the driver: write nothing more */
    d->saving = 0;
    return 0;
  }
  if (!rd->hs_changed && rd->n_entries == 0 && rd->snap_index == 0) {
    saved(d, 0); /* nothing to write */
    return 0;
  }
  memset(&s, 0, sizeof(s));
  s.hs = rd->hs_changed ? &rd->hs : NULL;
  s.must_sync = must_sync(d, rd);
  s.snap_index = rd->snap_index;
  s.snap_term = rd->snap_term;
  s.snap_conf = rd->snap_conf;
  s.entries = rd->entries;
  s.n_entries = rd->n_entries;
  rc = d->io->ops->save(d->io, &s, saved, d);
  if (rc < 0) saved(d, rc);
  return 0;
}

int rf_driver_process(rf_driver *d) {
  int turns = 0, more = 0;
  uint64_t applied0 = d->applied;
  if (d->in_process || d->closing) return 0;
  hold(d);
  d->in_process = 1;
  while (!d->saving && !d->closing && !d->failed && raft_has_ready(d->core)) {
    /* let the loop breathe: batches with nothing to write (commits only,
    ** as when a follower catches up) would otherwise apply one after the
    ** other in one turn */
    if (turns++ == d->per_turn || d->applied - applied0 >= d->apply_per_turn) {
      more = 1;
      break;
    }
    if (start_batch(d) < 0) break; /* out of memory: the next tick retries */
  }
  d->in_process = 0;
  if (release(d)) return 0;
  if (more) wake(d);
  return more;
}

/* ------------------------------------------------------------ inputs */

void rf_driver_tick(rf_driver *d) {
  if (d->closing) return;
  hold(d);
  d->ticks++;
  expire(d, d->ticks);
  if (d->closing || d->failed) {
    release(d);
    return;
  }
  raft_tick(d->core);
  check_role(d);
  if (!release(d)) wake(d);
}


int rf_driver_step(rf_driver *d, const raft_msg *m) {
  int rc;
  if (d->closing) return RF_ESTOPPING;
  if (d->failed) return d->failed;
  hold(d);
  rc = raft_step(d->core, m);
  check_role(d);
  if (!release(d)) wake(d);
  return rc;
}

int rf_driver_campaign(rf_driver *d) {
  int rc;
  if (d->closing) return RF_ESTOPPING;
  if (d->failed) return d->failed;
  rc = raft_campaign(d->core);
  wake(d);
  return rc;
}

/* After a proposal: a refused one frees its wait, an accepted one waits
** in d->writes for commit and apply.  rc is what the proposal returned. */
static int track_write(rf_driver *d, wait *w, int rc, rf_driver_write_cb cb,
                       uint64_t *index, uint64_t *term) {
  if (rc < 0) {
    mem_free(d, w);
    return rc;
  }
  w->wcb = cb;
  if (index) *index = w->index;
  if (term) *term = w->term;
  push(&d->writes, w);
  wake(d);
  return 0;
}

int rf_driver_propose(rf_driver *d, const void *data, size_t len,
                      rf_driver_write_cb cb, void *ud, uint64_t *index,
                      uint64_t *term) {
  wait *w;
  int rc;
  if (d->closing) return RF_ESTOPPING;
  if (d->failed) return RF_ESTORAGE;
  if ((w = new_wait(d, ud)) == NULL) return RF_ENOMEM;
  rc = raft_propose(d->core, data, len, &w->index, &w->term);
  return track_write(d, w, rc, cb, index, term);
}

/* Like a write: answered once the CONF entry is committed and applied. */
int rf_driver_change(rf_driver *d, const raft_conf_change *c,
                     rf_driver_write_cb cb, void *ud, uint64_t *index,
                     uint64_t *term) {
  wait *w;
  int rc;
  if (d->closing) return RF_ESTOPPING;
  if (d->failed) return RF_ESTORAGE;
  if ((w = new_wait(d, ud)) == NULL) return RF_ENOMEM;
  rc = raft_propose_conf(d->core, c, &w->index, &w->term);
  return track_write(d, w, rc, cb, index, term);
}

int rf_driver_transfer(rf_driver *d, uint64_t target) {
  int rc;
  if (d->closing) return RF_ESTOPPING;
  if (d->failed) return d->failed;
  rc = raft_transfer(d->core, target);
  wake(d);
  return rc;
}

int rf_driver_conf_at(const rf_driver *d, uint64_t index, raft_conf *out) {
  return raft_conf_at(d->core, index, out);
}

int rf_driver_read(rf_driver *d, rf_driver_read_cb cb, void *ud) {
  wait *w;
  int rc;
  if (d->closing) return RF_ESTOPPING;
  if (d->failed) return RF_ESTORAGE;
  if ((w = new_wait(d, ud)) == NULL) return RF_ENOMEM;
  w->ctx = ++d->next_ctx;
  rc = raft_read_index(d->core, w->ctx);
  if (rc < 0) {
    mem_free(d, w);
    return rc;
  }
  w->rcb = cb;
  push(&d->reads, w);
  wake(d);
  return 0;
}

/* ------------------------------------------------------------ snapshots */

int rf_driver_compact(rf_driver *d, uint64_t index) {
  raft_entry e;
  int rc;
  if (d->closing || d->failed) return RF_ESTOPPING;
  if ((rc = raft_log_entry(d->core, index, &e)) < 0) return rc;
  if ((rc = raft_compact(d->core, index)) < 0) return rc;
  return d->io->ops->compact(d->io, index, e.term);
}

void rf_driver_report_snapshot(rf_driver *d, uint64_t to, int ok) {
  if (d->closing) return;
  raft_report_snapshot(d->core, to, ok);
  wake(d);
}

/* ------------------------------------------------------------ queries */

void rf_driver_status(const rf_driver *d, raft_status *st) {
  raft_status_get(d->core, st);
  st->applied = d->applied;
}

raft_role rf_driver_role(const rf_driver *d) { return raft_role_of(d->core); }
uint64_t rf_driver_leader(const rf_driver *d) { return raft_leader(d->core); }
uint64_t rf_driver_term(const rf_driver *d) { return raft_term(d->core); }
uint64_t rf_driver_applied(const rf_driver *d) { return d->applied; }
int rf_driver_failed(const rf_driver *d) { return d->failed; }

uint64_t rf_driver_term_at(const rf_driver *d, uint64_t index) {
  raft_entry e;
  return raft_log_entry(d->core, index, &e) == RAFT_OK ? e.term : 0;
}

int rf_driver_entry(const rf_driver *d, uint64_t index, raft_entry *out) {
  return raft_log_entry(d->core, index, out);
}

size_t rf_driver_waiting(const rf_driver *d) {
  size_t n = 0;
  for (const wait *w = d->writes.head; w; w = w->next) n++;
  for (const wait *w = d->reads.head; w; w = w->next) n++;
  return n;
}

/* ------------------------------------------------------------ lifecycle */

int rf_driver_new(const rf_driver_opts *o, const raft_restore *rs, rf_io *io,
                  rf_driver **out) {
  rf_driver *d = mem_alloc(o->core.realloc, o->core.realloc_ud, sizeof(*d));
  int err = 0;
  *out = NULL;
  if (d == NULL) return RF_ENOMEM;
  memset(d, 0, sizeof(*d));
  d->alloc = o->core.realloc;
  d->alloc_ud = o->core.realloc_ud;
  d->core = raft_new_restore(&o->core, rs, &err);
  if (d->core == NULL) {
    mem_free(d, d);
    return err < 0 ? err : RF_ENOMEM;
  }
  d->io = io;
  d->id = o->core.id;
  d->request_ticks = o->request_ticks > 0 ? o->request_ticks : 1;
  d->per_turn = o->readies_per_turn > 0 ? o->readies_per_turn : READIES_PER_TURN;
  d->apply_per_turn = o->core.max_apply > 0 ? o->core.max_apply : RAFT_MAX_APPLY;
  d->durable = rs->hs;
  d->stable_last = rs->snap_index + rs->n;
  d->applied = rs->applied;
  rf_buf_init(&d->res);
  *out = d;
  return 0;
}

static void destroy(rf_driver *d) {
  raft_free(d->core);
  rf_buf_free(&d->res);
  if (d->close_done) d->close_done(d->close_ud);
  mem_free(d, d);
}

/* Closing first, so that nothing new is taken while the callbacks run. */
void rf_driver_close(rf_driver *d, void (*done)(void *ud), void *ud) {
  if (d->closing) return;
  d->closing = 1;
  d->close_done = done;
  d->close_ud = ud;
  hold(d);
  cancel_all(d, RF_ESTOPPING);
  release(d); /* frees d now, or when the last call or the write ends */
}
