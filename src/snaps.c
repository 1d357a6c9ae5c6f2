/*
** snaps.c -- the node's snapshots (see snaps.h).
**
** Taking one, once the log since the last has grown past a share of the
** state (due()): with a data directory a fork()ed child writes it from its
** copy-on-write image of the store at the index just applied (the fork is
** the only pause, see snapfork.h), and the snapstore renames it into place
** off the loop; memory nodes serialize on the loop.  Then the core and the
** WAL drop the log behind it, less snapshot_trailing entries.
**
** Sending one: per follower, read a chunk, send it, wait for the ack that
** names the next offset; the final ack tells the core it went through.
** Receiving one: chunks from the current leader only, into the snapstore;
** once complete the core is stepped with the SNAPSHOT message and, when it
** adopts it, the next ready installs it (rf_snaps_install).
*/
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "rafting/bytes.h"
#include "rafting/driver.h"
#include "rafting/log.h"
#include "rafting/metrics.h"
#include "snapfork.h"
#include "snaps.h"

#define STALL_MS 10000 /* a transfer with no progress for this long ends */
/* The amortized trigger waits up to this much (%) more, drawn anew per
** snapshot: replicas apply the same log, and without it all of them fork
** and write at the same index, which slows a commit's whole quorum at
** once (measured in bench/bigstate). Later, never earlier: the bound on
** snapshot bytes per byte of log only improves. */
#define JITTER_PCT 25

typedef struct sender {
  uint64_t to;          /* 0: idle */
  rf_snap_meta meta;
  uint64_t offset;      /* next byte to send */
  uint64_t deadline;
  int reading;          /* a chunk read is in flight */
  struct rf_snaps *owner;
  rf_progress prog;     /* "snapshot send" progress lines */
} sender;

typedef struct receiver {
  uint64_t from, term;  /* the leader streaming to us (0: none) */
  rf_snap_meta meta;
  uint64_t deadline;
} receiver;

struct rf_snaps {
  rf_snaps_deps deps;   /* borrowed */
  rf_driver *drv;       /* set by rf_snaps_attach() */
  uv_loop_t *loop;
  rf_snapstore *store;
  char *dir;            /* where received snapshots go; NULL: memory */
  int saving;           /* a snapshot is being written */
  rf_snapfork *child;   /* the child writing it, if forked */
  rf_snap_meta child_m; /* which one it writes */
  rf_store *pre;        /* a received snapshot, loaded off the loop */
  rf_snap_meta pre_m;   /* which one */
  uint64_t save_t0;     /* when it started (rafting_snapshot_duration) */
  uint64_t since_entries, since_bytes;
  uint64_t applied_index, applied_term; /* the last entry applied */
  void (*saved_cb)(void *ud, int status); /* rf_snaps_on_saved */
  void *saved_ud;
  uint64_t rng;                   /* splitmix64 state, for jitter */
  uint64_t compact_goal;          /* drop the log up to here, a step a tick */
  unsigned jitter;                /* this interval's extra, % of need */
  void (*final_cb)(void *);       /* rf_snaps_final: once it is taken */
  void *final_ud;
  rf_progress rx_prog;  /* "snapshot receive" progress lines */
  sender tx[RAFT_MAX_NODES];
  receiver rx;
  uint64_t rx_gen;      /* bumped whenever rx is dropped or replaced */
  int finishing;        /* a received snapshot is being checked and synced */
  int closing;
  void (*done)(void *);
  void *done_ud;
};

static uint64_t now(rf_snaps *s) { return uv_now(s->loop); }

/* ------------------------------------------------------------ taking */

/* The log since the last snapshot starts again from nothing. */
static void new_interval(rf_snaps *s) {
  s->since_entries = s->since_bytes = 0;
  s->jitter = (unsigned)(rf_splitmix64(&s->rng) % (JITTER_PCT + 1));
}

/* Drop up to COMPACT_STEP more entries towards compact_to.  Dropping the
** log a snapshot covers frees every entry on the loop: 100-240 ms for
** 500,000-700,000 entries in bench/bigstate, all at once; a step a tick
** spreads it.  Just after a snapshot child exits, every page the frees
** touch faults once (fork left them write-protected): 32,768 entries took
** 81 ms of one loop turn there; 8,192 stay under ~5 ms.  The step is per
** 10 ms of tick, so the log is dropped at ~800,000 entries a second
** whatever tick_ms is (a slow tick must not let writes outrun it). */
#define COMPACT_STEP 8192

static uint64_t compact_step_size(const rf_snaps *s) {
  int tick = s->deps.cfg->tick_ms;
  return COMPACT_STEP * (uint64_t)(tick > 10 ? (tick + 9) / 10 : 1);
}

