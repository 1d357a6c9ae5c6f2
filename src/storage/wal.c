/*
** wal.c -- the write-ahead log backend (see rafting/wal.h, docs/storage.md).
**
** Two threads touch a wal, never the same fields at once:
**   - the loop thread owns the queue, the log as submitted (hard state,
**     snapshot, next index, term runs) and the recovered log for load();
**   - while `busy`, one libuv worker owns the files: the current segment's
**     fd, the segment list and the stream state written so far.
** save() encodes its records at once (so callers' buffers are free when it
** returns) and queues them; kick() hands everything queued (up to
** max_batch_bytes) to the worker as one batch: one writev sequence and one
** fdatasync cover them all.  That is the group commit: saves arriving while
** a sync runs wait in the queue and share the next one.
**
** Memory: ops are malloc'd with their encoded records inline and freed after
** their done ran.  The recovered log (files read whole) is kept only until
** the first call after load().
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "rafting/log.h"
#include "rafting/metrics.h"
#include "rafting/util.h"
#include "rafting/wal.h"
#include "wal_internal.h"

#define IOV_CHUNK 64

typedef struct wal_op wal_op;
struct wal_op {
  wal_op *next;
  uint8_t *buf;          /* encoded records (inline after the struct) */
  size_t len;
  int compact;           /* holds a SNAPSHOT: remove old segments after */
  int sync;              /* must be durable before done */
  uint64_t snap_index;
  uint64_t max_index;    /* highest entry index in buf, 0: none */
  wal_seghdr after;      /* the stream state once buf is written */
  int status;            /* set by the worker */
  rf_storage_done done;
  void *ud;
};

typedef struct term_run { uint64_t index, term; } term_run;

#define TRIM_MAX 8           /* segments waiting to be shrunk; beyond: unlink */
#define TRIM_STEP (4u << 20) /* shrunk after each batch, freed in its commit */

typedef struct wal {
  rf_storage base;       /* first: an rf_storage * is a wal * */
  uv_loop_t *loop;
  rf_wal_opts o;
  char *path;            /* DIR/wal, for messages */
  int lockfd, dirfd;

  /* loop thread: the log as submitted */
  raft_hard_state hs;
  uint64_t snap_index, snap_term;
  uint64_t next;         /* index the next entry takes */
  term_run *runs;        /* where each term starts, for rf_wal_compact */
  size_t nruns, capruns;
  wal_recovery rec;      /* what load() hands out */
  int have_rec;

  /* loop thread: the queue */
  wal_op *pending, **ptail;
  wal_op *batch;         /* with the worker */
  uv_work_t work;
  int busy, in_done, closing, failed;
  rf_wal_info pub;       /* numbers as of the last batch */

  /* the worker, while busy */
  int fd;                /* current (last) segment, O_APPEND */
  wal_seg *segs;
  size_t nsegs, capsegs;
  wal_seghdr ws;         /* stream state after what was written */
  int work_rc;
  uint64_t w_syncs, w_writes;
  /* compacted segments, renamed to NAME.tmp, shrunk TRIM_STEP a batch */
  char trim[TRIM_MAX][WAL_NAME_LEN + 5];
  int ntrim, trim_fd;
} wal;

static const rf_storage_ops wal_ops;

/* ------------------------------------------------------------ options */

void rf_wal_opts_default(rf_wal_opts *o) {
  memset(o, 0, sizeof(*o));
  o->segment_bytes = 64u << 20;
  o->sync = RF_WAL_SYNC_ALWAYS;
  o->max_batch_bytes = 8u << 20;
}

int rf_wal_sync_parse(const char *name) {
  if (strcmp(name, "always") == 0) return RF_WAL_SYNC_ALWAYS;
  if (strcmp(name, "none") == 0) return RF_WAL_SYNC_NONE;
  return -1;
}

int rf_storage_is_wal(const rf_storage *s) {
  return s != NULL && s->ops == &wal_ops;
}

