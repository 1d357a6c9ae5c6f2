/*
** handover.h -- the graceful stop: before the node closes, a leader hands
** leadership to an up-to-date voter and waits (bounded) until another node
** leads, so clients see a new leader instead of an election timeout; then
** every node drains: new requests are refused (503 shutting_down,
** Connection: close, so clients move on) while those already in flight --
** writes waiting for their commit, forwards to the leader -- are answered
** (bounded), so a stop does not turn them into "outcome unknown".
**
** rf_handover_start() borrows the loop and the node; it owns the small
** state it allocates, freed before done runs.  done is called exactly once:
** at the next tick for a follower with nothing in flight; else once
** another node leads (at most two election timeouts) and nothing is in
** flight any more (at most one election timeout more).
*/
#ifndef RAFTING_HANDOVER_H
#define RAFTING_HANDOVER_H

#include <uv.h>

#include "rafting/config.h"
#include "rafting/driver.h"
#include "rafting/node.h"

typedef struct rf_handover rf_handover;

/* 0 and *out (valid until done runs), or a negative libuv code (done is
** then not called).  moved: leadership went to another node. */
int rf_handover_start(uv_loop_t *loop, rf_node *node, const rf_config *cfg,
                      void (*done)(void *ud, int moved), void *ud,
                      rf_handover **out);
/* Stop waiting (a second signal): done runs soon.  Call it only before
** done ran. */
void rf_handover_cancel(rf_handover *ho);

/* The voter to hand leadership to (the graceful stop, and POST
** /cluster/leader with no id): one the core heard from lately and whose
** peer connection is up (up(ud, id) != 0; a node that just stopped is still
** "active" for an election timeout), with the longest log; 0 if none. */
uint64_t rf_successor(const raft_status *st,
                      int (*up)(const void *ud, uint64_t id), const void *ud);

#endif