/* How far the log may be dropped now: the goal, or less on a leader while
** a live follower in the replicating state still needs entries.  Cut off,
** one catching up after a restart or a snapshot install would need the
** whole state sent again; it installed a snapshot or held the log before
** the previous one, so about two intervals of log stay at most.  A
** follower that is down or paused stops counting within two election
** timeouts (it is no longer active). */
static uint64_t compact_limit(const rf_snaps *s, const raft_status *st) {
  uint64_t to = s->compact_goal;
  for (size_t i = 0; st->role == RAFT_LEADER && i < st->n_peers; i++) {
    const raft_peer_status *p = &st->peers[i];
    if (p->id != st->id && p->state == RAFT_PR_REPLICATE && p->active &&
        p->match < to)
      to = p->match;
  }
  return to;
}

/* Drop up to step more entries towards compact_goal (a tick retries while
** a follower holds it back). */
static void compact_step(rf_snaps *s, uint64_t step) {
  uint64_t done, to;
  raft_status st;
  if (s->compact_goal == 0) return;
  rf_driver_status(s->drv, &st);
  done = st.first_index > 0 ? st.first_index - 1 : 0;
  if (done >= s->compact_goal) {
    s->compact_goal = 0;
    return;
  }
  if ((to = compact_limit(s, &st)) <= done) return;
  if (to - done > step) to = done + step;
  /* refused when the log no longer holds that entry: a snapshot replaced
  ** it, nothing left to do */
  if (rf_driver_compact(s->drv, to) < 0 || to >= s->compact_goal)
    s->compact_goal = 0;
}

/* Drop the log up to `snapshot index - trailing`, in the core and the WAL:
** a step now, the rest with the ticks. */
static void compact(rf_snaps *s, uint64_t index) {
  const rf_config *cfg = s->deps.cfg;
  if (index <= cfg->snapshot_trailing) return;
  s->compact_goal = index - cfg->snapshot_trailing;
  /* before a stop, all at once: nobody waits on this node any more */
  compact_step(s, s->final_cb ? UINT64_MAX : compact_step_size(s));
}

static void notify_saved(rf_snaps *s, int status) {
  if (s->saved_cb && !s->closing) s->saved_cb(s->saved_ud, status);
}

/* The snapshot rf_snaps_final waits for is taken, or failed. */
static void final_done(rf_snaps *s) {
  void (*cb)(void *) = s->final_cb;
  s->final_cb = NULL;
  if (cb != NULL && !s->closing) cb(s->final_ud);
}

static void saved(rf_snaps *s, int status);

static void on_saved(void *ud, int status) {
  rf_snaps *s = ud;
  saved(s, status);
  final_done(s);
}

static void saved(rf_snaps *s, int status) {
  rf_snap_meta m;
  rf_logrec r;
  uint64_t t0;
  s->saving = 0;
  if (status == UV_ECANCELED || s->closing) return;
  notify_saved(s, status == RF_SNAP_ESTALE ? 0 : status);
  if (status == RF_SNAP_ESTALE) return; /* a newer one was installed */
  if (status < 0) {
    rf_log_begin(&r, RF_ERROR, "snapshot save failed");
    rf_log_str(&r, "error", rf_snap_strerror(status));
    rf_log_end(&r);
    return;
  }
  if (rf_snapstore_latest(s->store, &m) != 0) return;
  rf_histo_since(&rf_metrics_g.snapshot, s->save_t0);
  RF_METRIC_SET(snapshot_bytes, m.size);
  t0 = uv_hrtime();
  compact(s, m.index); /* on the loop: frees the log's entries */
  rf_log_begin(&r, RF_INFO, "snapshot taken");
  rf_log_u64(&r, "index", m.index);
  rf_log_u64(&r, "keys", m.nkeys);
  rf_log_u64(&r, "bytes", m.size);
  rf_log_u64(&r, "compact_us", (uv_hrtime() - t0) / 1000);
  rf_log_end(&r);
}

/* What a snapshot at index records beside the state: the configuration
** there (captured on the loop, before any fork) and the membership blob
** (into blob, the caller's).  0, or < 0 when either is unavailable. */
static int extra_at(rf_snaps *s, uint64_t index, raft_conf *conf,
                    rf_buf *blob, rf_snap_extra *x) {
  int rc;
  memset(x, 0, sizeof(*x));
  if ((rc = rf_driver_conf_at(s->drv, index, conf)) < 0) {
    rf_log(RF_ERROR, "snapshot: no configuration at %llu",
           (unsigned long long)index);
    return rc;
  }
  x->conf = conf;
  if (s->deps.members_blob != NULL &&
      ((rc = s->deps.members_blob(s->deps.members_ud, index, blob)) < 0 ||
       blob->oom)) {
    rf_log(RF_ERROR, "snapshot: no membership at %llu",
           (unsigned long long)index);
    return rc < 0 ? rc : UV_ENOMEM;
  }
  x->blob = blob->p;
  x->blob_len = blob->n;
  return 0;
}