static void stderr_log(void *ud, int level, const char *msg) {
  (void)ud;
  (void)level;
  fprintf(stderr, "%s\n", msg);
}

static void wlog(wal *w, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void wlog(wal *w, int level, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  w->o.log(w->o.log_ud, level, msg);
}

/* ------------------------------------------------------------ term runs */

static int runs_reserve(wal *w, size_t more) {
  if (w->nruns + more <= w->capruns) return 0;
  size_t cap = w->capruns ? w->capruns : 16;
  while (cap < w->nruns + more) cap *= 2;
  term_run *r = realloc(w->runs, cap * sizeof(*r));
  if (r == NULL) return -1;
  w->runs = r;
  w->capruns = cap;
  return 0;
}

/* Record ents (truncating from ents[0].index); space was reserved. */
static void runs_append(wal *w, const raft_entry *e, size_t n) {
  while (w->nruns > 0 && w->runs[w->nruns - 1].index >= e[0].index) w->nruns--;
  for (size_t i = 0; i < n; i++)
    if (w->nruns == 0 || w->runs[w->nruns - 1].term != e[i].term)
      w->runs[w->nruns++] = (term_run){e[i].index, e[i].term};
}

/* Term of entry index, or 0 when the log does not hold it. */
static uint64_t term_at(const wal *w, uint64_t index) {
  size_t lo = 0, hi = w->nruns;
  if (index == w->snap_index) return w->snap_term;
  if (index <= w->snap_index || index >= w->next) return 0;
  while (hi - lo > 1) { /* last run starting at or before index */
    size_t mid = (lo + hi) / 2;
    if (w->runs[mid].index <= index) lo = mid; else hi = mid;
  }
  return w->nruns > 0 && w->runs[lo].index <= index ? w->runs[lo].term : 0;
}

/* Forget runs wholly before first. */
static void runs_drop_before(wal *w, uint64_t first) {
  size_t k = 0;
  if (w->nruns == 0) return;
  while (k + 1 < w->nruns && w->runs[k + 1].index <= first) k++;
  memmove(w->runs, w->runs + k, (w->nruns - k) * sizeof(*w->runs));
  w->nruns -= k;
  if (w->nruns > 0 && w->runs[0].index < first) w->runs[0].index = first;
}

/* ------------------------------------------------------------ worker */

static int hook(wal *w, const char *what) {
  return w->o.io_hook ? w->o.io_hook(w->o.io_ud, what) : 0;
}

static int writev_all(wal *w, struct iovec *iov, int n) {
  int rc;
  while (n > 0) {
    ssize_t k;
    if ((rc = hook(w, "write")) < 0) return rc;
    k = writev(w->fd, iov, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    while (n > 0 && (size_t)k >= iov->iov_len) { /* skip what went out */
      k -= (ssize_t)iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *)iov->iov_base + k;
      iov->iov_len -= (size_t)k;
    }
  }
  return 0;
}

static int flush_iov(wal *w, struct iovec *iov, int *n) {
  int rc = writev_all(w, iov, *n);
  *n = 0;
  return rc;
}

static int sync_seg(wal *w) {
  int rc = hook(w, "sync");
  if (rc < 0) return rc;
  uint64_t t0 = rf_metrics_now();
  w->w_syncs++;
  while (fdatasync(w->fd) < 0)
    if (errno != EINTR) return -errno;
  rf_histo_since(&rf_metrics_g.wal_fsync, t0);
  return 0;
}

static int roll(wal *w) {
  wal_seghdr h = w->ws;
  int fd;
  if (w->nsegs == w->capsegs) {
    size_t cap = w->capsegs ? 2 * w->capsegs : 16;
    wal_seg *s = realloc(w->segs, cap * sizeof(*s));
    if (s == NULL) return UV_ENOMEM;
    w->segs = s;
    w->capsegs = cap;
  }
  h.seq = w->segs[w->nsegs - 1].seq + 1;
  fd = wal_seg_create(w->dirfd, &h, w->o.io_hook, w->o.io_ud);
  if (fd < 0) return fd;
  close(w->fd);
  w->fd = fd;
  w->segs[w->nsegs++] =
      (wal_seg){h.seq, h.base, h.base - 1, WAL_HDR + WAL_SEG_PAYLOAD};
  return 0;
}

/* Take a compacted segment out of the log: renamed to NAME.tmp (which an
** open removes), then shrunk a step after each batch (trim_some) rather
** than unlinked whole: freeing 64 MiB at once makes the next fdatasync
** wait for a journal commit that frees it all (see src/util/trim.c). */
static int retire(wal *w, const char *name) {
  char *tmp;
  if (w->ntrim == TRIM_MAX)
    return unlinkat(w->dirfd, name, 0) < 0 ? -errno : 0;
  tmp = w->trim[w->ntrim];
  snprintf(tmp, sizeof(w->trim[0]), "%s.tmp", name);
  if (renameat(w->dirfd, name, w->dirfd, tmp) < 0) return -errno;
  w->ntrim++;
  return 0;
}

/* One step of shrinking the oldest retired segment; unlinked once empty.
** Best effort: a failure unlinks it whole. */
static void trim_some(wal *w) {
  int rc;
  if (w->ntrim == 0) return;
  if (w->trim_fd < 0 &&
      (w->trim_fd = openat(w->dirfd, w->trim[0], O_WRONLY | O_CLOEXEC)) < 0)
    rc = 0;
  else
    rc = rf_trim_step(w->trim_fd, TRIM_STEP);
  if (rc > 0) return;
  if (w->trim_fd >= 0) close(w->trim_fd);
  w->trim_fd = -1;
  unlinkat(w->dirfd, w->trim[0], 0);
  memmove(w->trim[0], w->trim[1], (size_t)--w->ntrim * sizeof(w->trim[0]));
}

/* Remove the oldest segments holding only entries <= snap; never the
** current one.  One at a time, each removal made durable before the next,
** so a crash can never leave a hole in the sequence. */
static int remove_old(wal *w, uint64_t snap) {
  size_t k = 0;
  int rc = 0;
  char name[WAL_NAME_LEN + 1];
  while (k + 1 < w->nsegs && w->segs[k].max_index <= snap) {
    wal_seg_name(name, w->segs[k].seq, w->segs[k].base);
    if ((rc = hook(w, "unlink")) < 0) break;
    if ((rc = retire(w, name)) < 0) break;
    k++;
    if ((rc = hook(w, "syncdir")) < 0 || (rc = wal_fsync_dir(w->dirfd)) < 0)
      break;
  }
  memmove(w->segs, w->segs + k, (w->nsegs - k) * sizeof(*w->segs));
  w->nsegs -= k;
  return rc;
}

static uint64_t batch_bytes(const wal_op *op) {
  uint64_t n = 0;
  for (; op != NULL; op = op->next) n += op->len;
  return n;
}

static void work_cb(uv_work_t *req) {
  wal *w = req->data;
  struct iovec iov[IOV_CHUNK];
  int n = 0, rc = 0, wrote = 0, must_sync = 0;
  wal_op *op, *last_compact = NULL;
  for (op = w->batch; op != NULL && rc == 0; op = op->next) {
    wal_seg *cur = &w->segs[w->nsegs - 1];
    if (op->len == 0) continue;
    if (cur->size > WAL_HDR + WAL_SEG_PAYLOAD &&
        cur->size + op->len > w->o.segment_bytes) {
      /* a finished segment is always synced: only the last may be torn */
      if ((rc = flush_iov(w, iov, &n)) < 0 || (rc = sync_seg(w)) < 0 ||
          (rc = roll(w)) < 0)
        break;
      cur = &w->segs[w->nsegs - 1];
    }
    iov[n].iov_base = op->buf;
    iov[n++].iov_len = op->len;
    if (n == IOV_CHUNK && (rc = flush_iov(w, iov, &n)) < 0) break;
    cur->size += op->len;
    if (op->max_index > cur->max_index) cur->max_index = op->max_index;
    w->ws = op->after;
    if (op->compact) last_compact = op;
    must_sync |= op->sync;
    wrote = 1;
  }
  if (rc == 0 && n > 0) rc = flush_iov(w, iov, &n);
  if (rc == 0 && wrote &&
      ((w->o.sync == RF_WAL_SYNC_ALWAYS && must_sync) || last_compact))
    rc = sync_seg(w);
  if (wrote) w->w_writes++;
  if (rc == 0) RF_METRIC_ADD(wal_bytes, batch_bytes(w->batch));
  w->work_rc = rc;
  for (op = w->batch; op != NULL; op = op->next) op->status = rc;
  /* a failed removal fails the compaction, not the log */
  if (rc == 0 && last_compact != NULL)
    last_compact->status = remove_old(w, last_compact->snap_index);
  if (rc == 0 && wrote) trim_some(w);
}

/* ------------------------------------------------------------ queue */

static void finish_close(wal *w);

static void publish(wal *w) {
  uint64_t bytes = 0;
  for (size_t i = 0; i < w->nsegs; i++) bytes += w->segs[i].size;
  w->pub.segments = w->nsegs;
  RF_METRIC_SET(wal_segments, w->nsegs);
  w->pub.disk_bytes = bytes;
  w->pub.syncs = w->w_syncs;
  w->pub.writes = w->w_writes;
}

static wal_op *pop(wal *w) {
  wal_op *op = w->pending;
  if ((w->pending = op->next) == NULL) w->ptail = &w->pending;
  op->next = NULL;
  return op;
}

static void complete(wal *w, wal_op *op, int status) {
  if (status == 0) w->base.last_index = op->after.base - 1;
  w->pub.saves++;
  if (!w->closing) op->done(op->ud, status);
  free(op);
}

static void after_work(uv_work_t *req, int status);

/* Start the next batch, or complete what needs no I/O: empty saves with
** nothing ahead of them, and everything once the log has failed. */
static void kick(wal *w) {
  wal_op *op, **tail;
  size_t bytes = 0;
  if (w->busy || w->in_done || w->closing) return;
  w->in_done = 1;
  while (!w->closing && w->pending != NULL &&
         (w->failed || w->pending->len == 0))
    complete(w, pop(w), w->failed);
  w->in_done = 0;
  if (w->closing) { finish_close(w); return; }
  if (w->pending == NULL) return;
  tail = &w->batch;
  while (w->pending != NULL &&
         (bytes == 0 || bytes + w->pending->len <= w->o.max_batch_bytes)) {
    op = pop(w);
    bytes += op->len;
    *tail = op;
    tail = &op->next;
  }
  w->busy = 1;
  w->work.data = w;
  uv_queue_work(w->loop, &w->work, work_cb, after_work);
}

static void after_work(uv_work_t *req, int status) {
  wal *w = req->data;
  wal_op *op = w->batch, *next;
  (void)status; /* never cancelled */
  w->batch = NULL;
  w->busy = 0;
  publish(w);
  if (w->work_rc < 0 && !w->failed) {
    w->failed = w->work_rc;
    wlog(w, RF_ERROR, "wal: %s: write failed: %s; the log accepts nothing "
         "more", w->path, uv_strerror(w->work_rc));
  }
  w->in_done = 1;
  for (; op != NULL; op = next) {
    next = op->next;
    complete(w, op, op->status);
  }
  w->in_done = 0;
  if (w->closing) { finish_close(w); return; }
  kick(w);
}

static void enqueue(wal *w, wal_op *op) {
  *w->ptail = op;
  w->ptail = &op->next;
  kick(w);
}

static wal_op *op_new(size_t len, rf_storage_done done, void *ud) {
  wal_op *op = calloc(1, sizeof(*op) + len);
  if (op == NULL) return NULL;
  op->buf = (uint8_t *)(op + 1);
  op->done = done;
  op->ud = ud;
  return op;
}

static void set_after(wal *w, wal_op *op) {
  op->after.base = w->next;
  op->after.hs = w->hs;
  op->after.snap_index = w->snap_index;
  op->after.snap_term = w->snap_term;
}

/* The first call after load() releases what load() handed out. */
static void drop_recovery(wal *w) {
  if (w->have_rec) wal_recovery_free(&w->rec);
  w->have_rec = 0;
}

/* ------------------------------------------------------------ ops */

static int wal_load(rf_storage *s, raft_hard_state *hs,
                    const raft_entry **ents, size_t *n) {
  wal *w = (wal *)s;
  if (!w->have_rec) {
    char err[512];
    int rc;
    if (w->busy || w->pending != NULL) return UV_EBUSY;
    rc = wal_recover(w->dirfd, w->path, 0, &w->rec, w->o.log, w->o.log_ud,
                     err, sizeof(err));
    if (rc < 0) {
      wal_recovery_free(&w->rec);
      wlog(w, RF_ERROR, "%s", err);
      return rc == -1 ? UV_EIO : rc;
    }
    w->have_rec = 1;
  }
  *hs = w->rec.hs;
  *ents = w->rec.ents;
  *n = w->rec.n;
  return 0;
}

static int wal_save(rf_storage *s, const raft_hard_state *hs,
                    const raft_entry *ents, size_t n, int sync,
                    rf_storage_done done, void *ud) {
  wal *w = (wal *)s;
  size_t len = hs ? WAL_HDR + WAL_HS_PAYLOAD : 0, off = 0;
  wal_op *op;
  if (w->closing) return UV_EINVAL;
  drop_recovery(w);
  if (n > 0 && (ents[0].index <= w->snap_index || ents[0].index > w->next))
    return UV_EINVAL; /* would leave a gap, or rewrite the snapshot */
  for (size_t i = 0; i < n; i++) {
    if (ents[i].index != ents[0].index + i || ents[i].type < 0 ||
        ents[i].type > 255 || ents[i].len > WAL_MAX_PAYLOAD)
      return UV_EINVAL;
    len += WAL_HDR + ents[i].len;
  }
  if (runs_reserve(w, n) < 0 || (op = op_new(len, done, ud)) == NULL)
    return UV_ENOMEM;
  op->sync = sync;
  if (hs) {
    off += wal_encode_hs(op->buf, hs);
    w->hs = *hs;
  }
  for (size_t i = 0; i < n; i++)
    off += wal_encode(op->buf + off, WAL_REC_ENTRY, ents[i].type,
                      ents[i].index, ents[i].term, ents[i].data, ents[i].len);
  op->len = off;
  if (n > 0) {
    runs_append(w, ents, n);
    w->next = ents[n - 1].index + 1;
    op->max_index = ents[n - 1].index;
  }
  set_after(w, op);
  enqueue(w, op);
  return 0;
}

int rf_wal_compact(rf_storage *s, uint64_t index, uint64_t term,
                   rf_storage_done done, void *ud) {
  wal *w = (wal *)s;
  wal_op *op;
  int reset;
  if (!rf_storage_is_wal(s) || w->closing || index < w->snap_index)
    return UV_EINVAL;
  drop_recovery(w);
  if ((op = op_new(WAL_HDR, done, ud)) == NULL) return UV_ENOMEM;
  /* keep the entries after index only if they extend this very entry */
  reset = index >= w->next || term_at(w, index) != term;
  op->len = wal_encode(op->buf, WAL_REC_SNAPSHOT, reset ? WAL_SNAP_RESET : 0,
                       index, term, NULL, 0);
  op->compact = 1;
  op->snap_index = index;
  if (reset) {
    w->next = index + 1;
    w->nruns = 0;
  } else {
    runs_drop_before(w, index + 1);
  }
  w->snap_index = index;
  w->snap_term = term;
  set_after(w, op);
  enqueue(w, op);
  return 0;
}

void rf_wal_info_get(const rf_storage *s, rf_wal_info *out) {
  const wal *w = (const wal *)s;
  if (!rf_storage_is_wal(s)) {
    memset(out, 0, sizeof(*out));
    return;
  }
  *out = w->pub;
  out->snap_index = w->snap_index;
  out->snap_term = w->snap_term;
  out->first_index = w->snap_index + 1;
  out->last_index = w->next - 1;
  out->hs = w->hs;
  out->failed = w->failed;
}

static void finish_close(wal *w) {
  while (w->pending != NULL) free(pop(w));
  drop_recovery(w);
  if (w->fd >= 0) close(w->fd);
  if (w->trim_fd >= 0) close(w->trim_fd);
  for (int i = 0; i < w->ntrim; i++) unlinkat(w->dirfd, w->trim[i], 0);
  if (w->dirfd >= 0) close(w->dirfd);
  if (w->lockfd >= 0) close(w->lockfd); /* releases the flock */
  free(w->segs);
  free(w->runs);
  free(w->path);
  free(w);
}

/* Pending saves are dropped without their done; a batch already with the
** worker finishes first and the wal frees itself then (the loop must run). */
static void wal_close(rf_storage *s) {
  wal *w = (wal *)s;
  w->closing = 1;
  while (w->pending != NULL) free(pop(w));
  if (!w->busy && !w->in_done) finish_close(w);
}

static void wal_start(const rf_storage *s, uint64_t *index, uint64_t *term) {
  const wal *w = (const wal *)s;
  *index = w->snap_index;
  *term = w->snap_term;
}

static const rf_storage_ops wal_ops = {"wal", wal_load, wal_save,
                                       rf_wal_compact, wal_start, wal_close};

/* ------------------------------------------------------------ open */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* fsync the directory holding path (after creating or renaming in it). */
static int sync_parent(const char *path) {
  char *p = strdup(path), *slash;
  int fd, rc = 0;
  if (p == NULL) return -ENOMEM;
  slash = strrchr(p, '/');
  if (slash == p) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else strcpy(p, ".");
  fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) < 0) rc = -errno;
  if (fd >= 0) close(fd);
  free(p);
  return rc;
}

