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
  /* The membership blob (the address book) as of index, appended to out,
  ** stored with a snapshot taken there; 0 or < 0 (the snapshot is not
  ** taken).  NULL: an empty blob. */
  int (*members_blob)(void *ud, uint64_t index, rf_buf *out);
  /* A snapshot's blob, when it becomes the state: at start-up and when a
  ** received one is installed (blob borrowed for the call; len 0: empty or
  ** none).  NULL: ignored. */
  void (*members_restored)(void *ud, const uint8_t *blob, size_t len);
  void *members_ud;
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
** store and hand its membership blob to members_restored.  0 with *m
** filled (its configuration too, if it has one), RF_SNAP_ENONE, or an
** error described in err. */
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

/* Take a snapshot of the state as last applied now, unless the latest
** already covers it or one is being written or received: 0 started (the
** saved callback says when it is done), 1 the latest is already at the
** applied index, RF_EBUSY. */
int rf_snaps_take_now(rf_snaps *s);
/* cb(ud, status) after every save of a snapshot taken here ends (0: it is
** the latest), and after a received one is installed.  One listener. */
void rf_snaps_on_saved(rf_snaps *s, void (*cb)(void *ud, int status),
                       void *ud);
/* The index and term last applied (what rf_snaps_take_now would take). */
uint64_t rf_snaps_applied_index(const rf_snaps *s);
/* The snapshots' store (for reading the kept files). */
rf_snapstore *rf_snaps_store(rf_snaps *s);

/* ,"snapshot":{...} for /status. */
void rf_snaps_status_json(rf_snaps *s, rf_buf *b);

#endif