/* Memory nodes (and a failed fork): serialize on the loop, save off it. */
static void take_here(rf_snaps *s, const raft_entry *e) {
  rf_store *st = rf_sm_store(s->deps.sm);
  rf_snap_extra x;
  rf_snap_meta m;
  raft_conf conf;
  rf_buf b, blob;
  char *p;
  size_t len;
  int rc;
  rf_buf_init(&b);
  rf_buf_init(&blob);
  if ((rc = extra_at(s, e->index, &conf, &blob, &x)) == 0)
    rc = rf_snap_serialize(st, e->index, e->term, &x, &b, &m);
  rf_buf_free(&blob);
  if (rc < 0 || b.oom) {
    rf_buf_free(&b);
    rf_log(RF_ERROR, "snapshot: %s", rf_snap_strerror(rc < 0 ? rc
                                                      : UV_ENOMEM));
    new_interval(s); /* not at every entry */
    notify_saved(s, rc < 0 ? rc : UV_ENOMEM);
    return;
  }
  p = rf_buf_take(&b, &len);
  new_interval(s);
  if (rf_snapstore_save(s->store, p, len, &m, on_saved, s) == 0)
    s->saving = 1;
}

static void on_child(void *ud, int status, const rf_snap_meta *m) {
  rf_snaps *s = ud;
  s->child = NULL;
  if (rf_snapstore_save_file(s->store, m, status == 0, on_saved, s) < 0 ||
      status < 0) {
    s->saving = 0;
    if (status < 0) on_saved(s, status);
    else final_done(s);
  }
}

/* Data directory: fork a child that writes the file from its copy of the
** store; the loop pauses for the fork only. */
static void take(rf_snaps *s, const raft_entry *e) {
  rf_store *st = rf_sm_store(s->deps.sm);
  uint64_t pause = 0;
  rf_snap_extra x;
  raft_conf conf;
  rf_logrec r;
  rf_buf blob;
  int fd, rc;
  s->save_t0 = rf_metrics_now();
  if (s->dir == NULL) {
    take_here(s, e);
    return;
  }
  rf_buf_init(&blob);
  if ((rc = extra_at(s, e->index, &conf, &blob, &x)) < 0) {
    rf_buf_free(&blob);
    new_interval(s);
    notify_saved(s, rc);
    return;
  }
  if ((fd = rf_snapstore_save_fd(s->store, e->index, e->term)) < 0) {
    rf_buf_free(&blob);
    if (fd == RF_SNAP_EBUSY) return; /* a failed one's file is going */
    rf_log(RF_ERROR, "snapshot: %s", rf_snapstore_errmsg(s->store));
    new_interval(s); /* not at every entry */
    notify_saved(s, fd);
    return;
  }
  memset(&s->child_m, 0, sizeof(s->child_m));
  s->child_m.index = e->index;
  s->child_m.term = e->term;
  rc = rf_snapfork_start(s->loop, st, e->index, e->term, &x, fd, on_child, s,
                         &s->child, &pause);
  close(fd);
  rf_buf_free(&blob); /* the child has its copy */
  if (rc < 0) {
    rf_log(RF_WARN, "snapshot: cannot fork (%s): serializing on the loop",
           uv_strerror(rc));
    rf_snapstore_save_file(s->store, &s->child_m, 0, NULL, NULL);
    take_here(s, e);
    return;
  }
  s->saving = 1;
  rf_log_begin(&r, RF_INFO, "snapshot started");
  rf_log_u64(&r, "index", e->index);
  rf_log_u64(&r, "keys", rf_store_count(st));
  rf_log_u64(&r, "log_bytes", s->since_bytes); /* since the last one */
  rf_log_u64(&r, "fork_us", pause / 1000);
  rf_log_end(&r);
  new_interval(s);
}

/* Enough log since the last snapshot: a share of the state's size (so the
** bytes snapshots write stay proportional to the log), capped. */
static int due(rf_snaps *s) {
  const rf_config *c = s->deps.cfg;
  uint64_t need;
  if (c->snapshot_entries && s->since_entries >= c->snapshot_entries) return 1;
  if (c->snapshot_log_bytes && s->since_bytes >= c->snapshot_log_bytes)
    return 1;
  if (c->snapshot_log_percent == 0) return 0;
  need = rf_store_bytes(rf_sm_store(s->deps.sm)) / 100 *
         c->snapshot_log_percent;
  if (need < c->snapshot_min_log_bytes) need = c->snapshot_min_log_bytes;
  need += need / 100 * s->jitter;
  return s->since_bytes >= need;
}

void rf_snaps_applied(rf_snaps *s, const raft_entry *e) {
  s->applied_index = e->index;
  s->applied_term = e->term;
  s->since_entries++;
  s->since_bytes += e->len;
  if (s->saving || s->rx.from || s->finishing) return; /* one at a time */
  if (due(s)) take(s, e);
}

int rf_snaps_take_now(rf_snaps *s) {
  rf_snap_meta m;
  raft_entry e;
  if (s->closing || s->saving || s->rx.from || s->finishing) return RF_EBUSY;
  if (s->applied_index == 0 ||
      (rf_snapstore_latest(s->store, &m) == 0 && m.index >= s->applied_index))
    return 1;
  memset(&e, 0, sizeof(e));
  e.index = s->applied_index;
  e.term = s->applied_term;
  take(s, &e);
  return s->saving ? 0 : RF_EIO;
}

