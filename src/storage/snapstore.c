/*
** snapstore.c -- where snapshots are kept (see rafting/snapshot.h and the
** snapshot section of docs/storage.md): files DIR/snap/<index>-<term>.snap,
** or one malloc'd buffer for memory nodes.
**
** Every operation is an op in one FIFO queue, and one op at a time runs on
** libuv's thread pool, its callback on the loop once done.  Hence:
**   - the worker of the op in flight is the only code touching the files
**     and the receive file or buffer (rx_fd, rx_buf, rx_wgen);
**   - the loop owns the queue, the transfer being received (rx_*) and the
**     list of complete snapshots (kept, mem), which change only in
**     after-work callbacks, when no op is in flight, so a worker may read
**     them.
** A received transfer is a generation (rx_gen): begin and abort start a new
** one and cancel the queued chunks of the old; the worker starts a fresh
** temp file when a chunk of a new generation reaches it.
**
** Memory: an op is one malloc (a received chunk is copied inline after
** it).  A saved buffer belongs to its op, then to the store as the memory
** variant's latest, or is freed once written.  A read's data is malloc'd by
** the worker and freed after the callback (memory: points into mem).
*/
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "rafting/util.h"
#include "snap_internal.h"

#define KEEP 2                      /* complete snapshots kept on disk */
#define SUBDIR "snap"
#define NAME_LEN 38                 /* "%016x-%016x.snap" */
#define RECV_TMP "receiving.snap.tmp"
#define TRIM_STEP (8u << 20)        /* old snapshots shrink by this, synced */

enum { OP_SAVE, OP_READ, OP_CHUNK, OP_FINISH, OP_DROP, OP_CLOSE,
       OP_PRELOAD };

typedef struct snap_op snap_op;
struct snap_op {
  uv_work_t work;
  rf_snapstore *s;
  snap_op *next;
  int kind;
  int status;              /* preset < 0: refused or canceled, skip it */
  rf_snap_meta m;          /* save, finish: the snapshot; read: which */
  uint64_t gen;            /* chunk, finish: the transfer */
  uint64_t off;            /* read, chunk */
  char *buf;               /* save: the snapshot; read: data; chunk: inline */
  int file;                /* save: the temp file is written already */
  rf_store *into;          /* preload: the caller's empty store */
  size_t len;
  rf_snap_meta kept[KEEP]; /* save, finish: complete snapshots after it */
  int nkept;
  rf_snap_done done;
  rf_snap_read_done rdone;
  void *ud;
  char err[320];           /* worker's message when status < 0 */
};

struct rf_snapstore {
  uv_loop_t *loop;
  char *path;              /* DIR/snap; NULL: in memory */
  int dirfd;
  int (*hook)(void *, const char *);
  void *hook_ud;
  char err[320];           /* rf_snapstore_errmsg */

  /* loop: complete snapshots, newest first; memory: mem holds kept[0] */
  rf_snap_meta kept[KEEP];
  int nkept;
  char *mem;

  /* loop: the queue */
  snap_op *head, **tail;
  snap_op *closer;         /* allocated at open: close cannot fail */
  int busy, closing, saving;
  void (*close_done)(void *);
  void *close_ud;

  /* loop: the transfer being received */
  int rx_active;
  rf_snap_meta rx_m;
  uint64_t rx_off, rx_gen;

  /* worker: what the chunks of generation rx_wgen went into */
  int rx_have;
  uint64_t rx_wgen;
  int rx_fd;
  char *rx_buf;            /* memory: rx_m.size bytes */
};

/* ------------------------------------------------------------ helpers */

static void fmt(char *out, size_t len, const char *f, ...)
    __attribute__((format(printf, 3, 4)));

static void fmt(char *out, size_t len, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  vsnprintf(out, len, f, ap);
  va_end(ap);
}

static void snap_name(char *out, uint64_t index, uint64_t term) {
  snprintf(out, NAME_LEN + 1, "%016" PRIx64 "-%016" PRIx64 ".snap", index,
           term);
}

static int parse_hex16(const char *s, uint64_t *v) {
  *v = 0;
  for (int i = 0; i < 16; i++) {
    int c = (unsigned char)s[i], d = -1;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    if (d < 0) return -1;
    *v = (*v << 4) | (uint64_t)d;
  }
  return 0;
}

static int parse_name(const char *name, uint64_t *index, uint64_t *term) {
  if (strlen(name) != NAME_LEN || name[16] != '-' ||
      strcmp(name + 33, ".snap") != 0)
    return -1;
  return parse_hex16(name, index) == 0 && parse_hex16(name + 17, term) == 0
             ? 0 : -1;
}

/* Newer first: higher index, then higher term. */
static int newer(uint64_t ai, uint64_t at, uint64_t bi, uint64_t bt) {
  return ai != bi ? ai > bi : at > bt;
}

static int hook(rf_snapstore *s, const char *what) {
  return s->hook ? s->hook(s->hook_ud, what) : 0;
}

static int write_all(int fd, const char *p, size_t len, uint64_t off) {
  while (len > 0) {
    ssize_t k = pwrite(fd, p, len, (off_t)off);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += k;
    off += (uint64_t)k;
    len -= (size_t)k;
  }
  return 0;
}

