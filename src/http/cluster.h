/*
** cluster.h -- the REST side of membership: GET /cluster (who is in the
** cluster, who leads), POST /cluster/leader (leadership transfer), and
** POST /cluster/members, POST /cluster/members/{id}/promote, DELETE
** /cluster/members/{id} (membership changes, on the leader).
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
struct rf_membership;

/* A learner is promoted only within this many entries of the leader's
** last index (and answering): a lagging voter stalls commits. */
#define RF_PROMOTE_MAX_LAG 100

int rf_cluster_new(uv_loop_t *loop, rf_driver *drv, const rf_config *cfg,
                   uint64_t id, struct rf_membership *ms, rf_cluster **out);
void rf_cluster_close(rf_cluster *c, void (*done)(void *ud), void *ud);

/* GET /cluster: this node's view, answered at once. */
void rf_cluster_get(rf_cluster *c, rf_http_req *req);
/* POST /cluster/leader on the leader: answered once the target leads,
** or with 504 after a deadline. */
void rf_cluster_transfer(rf_cluster *c, rf_http_req *req);

/* POST /cluster/members on the leader: adds a learner, answered once the
** change committed (200), or 400/409 at once. */
void rf_cluster_add(rf_cluster *c, rf_http_req *req);
/* POST /cluster/members/{id}/promote (del 0) and DELETE
** /cluster/members/{id} (del 1) on the leader. */
void rf_cluster_member(rf_cluster *c, rf_http_req *req, int del);

/* After a driver run that changed the leader or this node's role: answers
** a waiting POST /cluster/leader once its target leads. */
void rf_cluster_leader_changed(rf_cluster *c);

#endif
