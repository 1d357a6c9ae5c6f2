/*
** snaps.h -- the node's snapshots: taking them, compacting the log behind
** them, streaming them to followers that fell behind the log, receiving
** them, and installing them into the state machine.
**
** Owned by the node (rf_snaps_open / rf_snaps_close).  It keeps its files
** in DIR/snap when the node has a data directory, else in memory.  Every
** transfer is one chunk at a time, acknowledged before the next is read,
** so memory stays bounded on both sides; a transfer that stalls, loses its
** peer or its leadership is abandoned and the core asks again later.  The
** core is reached through the driver only.
*/
#ifndef RAFTING_SNAPS_H
#define RAFTING_SNAPS_H

#include <uv.h>

#include "rafting/buf.h"
#include "rafting/config.h"
#include "rafting/driver.h"
#include "rafting/sm.h"
#include "rafting/snapshot.h"
#include "rafting/transport.h"

typedef struct rf_snaps rf_snaps;

/* What the snapshots work with, all borrowed from the node. */
typedef struct rf_snaps_deps {
  const rf_config *cfg;
  uint64_t id;
  rf_sm *sm;
  rf_transport *tp;
} rf_snaps_deps;

int rf_snaps_open(const rf_snaps_deps *deps, uv_loop_t *loop, const char *dir,
                  rf_snaps **out, char *err, size_t errlen);
/* The driver, once it exists (it restores from the snapshots first). */
void rf_snaps_attach(rf_snaps *s, rf_driver *drv);
void rf_snaps_close(rf_snaps *s, void (*done)(void *ud), void *ud);
/* Before a clean stop: 1 if a snapshot is being taken first (cb runs once
** it is done or failed, not after rf_snaps_close), 0 if none is needed. */
int rf_snaps_final(rf_snaps *s, void (*cb)(void *ud), void *ud);

/* Start-up: restore the latest snapshot into the state machine's (empty)
** store.  0 with *m filled, RF_SNAP_ENONE, or an error described in err. */
int rf_snaps_restore(rf_snaps *s, rf_snap_meta *m, char *err, size_t errlen);

/* The node applied e: take a snapshot when enough log has gone by. */
void rf_snaps_applied(rf_snaps *s, const raft_entry *e);
/* The core asks for a snapshot to be streamed to m->to. */
void rf_snaps_send(rf_snaps *s, const raft_msg *m);
/* A SNAPSHOT chunk or SNAPSHOT_RESP arrived from a peer. */
void rf_snaps_recv(rf_snaps *s, const raft_msg *m);
/* A ready adopted the snapshot at (index, term): load it into the state
** machine.  0, or a negative code (the node cannot go on). */
int rf_snaps_install(rf_snaps *s, uint64_t index, uint64_t term);
/* Once per tick: abandon stalled transfers. */
void rf_snaps_tick(rf_snaps *s);
void rf_snaps_peer_down(rf_snaps *s, uint64_t peer);

/* ,"snapshot":{...} for /status. */
void rf_snaps_status_json(rf_snaps *s, rf_buf *b);

#endif
