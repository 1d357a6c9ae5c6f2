/*
** progress.h -- what a leader knows of each peer's log (etcd's Progress).
**
** A peer is probed (one APPEND in flight until it answers) until its match
** index is known, then replicated to optimistically with a bounded window of
** APPENDs in flight.  The inflight ring remembers the last index and the
** entry bytes of each APPEND so that acknowledgements free the window in
** order; the window is bounded in messages and, optionally, in bytes.
*/
#ifndef RAFTING_CORE_PROGRESS_H
#define RAFTING_CORE_PROGRESS_H

#include <stdint.h>

#include "mem.h"

typedef struct rslot {
  uint64_t last;      /* last index the APPEND carried */
  size_t bytes;       /* its entry bytes (as counted against max_msg_bytes) */
} rslot;

typedef struct rprogress {
  uint64_t id;
  uint64_t match;
  uint64_t next;
  int state;          /* RAFT_PR_PROBE, _REPLICATE or _SNAPSHOT */
  uint64_t pending_snapshot; /* snapshot state: the index asked for */
  uint64_t sent_commit; /* the commit index last sent in an APPEND */
  int probe_sent;     /* probe: paused until a response or heartbeat reply */
  int active;         /* heard from since the last check-quorum round */
  int vote;           /* -1 none yet, 0 denied, 1 granted */
  int voter;          /* counts for elections, commit and reads */
  rslot *ring;        /* APPENDs in flight, capacity max_inflight;
                      ** NULL (out of memory): one slot, in one */
  rslot one;
  int ring_start, ring_count, ring_cap;
  size_t inflight_bytes; /* sum of the ring's bytes */
  size_t max_bytes;   /* bound on inflight_bytes, 0: none */
} rprogress;

/* Out of memory the progress still works, with a window of one APPEND, and
** RAFT_ENOMEM says so. */
int rpr_init(rprogress *p, uint64_t id, int max_inflight, size_t max_bytes,
             const rmem *m);
void rpr_free(rprogress *p, const rmem *m);
void rpr_reset(rprogress *p, uint64_t next);
void rpr_become_probe(rprogress *p);
void rpr_become_replicate(rprogress *p);
void rpr_become_snapshot(rprogress *p, uint64_t index);
int rpr_paused(const rprogress *p);
/* Entry bytes the next APPEND may carry without passing max_bytes (it
** carries at least one entry whatever this says); SIZE_MAX: no bound. */
size_t rpr_budget(const rprogress *p);
void rpr_inflight_add(rprogress *p, uint64_t last, size_t bytes);
void rpr_inflight_free_to(rprogress *p, uint64_t index);
void rpr_inflight_free_first(rprogress *p);

#endif
