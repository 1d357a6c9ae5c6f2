/*
** snapshot.h -- snapshots of the state machine: their format, and the
** place they are kept (a data directory, or memory for memory nodes).
**
** A snapshot is the whole ordered store at an applied log index, written
** in key order so that equal stores give equal bytes:
**
**   header: magic "RFSNAP02", u64 index, u64 term, u64 nkeys
**   u32 clen, clen bytes: the configuration at index (raft_conf_encode;
**       clen 0: none recorded)
**   u32 blen, blen bytes: the membership blob (opaque here: the node's
**       address book at index; may be empty)
**   nkeys x (uvarint klen, key, uvarint vlen, value)
**   trailer: u64 XXH3-64 of everything before it
**
** Version 1 ("RFSNAP01") files, without the two length-prefixed parts, are
** still read: they carry no configuration (has_conf 0) and no blob.
**
** (integers little-endian; keys strictly ascending in rf_store_keycmp
** order; uvarints are minimal LEB128).  A node with a data directory
** writes its snapshots from a fork()ed child with rf_snap_write() and
** hands the file over with rf_snapstore_save_fd/save_file (src/snapfork.c);
** memory nodes serialize on the loop (rf_snap_serialize, one buffer).
** Saving, reading, receiving and their checks run on libuv's thread pool.
** docs/storage.md has the file and directory layout.
**
** Memory: serialize/restore use the caller's buffers.  rf_snapstore_save()
** takes ownership of the buffer it is given, even when it returns an error
** (free()d by the snapstore).  Callbacks follow libuv's rules: never called
** when the function returned an error, never called from inside the
** function, run on the loop; they run in submission order (one queue).
** Statuses are 0, RF_SNAP_E* or negative errno values (libuv's UV_E*).
*/
#ifndef RAFTING_SNAPSHOT_H
#define RAFTING_SNAPSHOT_H

#include "rafting/error.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rafting/buf.h"
#include "rafting/raft.h"
#include "rafting/store.h"

#define RF_SNAP_ECORRUPT RF_ECORRUPT /* bad magic, checksum, length or order */
#define RF_SNAP_ENONE RF_ENONE       /* no snapshot with that index */
#define RF_SNAP_EBUSY RF_EBUSY       /* another receive/save is in progress */
#define RF_SNAP_ESTALE RF_ESTALE     /* older than the latest snapshot kept */

#define RF_SNAP_HDR 32     /* fixed header bytes (both versions) */
#define RF_SNAP_MIN 48     /* the smallest snapshot: header, two empty
                           ** length-prefixed parts, trailer */
#define RF_SNAP_MIN_V1 40  /* the smallest version 1 file */
#define RF_SNAP_BLOB_MAX (1u << 20) /* a larger membership blob is corrupt */
/* Bytes from the start that always hold the header and both prefixed
** parts of a valid snapshot (rf_snap_head needs no more). */
#define RF_SNAP_HEAD_MAX (RF_SNAP_HDR + 8 + 4096 + RF_SNAP_BLOB_MAX)

typedef struct rf_snap_meta {
  uint64_t index; /* last log index the snapshot covers */
  uint64_t term;  /* term of that entry */
  uint64_t size;  /* bytes of the serialized snapshot */
  uint64_t nkeys;
  int has_conf;   /* 0: none recorded (a version 1 file): bootstrap voters */
  raft_conf conf; /* the configuration at index, when has_conf */
  /* The membership blob is bytes [blob_off, blob_off + blob_len) of the
  ** file: the meta holds no pointer, so it copies freely; whoever has the
  ** bytes (a loaded buffer, rf_snapstore_blob) reads it from there. */
  uint64_t blob_off;
  uint32_t blob_len;
} rf_snap_meta;

/* What a snapshot records beside the state (NULL everywhere: nothing). */
typedef struct rf_snap_extra {
  const raft_conf *conf; /* NULL: no configuration recorded */
  const void *blob;      /* borrowed; blob_len bytes (<= RF_SNAP_BLOB_MAX) */
  size_t blob_len;
} rf_snap_extra;

/* Serialize st as of (index, term) with x (NULL: no configuration, empty
** blob) into out (appended; tombstones are skipped).  0, UV_EINVAL for a
** blob over RF_SNAP_BLOB_MAX or an invalid conf, or UV_ENOMEM (out->oom
** set, out->n unchanged). */
int rf_snap_serialize(const rf_store *st, uint64_t index, uint64_t term,
                      const rf_snap_extra *x, rf_buf *out,
                      rf_snap_meta *meta);
