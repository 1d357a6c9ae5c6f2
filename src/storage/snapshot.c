/*
** snapshot.c -- the snapshot format: an ordered store written out in key
** order, and checked and parsed back (see rafting/snapshot.h and the
** snapshot section of docs/storage.md).
**
** Layout, integers little-endian:
**
**      0  "RFSNAP02"
**      8  u64 index       last log index covered
**     16  u64 term        its term
**     24  u64 nkeys
**     32  u32 clen, clen bytes: raft_conf_encode of the configuration at
**         index (0: none)
**      .  u32 blen, blen bytes: the membership blob (opaque)
**      .  nkeys x (uvarint klen, key, uvarint vlen, value), keys ascending
**    n-8  u64 XXH3-64 of bytes 0..n-8
**
** Version 1 ("RFSNAP01") has the records right after the header.
** Parsing checks the structure first (so a damaged length or a truncation
** is reported where it is), then the checksum (which catches the rest).
** Checksums are XXH3-64 from libxxhash, as in the WAL.
**
** Memory: pure functions over the caller's buffers; serialize grows the
** caller's rf_buf, restore copies keys and values into the caller's store.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "rafting/bytes.h"
#include "rafting/log.h"
#include "snap_internal.h"

/* ------------------------------------------------------------ serialize */

/* Room for more bytes after out->n (and rf_buf's NUL).  Exact, no
** doubling: a snapshot is one big append. */
static int reserve(rf_buf *out, size_t more) {
  char *p;
  if (out->oom || more > SIZE_MAX - out->n - 1) goto oom;
  if (out->n + more + 1 <= out->cap) return 0;
  if ((p = realloc(out->p, out->n + more + 1)) == NULL) goto oom;
  out->p = p;
  out->cap = out->n + more + 1;
  return 0;
oom:
  out->oom = 1;
  return UV_ENOMEM;
}

/* Give back what the worst-case reservation did not use. */
static void trim(rf_buf *out) {
  char *p;
  if (out->cap - out->n - 1 < 4096) return;
  if ((p = realloc(out->p, out->n + 1)) == NULL) return; /* keep it big */
  out->p = p;
  out->cap = out->n + 1;
}

/* The parts after the fixed header (length-prefixed configuration and
** blob) into b[0..), which has room for ext_size(x): their length. */
static size_t ext_size(const rf_snap_extra *x) {
  return 8 + (x && x->conf ? raft_conf_size(x->conf) : 0) +
         (x ? x->blob_len : 0);
}

static int ext_check(const rf_snap_extra *x) {
  if (x == NULL) return 0;
  if (x->blob_len > RF_SNAP_BLOB_MAX || (x->blob_len && x->blob == NULL))
    return UV_EINVAL;
  if (x->conf && raft_conf_check(x->conf) != RAFT_OK) return UV_EINVAL;
  return 0;
}

static size_t ext_put(const rf_snap_extra *x, uint8_t *b) {
  size_t clen = x && x->conf ? raft_conf_size(x->conf) : 0;
  size_t blen = x ? x->blob_len : 0;
  rf_put_le32(b, (uint32_t)clen);
  if (clen) raft_conf_encode(x->conf, b + 4, clen);
  rf_put_le32(b + 4 + clen, (uint32_t)blen);
  if (blen) memcpy(b + 8 + clen, x->blob, blen);
  return 8 + clen + blen;
}

/* The meta of a snapshot written with x. */
static rf_snap_meta meta_of(uint64_t index, uint64_t term, uint64_t size,
                            uint64_t nkeys, const rf_snap_extra *x) {
  rf_snap_meta m;
  memset(&m, 0, sizeof(m));
  m.index = index;
  m.term = term;
  m.size = size;
  m.nkeys = nkeys;
  if (x && x->conf) {
    m.has_conf = 1;
    m.conf = *x->conf;
  }
  m.blob_off = RF_SNAP_HDR + 8 + (x && x->conf ? raft_conf_size(x->conf) : 0);
  m.blob_len = x ? (uint32_t)x->blob_len : 0;
  return m;
}