/* 0, or -errno; a short file is UV_EIO (the caller knows the size). */
static int read_all(int fd, char *p, size_t len, uint64_t off) {
  while (len > 0) {
    ssize_t k = pread(fd, p, len, (off_t)off);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return -errno;
    if (k == 0) return UV_EIO;
    p += k;
    off += (uint64_t)k;
    len -= (size_t)k;
  }
  return 0;
}

static int sync_fd(rf_snapstore *s, int fd) {
  int rc = hook(s, "sync");
  if (rc < 0) return rc;
  while (fsync(fd) < 0)
    if (errno != EINTR) return -errno;
  return 0;
}

static int sync_dir(rf_snapstore *s) {
  int rc = hook(s, "syncdir");
  if (rc < 0) return rc;
  return fsync(s->dirfd) < 0 ? -errno : 0;
}

/* ------------------------------------------------------------ directory */

typedef struct snap_id { uint64_t index, term; } snap_id;

/* Complete snapshot names in dirfd, newest first, into *out (malloc'd).
** With tmp_too, removes every *.tmp (leftovers of a crash) and says so in
** *removed.  0 or -errno. */
static int scan(int dirfd, int tmp_too, snap_id **out, size_t *n,
                int *removed) {
  int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd < 0 ? NULL : fdopendir(fd);
  struct dirent *e;
  size_t cap = 0;
  *out = NULL;
  *n = 0;
  if (d == NULL) {
    int rc = -errno;
    if (fd >= 0) close(fd);
    return rc;
  }
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    snap_id id;
    if (tmp_too && len > 4 && strcmp(e->d_name + len - 4, ".tmp") == 0) {
      if (unlinkat(dirfd, e->d_name, 0) == 0) *removed = 1;
      continue;
    }
    if (parse_name(e->d_name, &id.index, &id.term) < 0) continue;
    if (*n == cap) {
      snap_id *p = realloc(*out, (cap = cap ? 2 * cap : 8) * sizeof(*p));
      if (p == NULL) { closedir(d); return UV_ENOMEM; }
      *out = p;
    }
    size_t i = (*n)++;
    for (; i > 0 && newer(id.index, id.term, (*out)[i - 1].index,
                          (*out)[i - 1].term); i--)
      (*out)[i] = (*out)[i - 1];
    (*out)[i] = id;
  }
  closedir(d);
  return 0;
}

static int is_kept(const rf_snap_meta *kept, int n, const snap_id *id) {
  for (int i = 0; i < n; i++)
    if (kept[i].index == id->index && kept[i].term == id->term) return 1;
  return 0;
}

/* Remove every snapshot file not in kept, syncing the directory after.
** 0 or -errno; a failure leaves the files for the next rotation. */
static int rotate(rf_snapstore *s, const rf_snap_meta *kept, int nkept) {
  char name[NAME_LEN + 1];
  snap_id *ids;
  size_t n;
  int rc, removed = 0;
  if ((rc = scan(s->dirfd, 0, &ids, &n, &removed)) < 0) return rc;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (is_kept(kept, nkept, &ids[i])) continue;
    snap_name(name, ids[i].index, ids[i].term);
    /* a step at a time: one unlink of 100 MB would hold the WAL's next
    ** fdatasync for the whole journal commit that frees it */
    if ((rc = hook(s, "unlink")) == 0)
      rc = rf_remove_gradually(s->dirfd, name, TRIM_STEP);
    removed |= rc == 0;
  }
  free(ids);
  if (removed) {
    int src = sync_dir(s);
    if (rc == 0) rc = src;
  }
  return rc;
}

/* The list once o->m is the latest: it, then older ones, KEEP at most. */
static void next_kept(const rf_snapstore *s, snap_op *o) {
  o->kept[0] = o->m;
  o->nkept = 1;
  for (int i = 0; i < s->nkept && o->nkept < KEEP; i++)
    if (s->kept[i].index < o->m.index) o->kept[o->nkept++] = s->kept[i];
}

/* ------------------------------------------------------------ workers */

/* Make tmp (complete and synced) the snapshot o->m: rename, sync the
** directory, drop what is no longer kept. */
static int install(rf_snapstore *s, snap_op *o, const char *tmp) {
  char name[NAME_LEN + 1];
  int rc;
  snap_name(name, o->m.index, o->m.term);
  if ((rc = hook(s, "rename")) < 0 ||
      (rc = renameat(s->dirfd, tmp, s->dirfd, name) < 0 ? -errno : 0) < 0) {
    fmt(o->err, sizeof(o->err), "cannot rename %s/%s to %s: %s", s->path,
        tmp, name, strerror(-rc));
    return rc;
  }
  if ((rc = sync_dir(s)) < 0) {
    fmt(o->err, sizeof(o->err), "cannot sync directory %s: %s", s->path,
        strerror(-rc));
    return rc;
  }
  next_kept(s, o);
  rotate(s, o->kept, o->nkept); /* durable already; leftovers go next time */
  return 0;
}