/* The same bytes as rf_snap_serialize, streamed: buf[0..cap) (at least
** RF_SNAP_HDR) is the only memory used, handed to out(ud, p, len) each
** time it fills (out returns 0 or < 0 to stop).  No allocation, no lock:
** safe in a fork()ed child.  0 with meta filled, out's error, or
** RF_SNAP_ECORRUPT when the store's live count disagrees with its keys. */
int rf_snap_write(const rf_store *st, uint64_t index, uint64_t term,
                  const rf_snap_extra *x, void *buf, size_t cap,
                  int (*out)(void *ud, const void *p, size_t len), void *ud,
                  rf_snap_meta *meta);
/* Check and parse a serialized snapshot into an empty store `into` (NULL:
** check only).  0, or RF_SNAP_ECORRUPT with "snapshot at offset N: reason"
** in err; UV_ENOMEM (into left empty); UV_EINVAL if into is not empty
** (untouched).  meta may be NULL. */
int rf_snap_restore(const void *buf, size_t len, rf_store *into,
                    rf_snap_meta *meta, char *err, size_t errlen);
/* The checked snapshot buf[0..len) (either version) again, as version 2
** with x's configuration and blob instead of its own: the same index,
** term and records, a new checksum, streamed to out like rf_snap_write
** (the records go straight from buf).  For `rafting restore`.  0 with meta
** filled, RF_SNAP_ECORRUPT when buf does not parse (not re-checked
** otherwise: check it first), UV_EINVAL for a bad x, or out's error. */
int rf_snap_rehead(const void *buf, size_t len, const rf_snap_extra *x,
                   int (*out)(void *ud, const void *p, size_t len), void *ud,
                   rf_snap_meta *meta);
/* The header and both prefixed parts only, from the first len bytes of a
** file of total bytes (len >= min(total, RF_SNAP_HEAD_MAX) suffices): meta
** gets index, term, nkeys, the configuration and where the blob is (size
** = total).  Every length is checked against total; nothing else (no
** checksum).  0, or RF_SNAP_ECORRUPT with "snapshot at offset N: reason". */
int rf_snap_head(const void *buf, size_t len, uint64_t total,
                 rf_snap_meta *meta, char *err, size_t errlen);

typedef struct rf_snapstore rf_snapstore;
typedef void (*rf_snap_done)(void *ud, int status);
typedef void (*rf_snap_read_done)(void *ud, int status, const void *data,
                                  size_t len);

/*
** dir NULL: keep snapshots in memory (the latest only).  Otherwise files
** DIR/snap/<index:016x>-<term:016x>.snap; a leftover *.tmp is removed; the
** latest complete snapshot and the one before it are kept ("latest" is the
** highest index: what a restart would find).  NULL and a message in err
** when dir cannot be used.  No lock of its own: DIR/LOCK (the WAL's)
** covers it.
*/
rf_snapstore *rf_snapstore_open(uv_loop_t *loop, const char *dir, char *err,
                                size_t errlen);
/* Waits for in-flight work (its callback gets its real status); callbacks
** of pending operations run with UV_ECANCELED before done; then s is
** freed.  An unfinished receive is dropped.  Calls after close: UV_EINVAL. */
void rf_snapstore_close(rf_snapstore *s, void (*done)(void *ud), void *ud);

/* Meta of the latest complete snapshot: 0, or RF_SNAP_ENONE. */
int rf_snapstore_latest(const rf_snapstore *s, rf_snap_meta *m);

/* Load the latest snapshot whole (synchronous, on the loop: meant for
** start-up and for installing a received snapshot; safe while other
** operations are queued).  0 with the bytes appended to out (fully checked,
** as by rf_snap_restore(.., NULL, ..)), RF_SNAP_ENONE, RF_SNAP_ECORRUPT
** naming file and offset, or -errno / UV_ENOMEM with a message.  The
** previous snapshot is never used instead of a corrupt latest: the log
** before the latest may already be compacted away. */
int rf_snapstore_load(rf_snapstore *s, rf_buf *out, rf_snap_meta *m,
                      char *err, size_t errlen);

/* Restore the kept snapshot m (index, term) into the empty store into, on
** the thread pool, so the loop does not wait for it (a follower keeps
** answering its leader while it loads a received snapshot).  into is the
** caller's and must live until done runs; on failure it may hold part of
** the snapshot (clear or free it).  done gets 0, RF_SNAP_ENONE, -errno,
** RF_SNAP_ECORRUPT or UV_ENOMEM. */
int rf_snapstore_preload(rf_snapstore *s, const rf_snap_meta *m,
                         rf_store *into, rf_snap_done done, void *ud);

/* Make buf[0..len) (from rf_snap_serialize, meta m) the latest snapshot:
** written to a temp file, synced, renamed, directory synced, older ones
** beyond the last two removed; done(status) once durable.  Returns
** RF_SNAP_EBUSY while another save is queued or running (one serialized
** copy in memory at a time; see rf_snapstore_saving), UV_EINVAL when m does
** not match buf's header.  done gets RF_SNAP_ESTALE if, by the time it
** runs, a snapshot with a higher index is kept (nothing is written). */
int rf_snapstore_save(rf_snapstore *s, char *buf, size_t len,
                      const rf_snap_meta *m, rf_snap_done done, void *ud);