int rf_snap_serialize(const rf_store *st, uint64_t index, uint64_t term,
                      const rf_snap_extra *x, rf_buf *out,
                      rf_snap_meta *meta) {
  uint64_t count = rf_store_count(st), bytes = rf_store_bytes(st), nkeys = 0;
  size_t ext = ext_size(x);
  rf_store_iter it;
  rf_store_kv kv;
  uint8_t *p, *q;
  if (ext_check(x) < 0) return UV_EINVAL;
  /* worst case: every length a 10-byte uvarint */
  if (count > (SIZE_MAX - RF_SNAP_MIN - ext) / (2 * RF_UVARINT_MAX) ||
      bytes > SIZE_MAX - RF_SNAP_MIN - ext - count * 2 * RF_UVARINT_MAX ||
      reserve(out, (size_t)(RF_SNAP_MIN + ext + bytes +
                            count * 2 * RF_UVARINT_MAX)))
    return UV_ENOMEM;
  p = q = (uint8_t *)out->p + out->n;
  memcpy(q, SNAP_MAGIC, 8);
  rf_put_le64(q + 8, index);
  rf_put_le64(q + 16, term);
  q += RF_SNAP_HDR;
  q += ext_put(x, q);
  rf_store_seek(st, &it, NULL, 0);
  while (rf_store_next(&it, &kv)) {
    if (kv.dead) continue;
    q += rf_put_uvarint(q, kv.klen);
    memcpy(q, kv.key, kv.klen);
    q += kv.klen;
    q += rf_put_uvarint(q, kv.vlen);
    memcpy(q, kv.val, kv.vlen);
    q += kv.vlen;
    nkeys++;
  }
  rf_put_le64(p + 24, nkeys);
  rf_put_le64(q, XXH3_64bits(p, (size_t)(q - p)));
  q += 8;
  out->n += (size_t)(q - p);
  out->p[out->n] = '\0';
  if (meta) *meta = meta_of(index, term, (uint64_t)(q - p), nkeys, x);
  trim(out);
  return 0;
}

/* ------------------------------------------------------------ stream */

/* rf_snap_write's state: buf[0..n) not yet handed to out. */
typedef struct sink {
  uint8_t *buf;
  size_t n, cap;
  uint64_t total;
  XXH3_state_t h;
  int (*out)(void *ud, const void *p, size_t len);
  void *ud;
} sink;

static int flush(sink *k) {
  int rc = k->n ? k->out(k->ud, k->buf, k->n) : 0;
  k->n = 0;
  return rc;
}

/* Hash and buffer p[0..len); a piece larger than the buffer goes straight
** to out, so the buffer never grows. */
static int put(sink *k, const void *p, size_t len) {
  int rc;
  XXH3_64bits_update(&k->h, p, len);
  k->total += len;
  if (len > k->cap - k->n) {
    if ((rc = flush(k)) < 0) return rc;
    if (len > k->cap) return k->out(k->ud, p, len);
  }
  memcpy(k->buf + k->n, p, len);
  k->n += len;
  return 0;
}

static int put_uvarint(sink *k, uint64_t v) {
  uint8_t b[RF_UVARINT_MAX];
  return put(k, b, rf_put_uvarint(b, v));
}

