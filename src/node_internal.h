/*
** node_internal.h -- what the node's services (the REST API) may use of it.
**
** Callers step the core through rf_node_core() and then call rf_node_kick()
** so the resulting ready batch is drained.  Nothing here transfers ownership.
*/
#ifndef RAFTING_NODE_INTERNAL_H
#define RAFTING_NODE_INTERNAL_H

#include "rafting/node.h"
#include "rafting/raft.h"
#include "rafting/sm.h"

void rf_node_kick(rf_node *n);
raft *rf_node_core(rf_node *n);
const rf_config *rf_node_config(rf_node *n);
uint64_t rf_node_id(rf_node *n);
uint64_t rf_node_applied(rf_node *n);
rf_sm *rf_node_sm(rf_node *n);
/* 1 once storage failed: the node serves /status and /health only. */
int rf_node_failed(rf_node *n);
/* Send a runtime-level message (snapshot chunks) to a peer. */
int rf_node_send(rf_node *n, const raft_msg *m);
/* Step the core with m (e.g. a received snapshot) and drain the result. */
void rf_node_step(rf_node *n, const raft_msg *m);
/* Let the storage drop its log up to (index, term); a no-op in memory. */
void rf_node_compact_storage(rf_node *n, uint64_t index, uint64_t term);

#endif
