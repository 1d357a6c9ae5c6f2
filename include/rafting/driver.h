/*
** driver.h -- the node driver: the only owner of a Raft core.
**
** The driver runs the core's ready loop over one I/O interface (rf_io):
** persist, send, install, apply, answer, advance -- in the order the ready
** contract demands -- and keeps the requests that wait on the core: a write
** until its entry is committed and applied, a read until a ReadIndex round
** confirmed leadership and the state machine caught up.  Services (REST,
** snapshots) use the narrow API below and never see the raft*.
**
** The same driver runs in the real node (rf_io over the WAL, the snapshot
** store and the peer transport, src/node.c) and in the simulator (rf_io in
** Lua, src/lua/lmod_driver.c), so the randomized seeds prove this code.
**
** The fast write path (thesis 10.2.1): a leader's APPEND, HEARTBEAT and
** SNAPSHOT messages of a term already durable leave before its own write of
** the batch; everything else (votes, acks) leaves only once the write is
** durable, and the leader counts itself in a quorum only then.  A batch
** whose only change is the commit index is saved without a sync.
**
** Time is ticks: rf_driver_tick() steps the core and expires requests whose
** deadline (in ticks) passed.  Callbacks: a request's callback runs exactly
** once, never from inside the call that returned an error for it.
**
** Memory: the driver copies what it keeps.  rf_io_save and raft_msg given to
** the I/O are valid only during the call (save: until done is called).
*/
#ifndef RAFTING_DRIVER_H
#define RAFTING_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "rafting/buf.h"
#include "rafting/error.h"
#include "rafting/raft.h"

typedef struct rf_driver rf_driver;
typedef struct rf_io rf_io;

typedef void (*rf_io_done)(void *ud, int status);

/* One ready batch's write.  When snap_index > 0 the log was replaced by a
** snapshot stored at (snap_index, snap_term), whose configuration is
** snap_conf (the runtime keeps it with the snapshot, docs/membership.md):
** the storage drops its log up to there first.  Then hs (when not NULL), then entries, truncating the log
** from entries[0].index.  must_sync: the term, vote or log changed, so the
** write must be durable before done; when 0 it may be, but need not. */
typedef struct rf_io_save {
  const raft_hard_state *hs;
  int must_sync;
  uint64_t snap_index, snap_term;
  const raft_conf *snap_conf;
  const raft_entry *entries;
  size_t n_entries;
} rf_io_save;

typedef struct rf_io_ops {
  /* Persist s; call done(ud, status) once durable (a negative status: the
  ** write failed).  Done may run before save returns.  An error return
  ** means done will not be called. */
  int (*save)(rf_io *io, const rf_io_save *s, rf_io_done done, void *ud);
  /* Send m to m->to; a SNAPSHOT asks the I/O to stream its latest snapshot
  ** (it reports back with rf_driver_report_snapshot). */
  void (*send)(rf_io *io, const raft_msg *m);
  /* Load the stored snapshot (index, term) into the state machine.  0, or
  ** a negative code: the node cannot go on. */
  int (*install)(rf_io *io, uint64_t index, uint64_t term);
  /* Apply a committed entry (of any type: a NOOP changes no state, but
  ** counts) to the state machine, result into res.  0, or a negative code
  ** that the entry's writer gets (RF_EFAILED, ...). */
  int (*apply)(rf_io *io, const raft_entry *e, rf_buf *res);
  /* The storage may drop its log up to (index, term): a snapshot covers it. */
  int (*compact)(rf_io *io, uint64_t index, uint64_t term);
  /* The driver has work: call rf_driver_process() soon (the same turn). */
  void (*wake)(rf_io *io);
} rf_io_ops;

struct rf_io {
  const rf_io_ops *ops;
};

/* A write's answer: status 0 with the handler's result (res, len: JSON
** text, possibly empty), or an RF_E* code: RF_ENOTCOMMITTED (never will),
** RF_ETIMEDOUT / RF_ESNAPSHOT / RF_ESTORAGE (the outcome is unknown),
** RF_ESTOPPING, or the handler's error with its message in res. */
typedef void (*rf_driver_write_cb)(void *ud, int status, uint64_t index,
                                   uint64_t term, const char *res,
                                   size_t len);
