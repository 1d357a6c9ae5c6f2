/*
** loopwatch.h -- how long each turn of the event loop keeps it busy.
**
** Every client request, peer message and WAL completion of a node waits
** while a callback runs, so one slow turn is a latency spike for all of
** them.  The watch observes each turn's busy time (the turn's length less
** the time spent blocked in the poll, from libuv's idle-time metric) into
** rafting_loop_busy_seconds, and logs "event loop held" with the time when
** a turn reaches warn_ms (at most a line a second, with the count of held
** turns not logged since: a host that stays slow must not flood the log).
** Timers that fire late because of it are counted in the same turn.
**
** The idle-time metric makes libuv poll once without blocking before each
** blocking poll (its way of timing the wait); a node owns its loop, so it
** is set for good.
**
** Memory: the caller owns the struct (embedded, e.g. in the node) and keeps
** it until rf_loopwatch_close's done ran.  The watch's handle is
** unreferenced: it never keeps a loop alive by itself.
*/
#ifndef RAFTING_LOOPWATCH_H
#define RAFTING_LOOPWATCH_H

#include <stdint.h>
#include <uv.h>

typedef struct rf_loopwatch {
  uv_prepare_t prepare;
  uint64_t turn_ns, idle_ns; /* at the previous turn's prepare phase */
  uint64_t warn_ns;          /* 0: never log */
  uint64_t logged_ns;        /* when the last line was logged */
  uint64_t unlogged;         /* held turns since, not logged */
  int started;
  void (*done)(void *ud);
  void *ud;
} rf_loopwatch;

/* Start watching loop; returns 0 or a negative libuv error (then nothing
** is left to close). */
int rf_loopwatch_start(rf_loopwatch *w, uv_loop_t *loop, unsigned warn_ms);

/* Stop; done(ud) runs once the loop let go of the handle.  Returns -1,
** and done never runs, when the watch was not started. */
int rf_loopwatch_close(rf_loopwatch *w, void (*done)(void *ud), void *ud);

#endif
