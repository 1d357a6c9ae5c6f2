/*
** storage.h -- where a node persists what its ready batches say to.
**
** The interface the runtime uses for the hard state and the log; the memory
** backend (src/storage/memory.c) and the write-ahead log implement it.
** save() may complete asynchronously: the node sends a ready's messages and
** advances the core only from done(status).  done is never called when
** save() returned an error.  A backend may call done before save() returns.
**
** Pipelining: the node may call save() again before the previous done ran
** (e.g. to submit the next ready while an fsync is in flight).  Every
** backend runs done callbacks in submission order; the WAL covers saves
** queued behind a running fsync with one write+fsync (group commit).  Once
** a save fails, it and every later one complete with status < 0.
**
** Memory: load() hands out entries owned by the storage, valid until the
** next call into it; save() copies what it keeps.
*/
#ifndef RAFTING_STORAGE_H
#define RAFTING_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "rafting/raft.h"

typedef struct rf_storage rf_storage;
typedef void (*rf_storage_done)(void *ud, int status);

typedef struct rf_storage_ops {
  const char *name; /* "memory", "wal" */
  int (*load)(rf_storage *s, raft_hard_state *hs, const raft_entry **ents,
              size_t *n);
  /* Persist hs (when not NULL), then entries ents[0..n), truncating the log
  ** from ents[0].index first.  sync = 0: done may come before the bytes are
  ** durable (only the commit index changed); they are once a later synced
  ** save is done. */
  int (*save)(rf_storage *s, const raft_hard_state *hs, const raft_entry *ents,
              size_t n, int sync, rf_storage_done done, void *ud);
  /* A snapshot covers the log up to index (of term): drop it.  Queued in
  ** order with saves; entries after index stay only when the log holds
  ** index with that term, else the next save starts at index + 1. */
  int (*compact)(rf_storage *s, uint64_t index, uint64_t term,
                 rf_storage_done done, void *ud);
  /* Where the loaded log starts: it holds snap_index + 1, ... */
  void (*start)(const rf_storage *s, uint64_t *snap_index, uint64_t *snap_term);
  void (*close)(rf_storage *s);
} rf_storage_ops;

struct rf_storage {
  const rf_storage_ops *ops;
  uint64_t last_index; /* last index saved */
};

/* The memory backend: nothing survives the process.  save() and compact()
** complete at once; load() returns an empty log. */
rf_storage *rf_storage_memory(void);

#endif