void rf_snaps_on_saved(rf_snaps *s, void (*cb)(void *ud, int status),
                       void *ud) {
  s->saved_cb = cb;
  s->saved_ud = ud;
}

uint64_t rf_snaps_applied_index(const rf_snaps *s) { return s->applied_index; }

rf_snapstore *rf_snaps_store(rf_snaps *s) { return s->store; }

/* ------------------------------------------------------------ sending */

static sender *sender_of(rf_snaps *s, uint64_t to) {
  for (size_t i = 0; i < RAFT_MAX_NODES; i++)
    if (s->tx[i].to == to) return &s->tx[i];
  return NULL;
}

static void sender_end(rf_snaps *s, sender *t, int ok, const char *why) {
  uint64_t to = t->to;
  rf_logrec r;
  rf_log_begin(&r, ok ? RF_INFO : RF_WARN,
               ok ? "snapshot sent" : "snapshot abandoned");
  rf_log_u64(&r, "index", t->meta.index);
  rf_log_u64(&r, "to", to);
  rf_log_u64(&r, "bytes", ok ? t->meta.size : t->offset);
  if (!ok) rf_log_str(&r, "error", why);
  rf_log_end(&r);
  if (ok) {
    rf_progress_step(&t->prog, t->meta.size);
    rf_progress_end(&t->prog);
  }
  t->to = 0;
  rf_driver_report_snapshot(s->drv, to, ok);
}

static void on_chunk_read(void *ud, int status, const void *data, size_t len) {
  sender *t = ud;
  rf_snaps *s = t->owner;
  raft_msg m;
  t->reading = 0;
  if (t->to == 0 || status == UV_ECANCELED || s->closing) return;
  if (status < 0) {
    sender_end(s, t, 0, rf_snap_strerror(status));
    return;
  }
  memset(&m, 0, sizeof(m));
  m.type = RAFT_MSG_SNAPSHOT;
  m.from = s->deps.id;
  m.to = t->to;
  m.term = rf_driver_term(s->drv);
  m.index = t->meta.index;
  m.log_term = t->meta.term;
  m.offset = t->offset;
  m.size = t->meta.size;
  m.data = data;
  m.data_len = len;
  m.done = t->offset + len >= t->meta.size;
  if (rf_transport_send(s->deps.tp, &m) < 0) sender_end(s, t, 0, "peer unreachable");
}

static void send_chunk(rf_snaps *s, sender *t) {
  const rf_config *cfg = s->deps.cfg;
  size_t chunk = cfg->snapshot_chunk_bytes;
  if (chunk + 4096 > cfg->max_frame_bytes) chunk = cfg->max_frame_bytes - 4096;
  t->deadline = now(s) + STALL_MS;
  t->reading = 1;
  if (rf_snapstore_read(s->store, t->meta.index, t->offset, chunk,
                        on_chunk_read, t) < 0) {
    t->reading = 0;
    sender_end(s, t, 0, "cannot read the snapshot");
  }
}

void rf_snaps_send(rf_snaps *s, const raft_msg *m) {
  rf_logrec r;
  sender *t;
  if (sender_of(s, m->to) != NULL) return; /* already streaming to it */
  if ((t = sender_of(s, 0)) == NULL) return;
  if (rf_snapstore_latest(s->store, &t->meta) != 0 || t->meta.index < m->index) {
    rf_driver_report_snapshot(s->drv, m->to, 0);
    return;
  }
  t->to = m->to;
  t->offset = 0;
  t->owner = s;
  rf_log_begin(&r, RF_INFO, "snapshot sending");
  rf_log_u64(&r, "index", t->meta.index);
  rf_log_u64(&r, "to", m->to);
  rf_log_u64(&r, "bytes", t->meta.size);
  rf_log_end(&r);
  rf_progress_start(&t->prog, "snapshot send", "bytes", t->meta.size);
  t->prog.every = 1; /* a clock read per chunk acked is cheap */
  send_chunk(s, t);
}

static void on_ack(rf_snaps *s, const raft_msg *m) {
  sender *t = sender_of(s, m->from);
  if (t == NULL || m->index != t->meta.index || t->reading) return;
  if (m->reject) {
    sender_end(s, t, 0, "the follower refused it");
  } else if (m->offset >= t->meta.size) {
    sender_end(s, t, 1, NULL);
  } else if (m->offset > t->offset || m->offset == 0) {
    t->offset = m->offset; /* 0: the follower restarted the transfer */
    rf_progress_step(&t->prog, t->offset);
    send_chunk(s, t);
  }
}

/* ------------------------------------------------------------ receiving */

static void ack(rf_snaps *s, uint64_t to, uint64_t index, uint64_t offset,
                int reject) {
  raft_msg a;
  memset(&a, 0, sizeof(a));
  a.type = RAFT_MSG_SNAPSHOT_RESP;
  a.from = s->deps.id;
  a.to = to;
  a.term = rf_driver_term(s->drv);
  a.index = index;
  a.offset = offset;
  a.reject = reject;
  rf_transport_send(s->deps.tp, &a);
}