/* Saving from elsewhere (a fork()ed child): create the temp file of the
** snapshot (index, term) and return its fd (the caller closes it), or
** RF_SNAP_EBUSY / -errno (UV_EINVAL for a memory store).  The store is
** saving from then on.  Whoever writes the file syncs it, then
** rf_snapstore_save_file(s, m, 1, ..) renames it into place as a save
** would (done as for rf_snapstore_save), or with ok 0 removes it; either
** ends the save (returns UV_EINVAL when no save_fd is pending).  A crash in
** between leaves only the temp file, removed at the next open. */
int rf_snapstore_save_fd(rf_snapstore *s, uint64_t index, uint64_t term);
int rf_snapstore_save_file(rf_snapstore *s, const rf_snap_meta *m, int ok,
                           rf_snap_done done, void *ud);

/* Read up to len bytes at offset of the snapshot at index (for sending it
** in chunks); data is valid during the callback only.  0 bytes at the end.
** RF_SNAP_ENONE (returned, or in done if a save removed it meanwhile) when
** no kept snapshot has that index; UV_EINVAL for offset > size. */
int rf_snapstore_read(rf_snapstore *s, uint64_t index, uint64_t offset,
                      size_t len, rf_snap_read_done done, void *ud);

/*
** Receiving a snapshot in chunks: begin a transfer of (index, term, size)
** (dropping any unfinished one), append chunks in order from offset 0, and
** finish: the bytes are checked (rf_snap_restore's checks, and the header
** must say m's index and term), synced and become the latest snapshot;
** done(status) then.  A chunk at the wrong offset, past m->size, or with no
** transfer begun is refused with UV_EINVAL (the sender restarts from 0);
** so is finish before m->size bytes arrived.  Chunks are copied; their done
** runs once written (not yet synced).  begin/abort cancel the unfinished
** transfer's queued chunks (UV_ECANCELED); a failed chunk ends its
** transfer.  A corrupt transfer fails finish with RF_SNAP_ECORRUPT and
** leaves the latest snapshot as it was.  begin: UV_EINVAL when m->size <
** RF_SNAP_MIN, RF_SNAP_ESTALE when m->index is below the latest's.
*/
int rf_snapstore_recv_begin(rf_snapstore *s, const rf_snap_meta *m);
int rf_snapstore_recv_chunk(rf_snapstore *s, uint64_t offset, const void *data,
                            size_t len, rf_snap_done done, void *ud);
int rf_snapstore_recv_finish(rf_snapstore *s, rf_snap_done done, void *ud);
void rf_snapstore_recv_abort(rf_snapstore *s);
/* Bytes accepted so far of the transfer in progress, queued chunks
** included: the offset the next chunk must have (0 if none). */
uint64_t rf_snapstore_recv_offset(const rf_snapstore *s);

/* The configuration and membership blob of the kept snapshot at index,
** read synchronously from its first bytes (at most RF_SNAP_HEAD_MAX):
** meta as by rf_snap_head, the blob appended to blob (may be NULL).  0,
** RF_SNAP_ENONE, RF_SNAP_ECORRUPT, -errno or UV_ENOMEM (message in err). */
int rf_snapstore_head(rf_snapstore *s, uint64_t index, rf_snap_meta *m,
                      rf_buf *blob, char *err, size_t errlen);
/* The file of the kept snapshot at index, opened read-only (O_CLOEXEC)
** with a shared flock: an fd for the caller to read and close (the
** snapshot may be rotated away meanwhile; rotation then unlinks it without
** shrinking it, so the open file stays whole).  RF_SNAP_ENONE (also when a
** rotation is removing it right now), UV_EINVAL for a memory store,
** -errno. */
int rf_snapstore_open_file(rf_snapstore *s, uint64_t index);

/* 1 while a save is queued or running (rf_snapstore_save would refuse). */
int rf_snapstore_saving(const rf_snapstore *s);
/* What went wrong in the last operation whose callback got status < 0
** (file, offset, errno text), set before that callback runs; "" if none. */
const char *rf_snapstore_errmsg(const rf_snapstore *s);
/* Fault injection for tests: hook(ud, what) runs on the worker before each
** "write", "sync", "rename", "syncdir" and "unlink"; < 0 fails that step. */
void rf_snapstore_set_io_hook(rf_snapstore *s,
                              int (*hook)(void *ud, const char *what),
                              void *ud);

const char *rf_snap_strerror(int err);

#endif