static void w_save(rf_snapstore *s, snap_op *o) {
  char tmp[NAME_LEN + 5];
  int fd, rc;
  if (s->path == NULL) return; /* memory: adopted on the loop */
  snap_name(tmp, o->m.index, o->m.term);
  strcat(tmp, ".tmp");
  if (o->file) { /* written and synced by whoever had rf_snapstore_save_fd */
    if ((rc = install(s, o, tmp)) == 0) return;
    unlinkat(s->dirfd, tmp, 0);
    o->status = rc;
    return;
  }
  fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  rc = fd < 0 ? -errno : 0;
  if (rc == 0 && (rc = hook(s, "write")) == 0)
    rc = write_all(fd, o->buf, o->len, 0);
  if (rc == 0) rc = sync_fd(s, fd);
  if (fd >= 0) close(fd);
  if (rc < 0) {
    fmt(o->err, sizeof(o->err), "cannot write %s/%s: %s", s->path, tmp,
        strerror(-rc));
  } else if ((rc = install(s, o, tmp)) == 0) {
    return;
  }
  unlinkat(s->dirfd, tmp, 0);
  o->status = rc;
}

static void w_read(rf_snapstore *s, snap_op *o) {
  char name[NAME_LEN + 1];
  int fd, rc;
  if (s->path == NULL) return; /* memory: served on the loop */
  o->len = o->m.size - o->off < o->len ? (size_t)(o->m.size - o->off)
                                       : o->len;
  snap_name(name, o->m.index, o->m.term);
  if ((fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC)) < 0) {
    o->status = errno == ENOENT ? RF_SNAP_ENONE : -errno;
    fmt(o->err, sizeof(o->err), "cannot open %s/%s: %s", s->path, name,
        strerror(errno));
    return;
  }
  if ((o->buf = malloc(o->len ? o->len : 1)) == NULL) {
    o->status = UV_ENOMEM;
  } else if ((rc = read_all(fd, o->buf, o->len, o->off)) < 0) {
    o->status = rc;
    fmt(o->err, sizeof(o->err), "cannot read %s/%s at offset %" PRIu64
        ": %s", s->path, name, o->off, strerror(-rc));
  }
  close(fd);
}

/* Forget the receive file or buffer. */
static void w_drop(rf_snapstore *s) {
  if (s->rx_fd >= 0) close(s->rx_fd);
  s->rx_fd = -1;
  if (s->path) unlinkat(s->dirfd, RECV_TMP, 0);
  free(s->rx_buf);
  s->rx_buf = NULL;
  s->rx_have = 0;
}