/* What a chunk write or the final check belongs to: the transfer as it was
** when the operation started, so a transfer begun meanwhile is not mixed
** up with it (its generation differs). */
typedef struct rx_op {
  rf_snaps *s;
  receiver r;
  uint64_t gen;
} rx_op;

static rx_op *rx_op_new(rf_snaps *s) {
  rx_op *op = malloc(sizeof(*op));
  if (op != NULL) {
    op->s = s;
    op->r = s->rx;
    op->gen = s->rx_gen;
  }
  return op;
}

/* The state machine reloads the scripts the snapshot holds.  If they do
** not load here (this node's sm_instructions or sm_memory_bytes are lower
** than where they were deployed), its commands would differ from the
** cluster's: said loudly, with what to change. */
static void scripts_restored(rf_snaps *s, uint64_t index) {
  rf_buf msg;
  rf_buf_init(&msg);
  if (rf_sm_restored(s->deps.sm, index, &msg) < 0) {
    rf_logrec r;
    rf_log_begin(&r, RF_ERROR, "scripts in the snapshot do not load");
    rf_log_u64(&r, "index", index);
    rf_log_str(&r, "error", msg.p ? msg.p : "out of memory");
    rf_log_str(&r, "effect", "this node runs the previous scripts; give it "
               "the cluster's sm_instructions and sm_memory_bytes");
    rf_log_end(&r);
  }
  rf_buf_free(&msg);
}

/* The installed snapshot's membership blob goes to the node. */
static void members_restored(rf_snaps *s, uint64_t index) {
  char err[256];
  rf_snap_meta h;
  rf_buf blob;
  if (s->deps.members_restored == NULL) return;
  rf_buf_init(&blob);
  if (rf_snapstore_head(s->store, index, &h, &blob, err, sizeof(err)) == 0)
    s->deps.members_restored(s->deps.members_ud, (const uint8_t *)blob.p,
                             blob.n);
  else
    rf_log(RF_ERROR, "snapshot %llu: membership unreadable: %s",
           (unsigned long long)index, err);
  rf_buf_free(&blob);
}

static void rx_drop(rf_snaps *s) {
  memset(&s->rx, 0, sizeof(s->rx));
  s->rx_gen++;
}

/* The received snapshot is stored: tell the leader and the core. */
static void adopt(rf_snaps *s, const receiver *r) {
  rf_snap_meta h;
  char err[256];
  raft_msg m;
  memset(&m, 0, sizeof(m));
  /* the configuration travels inside the file: the core takes it on */
  if (rf_snapstore_head(s->store, r->meta.index, &h, NULL, err,
                        sizeof(err)) == 0 && h.has_conf)
    m.conf = &h.conf;
  m.type = RAFT_MSG_SNAPSHOT;
  m.from = r->from;
  m.to = s->deps.id;
  m.term = r->term;
  m.index = r->meta.index;
  m.log_term = r->meta.term;
  ack(s, r->from, r->meta.index, r->meta.size, 0);
  rf_driver_step(s->drv, &m);
}

static void on_preloaded(void *ud, int status) {
  rx_op *op = ud;
  rf_snaps *s = op->s;
  receiver r = op->r;
  rf_logrec lr;
  free(op);
  s->finishing = 0;
  if (status < 0 || s->closing) {
    rf_store_free(s->pre);
    s->pre = NULL;
  }
  if (status == UV_ECANCELED || s->closing) return;
  rf_log_begin(&lr, status < 0 ? RF_WARN : RF_INFO,
               status < 0 ? "snapshot preload failed" : "snapshot preloaded");
  rf_log_u64(&lr, "index", r.meta.index);
  if (status == 0) rf_log_u64(&lr, "keys", rf_store_count(s->pre));
  if (status < 0) rf_log_str(&lr, "error", rf_snap_strerror(status));
  rf_log_end(&lr);
  adopt(s, &r); /* failed: rf_snaps_install loads it on the loop */
}

/* Load the received snapshot into a store of its own on the thread pool,
** the loop free meanwhile; 1 if under way (on_preloaded goes on). */
static int preload(rf_snaps *s, const receiver *r) {
  rx_op *op = malloc(sizeof(*op));
  if (op == NULL) return 0;
  op->s = s;
  op->r = *r;
  op->gen = s->rx_gen;
  rf_store_free(s->pre);
  if ((s->pre = rf_store_new()) == NULL ||
      rf_snapstore_preload(s->store, &r->meta, s->pre, on_preloaded, op) < 0) {
    rf_store_free(s->pre);
    s->pre = NULL;
    free(op);
    return 0;
  }
  s->pre_m = r->meta;
  s->finishing = 1; /* no other transfer until the core has it */
  return 1;
}

