/*
** wal.h -- the write-ahead log storage backend.
**
** A data directory holds the node's hard state and log as segment files of
** checksummed records (format and guarantees: docs/storage.md).  The backend
** implements rf_storage (rafting/storage.h); this header adds its
** constructor, options and the hooks later issues need (compaction after a
** snapshot, numbers for /status).
**
** Threads: every function here runs on the loop thread.  Writes, fsyncs,
** renames and unlinks run on libuv's thread pool; their results come back
** on the loop.  Opening (recovery) is synchronous: it runs before the node
** serves anything.
**
** Group commit: save() may be called again before the previous save's done
** ran (pipelining).  Saves that arrive while a write+fsync is in flight
** are queued and covered together by the next single write+fsync (up to
** max_batch_bytes).  done callbacks always run in submission order, on the
** loop thread, never from inside another done's save() call out of order.
**
** Failure: once a write or fsync fails, that batch and every later save()
** and compaction complete with done(status < 0) -- the log never pretends.
** Statuses are negative errno values (libuv's UV_E* codes on Unix).
**
** Memory: the caller owns opts and dir (copied).  load() hands out entries
** owned by the storage, valid until the next call into it.  save() copies
** what it writes; its arguments need not outlive the call.
*/
#ifndef RAFTING_WAL_H
#define RAFTING_WAL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "rafting/storage.h"

enum {
  RF_WAL_SYNC_ALWAYS = 0, /* fdatasync before done: durable (default) */
  RF_WAL_SYNC_NONE = 1    /* no fsync of appends: for benchmarks only */
};

typedef struct rf_wal_opts {
  uint64_t segment_bytes;  /* start a new segment past this; 64 MiB */
  int sync;                /* RF_WAL_SYNC_* */
  size_t max_batch_bytes;  /* bytes one write+fsync covers; 8 MiB (a save
                           ** larger than this is still written whole) */
  /* Recovery warnings (torn tail truncated, leftovers removed) and write
  ** errors; level is RF_INFO/RF_WARN/RF_ERROR from rafting/log.h.  NULL:
  ** "wal: ..." lines on stderr. */
  void (*log)(void *ud, int level, const char *msg);
  void *log_ud;
  int progress;  /* log "wal replay" progress lines on open (the node) */
  /* Tests only: called on the worker before each write, fsync, rename and
  ** unlink ("write", "sync", "rename", "unlink", "syncdir"); a negative
  ** return is taken as that call's error.  NULL in production. */
  int (*io_hook)(void *ud, const char *what);
  void *io_ud;
} rf_wal_opts;

/* Fill o with the defaults above. */
void rf_wal_opts_default(rf_wal_opts *o);

/* "always" / "none" -> RF_WAL_SYNC_*; -1 for anything else. */
int rf_wal_sync_parse(const char *name);

/*
** Open (creating if needed) the data directory dir, lock it, recover its
** log and return the backend.  On failure returns NULL with a message in
** err: the directory is locked by another process, a file is corrupt
** (naming the file and byte offset), or an I/O error.  The node must refuse
** to start then (exit 2).  o may be NULL for the defaults.
*/
rf_storage *rf_storage_wal(uv_loop_t *loop, const char *dir,
                           const rf_wal_opts *o, char *err, size_t errlen);

/* Is s a WAL backend? */
int rf_storage_is_wal(const rf_storage *s);

/*
** Record that a snapshot covers the log up to index (whose entry has term
** term), then remove the segment files holding only entries <= index.
** Entries after index are kept when the log holds index with that term;
** otherwise (index past the log's end, or another term there) the whole log
** is discarded and the next save() must start at index + 1.  Queued like a
** save: done(status) runs in order with them, after the record is durable
** and the files are gone.  UV_EINVAL if index is below the last snapshot.
*/
int rf_wal_compact(rf_storage *s, uint64_t index, uint64_t term,
                   rf_storage_done done, void *ud);

typedef struct rf_wal_info {
  uint64_t snap_index, snap_term; /* last recorded snapshot (0, 0: none) */
  uint64_t first_index;           /* snap_index + 1 */
  uint64_t last_index;            /* last entry submitted (maybe not synced) */
  raft_hard_state hs;             /* last hard state submitted */
  uint64_t segments;              /* segment files on disk */
  uint64_t disk_bytes;            /* their total size */
  uint64_t writes;                /* write+sync rounds done */
  uint64_t syncs;                 /* fdatasync calls on segments */
  uint64_t saves;                 /* save() and compact calls completed */
  int failed;                     /* sticky error (< 0) or 0 */
} rf_wal_info;

/* Numbers for /status and benchmarks; segments and disk_bytes are as of
** the last completed write.  All zero when s is not a WAL. */
void rf_wal_info_get(const rf_storage *s, rf_wal_info *out);

#endif
