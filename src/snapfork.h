/*
** snapfork.h -- writing a snapshot from a fork()ed child, so the loop only
** pauses for the fork itself (copying the page tables), never for the
** serialization: the child sees the store frozen at the fork in its
** copy-on-write image while the parent goes on applying.
**
** The child streams the store (rf_snap_write, a fixed buffer, no malloc,
** no lock, no libuv, no Lua) into the file descriptor it is given, fsyncs
** it and reports (status, size, keys) through a pipe, then _exit()s.  The
** parent reads the pipe on the loop and reaps the child once it closes.
** The child dies with its parent (PR_SET_PDEATHSIG) and runs at a lower
** priority (nice 10) than the loop.
**
** Test hook: RAFTING_TEST_SNAPSHOT_CHILD=exit|kill makes the child _exit(1)
** or SIGKILL itself after its first write, leaving a partial temp file.
**
** Memory: an rf_snapfork is malloc'd by rf_snapfork_start and freed after
** done has run, or after rf_snapfork_kill (done then never runs).
*/
#ifndef RAFTING_SNAPFORK_H
#define RAFTING_SNAPFORK_H

#include <stdint.h>
#include <uv.h>

#include "rafting/snapshot.h"
#include "rafting/store.h"

typedef struct rf_snapfork rf_snapfork;

/* status 0 with *m the snapshot written and synced; else < 0 (the file
** is partial or empty).  Runs on the loop. */
typedef void (*rf_snapfork_done)(void *ud, int status, const rf_snap_meta *m);

/* Fork a child writing st as of (index, term), with x (see rf_snap_write;
** its memory only needs to live until this returns: the child has a copy),
** to fd.  The parent's fd is
** left to the caller (close it: the child has its own).  0 and *out, or
** -errno (no child: nothing was written).  *pause_ns: how long fork() took. */
int rf_snapfork_start(uv_loop_t *loop, const rf_store *st, uint64_t index,
                      uint64_t term, const rf_snap_extra *x, int fd, rf_snapfork_done done, void *ud,
                      rf_snapfork **out, uint64_t *pause_ns);

/* SIGKILL the child, reap it and forget it (done never runs). */
void rf_snapfork_kill(rf_snapfork *f);

#endif