/* Start generation o->gen's file or buffer if this is its first chunk.
** The buffer is sized once, to what the sender announced (o->m.size). */
static int rx_start(rf_snapstore *s, snap_op *o) {
  if (s->rx_have && s->rx_wgen == o->gen) return 0;
  w_drop(s);
  if (s->path) {
    s->rx_fd = openat(s->dirfd, RECV_TMP,
                      O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (s->rx_fd < 0) return -errno;
  } else if (o->m.size > SIZE_MAX ||
             (s->rx_buf = malloc((size_t)o->m.size)) == NULL) {
    return UV_ENOMEM;
  }
  s->rx_have = 1;
  s->rx_wgen = o->gen;
  return 0;
}

static void w_chunk(rf_snapstore *s, snap_op *o) {
  int rc = rx_start(s, o);
  if (rc == 0 && s->path && (rc = hook(s, "write")) == 0)
    rc = write_all(s->rx_fd, o->buf, o->len, o->off);
  if (rc == 0 && s->path == NULL)
    memcpy(s->rx_buf + o->off, o->buf, o->len);
  if (rc < 0) {
    fmt(o->err, sizeof(o->err), "cannot write received snapshot %s%s%s: %s",
        s->path ? s->path : "(memory)", s->path ? "/" : "",
        s->path ? RECV_TMP : "", strerror(-rc));
    o->status = rc;
  }
}

/* Check the received bytes p[0..len) are the snapshot o->m. */
static int rx_check(snap_op *o, const uint8_t *p, size_t len,
                    const char *where) {
  char reason[200];
  size_t off = 0;
  rf_snap_meta m;
  int rc = snap_parse(p, len, NULL, &m, &off, reason, sizeof(reason));
  if (rc == 0 && (m.index != o->m.index || m.term != o->m.term)) {
    rc = RF_SNAP_ECORRUPT;
    off = 8;
    fmt(reason, sizeof(reason), "header says index %" PRIu64 " term %" PRIu64
        ", the transfer was for index %" PRIu64 " term %" PRIu64, m.index,
        m.term, o->m.index, o->m.term);
  }
  if (rc == RF_SNAP_ECORRUPT)
    fmt(o->err, sizeof(o->err), "corrupt snapshot received: %s at offset "
        "%zu: %s", where, off, reason);
  if (rc == 0) o->m = m;
  return rc;
}

/* Sync and check the received file, then install it. */
static int finish_file(rf_snapstore *s, snap_op *o) {
  char where[4200];
  struct stat st;
  void *map;
  int rc;
  snprintf(where, sizeof(where), "%s/%s", s->path, RECV_TMP);
  if ((rc = sync_fd(s, s->rx_fd)) < 0) {
    fmt(o->err, sizeof(o->err), "cannot sync %s: %s", where, strerror(-rc));
    return rc;
  }
  if (fstat(s->rx_fd, &st) < 0 || (uint64_t)st.st_size != o->m.size) {
    fmt(o->err, sizeof(o->err), "%s is not %" PRIu64 " bytes long", where,
        o->m.size);
    return UV_EIO;
  }
  /* read back what the file holds, mapped: no second copy in memory */
  map = mmap(NULL, o->m.size, PROT_READ, MAP_SHARED, s->rx_fd, 0);
  if (map == MAP_FAILED) {
    rc = -errno;
    fmt(o->err, sizeof(o->err), "cannot map %s: %s", where, strerror(-rc));
    return rc;
  }
  rc = rx_check(o, map, o->m.size, where);
  munmap(map, o->m.size);
  close(s->rx_fd);
  s->rx_fd = -1;
  s->rx_have = 0;
  return rc < 0 ? rc : install(s, o, RECV_TMP);
}

static void w_finish(rf_snapstore *s, snap_op *o) {
  int rc;
  if (!s->rx_have || s->rx_wgen != o->gen) {
    rc = UV_EIO; /* its chunks failed: cancel_rx() should have caught it */
  } else if (s->path) {
    rc = finish_file(s, o);
  } else if ((rc = rx_check(o, (const uint8_t *)s->rx_buf, o->m.size,
                            "(memory)")) == 0) {
    o->buf = s->rx_buf; /* becomes mem on the loop */
    s->rx_buf = NULL;
    s->rx_have = 0;
  }
  if (rc < 0) {
    if (!o->err[0])
      fmt(o->err, sizeof(o->err), "snapshot receive failed: %s",
          rf_snap_strerror(rc));
    w_drop(s);
    o->status = rc;
  }
}

static void unlink_tmp(rf_snapstore *s, const rf_snap_meta *m) {
  char tmp[NAME_LEN + 5];
  snap_name(tmp, m->index, m->term);
  strcat(tmp, ".tmp");
  unlinkat(s->dirfd, tmp, 0);
}

static void w_preload(rf_snapstore *s, snap_op *o);

static void work(uv_work_t *w) {
  snap_op *o = (snap_op *)((char *)w - offsetof(snap_op, work));
  rf_snapstore *s = o->s;
  if (o->status != 0) {
    if (o->kind == OP_FINISH) w_drop(s); /* refused: nothing to keep */
    if (o->kind == OP_SAVE && o->file && s->path) unlink_tmp(s, &o->m);
    return;
  }
  switch (o->kind) {
  case OP_SAVE: w_save(s, o); break;
  case OP_READ: w_read(s, o); break;
  case OP_CHUNK: w_chunk(s, o); break;
  case OP_FINISH: w_finish(s, o); break;
  case OP_PRELOAD: w_preload(s, o); break;
  case OP_DROP: case OP_CLOSE: w_drop(s); break;
  }
}

/* ------------------------------------------------------------ loop side */

static void after(uv_work_t *w, int status);

static void free_op(snap_op *o) {
  if (o->kind != OP_CHUNK) free(o->buf);
  free(o);
}

/* Mark the queued chunks and finish of transfer gen canceled. */
static void cancel_rx(rf_snapstore *s, uint64_t gen) {
  for (snap_op *o = s->head; o; o = o->next)
    if ((o->kind == OP_CHUNK || o->kind == OP_FINISH) && o->gen == gen &&
        o->status == 0)
      o->status = UV_ECANCELED;
}

/* Checks that depend on what completed before o: run just before it. */
static void prepare(rf_snapstore *s, snap_op *o) {
  if (o->status != 0) return;
  if ((o->kind == OP_SAVE || o->kind == OP_FINISH) && s->nkept > 0 &&
      o->m.index < s->kept[0].index) {
    o->status = RF_SNAP_ESTALE;
    fmt(o->err, sizeof(o->err), "snapshot %" PRIu64 " is older than the "
        "latest, %" PRIu64, o->m.index, s->kept[0].index);
  }
}

static void kick(rf_snapstore *s) {
  snap_op *o;
  if (s->busy) return;
  if (s->closing) {
    o = s->closer;
  } else {
    if ((o = s->head) == NULL) return;
    if ((s->head = o->next) == NULL) s->tail = &s->head;
    prepare(s, o);
  }
  s->busy = 1;
  uv_queue_work(s->loop, &o->work, work, after); /* fails only on misuse */
}

/* Adopt a save's or finish's outcome on the loop. */
static void adopt(rf_snapstore *s, snap_op *o) {
  if (s->path == NULL) {
    free(s->mem);
    s->mem = o->buf;
    o->buf = NULL;
    next_kept(s, o);
    o->nkept = 1; /* memory keeps the latest only */
  }
  memcpy(s->kept, o->kept, sizeof(s->kept));
  s->nkept = o->nkept;
}

/* Memory: a read is served from mem, if it still holds that snapshot. */
static const char *mem_read(rf_snapstore *s, snap_op *o) {
  if (s->nkept == 0 || s->kept[0].index != o->m.index) {
    o->status = RF_SNAP_ENONE;
    fmt(o->err, sizeof(o->err), "snapshot %" PRIu64 " is gone", o->m.index);
    return NULL;
  }
  if (s->kept[0].size - o->off < o->len)
    o->len = (size_t)(s->kept[0].size - o->off);
  return s->mem + o->off;
}

static void complete(rf_snapstore *s, snap_op *o) {
  const char *data = o->buf;
  if (o->kind == OP_READ && s->path == NULL && o->status == 0)
    data = mem_read(s, o);
  if (o->status < 0) snprintf(s->err, sizeof(s->err), "%s", o->err[0] ?
                              o->err : rf_snap_strerror(o->status));
  switch (o->kind) {
  case OP_SAVE:
    s->saving = 0;
    /* fall through */
  case OP_FINISH:
    if (o->status == 0) adopt(s, o);
    break;
  case OP_CHUNK: /* a failed chunk ends its transfer */
    if (o->status < 0 && o->status != UV_ECANCELED && o->gen == s->rx_gen) {
      cancel_rx(s, o->gen);
      s->rx_active = 0;
    }
    break;
  case OP_READ:
    if (o->rdone) o->rdone(o->ud, o->status, o->status ? NULL : data,
                           o->status ? 0 : o->len);
    return;
  }
  if (o->done) o->done(o->ud, o->status);
}

static void end(rf_snapstore *s) {
  void (*done)(void *) = s->close_done;
  void *ud = s->close_ud;
  snap_op *o;
  s->busy = 1; /* a close() from a callback below must not start again */
  while ((o = s->head) != NULL) {
    s->head = o->next;
    o->status = UV_ECANCELED;
    complete(s, o);
    free_op(o);
  }
  if (s->dirfd >= 0) close(s->dirfd);
  free(s->closer);
  free(s->mem);
  free(s->path);
  free(s);
  if (done) done(ud);
}

static void after(uv_work_t *w, int status) {
  snap_op *o = (snap_op *)((char *)w - offsetof(snap_op, work));
  rf_snapstore *s = o->s;
  (void)status; /* nothing is ever uv_cancel()ed */
  s->busy = 0;
  if (o == s->closer) {
    end(s);
    return;
  }
  complete(s, o);
  free_op(o);
  kick(s);
}

static void enqueue(rf_snapstore *s, snap_op *o) {
  o->s = s;
  o->next = NULL;
  *s->tail = o;
  s->tail = &o->next;
  kick(s);
}

static snap_op *new_op(int kind, size_t extra) {
  snap_op *o = calloc(1, sizeof(*o) + extra);
  if (o) o->kind = kind;
  return o;
}

/* ------------------------------------------------------------ open */

static int fail(char *err, size_t errlen, const char *f, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  vsnprintf(err, errlen, f, ap);
  va_end(ap);
  return -1;
}

/* fsync the directory holding path (p is a scratch copy of it). */
static int sync_parent(char *p) {
  char *slash = strrchr(p, '/');
  int fd, rc = 0;
  if (slash == p) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else strcpy(p, ".");
  fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) < 0) rc = -errno;
  if (fd >= 0) close(fd);
  return rc;
}

