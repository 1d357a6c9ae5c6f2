/*
** api.h -- the node's REST API: routes requests of the HTTP server to the
** driver (or forwards them to the leader), and answers them when the
** driver calls back (after a commit and apply, after a confirmed read).
**
** Owned by the node: rf_api_start() creates it, rf_api_stop() closes the
** HTTP server and calls done once every connection is closed.  Stop the
** API after closing the driver, whose close answers the requests waiting.
*/
#ifndef RAFTING_API_H
#define RAFTING_API_H

#include <uv.h>

#include "rafting/buf.h"
#include "rafting/config.h"
#include "rafting/driver.h"
#include "rafting/sm.h"

typedef struct rf_api rf_api;

/* What the API works with, borrowed from the node. */
typedef struct rf_api_deps {
  rf_driver *drv;
  rf_sm *sm;           /* read directly: ?stale and confirmed reads */
  const rf_config *cfg;
  uint64_t id;
  void (*status_json)(void *ud, rf_buf *b); /* the /status document */
  void *ud;
  struct rf_tls_ctx *tls_http;   /* HTTPS listener, or NULL: plain HTTP */
  struct rf_tls_ctx *tls_client; /* forwarding to the leader over TLS */
  struct rf_snaps *snaps;        /* GET /snapshot reads its files */
  struct rf_membership *members; /* membership changes (src/membership.h) */
} rf_api_deps;

int rf_api_start(const rf_api_deps *deps, uv_loop_t *loop, rf_api **out);
void rf_api_stop(rf_api *a, void (*done)(void *ud), void *ud);
/* Before a stop: answer every new request but /status and /metrics with
** 503 shutting_down and Connection: close, so clients move to another
** node while the requests already here finish. */
void rf_api_drain(rf_api *a);
/* The leader or this node's role changed (after a driver run). */
void rf_api_leader_changed(rf_api *a);
/* Requests forwarded to the leader and not answered yet. */
int rf_api_forwarding(const rf_api *a);

#endif