/* A read's answer: 0 when the state machine may be read now
** (linearizable), or RF_ENOTLEADER, RF_ETIMEDOUT (no quorum), RF_ESTOPPING. */
typedef void (*rf_driver_read_cb)(void *ud, int status);

typedef struct rf_driver_opts {
  raft_config core;     /* id, voters, timing, seed, limits */
  int request_ticks;    /* a write or read waits at most this long */
  int readies_per_turn; /* batches one rf_driver_process() runs (0: 8) */
} rf_driver_opts;

/* Create a driver and its core from what was persisted.  The driver keeps
** io (which must outlive it).  0, or RF_EINVAL / RF_ENOMEM. */
int rf_driver_new(const rf_driver_opts *o, const raft_restore *rs, rf_io *io,
                  rf_driver **out);
/* Answer every waiting request with RF_ESTOPPING, then free the driver
** once no write is in flight (done is called then, maybe at once). */
void rf_driver_close(rf_driver *d, void (*done)(void *ud), void *ud);

/* Inputs.  Each wakes the I/O when the core has something to do. */
void rf_driver_tick(rf_driver *d);
int rf_driver_step(rf_driver *d, const raft_msg *m);
int rf_driver_campaign(rf_driver *d);
/* Propose data as leader.  RF_ENOTLEADER, RF_ETOOBIG, RF_ESTORAGE, RF_ENOMEM
** (cb not called), or 0 and cb runs once the outcome is known; index and
** term (may be NULL) say where the entry will commit, if it does. */
int rf_driver_propose(rf_driver *d, const void *data, size_t len,
                      rf_driver_write_cb cb, void *ud, uint64_t *index,
                      uint64_t *term);
/* Propose a membership change (raft_propose_conf): RF_ENOTLEADER, RF_EBUSY
** (no entry of this term committed yet, a change pending, a transfer under
** way), RF_EINVAL, ... (cb not called), or 0 and cb runs once the change
** committed and was applied (or will never be). */
int rf_driver_change(rf_driver *d, const raft_conf_change *c,
                     rf_driver_write_cb cb, void *ud, uint64_t *index,
                     uint64_t *term);
/* Leadership transfer to target (raft_transfer); the outcome shows in the
** role and leader.  RF_ENOTLEADER, RF_EINVAL, or 0. */
int rf_driver_transfer(rf_driver *d, uint64_t target);
/* The configuration at index (what a snapshot taken there stores). */
int rf_driver_conf_at(const rf_driver *d, uint64_t index, raft_conf *out);
/* Start a linearizable read: 0 and cb runs later, or an RF_E* code. */
int rf_driver_read(rf_driver *d, rf_driver_read_cb cb, void *ud);

/* Run ready batches: at most readies_per_turn, and none more once those
** run applied core.max_apply entries.  1 when more work is left
** (the I/O was woken for it), 0 when done or waiting for a write. */
int rf_driver_process(rf_driver *d);

/* Snapshots: the state machine is saved up to index (applied, durable):
** drop the log behind it in the core and the storage. */
int rf_driver_compact(rf_driver *d, uint64_t index);
void rf_driver_report_snapshot(rf_driver *d, uint64_t to, int ok);

/* What the node is doing. */
void rf_driver_status(const rf_driver *d, raft_status *st);
raft_role rf_driver_role(const rf_driver *d);
uint64_t rf_driver_leader(const rf_driver *d);
uint64_t rf_driver_term(const rf_driver *d);
uint64_t rf_driver_applied(const rf_driver *d);
/* The term of log entry index, or 0 when the log does not hold it. */
uint64_t rf_driver_term_at(const rf_driver *d, uint64_t index);
/* A view of log entry index (checks and tests): RF_EINVAL when the log
** does not hold it; out->data is valid until the log changes. */
int rf_driver_entry(const rf_driver *d, uint64_t index, raft_entry *out);
/* 0, or the save error that made this node stop taking part. */
int rf_driver_failed(const rf_driver *d);
/* Requests waiting (writes + reads). */
size_t rf_driver_waiting(const rf_driver *d);

#endif
