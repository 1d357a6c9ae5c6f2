/*
** node.h -- one Raft node: the core, its storage, the peer transport and
** the HTTP API composed on one libuv loop.
**
** rf_node_start() wires everything from a validated config; the node then
** runs as long as the loop does.  rf_node_stop() closes every handle and
** calls done once the last one closed, so uv_run() returns and the process
** can exit 0.  The node borrows the config (it must outlive the node) and
** owns everything else it creates.
*/
#ifndef RAFTING_NODE_H
#define RAFTING_NODE_H

#include "rafting/error.h"

#include <stdint.h>
#include <uv.h>

#include "rafting/config.h"

typedef struct rf_node rf_node;

/* A commands script failed to load: a configuration error (exit 2). */
#define RF_NODE_ESCRIPT RF_ESCRIPT
/* The data directory cannot be used (locked, corrupt): exit 2 as well. */
#define RF_NODE_ESTORAGE RF_ESTORAGE

/* How this process joins (docs/membership.md); NULL: all zero. */
typedef struct rf_node_opts {
  int join;             /* --join: an empty data directory, no bootstrap */
  const char *peer;     /* --peer / --http: this node's own addresses */
  const char *http;
  /* The node applied a configuration without itself (at index): the
  ** caller stops it (exit 0).  May be NULL. */
  void (*removed)(void *ud, uint64_t index);
  void *ud;
} rf_node_opts;

/* Returns 0, or a negative libuv/RAFT_E* code after logging what failed:
** RF_ECONFIG, RF_NODE_ESCRIPT and RF_NODE_ESTORAGE are the caller's
** configuration errors (exit 2). */
int rf_node_start(uv_loop_t *loop, const rf_config *cfg, uint64_t id,
                  const rf_node_opts *o, rf_node **out);
void rf_node_stop(rf_node *n, void (*done)(void *ud), void *ud);
/* The node's driver (borrowed), for the graceful stop (src/handover.c). */
struct rf_driver *rf_node_driver(rf_node *n);
/* The graceful stop's drain (src/handover.c): refuse new requests (503,
** Connection: close); and the requests still in flight (writes and reads
** waiting on the driver, forwards to the leader). */
void rf_node_drain(rf_node *n);
size_t rf_node_in_flight(const rf_node *n);
/* Whether the peer connection to node peer is up (the handover's choice). */
int rf_node_peer_connected(const rf_node *n, uint64_t peer);


#endif