static void on_finished(void *ud, int status) {
  rx_op *op = ud;
  rf_snaps *s = op->s;
  receiver r = op->r;
  free(op);
  s->finishing = 0;
  if (status == UV_ECANCELED || s->closing) return;
  if (status < 0) {
    rf_logrec lr;
    rf_log_begin(&lr, RF_WARN, "snapshot rejected");
    rf_log_u64(&lr, "index", r.meta.index);
    rf_log_u64(&lr, "from", r.from);
    rf_log_str(&lr, "error", rf_snap_strerror(status));
    rf_log_end(&lr);
    ack(s, r.from, r.meta.index, 0, 1);
    return;
  }
  /* stored: once loaded the core may adopt it (it answers with an
  ** APPEND_RESP) */
  if (!preload(s, &r)) adopt(s, &r);
}

static void finish(rf_snaps *s) {
  rx_op *op = rx_op_new(s);
  uint64_t from = s->rx.from, index = s->rx.meta.index;
  rx_drop(s); /* the transfer now belongs to the finish operation */
  if (op != NULL && rf_snapstore_recv_finish(s->store, on_finished, op) == 0) {
    s->finishing = 1;
    return;
  }
  free(op);
  rf_snapstore_recv_abort(s->store); /* drop its temp file or buffer now */
  ack(s, from, index, 0, 1);
}

static void on_chunk_written(void *ud, int status) {
  rx_op *op = ud;
  rf_snaps *s = op->s;
  uint64_t gen = op->gen;
  receiver r = op->r;
  free(op);
  if (status == UV_ECANCELED || s->closing || gen != s->rx_gen) return;
  if (status < 0) {
    ack(s, r.from, r.meta.index, 0, 1);
    rf_snapstore_recv_abort(s->store);
    rx_drop(s);
    return;
  }
  rf_progress_step(&s->rx_prog, rf_snapstore_recv_offset(s->store));
  if (rf_snapstore_recv_offset(s->store) >= r.meta.size) {
    rf_progress_end(&s->rx_prog);
    finish(s);
  } else {
    ack(s, r.from, r.meta.index, rf_snapstore_recv_offset(s->store), 0);
  }
}

/* A declared size is a claim: refuse one over max_snapshot_bytes or over
** the free space of the data directory before a byte is written. */
static int size_ok(rf_snaps *s, const raft_msg *m) {
  struct statvfs vfs;
  uint64_t cap = s->deps.cfg->max_snapshot_bytes;
  if (m->size > cap) {
    rf_log(RF_ERROR, "snapshot %llu from node %llu refused: %llu bytes "
           "declared, limits.max_snapshot_bytes is %llu",
           (unsigned long long)m->index, (unsigned long long)m->from,
           (unsigned long long)m->size, (unsigned long long)cap);
    return 0;
  }
  if (s->dir != NULL && statvfs(s->dir, &vfs) == 0 &&
      m->size > (uint64_t)vfs.f_bavail * vfs.f_frsize) {
    rf_log(RF_ERROR, "snapshot %llu from node %llu refused: %llu bytes "
           "declared, %llu free in %s", (unsigned long long)m->index,
           (unsigned long long)m->from, (unsigned long long)m->size,
           (unsigned long long)vfs.f_bavail * vfs.f_frsize, s->dir);
    return 0;
  }
  return 1;
}

/* Every chunk of a transfer repeats its index, term and size; a chunk that
** disagrees, or says done short of the size, ends the transfer. */
static int chunk_matches(const rf_snaps *s, const raft_msg *m) {
  if (m->log_term != s->rx.meta.term || m->size != s->rx.meta.size) return 0;
  return !m->done || m->offset + m->data_len == m->size;
}

static int begin(rf_snaps *s, const raft_msg *m) {
  rf_snap_meta meta;
  memset(&meta, 0, sizeof(meta));
  meta.index = m->index;
  meta.term = m->log_term;
  meta.size = m->size;
  if (s->finishing || rf_snapstore_recv_begin(s->store, &meta) < 0) return -1;
  rx_drop(s);
  s->rx.from = m->from;
  s->rx.term = m->term;
  s->rx.meta = meta;
  rf_progress_start(&s->rx_prog, "snapshot receive", "bytes", meta.size);
  s->rx_prog.every = 1;
  return 0;
}

