/*
** api.h -- the node's REST API: routes requests of the HTTP server to the
** node, and answers them when the node's state allows (after a commit, a
** confirmed read).
**
** Owned by the node: rf_api_start() creates it, rf_api_stop() closes the
** HTTP server and calls done once every connection is closed.
*/
#ifndef RAFTING_API_H
#define RAFTING_API_H

#include <uv.h>

#include "rafting/node.h"
#include "rafting/raft.h"

typedef struct rf_api rf_api;

int rf_api_start(rf_node *node, uv_loop_t *loop, rf_api **out);
void rf_api_stop(rf_api *a, void (*done)(void *ud), void *ud);

/* Node events the API waits on. */
/* Entry e was applied with result rc (an RF_SM_* code) and res[0..len):
** the handler's JSON value, or the error message. */
void rf_api_applied(rf_api *a, const raft_entry *e, int rc, const char *res,
                    size_t len);
void rf_api_read_ready(rf_api *a, const raft_read_state *rs);
void rf_api_leader_changed(rf_api *a);
/* The state machine jumped to a snapshot at index. */
void rf_api_snapshot_installed(rf_api *a, uint64_t index);

#endif