/* mkdir -p, syncing the parent of every directory it creates. */
static int make_dirs(const char *path) {
  char *p = strdup(path);
  int rc = 0;
  if (p == NULL) return -ENOMEM;
  for (char *q = p + 1;; q++) {
    if (*q != '/' && *q != '\0') continue;
    char c = *q;
    *q = '\0';
    if (mkdir(p, 0755) == 0) rc = sync_parent(p);
    else if (errno != EEXIST) rc = -errno;
    *q = c;
    if (rc < 0 || c == '\0') break;
  }
  free(p);
  return rc;
}

static int take_lock(wal *w, const char *dir, char *err, size_t errlen) {
  char path[4096], pid[32] = "";
  snprintf(path, sizeof(path), "%s/LOCK", dir);
  w->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (w->lockfd < 0)
    return fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
  if (flock(w->lockfd, LOCK_EX | LOCK_NB) < 0) {
    int e = errno;
    ssize_t k = pread(w->lockfd, pid, sizeof(pid) - 1, 0);
    pid[k > 0 ? k : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    if (e == EWOULDBLOCK)
      return fail(err, errlen, "data directory %s is in use by another "
                  "process (pid %s holds %s)", dir, *pid ? pid : "?", path);
    return fail(err, errlen, "cannot lock %s: %s", path, strerror(e));
  }
  /* who holds it, for the message above; informational, not synced */
  snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
  if (ftruncate(w->lockfd, 0) < 0 ||
      pwrite(w->lockfd, pid, strlen(pid), 0) < 0)
    return fail(err, errlen, "cannot write %s: %s", path, strerror(errno));
  return 0;
}

/* Adopt what recovery found: files for the worker, log for the loop. */
static int adopt(wal *w, char *err, size_t errlen) {
  wal_recovery *r = &w->rec;
  char name[WAL_NAME_LEN + 1];
  w->hs = r->hs;
  w->snap_index = r->snap_index;
  w->snap_term = r->snap_term;
  w->next = r->next;
  w->ws = (wal_seghdr){0, r->next, r->hs, r->snap_index, r->snap_term};
  if (runs_reserve(w, r->n) < 0) return fail(err, errlen, "out of memory");
  if (r->n > 0) runs_append(w, r->ents, r->n);
  w->segs = r->segs;
  w->nsegs = w->capsegs = r->nsegs;
  r->segs = NULL;
  r->nsegs = 0;
  if (w->nsegs == 0) { /* a new log */
    wal_seghdr h = w->ws;
    h.seq = 1;
    w->capsegs = 4;
    if ((w->segs = calloc(w->capsegs, sizeof(*w->segs))) == NULL)
      return fail(err, errlen, "out of memory");
    w->fd = wal_seg_create(w->dirfd, &h, w->o.io_hook, w->o.io_ud);
    if (w->fd < 0)
      return fail(err, errlen, "cannot create a segment in %s: %s", w->path,
                  strerror(-w->fd));
    w->segs[w->nsegs++] =
        (wal_seg){1, h.base, h.base - 1, WAL_HDR + WAL_SEG_PAYLOAD};
    return 0;
  }
  wal_seg_name(name, w->segs[w->nsegs - 1].seq, w->segs[w->nsegs - 1].base);
  w->fd = openat(w->dirfd, name, O_WRONLY | O_APPEND | O_CLOEXEC);
  if (w->fd < 0)
    return fail(err, errlen, "cannot open %s/%s: %s", w->path, name,
                strerror(errno));
  return 0;
}

rf_storage *rf_storage_wal(uv_loop_t *loop, const char *dir,
                           const rf_wal_opts *o, char *err, size_t errlen) {
  wal *w = calloc(1, sizeof(*w));
  int rc;
  if (w == NULL) { fail(err, errlen, "out of memory"); return NULL; }
  w->base.ops = &wal_ops;
  w->loop = loop;
  w->lockfd = w->dirfd = w->fd = w->trim_fd = -1;
  w->ptail = &w->pending;
  if (o) w->o = *o; else rf_wal_opts_default(&w->o);
  if (w->o.log == NULL) w->o.log = stderr_log;
  if (w->o.segment_bytes == 0 || w->o.max_batch_bytes == 0 ||
      (w->o.sync != RF_WAL_SYNC_ALWAYS && w->o.sync != RF_WAL_SYNC_NONE)) {
    fail(err, errlen, "bad WAL options");
    goto out;
  }
  if ((w->path = malloc(strlen(dir) + sizeof("/" WAL_SUBDIR))) == NULL) {
    fail(err, errlen, "out of memory");
    goto out;
  }
  sprintf(w->path, "%s/" WAL_SUBDIR, dir);
  if ((rc = make_dirs(dir)) < 0) {
    fail(err, errlen, "cannot create data directory %s: %s", dir,
         strerror(-rc));
    goto out;
  }
  if (take_lock(w, dir, err, errlen) < 0) goto out;
  if ((rc = make_dirs(w->path)) < 0) {
    fail(err, errlen, "cannot create %s: %s", w->path, strerror(-rc));
    goto out;
  }
  w->dirfd = open(w->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (w->dirfd < 0) {
    fail(err, errlen, "cannot open %s: %s", w->path, strerror(errno));
    goto out;
  }
  if (wal_recover(w->dirfd, w->path, WAL_RECOVER_REPAIR |
                  (w->o.progress ? WAL_RECOVER_PROGRESS : 0), &w->rec, w->o.log, w->o.log_ud, err,
                  errlen) < 0) {
    wal_recovery_free(&w->rec); /* what it read before giving up */
    goto out;
  }
  w->have_rec = 1;
  if (adopt(w, err, errlen) < 0) goto out;
  w->base.last_index = w->next - 1;
  publish(w);
  return &w->base;
out:
  finish_close(w);
  return NULL;
}
