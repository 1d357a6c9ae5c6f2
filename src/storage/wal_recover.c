/*
** wal_recover.c -- rebuild the acknowledged log from the segment files.
**
** Segments are read in sequence order and their records replayed: an ENTRY
** at index i drops any entries >= i and appends; a HARDSTATE replaces the
** hard state; a SNAPSHOT drops the entries it covers (or all of them when
** the log was reset).  Every segment after the first must start where the
** one before left off (its SEGMENT record repeats base, hard state and
** snapshot), so a missing or foreign file cannot go unnoticed.
**
** Only the end of the last segment may be damaged -- that is where a crash
** leaves a write that was never acknowledged -- and only the last record:
** a partial record, or one whose checksum fails and after which no valid
** record follows.  Anything else is corruption and an error naming the
** file and offset.
**
** Memory: rec->bufs hold the files' contents; rec->ents point into them.
** wal_recovery_free() releases both.
*/
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "rafting/log.h"
#include "wal_internal.h"

typedef struct scan {
  wal_recovery *rec;
  uint64_t first;        /* index of rec->ents[0] (or of the next entry) */
  const char *path;      /* the wal directory, for messages */
  char name[WAL_NAME_LEN + 1]; /* the segment being read */
  wal_warn_fn warn;
  void *warn_ud;
  char *err;
  size_t errlen;
  rf_progress *prog;     /* NULL: no progress lines */
  uint64_t done;         /* bytes of the segments before this one */
} scan;