int rf_snap_write(const rf_store *st, uint64_t index, uint64_t term,
                  const rf_snap_extra *x, void *buf, size_t cap,
                  int (*out)(void *ud, const void *p, size_t len), void *ud,
                  rf_snap_meta *meta) {
  uint64_t nkeys = rf_store_count(st), seen = 0;
  uint8_t hdr[RF_SNAP_HDR];
  rf_store_iter it;
  rf_store_kv kv;
  sink k;
  int rc;
  uint8_t len4[4];
  if (cap < RF_SNAP_HDR || ext_check(x) < 0) return UV_EINVAL;
  memset(&k, 0, sizeof(k));
  k.buf = buf;
  k.cap = cap;
  k.out = out;
  k.ud = ud;
  XXH3_INITSTATE(&k.h);
  XXH3_64bits_reset(&k.h);
  memcpy(hdr, SNAP_MAGIC, 8);
  rf_put_le64(hdr + 8, index);
  rf_put_le64(hdr + 16, term);
  rf_put_le64(hdr + 24, nkeys);
  rc = put(&k, hdr, sizeof(hdr));
  /* the two prefixed parts, each piece through put (no allocation) */
  rf_put_le32(len4, x && x->conf ? (uint32_t)raft_conf_size(x->conf) : 0);
  if (rc == 0) rc = put(&k, len4, 4);
  if (rc == 0 && x && x->conf) {
    uint8_t cb[3 + 2 * RAFT_MAX_NODES * 8];
    rc = put(&k, cb, raft_conf_encode(x->conf, cb, sizeof(cb)));
  }
  rf_put_le32(len4, x ? (uint32_t)x->blob_len : 0);
  if (rc == 0) rc = put(&k, len4, 4);
  if (rc == 0 && x && x->blob_len) rc = put(&k, x->blob, x->blob_len);
  rf_store_seek(st, &it, NULL, 0);
  while (rc == 0 && rf_store_next(&it, &kv)) {
    if (kv.dead) continue;
    if ((rc = put_uvarint(&k, kv.klen)) < 0 ||
        (rc = put(&k, kv.key, kv.klen)) < 0 ||
        (rc = put_uvarint(&k, kv.vlen)) < 0 ||
        (rc = put(&k, kv.val, kv.vlen)) < 0)
      break;
    seen++;
  }
  if (rc == 0 && seen != nkeys) rc = RF_SNAP_ECORRUPT; /* count is wrong */
  if (rc == 0) {
    rf_put_le64(hdr, XXH3_64bits_digest(&k.h));
    k.total += 8;
    if (k.n + 8 > k.cap && (rc = flush(&k)) < 0) return rc;
    memcpy(k.buf + k.n, hdr, 8);
    k.n += 8;
    rc = flush(&k);
  }
  if (rc == 0 && meta) *meta = meta_of(index, term, k.total, nkeys, x);
  return rc;
}

/* ------------------------------------------------------------ parse */

