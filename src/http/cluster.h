/*
** cluster.h -- the REST side of membership: GET /cluster (who is in the
** cluster, who leads) and POST /cluster/leader (leadership transfer).
**
** Owned by the API: rf_cluster_new() creates it, rf_cluster_close() answers
** a transfer still waiting (503) and calls done once its timer is closed.
** Requests are borrowed until answered.
*/
#ifndef RAFTING_HTTP_CLUSTER_H
#define RAFTING_HTTP_CLUSTER_H

#include <uv.h>

#include "rafting/config.h"
#include "rafting/driver.h"
#include "rafting/http.h"

typedef struct rf_cluster rf_cluster;

int rf_cluster_new(uv_loop_t *loop, rf_driver *drv, const rf_config *cfg,
                   uint64_t id, rf_cluster **out);
void rf_cluster_close(rf_cluster *c, void (*done)(void *ud), void *ud);

/* GET /cluster: this node's view, answered at once. */
void rf_cluster_get(rf_cluster *c, rf_http_req *req);
/* POST /cluster/leader on the leader: answered once the target leads,
** or with 504 after a deadline. */
void rf_cluster_transfer(rf_cluster *c, rf_http_req *req);

/* The voter best placed to take over from this leader (the active one
** with the highest match), or 0 when there is none. */
uint64_t rf_cluster_successor(const rf_driver *drv);

#endif