/* mkdir -p, syncing the parent of every directory it creates. */
static int make_dirs(const char *path) {
  char *p = strdup(path), *q;
  int rc = 0;
  if (p == NULL) return UV_ENOMEM;
  for (q = p + 1; rc == 0; q++) {
    char c = *q;
    if (c != '/' && c != '\0') continue;
    *q = '\0';
    if (mkdir(p, 0755) == 0) {
      char *scratch = strdup(p);
      rc = scratch ? sync_parent(scratch) : UV_ENOMEM;
      free(scratch);
    } else if (errno != EEXIST) {
      rc = -errno;
    }
    *q = c;
    if (c == '\0') break;
  }
  free(p);
  return rc;
}

/* Size and key count of a kept file, from stat and its header (a bad
** header is left for load() to report). */
static void describe(rf_snapstore *s, rf_snap_meta *m) {
  char name[NAME_LEN + 1];
  uint8_t hdr[RF_SNAP_HDR];
  rf_snap_meta h;
  struct stat st;
  int fd;
  snap_name(name, m->index, m->term);
  if ((fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC)) < 0) return;
  if (fstat(fd, &st) == 0) m->size = (uint64_t)st.st_size;
  if (read_all(fd, (char *)hdr, sizeof(hdr), 0) == 0 &&
      snap_peek(hdr, sizeof(hdr), &h) >= 0)
    m->nkeys = h.nkeys;
  close(fd);
}

/* Clean up after a crash (temp files, a rotation that did not finish) and
** list what is kept. */
static int recover(rf_snapstore *s, char *err, size_t errlen) {
  char name[NAME_LEN + 1];
  snap_id *ids;
  size_t n;
  int removed = 0, rc = scan(s->dirfd, 1, &ids, &n, &removed);
  if (rc < 0)
    return fail(err, errlen, "cannot list %s: %s", s->path, strerror(-rc));
  for (size_t i = 0; i < n; i++) {
    if (i < KEEP) {
      s->kept[s->nkept] = (rf_snap_meta){.index = ids[i].index,
                                         .term = ids[i].term};
      describe(s, &s->kept[s->nkept++]);
      continue;
    }
    snap_name(name, ids[i].index, ids[i].term);
    if (unlinkat(s->dirfd, name, 0) == 0) removed = 1;
  }
  free(ids);
  if (removed && (rc = sync_dir(s)) < 0)
    return fail(err, errlen, "cannot sync %s: %s", s->path, strerror(-rc));
  return 0;
}

