/*
** log.h -- the core's in-memory Raft log.
**
** Entries [first, last] with their terms; entry payloads are reference
** counted blobs so that messages and ready batches can point into them
** without copying and stay valid after the log truncates.  The log owns one
** reference to each blob; whoever takes a raft_entry view with rlog_ref()
** owns one more and drops it with rlog_unref_data().  Blobs remember the
** allocator that made them: the last reference may drop far from the log.
*/
#ifndef RAFTING_CORE_LOG_H
#define RAFTING_CORE_LOG_H

#include "rafting/raft.h"
#include "mem.h"

typedef struct rblob {
  const rmem *mem;
  size_t ref;
  size_t len;
  uint8_t data[];
} rblob;

typedef struct rent {
  uint64_t term;
  int type;
  rblob *blob;
} rent;

typedef struct rlog {
  const rmem *mem;  /* outlives the log and every blob */
  rent *e;          /* a ring: e[head] has index snap_index + 1 */
  size_t head, n, cap; /* cap: 0 or a power of two */
  uint64_t snap_index; /* last index covered by a snapshot (0: none) */
  uint64_t snap_term;
} rlog;

rblob *rlog_blob_new(const rmem *m, const void *data, size_t len);
void rlog_blob_unref(rblob *b);
/* Drop the reference that a raft_entry view's data pointer holds. */
void rlog_unref_data(const uint8_t *data);

void rlog_init(rlog *l, const rmem *m);
void rlog_free(rlog *l);

uint64_t rlog_last(const rlog *l);
uint64_t rlog_first(const rlog *l);
/* Term at index i; 0 for index 0 or anything outside the log. */
uint64_t rlog_term(const rlog *l, uint64_t i);
int rlog_has(const rlog *l, uint64_t i, uint64_t term);
/* Largest index <= i whose term is <= term (fast backtracking hint). */
uint64_t rlog_conflict_by_term(const rlog *l, uint64_t i, uint64_t term);

/* Append one entry taking over the caller's reference to blob. */
int rlog_append(rlog *l, uint64_t term, int type, rblob *blob);
/* Remove entries with index >= i. */
void rlog_truncate(rlog *l, uint64_t i);
/* Drop entries <= i (i in the log): it becomes the snapshot point. */
void rlog_compact(rlog *l, uint64_t i);
/* Drop everything: the log now starts after a snapshot at (i, term). */
void rlog_reset(rlog *l, uint64_t i, uint64_t term);

/* A raft_entry view of index i, taking a blob reference. */
void rlog_ref(const rlog *l, uint64_t i, raft_entry *out);
/* A raft_entry view without a reference (valid until the log changes). */
void rlog_view(const rlog *l, uint64_t i, raft_entry *out);

#endif