static int corrupt(scan *s, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int corrupt(scan *s, uint64_t off, const char *fmt, ...) {
  char what[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  snprintf(s->err, s->errlen, "corrupt WAL: %s/%s at offset %llu: %s",
           s->path, s->name, (unsigned long long)off, what);
  return -1;
}

static int io_error(scan *s, int e, const char *what) {
  snprintf(s->err, s->errlen, "WAL %s/%s: %s: %s", s->path, s->name, what,
           strerror(e));
  return -e;
}

static void warn(scan *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void warn(scan *s, int level, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  s->warn(s->warn_ud, level, msg);
}

/* ------------------------------------------------------------ listing */

static int cmp_seg(const void *a, const void *b) {
  const wal_seg *x = a, *y = b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Collect the segments (sorted) and drop leftover temp files. */
static int list_segments(int dirfd, int repair, scan *s) {
  wal_recovery *rec = s->rec;
  size_t cap = 0;
  int removed = 0, fd = dup(dirfd);
  DIR *d;
  struct dirent *de;
  if (fd < 0 || (d = fdopendir(fd)) == NULL) {
    if (fd >= 0) close(fd);
    return io_error(s, errno, "cannot list");
  }
  rewinddir(d);
  while ((de = readdir(d)) != NULL) {
    uint64_t seq, base;
    size_t len = strlen(de->d_name);
    if (wal_seg_parse_name(de->d_name, &seq, &base) == 0) {
      if (rec->nsegs == cap) {
        wal_seg *ns = realloc(rec->segs, (cap = cap ? 2 * cap : 16) *
                                             sizeof(*ns));
        if (ns == NULL) { closedir(d); return io_error(s, ENOMEM, "list"); }
        rec->segs = ns;
      }
      rec->segs[rec->nsegs++] = (wal_seg){seq, base, base - 1, 0};
    } else if (repair && len > 8 && strcmp(de->d_name + len - 8,
                                           ".wal.tmp") == 0) {
      /* a segment whose creation a crash interrupted: never used */
      if (unlinkat(dirfd, de->d_name, 0) == 0) removed = 1;
      warn(s, RF_INFO, "wal: removed unfinished %s/%s", s->path, de->d_name);
    }
  }
  closedir(d);
  if (removed && wal_fsync_dir(dirfd) < 0)
    return io_error(s, errno, "fsync directory");
  if (rec->nsegs > 1)
    qsort(rec->segs, rec->nsegs, sizeof(*rec->segs), cmp_seg);
  for (size_t i = 1; i < rec->nsegs; i++) {
    if (rec->segs[i].seq != rec->segs[i - 1].seq + 1) {
      wal_seg_name(s->name, rec->segs[i].seq, rec->segs[i].base);
      return corrupt(s, 0, "missing segment: the one before it has seq %llu",
                     (unsigned long long)rec->segs[i - 1].seq);
    }
  }
  return 0;
}

static int read_file(int dirfd, scan *s, uint8_t **out, uint64_t *size) {
  struct stat st;
  uint8_t *buf;
  size_t got = 0;
  int fd = openat(dirfd, s->name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error(s, errno, "open");
  if (fstat(fd, &st) < 0) { close(fd); return io_error(s, errno, "stat"); }
  buf = malloc((size_t)st.st_size + 1);
  if (buf == NULL) { close(fd); return io_error(s, ENOMEM, "read"); }
  while (got < (size_t)st.st_size) {
    ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      int e = k < 0 ? errno : EIO;
      free(buf);
      close(fd);
      return io_error(s, e, "read");
    }
    got += (size_t)k;
  }
  close(fd);
  *out = buf;
  *size = got;
  return 0;
}

/* ------------------------------------------------------------ replay */

static int push_entry(scan *s, const wal_rec *r) {
  wal_recovery *rec = s->rec;
  if (rec->n == rec->cap) {
    size_t cap = rec->cap ? 2 * rec->cap : 1024;
    raft_entry *ne = realloc(rec->ents, cap * sizeof(*ne));
    if (ne == NULL) return -1;
    rec->ents = ne;
    rec->cap = cap;
  }
  rec->ents[rec->n++] = (raft_entry){r->term, r->index, r->sub, r->len,
                                     r->len ? r->data : NULL};
  return 0;
}

static int apply_entry(scan *s, const wal_rec *r, uint64_t off, wal_seg *seg) {
  wal_recovery *rec = s->rec;
  uint64_t i = r->index;
  if (i <= rec->snap_index)
    return corrupt(s, off, "entry %llu is covered by snapshot %llu",
                   (unsigned long long)i, (unsigned long long)rec->snap_index);
  if (i > rec->next)
    return corrupt(s, off, "entry %llu leaves a gap (expected at most %llu)",
                   (unsigned long long)i, (unsigned long long)rec->next);
  if (i < s->first) {
    /* truncated below the oldest file kept: only legal when a later
    ** snapshot covers it, which the final check verifies */
    rec->n = 0;
    s->first = i;
  } else {
    rec->n = (size_t)(i - s->first);
  }
  if (push_entry(s, r) < 0) return io_error(s, ENOMEM, "recover");
  rec->next = i + 1;
  if (i > seg->max_index) seg->max_index = i;
  return 0;
}

static int apply_snapshot(scan *s, const wal_rec *r, uint64_t off) {
  wal_recovery *rec = s->rec;
  uint64_t si = r->index;
  if (si < rec->snap_index)
    return corrupt(s, off, "snapshot %llu is older than snapshot %llu",
                   (unsigned long long)si,
                   (unsigned long long)rec->snap_index);
  if ((r->sub & WAL_SNAP_RESET) || si + 1 >= rec->next) {
    rec->n = 0;
    s->first = rec->next = si + 1;
  } else if (si >= s->first) {
    size_t drop = (size_t)(si + 1 - s->first);
    memmove(rec->ents, rec->ents + drop, (rec->n - drop) * sizeof(*rec->ents));
    rec->n -= drop;
    s->first = si + 1;
  }
  rec->snap_index = si;
  rec->snap_term = r->term;
  return 0;
}

/* The SEGMENT record: file i must continue exactly where i-1 ended. */
static int apply_header(scan *s, const wal_rec *r, size_t i) {
  wal_recovery *rec = s->rec;
  wal_seg *seg = &rec->segs[i];
  wal_seghdr h;
  if (r->type != WAL_REC_SEGMENT || wal_parse_seghdr(r, &h) < 0)
    return corrupt(s, 0, "not a WAL segment");
  if (h.seq != seg->seq || h.base != seg->base)
    return corrupt(s, 0, "header says seq %llu base %llu, unlike its name",
                   (unsigned long long)h.seq, (unsigned long long)h.base);
  if (i == 0) {
    if (h.base <= h.snap_index)
      return corrupt(s, 0, "base %llu is covered by snapshot %llu",
                     (unsigned long long)h.base,
                     (unsigned long long)h.snap_index);
    rec->hs = h.hs;
    rec->snap_index = h.snap_index;
    rec->snap_term = h.snap_term;
    s->first = rec->next = h.base;
    return 0;
  }
  if (h.base != rec->next || h.snap_index != rec->snap_index ||
      h.snap_term != rec->snap_term || h.hs.term != rec->hs.term ||
      h.hs.vote != rec->hs.vote || h.hs.commit != rec->hs.commit)
    return corrupt(s, 0, "segment does not continue the one before it "
                   "(base %llu, expected %llu): records are missing",
                   (unsigned long long)h.base, (unsigned long long)rec->next);
  return 0;
}

/* Does a valid record header start anywhere in buf[from, size)? */
static int header_after(const uint8_t *buf, uint64_t from, uint64_t size) {
  for (uint64_t k = from; k + WAL_HDR <= size; k++)
    if (wal_hdr_ok(buf + k)) return 1;
  return 0;
}

/* Can the bad record at off be the torn end of the last segment?  Only if
** it is the last record: nothing that checks out as a record follows it
** (searched byte by byte, since a bad header's length can't be trusted). */
static int is_torn(int rc, const uint8_t *buf, uint64_t off, uint64_t size) {
  switch (rc) {
  case WAL_SHORT_HDR:
  case WAL_SHORT_BODY: return 1;
  case WAL_BAD_BODY:
    return !header_after(buf, off + WAL_HDR + wal_peek_len(buf + off), size);
  case WAL_BAD_HDR: return !header_after(buf, off + 1, size);
  default: return 0;
  }
}

/* Replay segment i.  *tail is set to where a torn tail starts (or size). */
static int replay(scan *s, size_t i, const uint8_t *buf, uint64_t size,
                  uint64_t *tail, int *why) {
  int last = i + 1 == s->rec->nsegs;
  uint64_t off = 0;
  long v = wal_file_version(buf, (size_t)size);
  *tail = size;
  if (v >= 0 && v != WAL_VERSION) {
    snprintf(s->err, s->errlen, "unsupported format version %ld in %s/%s "
             "(this build reads version %d)", v, s->path, s->name,
             WAL_VERSION);
    return -1;
  }
  while (off < size || off == 0) {
    wal_rec r;
    int rc = wal_decode(buf + off, (size_t)(size - off), &r), err = 0;
    if (rc != WAL_OK) {
      if (last && is_torn(rc, buf, off, size)) {
        *tail = off;
        *why = rc;
        return 0;
      }
      if (size == 0)
        return corrupt(s, 0, "zero-length segment before the last one");
      return corrupt(s, off, "%s", wal_decode_str(rc));
    }
    if (off == 0) {
      err = apply_header(s, &r, i);
    } else {
      switch (r.type) {
      case WAL_REC_ENTRY: err = apply_entry(s, &r, off, &s->rec->segs[i]); break;
      case WAL_REC_HARDSTATE: err = wal_parse_hs(&r, &s->rec->hs); break;
      case WAL_REC_SNAPSHOT: err = apply_snapshot(s, &r, off); break;
      default: err = corrupt(s, off, "segment record inside a segment");
      }
    }
    if (err < 0) return err;
    off += WAL_HDR + r.len;
    if (s->prog) {
      s->prog->count = s->rec->n;
      rf_progress_step(s->prog, s->done + off);
    }
  }
  return 0;
}

/* The bytes to replay, for progress: the segments' sizes now. */
static uint64_t total_bytes(int dirfd, scan *s) {
  uint64_t total = 0;
  struct stat st;
  for (size_t i = 0; i < s->rec->nsegs; i++) {
    wal_seg_name(s->name, s->rec->segs[i].seq, s->rec->segs[i].base);
    if (fstatat(dirfd, s->name, &st, 0) == 0) total += (uint64_t)st.st_size;
  }
  return total;
}

/* Cut the torn tail of the last segment (or the whole file if even its
** SEGMENT record is incomplete). */
static int repair_tail(int dirfd, scan *s, uint64_t tail, uint64_t size,
                       int why, int repair) {
  wal_recovery *rec = s->rec;
  if (tail == 0) {
    warn(s, RF_WARN, "wal: %s/%s: %s (%llu bytes): segment creation never "
         "finished; %s", s->path, s->name,
         size == 0 ? "empty file" : wal_decode_str(why),
         (unsigned long long)size, repair ? "removed" : "ignored");
    if (rec->nsegs == 1 && rec->segs[0].seq != 1) {
      snprintf(s->err, s->errlen, "corrupt WAL: %s/%s at offset 0: the only "
               "segment has no header, the log before it is missing",
               s->path, s->name);
      return -1;
    }
    rec->nsegs--;
    if (repair && (unlinkat(dirfd, s->name, 0) < 0 ||
                   wal_fsync_dir(dirfd) < 0))
      return io_error(s, errno, "remove");
    return 0;
  }
  warn(s, RF_WARN, "wal: %s/%s: torn tail at offset %llu (%llu bytes, %s); "
       "%s", s->path, s->name, (unsigned long long)tail,
       (unsigned long long)(size - tail), wal_decode_str(why),
       repair ? "truncated" : "ignored");
  rec->segs[rec->nsegs - 1].size = tail;
  if (repair) {
    int fd = openat(dirfd, s->name, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return io_error(s, errno, "open");
    if (ftruncate(fd, (off_t)tail) < 0 || fsync(fd) < 0) {
      int e = errno;
      close(fd);
      return io_error(s, e, "truncate");
    }
    close(fd);
  }
  return 0;
}

static int replay_all(int dirfd, scan *s, int repair) {
  wal_recovery *rec = s->rec;
  int rc;
  if (rec->nsegs > 0) {
    rec->bufs = calloc(rec->nsegs, sizeof(*rec->bufs));
    if (rec->bufs == NULL) return io_error(s, ENOMEM, "recover");
  }
  for (size_t i = 0; i < rec->nsegs; i++) {
    uint8_t *buf = NULL;
    uint64_t size = 0, tail;
    int why = WAL_OK;
    wal_seg_name(s->name, rec->segs[i].seq, rec->segs[i].base);
    if ((rc = read_file(dirfd, s, &buf, &size)) < 0) return rc;
    rec->bufs[rec->nbufs++] = buf;
    rec->segs[i].size = size;
    if ((rc = replay(s, i, buf, size, &tail, &why)) < 0) return rc;
    s->done += size;
    if (tail < size || size == 0) {
      if ((rc = repair_tail(dirfd, s, tail, size, why, repair)) < 0)
        return rc;
    }
  }
  /* the log must pick up right after the snapshot */
  if (s->first != rec->snap_index + 1 && rec->nsegs > 0) {
    wal_seg_name(s->name, rec->segs[0].seq, rec->segs[0].base);
    return corrupt(s, 0, "log starts at %llu but the snapshot ends at %llu: "
                   "segments before this one are missing",
                   (unsigned long long)s->first,
                   (unsigned long long)rec->snap_index);
  }
  return 0;
}

int wal_recover(int dirfd, const char *path, int flags, wal_recovery *rec,
                wal_warn_fn warnf, void *warn_ud, char *err, size_t errlen) {
  scan s = {.rec = rec, .path = path, .warn = warnf, .warn_ud = warn_ud,
            .err = err, .errlen = errlen};
  int repair = flags & WAL_RECOVER_REPAIR, rc;
  rf_progress prog;
  memset(rec, 0, sizeof(*rec));
  rec->next = 1;
  s.first = 1;
  if ((rc = list_segments(dirfd, repair, &s)) < 0) return rc;
  if (flags & WAL_RECOVER_PROGRESS) {
    rf_progress_start(&prog, "wal replay", "bytes", total_bytes(dirfd, &s));
    prog.count_name = "entries";
    s.prog = &prog;
  }
  if ((rc = replay_all(dirfd, &s, repair)) < 0) return rc;
  if (s.prog) {
    prog.count = rec->n;
    rf_progress_end(&prog);
  }
  return 0;
}

void wal_recovery_free(wal_recovery *rec) {
  for (size_t i = 0; i < rec->nbufs; i++) free(rec->bufs[i]);
  free(rec->bufs);
  free(rec->ents);
  free(rec->segs);
  memset(rec, 0, sizeof(*rec));
}