static void on_chunk(rf_snaps *s, const raft_msg *m) {
  rx_op *op;
  if (m->from != rf_driver_leader(s->drv) || m->term != rf_driver_term(s->drv)) {
    /* another term's is a leftover; another node in ours, a forgery */
    if (m->term == rf_driver_term(s->drv) && rf_driver_leader(s->drv) != 0)
      rf_log(RF_ERROR, "snapshot %llu from node %llu refused: node %llu "
             "leads term %llu", (unsigned long long)m->index,
             (unsigned long long)m->from,
             (unsigned long long)rf_driver_leader(s->drv),
             (unsigned long long)m->term);
    ack(s, m->from, m->index, 0, 1); /* only the current leader's */
    return;
  }
  if (m->offset == 0) {
    if (!size_ok(s, m) || begin(s, m) < 0) {
      ack(s, m->from, m->index, 0, 1); /* busy finishing: the core retries */
      return;
    }
  } else if (s->rx.from != m->from || s->rx.meta.index != m->index) {
    ack(s, m->from, m->index, 0, 0); /* we lost the start: begin again */
    return;
  }
  if (!chunk_matches(s, m)) {
    rf_log(RF_ERROR, "snapshot %llu from node %llu refused: a chunk at %llu "
           "does not match the transfer's term, size or end",
           (unsigned long long)m->index, (unsigned long long)m->from,
           (unsigned long long)m->offset);
    rf_snapstore_recv_abort(s->store);
    rx_drop(s);
    ack(s, m->from, m->index, 0, 1);
    return;
  }
  s->rx.deadline = now(s) + STALL_MS;
  if ((op = rx_op_new(s)) == NULL ||
      rf_snapstore_recv_chunk(s->store, m->offset, m->data, m->data_len,
                              on_chunk_written, op) < 0) {
    free(op);
    ack(s, m->from, m->index, rf_snapstore_recv_offset(s->store), 0);
  }
}

void rf_snaps_recv(rf_snaps *s, const raft_msg *m) {
  if (s->closing) return;
  if (m->type == RAFT_MSG_SNAPSHOT) on_chunk(s, m);
  else on_ack(s, m);
}

static void w_free_store(uv_work_t *w) { rf_store_free(w->data); }
static void after_free_store(uv_work_t *w, int status) {
  (void)status;
  free(w);
}

/* The old contents go on the thread pool: freeing 1M keys takes a while. */
static void free_off_loop(rf_snaps *s, rf_store *st) {
  uv_work_t *w = malloc(sizeof(*w));
  if (w == NULL) {
    rf_store_free(st);
    return;
  }
  w->data = st;
  uv_queue_work(s->loop, w, w_free_store, after_free_store);
}

/* O(1): the preloaded store, if it is the one adopted, becomes the state. */
static int install_preloaded(rf_snaps *s, uint64_t index, uint64_t term) {
  rf_logrec r;
  if (s->pre == NULL || s->finishing) return 0;
  if (s->pre_m.index != index || s->pre_m.term != term) {
    free_off_loop(s, s->pre);
    s->pre = NULL;
    return 0;
  }
  rf_store_swap(rf_sm_store(s->deps.sm), s->pre);
  free_off_loop(s, s->pre);
  s->pre = NULL;
  new_interval(s);
  s->applied_index = index;
  s->applied_term = term;
  scripts_restored(s, index); /* applied index, watches (410), scripts */
  members_restored(s, index);
  notify_saved(s, 0);
  rf_log_begin(&r, RF_INFO, "snapshot installed");
  rf_log_u64(&r, "index", index);
  rf_log_u64(&r, "keys", rf_store_count(rf_sm_store(s->deps.sm)));
  rf_log_end(&r);
  return 1;
}

int rf_snaps_install(rf_snaps *s, uint64_t index, uint64_t term) {
  rf_store *st = rf_sm_store(s->deps.sm);
  rf_snap_meta m;
  rf_logrec r;
  char err[256];
  rf_buf b;
  int rc;
  if (install_preloaded(s, index, term)) return 0;
  rf_buf_init(&b);
  rc = rf_snapstore_load(s->store, &b, &m, err, sizeof(err));
  if (rc == 0 && (m.index != index || m.term != term)) {
    snprintf(err, sizeof(err), "latest snapshot is %llu, not %llu",
             (unsigned long long)m.index, (unsigned long long)index);
    rc = RF_SNAP_ENONE;
  }
  if (rc == 0) {
    rf_store_clear(st);
    rc = rf_snap_restore(b.p, b.n, st, &m, err, sizeof(err));
  }
  rf_buf_free(&b);
  if (rc < 0) {
    rf_log_begin(&r, RF_ERROR, "snapshot install failed");
    rf_log_u64(&r, "index", index);
    rf_log_str(&r, "error", err);
    rf_log_end(&r);
    return rc;
  }
  new_interval(s);
  s->applied_index = index;
  s->applied_term = term;
  scripts_restored(s, index);
  members_restored(s, index);
  notify_saved(s, 0);
  rf_log_begin(&r, RF_INFO, "snapshot installed");
  rf_log_u64(&r, "index", index);
  rf_log_u64(&r, "keys", m.nkeys);
  rf_log_end(&r);
  return 0;
}

/* ------------------------------------------------------------ upkeep */

void rf_snaps_tick(rf_snaps *s) {
  int leader = rf_driver_role(s->drv) == RAFT_LEADER;
  uint64_t t = now(s);
  compact_step(s, compact_step_size(s));
  for (size_t i = 0; i < RAFT_MAX_NODES; i++) {
    sender *x = &s->tx[i];
    if (x->to == 0 || x->reading) continue;
    if (!leader) sender_end(s, x, 0, "no longer the leader");
    else if (t > x->deadline) sender_end(s, x, 0, "no progress");
  }
  if (s->rx.from && t > s->rx.deadline) {
    rf_snapstore_recv_abort(s->store);
    rx_drop(s);
  }
}

