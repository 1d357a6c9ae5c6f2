/*
** scripts.h -- the REST side of deployed scripts: PUT, GET and DELETE
** /scripts/{name}, GET /scripts (the scripts themselves are replicated
** state: rafting/sm.h, src/sm/scripts.c).
**
** The api routes (leader, linearizable reads) and proposes; these check a
** request and build its entry, or answer it.  Requests are borrowed.
*/
#ifndef RAFTING_HTTP_SCRIPTS_H
#define RAFTING_HTTP_SCRIPTS_H

#include "rafting/buf.h"
#include "rafting/http.h"
#include "rafting/sm.h"

/* PUT /scripts/{name} on the leader: 1 with the script.put entry in
** entry, or 0 once req was answered (400 bad name or bad_script, 409
** name_conflict: nothing proposed). */
int rf_scripts_put_entry(rf_sm *sm, rf_http_req *req, uint64_t now_ms,
                         rf_buf *entry);
/* DELETE /scripts/{name} on the leader: the same, 404 when absent. */
int rf_scripts_delete_entry(rf_sm *sm, rf_http_req *req, uint64_t now_ms,
                            rf_buf *entry);
/* GET /scripts and GET /scripts/{name}: answered from sm at once. */
void rf_scripts_list(rf_sm *sm, rf_http_req *req);
void rf_scripts_source(rf_sm *sm, rf_http_req *req);

#endif
