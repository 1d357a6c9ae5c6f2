/*
** backup.h -- GET /snapshot: a backup of the state machine, streamed from
** the node's latest snapshot file (docs/operations.md, "Backup").
**
**   GET /snapshot                 the latest snapshot kept by this node
**   GET /snapshot?fresh[=1]       take one at the index applied now, wait
**                                 for it (at most timeout_ms, default
**                                 30000), then stream it
**
** The answer is application/octet-stream with Content-Length, X-Raft-Index,
** X-Raft-Term and a Content-Disposition filename; the body is read from
** the file (or the memory store) one chunk at a time, the next read only
** once the socket has taken most of the last: memory stays bounded
** whatever the snapshot's size.  The node asked answers (no forwarding):
** every node's snapshots hold committed state only.
**
** Owned by the API: rf_backup_new() creates it, rf_backup_close() answers
** the requests still waiting (503) and ends the downloads under way (cut
** short, so the client sees it), then calls done.  Requests are borrowed
** until answered.
*/
#ifndef RAFTING_HTTP_BACKUP_H
#define RAFTING_HTTP_BACKUP_H

#include <stdint.h>
#include <uv.h>

#include "rafting/http.h"

struct rf_snaps;
typedef struct rf_backup rf_backup;

int rf_backup_new(uv_loop_t *loop, struct rf_snaps *snaps, uint64_t id,
                  rf_backup **out);
void rf_backup_close(rf_backup *b, void (*done)(void *ud), void *ud);

/* GET /snapshot (see above). */
void rf_backup_get(rf_backup *b, rf_http_req *req);
/* The client of req left: end its download or its wait now.  0 if req is
** not one of ours. */
int rf_backup_abort(rf_backup *b, rf_http_req *req);

#endif