static int bad(size_t *off, size_t at, char *reason, size_t rlen,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int bad(size_t *off, size_t at, char *reason, size_t rlen,
               const char *fmt, ...) {
  va_list ap;
  *off = at;
  va_start(ap, fmt);
  vsnprintf(reason, rlen, fmt, ap);
  va_end(ap);
  return RF_SNAP_ECORRUPT;
}

int snap_version(const uint8_t *p, size_t len) {
  if (len < 8 || memcmp(p, SNAP_MAGIC, 6) != 0 || p[6] < '0' || p[6] > '9' ||
      p[7] < '0' || p[7] > '9')
    return -1;
  return (p[6] - '0') * 10 + (p[7] - '0');
}

int snap_peek(const uint8_t *p, size_t len, rf_snap_meta *meta) {
  int v = snap_version(p, len);
  if (len < RF_SNAP_HDR || (v != SNAP_VERSION && v != 1)) return -1;
  memset(meta, 0, sizeof(*meta));
  meta->index = rf_get_le64(p + 8);
  meta->term = rf_get_le64(p + 16);
  meta->nkeys = rf_get_le64(p + 24);
  return v;
}

/* The parts after the fixed header, from p[0..avail) of a file of total
** bytes: meta's configuration and blob, *start the first record's offset.
** Version 1 has none (start 32).  Every length must fit before the
** trailer of total bytes, and within avail. */
int snap_head(const uint8_t *p, size_t avail, uint64_t total,
              rf_snap_meta *meta, size_t *start, size_t *off, char *reason,
              size_t rlen) {
  uint64_t end = total - 8, clen, blen;
  size_t pos = RF_SNAP_HDR;
  int v = snap_peek(p, avail, meta);
  if (v < 0 || total < RF_SNAP_MIN_V1)
    return bad(off, 0, reason, rlen, "bad magic (not a snapshot)");
  *start = RF_SNAP_HDR;
  if (v == 1) return 0;
  if (total < RF_SNAP_MIN || avail < pos + 4)
    return bad(off, pos, reason, rlen, "truncated: no configuration length");
  clen = rf_get_le32(p + pos);
  if (clen > end - pos - 4 || clen > avail - pos - 4)
    return bad(off, pos, reason, rlen, "configuration of %llu bytes runs "
               "past the end (truncated?)", (unsigned long long)clen);
  pos += 4;
  /* exactly one configuration: a CONF entry's context has no place here */
  if (clen > 0 &&
      (raft_conf_decode(p + pos, (size_t)clen, &meta->conf) != RAFT_OK ||
       raft_conf_size(&meta->conf) != clen))
    return bad(off, pos, reason, rlen, "malformed configuration");
  meta->has_conf = clen > 0;
  pos += (size_t)clen;
  if (end - pos < 4 || avail - pos < 4)
    return bad(off, pos, reason, rlen, "truncated: no membership length");
  blen = rf_get_le32(p + pos);
  if (blen > RF_SNAP_BLOB_MAX)
    return bad(off, pos, reason, rlen, "membership blob of %llu bytes is "
               "over the %u-byte limit", (unsigned long long)blen,
               RF_SNAP_BLOB_MAX);
  if (blen > end - pos - 4 || blen > avail - pos - 4)
    return bad(off, pos, reason, rlen, "membership blob of %llu bytes runs "
               "past the end (truncated?)", (unsigned long long)blen);
  pos += 4;
  meta->blob_off = pos;
  meta->blob_len = (uint32_t)blen;
  *start = pos + (size_t)blen;
  return 0;
}

/* One length field at *pos (what names it in messages): the length, or
** RF_SNAP_ECORRUPT when it is malformed or what it covers runs past end. */
static int get_len(const uint8_t *p, size_t *pos, size_t end, uint64_t rec,
                   const char *what, uint64_t *v, size_t *off, char *reason,
                   size_t rlen) {
  int k = rf_get_uvarint(p + *pos, end - *pos, v);
  if (k < 0)
    return bad(off, *pos, reason, rlen, "record %llu: malformed %s length",
               (unsigned long long)rec, what);
  if (k == 0 || *v > end - *pos - (size_t)k)
    return bad(off, *pos, reason, rlen,
               "record %llu: %s runs past the end (truncated?)",
               (unsigned long long)rec, what);
  *pos += (size_t)k;
  return 0;
}

/* Set by snap_restore_quiet on a worker thread: no progress lines there
** (the log reads the node's term, which belongs to the loop). */
static _Thread_local int quiet;

/* Cursor over the records, for rf_store_load or a check-only pass. */
typedef struct parser {
  const uint8_t *p;
  size_t pos, end, prev, prevlen, *off, rlen;
  char *reason;
  int rc; /* the record error, kept apart from the store's own codes */
  int loud;
  rf_progress prog;
} parser;

static int next_record(void *ud, size_t i, rf_store_kv *kv) {
  parser *ps = ud;
  const uint8_t *p = ps->p;
  size_t at = ps->pos;
  uint64_t klen, vlen;
  if (ps->loud) {
    ps->prog.count = ps->pos;
    rf_progress_step(&ps->prog, i);
  }
  if ((ps->rc = get_len(p, &ps->pos, ps->end, i, "key", &klen, ps->off,
                        ps->reason, ps->rlen)))
    return -3;
  if (i > 0 && rf_store_keycmp(p + ps->prev, ps->prevlen, p + ps->pos,
                               klen) >= 0) {
    ps->rc = bad(ps->off, at, ps->reason, ps->rlen,
                 "record %llu: key not above the one before",
                 (unsigned long long)i);
    return -3;
  }
  kv->key = p + ps->pos;
  kv->klen = (size_t)klen;
  ps->prev = ps->pos;
  ps->prevlen = (size_t)klen;
  ps->pos += (size_t)klen;
  if ((ps->rc = get_len(p, &ps->pos, ps->end, i, "value", &vlen, ps->off,
                        ps->reason, ps->rlen)))
    return -3;
  kv->val = p + ps->pos;
  kv->vlen = (size_t)vlen;
  ps->pos += (size_t)vlen;
  return 0;
}

static int parse_records(const uint8_t *p, size_t start, size_t end,
                         uint64_t nkeys, rf_store *into, size_t *off,
                         char *reason, size_t rlen) {
  parser ps = {p, start, end, 0, 0, off, rlen, reason, 0,
               into && !quiet, {0}};
  rf_store_kv kv;
  int rc = 0;
  rf_progress_start(&ps.prog, "snapshot load", "keys", nkeys);
  ps.prog.count_name = "bytes";
  if (into == NULL) {
    for (uint64_t i = 0; i < nkeys && rc == 0; i++)
      rc = next_record(&ps, (size_t)i, &kv);
  } else if (nkeys > SIZE_MAX) {
    return UV_ENOMEM;
  } else {
    rc = rf_store_load(into, (size_t)nkeys, next_record, &ps);
  }
  if (rc == -3) return ps.rc;
  if (rc == -1) return UV_ENOMEM;
  if (rc < 0) return UV_EINVAL;
  if (ps.pos != end)
    return bad(off, ps.pos, reason, rlen,
               "%zu unexpected bytes after the last of %llu records",
               end - ps.pos, (unsigned long long)nkeys);
  if (ps.loud) {
    ps.prog.count = end;
    rf_progress_step(&ps.prog, nkeys);
    rf_progress_end(&ps.prog);
  }
  return 0;
}

int snap_parse(const uint8_t *p, size_t len, rf_store *into,
               rf_snap_meta *meta, size_t *off, char *reason, size_t rlen) {
  rf_snap_meta m;
  uint64_t sum;
  size_t start;
  int rc, v = snap_version(p, len);
  if (into && rf_store_count(into) > 0) return UV_EINVAL;
  if (v >= 0 && v != SNAP_VERSION && v != 1) /* another layout */
    return bad(off, 6, reason, rlen, "unsupported format version %d", v);
  if (v < 0 && len >= 8)
    return bad(off, 0, reason, rlen, "bad magic (not a snapshot)");
  if (len < (v == 1 ? RF_SNAP_MIN_V1 : RF_SNAP_MIN))
    return bad(off, len, reason, rlen,
               "truncated: %zu bytes, a snapshot has at least %d", len,
               v == 1 ? RF_SNAP_MIN_V1 : RF_SNAP_MIN);
  if ((rc = snap_head(p, len, len, &m, &start, off, reason, rlen)) < 0)
    return rc;
  /* every record takes at least 2 bytes: no absurd loop on a bad count */
  if (m.nkeys > (len - 8 - start) / 2)
    return bad(off, 24, reason, rlen, "%llu keys cannot fit in %zu bytes",
               (unsigned long long)m.nkeys, len);
  rc = parse_records(p, start, len - 8, m.nkeys, into, off, reason, rlen);
  if (rc == 0 && (sum = XXH3_64bits(p, len - 8)) != rf_get_le64(p + len - 8))
    rc = bad(off, len - 8, reason, rlen,
             "checksum mismatch (trailer %016llx, content %016llx)",
             (unsigned long long)rf_get_le64(p + len - 8),
             (unsigned long long)sum);
  if (rc != 0) {
    if (into) rf_store_clear(into);
    return rc;
  }
  m.size = len;
  if (meta) *meta = m;
  return 0;
}

int rf_snap_head(const void *buf, size_t len, uint64_t total,
                 rf_snap_meta *meta, char *err, size_t errlen) {
  char reason[200];
  size_t off = 0, start;
  rf_snap_meta m;
  int rc = snap_head(buf, len, total, &m, &start, &off, reason,
                     sizeof(reason));
  if (rc == 0) {
    m.size = total;
    if (meta) *meta = m;
  } else if (err && errlen) {
    snprintf(err, errlen, "snapshot at offset %zu: %s", off, reason);
  }
  return rc;
}

int rf_snap_rehead(const void *buf, size_t len, const rf_snap_extra *x,
                   int (*out)(void *ud, const void *p, size_t len), void *ud,
                   rf_snap_meta *meta) {
  const uint8_t *p = buf;
  uint8_t hdr[RF_SNAP_HDR + 8 + 3 + 2 * RAFT_MAX_NODES * 8], sum[8];
  char reason[200];
  size_t off, start, n;
  rf_snap_meta m;
  XXH3_state_t h;
  int rc;
  if (ext_check(x) < 0 || (x && x->conf && raft_conf_size(x->conf) >
                           sizeof(hdr) - RF_SNAP_HDR - 8))
    return UV_EINVAL;
  if (snap_head(p, len, len, &m, &start, &off, reason, sizeof(reason)) < 0)
    return RF_SNAP_ECORRUPT;
  if (len < start + 8) return RF_SNAP_ECORRUPT;
  memcpy(hdr, p, RF_SNAP_HDR);
  memcpy(hdr, SNAP_MAGIC, 8);
  n = RF_SNAP_HDR;
  rf_put_le32(hdr + n, x && x->conf ? (uint32_t)raft_conf_size(x->conf) : 0);
  n += 4;
  if (x && x->conf) n += raft_conf_encode(x->conf, hdr + n, sizeof(hdr) - n);
  rf_put_le32(hdr + n, x ? (uint32_t)x->blob_len : 0);
  n += 4;
  XXH3_INITSTATE(&h);
  XXH3_64bits_reset(&h);
  XXH3_64bits_update(&h, hdr, n);
  if (x && x->blob_len) XXH3_64bits_update(&h, x->blob, x->blob_len);
  XXH3_64bits_update(&h, p + start, len - 8 - start);
  rf_put_le64(sum, XXH3_64bits_digest(&h));
  if ((rc = out(ud, hdr, n)) < 0 ||
      (x && x->blob_len && (rc = out(ud, x->blob, x->blob_len)) < 0) ||
      (rc = out(ud, p + start, len - 8 - start)) < 0 ||
      (rc = out(ud, sum, 8)) < 0)
    return rc;
  if (meta)
    *meta = meta_of(m.index, m.term, n + (x ? x->blob_len : 0) +
                    (len - start), m.nkeys, x);
  return 0;
}

int rf_snap_restore(const void *buf, size_t len, rf_store *into,
                    rf_snap_meta *meta, char *err, size_t errlen) {
  char reason[200];
  size_t off = 0;
  int rc = snap_parse(buf, len, into, meta, &off, reason, sizeof(reason));
  if (err == NULL || errlen == 0) return rc;
  if (rc == RF_SNAP_ECORRUPT)
    snprintf(err, errlen, "snapshot at offset %zu: %s", off, reason);
  else if (rc < 0)
    snprintf(err, errlen, "snapshot: %s", rf_snap_strerror(rc));
  return rc;
}

const char *rf_snap_strerror(int err) {
  switch (err) {
  case RF_SNAP_ECORRUPT: return "snapshot corrupt";
  case RF_SNAP_ENONE: return "no such snapshot";
  case RF_SNAP_EBUSY: return "a snapshot save is already in progress";
  case RF_SNAP_ESTALE: return "older than the latest snapshot";
  default: return rf_strerror(err);
  }
}

int snap_restore_quiet(const void *buf, size_t len, rf_store *into,
                       rf_snap_meta *meta, char *err, size_t errlen) {
  int rc;
  quiet = 1;
  rc = rf_snap_restore(buf, len, into, meta, err, errlen);
  quiet = 0;
  return rc;
}
