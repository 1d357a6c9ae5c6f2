/*
** watch.h -- GET /watch: the changes under a key prefix after a log index,
** answered from a bounded in-memory history (watchlog.h) as soon as there
** is one (long-poll), or as a chunked stream of answers (&stream=1).
**
** Fed by the state machine's apply path (rf_sm_observe): each applied
** entry's writes are recorded under its index, then parked requests whose
** prefix they touch are answered.  Answers only show what this node has
** applied, so a follower never shows a change before it has it; "next"
** is the index the answer is complete through, to resume from.
**
** Owned by the API: rf_watch_new() registers the observer; rf_watch_close()
** answers every parked request (503), unregisters and frees, then calls
** done once its timer closed.  Parked requests are the API's requests:
** rf_watch_abort() answers one whose client left.
*/
#ifndef RAFTING_HTTP_WATCH_H
#define RAFTING_HTTP_WATCH_H

#include <uv.h>

#include "rafting/buf.h"
#include "rafting/driver.h"
#include "rafting/http.h"
#include "rafting/sm.h"

typedef struct rf_watch rf_watch;

int rf_watch_new(uv_loop_t *loop, rf_sm *sm, rf_driver *drv,
                 size_t history_entries, size_t history_bytes,
                 rf_watch **out);
void rf_watch_get(rf_watch *w, rf_http_req *req); /* GET /watch */
/* 1 if req was parked here (it is answered now), else 0. */
int rf_watch_abort(rf_watch *w, rf_http_req *req);
size_t rf_watch_parked(const rf_watch *w);
void rf_watch_metrics(const rf_watch *w, rf_buf *b); /* for GET /metrics */
void rf_watch_close(rf_watch *w, void (*done)(void *ud), void *ud);

#endif
