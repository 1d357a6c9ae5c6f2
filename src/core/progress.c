/*
** progress.c -- per-peer replication progress (see progress.h).
*/
#include <stdint.h>
#include <string.h>

#include "rafting/assert.h"
#include "rafting/raft.h"
#include "progress.h"

int rpr_init(rprogress *p, uint64_t id, int max_inflight, size_t max_bytes,
             const rmem *m) {
  memset(p, 0, sizeof(*p));
  p->id = id;
  p->max_bytes = max_bytes;
  p->ring_cap = max_inflight;
  p->ring = rmem_calloc(m, (size_t)max_inflight, sizeof(*p->ring));
  if (p->ring == NULL) p->ring_cap = 1; /* the slot in p->one */
  return p->ring ? RAFT_OK : RAFT_ENOMEM;
}

static rslot *ring(rprogress *p) { return p->ring ? p->ring : &p->one; }

void rpr_free(rprogress *p, const rmem *m) {
  rmem_free(m, p->ring);
  p->ring = NULL;
}

static void inflight_clear(rprogress *p) {
  p->ring_start = p->ring_count = 0;
  p->inflight_bytes = 0;
}

void rpr_reset(rprogress *p, uint64_t next) {
  p->match = 0;
  p->sent_commit = 0;
  p->next = next;
  p->active = 0;
  p->vote = -1;
  p->state = RAFT_PR_PROBE;
  p->probe_sent = 0;
  p->pending_snapshot = 0;
  inflight_clear(p);
}

void rpr_become_probe(rprogress *p) {
  /* a probe resumes right after what is known to match */
  p->next = p->match + 1;
  p->state = RAFT_PR_PROBE;
  p->probe_sent = 0;
  inflight_clear(p);
}

void rpr_become_replicate(rprogress *p) {
  p->state = RAFT_PR_REPLICATE;
  p->next = p->match + 1;
  p->probe_sent = 0;
  inflight_clear(p);
}

void rpr_become_snapshot(rprogress *p, uint64_t index) {
  p->state = RAFT_PR_SNAPSHOT;
  p->pending_snapshot = index;
  p->probe_sent = 0;
  inflight_clear(p);
}

int rpr_paused(const rprogress *p) {
  if (p->state == RAFT_PR_SNAPSHOT) return 1; /* until the transfer ends */
  if (p->state == RAFT_PR_PROBE) return p->probe_sent;
  if (p->max_bytes && p->inflight_bytes >= p->max_bytes) return 1;
  return p->ring_count >= p->ring_cap;
}

size_t rpr_budget(const rprogress *p) {
  if (p->max_bytes == 0) return SIZE_MAX;
  if (p->state != RAFT_PR_REPLICATE) return p->max_bytes; /* one probe */
  return p->inflight_bytes < p->max_bytes ? p->max_bytes - p->inflight_bytes
                                          : 0;
}

void rpr_inflight_add(rprogress *p, uint64_t last, size_t bytes) {
  rslot *s;
  RF_ASSERT(p->ring_count < p->ring_cap);
  s = &ring(p)[(p->ring_start + p->ring_count) % p->ring_cap];
  s->last = last;
  s->bytes = bytes;
  p->ring_count++;
  p->inflight_bytes += bytes;
}

static void free_first(rprogress *p) {
  p->inflight_bytes -= ring(p)[p->ring_start].bytes;
  p->ring_start = (p->ring_start + 1) % p->ring_cap;
  p->ring_count--;
}

void rpr_inflight_free_to(rprogress *p, uint64_t index) {
  while (p->ring_count > 0 && ring(p)[p->ring_start].last <= index)
    free_first(p);
}

void rpr_inflight_free_first(rprogress *p) {
  if (p->ring_count > 0) free_first(p);
}
