/*
** wal_internal.h -- what the WAL's files share: the record codec
** (wal_record.c), segment files and fsync helpers (wal_segment.c) and
** recovery (wal_recover.c).  The backend itself is wal.c.
**
** Record layout (little-endian), docs/storage.md has the full story:
**
**    0  u32 len      payload bytes
**    4  u8  type     WAL_REC_*
**    5  u8  sub      ENTRY: raft entry type; SNAPSHOT: WAL_SNAP_* flags
**    6  u16 zero
**    8  u64 index    ENTRY, SNAPSHOT: log index; SEGMENT: base index
**   16  u64 term     ENTRY, SNAPSHOT: term
**   24  u64 psum     XXH3-64 of the payload
**   32  u64 hsum     XXH3-64 of bytes 0..32 (so it covers psum too)
**   40  payload
**
** The header has its own checksum so that a damaged length is never
** trusted: recovery can tell a torn tail from a corrupt record.
*/
#ifndef RAFTING_WAL_INTERNAL_H
#define RAFTING_WAL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "rafting/raft.h"

#define WAL_HDR 40
#define WAL_MAX_PAYLOAD (1u << 30) /* sanity bound on a record's length */
#define WAL_SEG_PAYLOAD 64         /* SEGMENT record payload */
#define WAL_HS_PAYLOAD 24          /* HARDSTATE record payload */
#define WAL_MAGIC "rftwal\0\1"     /* SEGMENT payload starts with it */
#define WAL_VERSION 1
/* Frozen in every format version: a segment file holds WAL_MAGIC at byte
** WAL_HDR and its format version (u32) at WAL_VERSION_AT, so that a reader
** names a version it does not know instead of misreading its records. */
#define WAL_VERSION_AT (WAL_HDR + 8)
#define WAL_SUBDIR "wal"
#define WAL_NAME_LEN 37            /* "%016x-%016x.wal" */

enum {
  WAL_REC_SEGMENT = 1,   /* first record of every segment file */
  WAL_REC_ENTRY = 2,     /* a log entry; index <= last truncates first */
  WAL_REC_HARDSTATE = 3, /* term, vote, commit */
  WAL_REC_SNAPSHOT = 4   /* a snapshot covers the log up to index */
};

enum { WAL_SNAP_RESET = 1 }; /* the whole log was discarded */

/* wal_decode() results */
enum {
  WAL_OK = 0,
  WAL_SHORT_HDR,   /* fewer than WAL_HDR bytes left */
  WAL_BAD_HDR,     /* header checksum mismatch */
  WAL_SHORT_BODY,  /* header fine, payload runs past the end */
  WAL_BAD_BODY,    /* payload checksum mismatch */
  WAL_BAD_FIELDS   /* checksums fine but the fields make no sense */
};

typedef struct wal_rec {
  int type;
  int sub;
  uint32_t len;
  uint64_t index, term;
  const uint8_t *data; /* decode: points into the caller's buffer */
} wal_rec;

/* What a SEGMENT record says: the state of the log when it was created. */
typedef struct wal_seghdr {
  uint64_t seq, base;      /* base: index the next entry would have */
  raft_hard_state hs;
  uint64_t snap_index, snap_term;
} wal_seghdr;

/* ---- wal_record.c */
size_t wal_encode(uint8_t *out, int type, int sub, uint64_t index,
                  uint64_t term, const void *data, size_t len);
size_t wal_encode_hs(uint8_t *out, const raft_hard_state *hs);
size_t wal_encode_seghdr(uint8_t *out, const wal_seghdr *h);
int wal_decode(const uint8_t *p, size_t avail, wal_rec *r);
/* The unverified length field (to judge a record with a bad header). */
uint32_t wal_peek_len(const uint8_t *p);
/* The format version of a whole segment file (its first size bytes at p),
** read before any record: -1 when it does not start like a segment. */
long wal_file_version(const uint8_t *p, size_t size);
/* Does p start with WAL_HDR bytes whose header checksum holds? */
int wal_hdr_ok(const uint8_t *p);
int wal_parse_hs(const wal_rec *r, raft_hard_state *hs);
int wal_parse_seghdr(const wal_rec *r, wal_seghdr *h);
const char *wal_decode_str(int rc);

/* ---- wal_segment.c */
typedef struct wal_seg {
  uint64_t seq, base;
  uint64_t max_index; /* highest entry index written into it (base-1: none) */
  uint64_t size;      /* bytes */
} wal_seg;

void wal_seg_name(char *out, uint64_t seq, uint64_t base); /* 38 bytes */
int wal_seg_parse_name(const char *name, uint64_t *seq, uint64_t *base);
int wal_write_all(int fd, const void *buf, size_t len); /* 0 or -errno */
int wal_fsync_dir(int dirfd);
/* Create segment seq/base in dirfd holding only its SEGMENT record: written
** to a temp name, synced, renamed, directory synced.  Returns an fd open
** for appending, or -errno. */
int wal_seg_create(int dirfd, const wal_seghdr *h,
                   int (*hook)(void *, const char *), void *hook_ud);

/* ---- wal_recover.c */
typedef struct wal_recovery {
  /* the log as acknowledged */
  raft_hard_state hs;
  uint64_t snap_index, snap_term;
  uint64_t next;            /* index the next entry takes */
  raft_entry *ents;         /* indexes snap_index+1 .. next-1 */
  size_t n, cap;
  uint8_t **bufs;           /* file contents the entries point into */
  size_t nbufs;
  /* the files */
  wal_seg *segs;
  size_t nsegs;
} wal_recovery;

typedef void (*wal_warn_fn)(void *ud, int level, const char *msg);

enum { WAL_RECOVER_REPAIR = 1, WAL_RECOVER_PROGRESS = 2 }; /* flags */

/*
** Read every segment under dirfd (path names it in messages).  With
** WAL_RECOVER_PROGRESS, log "wal replay" progress lines (rafting/log.h).
** With WAL_RECOVER_REPAIR: remove leftover temp files, truncate a torn tail, remove a last
** segment whose creation never finished, and fsync what changed.  Returns 0,
** or -1 with a message in err (corruption names the file and offset), or
** -errno for an I/O error (also with a message).
*/
int wal_recover(int dirfd, const char *path, int flags, wal_recovery *rec,
                wal_warn_fn warn, void *warn_ud, char *err, size_t errlen);
void wal_recovery_free(wal_recovery *rec);

#endif