static int open_dir(rf_snapstore *s, const char *dir, char *err,
                    size_t errlen) {
  int rc;
  if ((s->path = malloc(strlen(dir) + sizeof("/" SUBDIR))) == NULL)
    return fail(err, errlen, "out of memory");
  sprintf(s->path, "%s/" SUBDIR, dir);
  if ((rc = make_dirs(s->path)) < 0)
    return fail(err, errlen, "cannot create %s: %s", s->path, strerror(-rc));
  if ((s->dirfd = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
    return fail(err, errlen, "cannot open %s: %s", s->path, strerror(errno));
  return recover(s, err, errlen);
}

rf_snapstore *rf_snapstore_open(uv_loop_t *loop, const char *dir, char *err,
                                size_t errlen) {
  rf_snapstore *s = calloc(1, sizeof(*s));
  if (s == NULL || (s->closer = new_op(OP_CLOSE, 0)) == NULL) {
    free(s);
    fail(err, errlen, "out of memory");
    return NULL;
  }
  s->loop = loop;
  s->dirfd = s->rx_fd = -1;
  s->tail = &s->head;
  s->closer->s = s;
  if (dir != NULL && open_dir(s, dir, err, errlen) < 0) {
    end(s);
    return NULL;
  }
  return s;
}

void rf_snapstore_close(rf_snapstore *s, void (*done)(void *ud), void *ud) {
  if (s->closing) return; /* once */
  s->closing = 1;
  s->close_done = done;
  s->close_ud = ud;
  s->rx_active = 0;
  kick(s);
}

/* ------------------------------------------------------------ queries */

int rf_snapstore_latest(const rf_snapstore *s, rf_snap_meta *m) {
  if (s->nkept == 0) return RF_SNAP_ENONE;
  *m = s->kept[0];
  return 0;
}

int rf_snapstore_saving(const rf_snapstore *s) { return s->saving; }

const char *rf_snapstore_errmsg(const rf_snapstore *s) { return s->err; }

uint64_t rf_snapstore_recv_offset(const rf_snapstore *s) {
  return s->rx_active ? s->rx_off : 0;
}

void rf_snapstore_set_io_hook(rf_snapstore *s,
                              int (*h)(void *ud, const char *what),
                              void *ud) {
  s->hook = h;
  s->hook_ud = ud;
}

/* ------------------------------------------------------------ load */

/* Read the whole file name into out (appended).  0 or -errno. */
static int slurp(rf_snapstore *s, const char *name, rf_buf *out,
                 size_t *len) {
  struct stat st;
  char *p;
  int rc, fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  if (fstat(fd, &st) < 0) {
    rc = -errno;
  } else if ((uint64_t)st.st_size > SIZE_MAX - out->n - 1) {
    rc = UV_ENOMEM;
  } else if ((p = realloc(out->p, out->n + (size_t)st.st_size + 1)) == NULL) {
    rc = UV_ENOMEM;
  } else {
    out->p = p;
    out->cap = out->n + (size_t)st.st_size + 1;
    *len = (size_t)st.st_size;
    rc = read_all(fd, p + out->n, *len, 0);
  }
  close(fd);
  return rc;
}

static int load_file(rf_snapstore *s, rf_buf *out, rf_snap_meta *m,
                     char *err, size_t errlen) {
  char name[NAME_LEN + 1], reason[200];
  size_t len = 0, off = 0;
  int rc;
  snap_name(name, s->kept[0].index, s->kept[0].term);
  if ((rc = slurp(s, name, out, &len)) < 0) {
    if (out->p) out->p[out->n] = '\0';
    fail(err, errlen, "cannot read snapshot %s/%s: %s", s->path, name,
         strerror(-rc));
    return rc;
  }
  int v = snap_version((const uint8_t *)out->p + out->n, len);
  if (v >= 0 && v != SNAP_VERSION && v != 1) {
    out->p[out->n] = '\0';
    fail(err, errlen, "unsupported format version %d in %s/%s (this build "
         "reads version %d)", v, s->path, name, SNAP_VERSION);
    return RF_SNAP_ECORRUPT;
  }
  rc = snap_parse((const uint8_t *)out->p + out->n, len, NULL, m, &off,
                  reason, sizeof(reason));
  if (rc == 0 &&
      (m->index != s->kept[0].index || m->term != s->kept[0].term)) {
    rc = RF_SNAP_ECORRUPT;
    off = 8;
    fmt(reason, sizeof(reason), "header says index %" PRIu64 " term %" PRIu64
        ", not what the name says", m->index, m->term);
  }
  if (rc < 0)
    fail(err, errlen, "corrupt snapshot: %s/%s at offset %zu: %s", s->path,
         name, off, reason);
  else
    out->n += len;
  out->p[out->n] = '\0';
  return rc;
}

/* The snapshot o->m restored into o->into, on the worker.  The list of
** kept snapshots and mem do not change while an op runs. */
static void w_preload(rf_snapstore *s, snap_op *o) {
  char name[NAME_LEN + 1];
  rf_snap_meta m = {0};
  rf_buf b;
  size_t len = 0;
  int rc;
  if (s->path == NULL) {
    if (s->nkept == 0 || s->kept[0].index != o->m.index ||
        s->kept[0].term != o->m.term) {
      o->status = RF_SNAP_ENONE;
      return;
    }
    rc = snap_restore_quiet(s->mem, (size_t)s->kept[0].size, o->into, &m,
                            o->err, sizeof(o->err));
  } else {
    snap_name(name, o->m.index, o->m.term);
    rf_buf_init(&b);
    if ((rc = slurp(s, name, &b, &len)) < 0)
      fmt(o->err, sizeof(o->err), "cannot read snapshot %s/%s: %s", s->path,
          name, strerror(-rc));
    else
      rc = snap_restore_quiet(b.p, len, o->into, &m, o->err, sizeof(o->err));
    rf_buf_free(&b);
  }
  if (rc == 0 && (m.index != o->m.index || m.term != o->m.term))
    rc = RF_SNAP_ECORRUPT;
  o->status = rc;
}

int rf_snapstore_preload(rf_snapstore *s, const rf_snap_meta *m,
                         rf_store *into, rf_snap_done done, void *ud) {
  snap_op *o;
  if (s->closing) return UV_EINVAL;
  if ((o = new_op(OP_PRELOAD, 0)) == NULL) return UV_ENOMEM;
  o->m = *m;
  o->into = into;
  o->done = done;
  o->ud = ud;
  enqueue(s, o);
  return 0;
}

int rf_snapstore_load(rf_snapstore *s, rf_buf *out, rf_snap_meta *m,
                      char *err, size_t errlen) {
  if (s->nkept == 0) {
    fail(err, errlen, "no snapshot");
    return RF_SNAP_ENONE;
  }
  if (s->path != NULL) return load_file(s, out, m, err, errlen);
  rf_buf_add(out, s->mem, (size_t)s->kept[0].size);
  if (out->oom) {
    fail(err, errlen, "out of memory");
    return UV_ENOMEM;
  }
  /* the kept meta may lack the configuration (a save names only the
  ** header's fields): read it from the bytes, checked when they came in */
  if (rf_snap_head(s->mem, (size_t)s->kept[0].size, s->kept[0].size, m,
                   NULL, 0) < 0)
    *m = s->kept[0];
  return 0;
}

/* ------------------------------------------------------------ operations */

/* Does buf start with the header m describes? */
static int matches(const char *buf, size_t len, const rf_snap_meta *m) {
  rf_snap_meta h;
  return len >= RF_SNAP_MIN && m->size == len &&
         snap_peek((const uint8_t *)buf, len, &h) >= 0 &&
         h.index == m->index && h.term == m->term && h.nkeys == m->nkeys;
}

int rf_snapstore_save(rf_snapstore *s, char *buf, size_t len,
                      const rf_snap_meta *m, rf_snap_done done, void *ud) {
  snap_op *o;
  int rc = s->closing || !matches(buf, len, m) ? UV_EINVAL
           : s->saving ? RF_SNAP_EBUSY : 0;
  if (rc == 0 && (o = new_op(OP_SAVE, 0)) == NULL) rc = UV_ENOMEM;
  if (rc < 0) {
    free(buf);
    return rc;
  }
  o->m = *m;
  o->buf = buf;
  o->len = len;
  o->done = done;
  o->ud = ud;
  s->saving = 1;
  enqueue(s, o);
  return 0;
}

int rf_snapstore_save_fd(rf_snapstore *s, uint64_t index, uint64_t term) {
  char tmp[NAME_LEN + 5];
  int fd;
  if (s->closing || s->path == NULL) return UV_EINVAL;
  if (s->saving) return RF_SNAP_EBUSY;
  snap_name(tmp, index, term);
  strcat(tmp, ".tmp");
  fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    fmt(s->err, sizeof(s->err), "cannot create %s/%s: %s", s->path, tmp,
        strerror(errno));
    return -errno;
  }
  s->saving = 1;
  return fd;
}

int rf_snapstore_save_file(rf_snapstore *s, const rf_snap_meta *m, int ok,
                           rf_snap_done done, void *ud) {
  snap_op *o;
  if (!s->saving || s->path == NULL) return UV_EINVAL;
  if (s->closing || (o = new_op(OP_SAVE, 0)) == NULL) {
    unlink_tmp(s, m); /* no queue to do it on, or rare: do it here */
    s->saving = 0;
    return s->closing ? UV_EINVAL : UV_ENOMEM;
  }
  o->m = *m;
  o->file = 1;
  o->done = done;
  o->ud = ud;
  if (!ok) { /* the worker unlinks; nobody waits for it */
    o->status = UV_ECANCELED;
    o->done = NULL;
  }
  enqueue(s, o);
  return 0;
}

static const rf_snap_meta *find(const rf_snapstore *s, uint64_t index) {
  for (int i = 0; i < s->nkept; i++)
    if (s->kept[i].index == index) return &s->kept[i];
  return NULL;
}

int rf_snapstore_read(rf_snapstore *s, uint64_t index, uint64_t offset,
                      size_t len, rf_snap_read_done done, void *ud) {
  const rf_snap_meta *m = find(s, index);
  snap_op *o;
  if (s->closing) return UV_EINVAL;
  if (m == NULL) return RF_SNAP_ENONE;
  if (offset > m->size) return UV_EINVAL;
  if ((o = new_op(OP_READ, 0)) == NULL) return UV_ENOMEM;
  o->m = *m;
  o->off = offset;
  o->len = len;
  o->rdone = done;
  o->ud = ud;
  enqueue(s, o);
  return 0;
}

int rf_snapstore_recv_begin(rf_snapstore *s, const rf_snap_meta *m) {
  if (s->closing || m->size < RF_SNAP_MIN_V1) return UV_EINVAL;
  if (s->nkept > 0 && m->index < s->kept[0].index) return RF_SNAP_ESTALE;
  if (s->rx_active) cancel_rx(s, s->rx_gen);
  s->rx_gen++;
  s->rx_active = 1;
  s->rx_m = *m;
  s->rx_off = 0;
  return 0;
}

int rf_snapstore_recv_chunk(rf_snapstore *s, uint64_t offset, const void *data,
                            size_t len, rf_snap_done done, void *ud) {
  snap_op *o;
  if (s->closing || !s->rx_active || offset != s->rx_off ||
      len > s->rx_m.size - s->rx_off)
    return UV_EINVAL;
  if ((o = new_op(OP_CHUNK, len)) == NULL) return UV_ENOMEM;
  o->buf = (char *)(o + 1);
  memcpy(o->buf, data, len);
  o->len = len;
  o->off = offset;
  o->m = s->rx_m;
  o->gen = s->rx_gen;
  o->done = done;
  o->ud = ud;
  s->rx_off += len;
  enqueue(s, o);
  return 0;
}

int rf_snapstore_recv_finish(rf_snapstore *s, rf_snap_done done, void *ud) {
  snap_op *o;
  if (s->closing || !s->rx_active || s->rx_off != s->rx_m.size)
    return UV_EINVAL;
  if ((o = new_op(OP_FINISH, 0)) == NULL) return UV_ENOMEM;
  o->m = s->rx_m;
  o->gen = s->rx_gen;
  o->done = done;
  o->ud = ud;
  s->rx_active = 0; /* no more chunks: the transfer is the op's now */
  enqueue(s, o);
  return 0;
}

void rf_snapstore_recv_abort(rf_snapstore *s) {
  snap_op *o;
  if (s->closing || !s->rx_active) return;
  cancel_rx(s, s->rx_gen);
  s->rx_gen++;
  s->rx_active = 0;
  /* the temp file goes now; if this fails, at the next transfer or close */
  if ((o = new_op(OP_DROP, 0)) != NULL) enqueue(s, o);
}

/* ------------------------------------------------------------ head */

/* A reader's shared lock keeps rotation from shrinking the file (see
** rf_remove_gradually); a rotation that took it first, or already shrank
** it, makes the file as good as gone. */
static int whole(int fd, const rf_snap_meta *m) {
  struct stat st;
  if (flock(fd, LOCK_SH | LOCK_NB) == 0 && fstat(fd, &st) == 0 &&
      st.st_nlink > 0 && (uint64_t)st.st_size == m->size)
    return fd;
  close(fd);
  return RF_SNAP_ENONE;
}

int rf_snapstore_open_file(rf_snapstore *s, uint64_t index) {
  const rf_snap_meta *m = find(s, index);
  char name[NAME_LEN + 1];
  int fd;
  if (m == NULL) return RF_SNAP_ENONE;
  if (s->path == NULL) return UV_EINVAL;
  snap_name(name, m->index, m->term);
  fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? RF_SNAP_ENONE : -errno;
  return whole(fd, m);
}

/* The first bytes of the kept snapshot m (all of them if it is small). */
static int head_bytes(rf_snapstore *s, const rf_snap_meta *m, rf_buf *b,
                      size_t *len, char *err, size_t errlen) {
  char name[NAME_LEN + 1];
  int fd, rc;
  *len = m->size < RF_SNAP_HEAD_MAX ? (size_t)m->size : RF_SNAP_HEAD_MAX;
  if (rf_buf_reserve(b, *len) != 0) {
    fail(err, errlen, "out of memory");
    return UV_ENOMEM;
  }
  if (s->path == NULL) {
    memcpy(b->p, s->mem, *len);
    return 0;
  }
  snap_name(name, m->index, m->term);
  if ((fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC)) < 0) {
    rc = errno == ENOENT ? RF_SNAP_ENONE : -errno;
  } else {
    rc = read_all(fd, b->p, *len, 0);
    close(fd);
  }
  if (rc < 0)
    fail(err, errlen, "cannot read snapshot %s/%s: %s", s->path, name,
         rc == RF_SNAP_ENONE ? "gone" : strerror(-rc));
  return rc;
}

int rf_snapstore_head(rf_snapstore *s, uint64_t index, rf_snap_meta *m,
                      rf_buf *blob, char *err, size_t errlen) {
  const rf_snap_meta *k = find(s, index);
  rf_buf b;
  size_t len;
  int rc;
  if (k == NULL || (s->path == NULL && k != &s->kept[0])) {
    fail(err, errlen, "no snapshot at index %" PRIu64, index);
    return RF_SNAP_ENONE;
  }
  rf_buf_init(&b);
  if ((rc = head_bytes(s, k, &b, &len, err, errlen)) == 0 &&
      (rc = rf_snap_head(b.p, len, k->size, m, err, errlen)) == 0 && blob) {
    rf_buf_add(blob, b.p + m->blob_off, m->blob_len);
    if (blob->oom) {
      fail(err, errlen, "out of memory");
      rc = UV_ENOMEM;
    }
  }
  rf_buf_free(&b);
  return rc;
}
