/*
** waits.h -- requests parked until the node reaches a state: a write until
** its log index applies, a linearizable read until a ReadIndex round
** confirms leadership and the state machine catches up to that index.
**
** Each parked request is answered exactly once: by the event it waits for,
** by its deadline (writes: 504, the outcome is unknown; reads: 503), by a
** leadership loss (unconfirmed reads: 503) or by rf_waits_close (503).
** The waits own their bookkeeping; the requests stay the HTTP server's.
*/
#ifndef RAFTING_WAITS_H
#define RAFTING_WAITS_H

#include <uv.h>

#include "http/api.h"
#include "rafting/http.h"
#include "rafting/raft.h"

typedef struct rf_waits rf_waits;
typedef void (*rf_waits_serve)(rf_api *a, rf_http_req *req);

int rf_waits_init(uv_loop_t *loop, rf_node *node, rf_api *api, int timeout_ms,
                  rf_waits **out);
void rf_waits_close(rf_waits *w, void (*done)(void *ud), void *ud);

/* Park a write proposed at (index, term). */
void rf_waits_write(rf_waits *w, rf_http_req *req, uint64_t index,
                    uint64_t term);
/* Start a ReadIndex round for req; serve(api, req) runs once it is safe.
** A RAFT_E* code (nothing parked) when the core refuses. */
int rf_waits_read(rf_waits *w, rf_http_req *req, rf_waits_serve serve);

void rf_waits_applied(rf_waits *w, const raft_entry *e, int rc,
                      const char *res, size_t len);
void rf_waits_read_ready(rf_waits *w, const raft_read_state *rs);
void rf_waits_lost_leadership(rf_waits *w);
/* The state machine jumped to a snapshot at index: confirmed reads up to it
** can be served; writes at or below it can no longer be matched to their
** entry (504: they may have committed). */
void rf_waits_jumped(rf_waits *w, uint64_t index);

#endif