void rf_snaps_peer_down(rf_snaps *s, uint64_t peer) {
  sender *t = sender_of(s, peer);
  if (t != NULL && !t->reading) sender_end(s, t, 0, "connection lost");
}

void rf_snaps_status_json(rf_snaps *s, rf_buf *b) {
  rf_snap_meta m;
  if (rf_snapstore_latest(s->store, &m) != 0) {
    rf_buf_str(b, ",\"snapshot\":null");
    return;
  }
  rf_buf_printf(b, ",\"snapshot\":{\"index\":%llu,\"term\":%llu,\"size\":%llu,"
                "\"keys\":%llu}", (unsigned long long)m.index,
                (unsigned long long)m.term, (unsigned long long)m.size,
                (unsigned long long)m.nkeys);
}

/* ------------------------------------------------------------ lifecycle */

/* At start: say so when a snapshot of the allowed size would not fit. */
static void warn_space(rf_snaps *s) {
  struct statvfs vfs;
  uint64_t cap = s->deps.cfg->max_snapshot_bytes, avail;
  if (s->dir == NULL || statvfs(s->dir, &vfs) != 0) return;
  avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
  if (cap > avail)
    rf_log(RF_WARN, "limits.max_snapshot_bytes is %llu but %s has %llu bytes "
           "free: a larger snapshot from the leader will be refused",
           (unsigned long long)cap, s->dir, (unsigned long long)avail);
}

int rf_snaps_open(const rf_snaps_deps *deps, uv_loop_t *loop, const char *dir,
                  rf_snaps **out, char *err, size_t errlen) {
  rf_snaps *s = calloc(1, sizeof(*s));
  *out = NULL;
  if (s == NULL) return UV_ENOMEM;
  s->deps = *deps;
  s->loop = loop;
  s->rng = deps->id ^ uv_hrtime();
  s->jitter = (unsigned)(rf_splitmix64(&s->rng) % (JITTER_PCT + 1));
  if (dir != NULL && (s->dir = strdup(dir)) == NULL) {
    free(s);
    return UV_ENOMEM;
  }
  s->store = rf_snapstore_open(loop, dir, err, errlen);
  if (s->store == NULL) {
    free(s->dir);
    free(s);
    return RF_SNAP_ECORRUPT;
  }
  warn_space(s);
  *out = s;
  return 0;
}

int rf_snaps_restore(rf_snaps *s, rf_snap_meta *m, char *err, size_t errlen) {
  rf_buf b;
  int rc;
  rf_buf_init(&b);
  rc = rf_snapstore_load(s->store, &b, m, err, errlen);
  if (rc == 0)
    rc = rf_snap_restore(b.p, b.n, rf_sm_store(s->deps.sm), m, err,
                         errlen);
  if (rc == 0) {
    s->applied_index = m->index;
    s->applied_term = m->term;
  }
  if (rc == 0 && s->deps.members_restored)
    s->deps.members_restored(s->deps.members_ud,
                             (const uint8_t *)b.p + m->blob_off, m->blob_len);
  rf_buf_free(&b);
  return rc;
}

void rf_snaps_attach(rf_snaps *s, rf_driver *drv) { s->drv = drv; }

static void on_store_closed(void *ud) {
  rf_snaps *s = ud;
  rf_store_free(s->pre);
  if (s->done) s->done(s->done_ud);
  free(s->dir);
  free(s);
}

/* A clean stop: when a restart would replay snapshot_min_log_bytes of log
** or more, snapshot what is applied first, so that the next start loads
** the snapshot instead of replaying (through the state machine's Lua, ~10
** us an entry).  A snapshot already being written is waited for. */
int rf_snaps_final(rf_snaps *s, void (*cb)(void *ud), void *ud) {
  raft_entry e;
  rf_logrec r;
  if (s->dir == NULL || s->closing || s->rx.from || s->finishing) return 0;
  if (!s->saving) {
    if (s->applied_index == 0 ||
        s->since_bytes < s->deps.cfg->snapshot_min_log_bytes)
      return 0;
    rf_log_begin(&r, RF_INFO, "snapshot before stopping");
    rf_log_u64(&r, "log_bytes", s->since_bytes);
    rf_log_end(&r);
    memset(&e, 0, sizeof(e));
    e.index = s->applied_index;
    e.term = s->applied_term;
    take(s, &e);
    if (!s->saving) return 0; /* could not start one */
  }
  s->final_cb = cb;
  s->final_ud = ud;
  return 1;
}

void rf_snaps_close(rf_snaps *s, void (*done)(void *ud), void *ud) {
  s->closing = 1; /* callbacks still to come must not touch the node */
  if (s->child != NULL) { /* its partial file goes; a restart would too */
    rf_snapfork_kill(s->child);
    s->child = NULL;
    rf_snapstore_save_file(s->store, &s->child_m, 0, NULL, NULL);
  }
  s->done = done;
  s->done_ud = ud;
  rf_snapstore_close(s->store, on_store_closed, s);
}
