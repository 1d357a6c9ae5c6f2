/*
** progress.h -- what a leader knows of each peer's log (etcd's Progress).
**
** A peer is probed (one APPEND in flight until it answers) until its match
** index is known, then replicated to optimistically with a bounded window of
** APPENDs in flight.  The inflight ring remembers the last index of each
** APPEND so that acknowledgements free the window in order.
*/
#ifndef RAFTING_CORE_PROGRESS_H
#define RAFTING_CORE_PROGRESS_H

#include <stdint.h>

#include "mem.h"

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
  uint64_t *ring;     /* inflight last indexes, capacity max_inflight;
                      ** NULL (out of memory): one slot, in one */
  uint64_t one;
  int ring_start, ring_count, ring_cap;
} rprogress;

/* Out of memory the progress still works, with a window of one APPEND, and
** RAFT_ENOMEM says so. */
int rpr_init(rprogress *p, uint64_t id, int max_inflight, const rmem *m);
void rpr_free(rprogress *p, const rmem *m);
void rpr_reset(rprogress *p, uint64_t next);
void rpr_become_probe(rprogress *p);
void rpr_become_replicate(rprogress *p);
void rpr_become_snapshot(rprogress *p, uint64_t index);
int rpr_paused(const rprogress *p);
void rpr_inflight_add(rprogress *p, uint64_t last);
void rpr_inflight_free_to(rprogress *p, uint64_t index);
void rpr_inflight_free_first(rprogress *p);

#endif
