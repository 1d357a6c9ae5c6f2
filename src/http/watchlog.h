/*
** watchlog.h -- the recent changes GET /watch answers from: a bounded,
** in-memory history of (index, key, value | deleted), in log order.
**
** The log is complete for every index above its floor: all changes of
** entries floor+1 .. (the last index added) are in it, and nothing older.
** Evicting the oldest entry's changes (to stay within max_entries indexes
** and max_bytes) raises the floor to that entry's index; so does a reset
** (a snapshot replaced the state, or memory ran out).  A single entry
** larger than the bounds is still kept, alone.
**
** Memory: the log owns a copy of each change (one malloc each) and a
** growable ring of pointers to them.  Pointers from rf_watchlog_at stay
** valid until the next add, seal or reset.
*/
#ifndef RAFTING_HTTP_WATCHLOG_H
#define RAFTING_HTTP_WATCHLOG_H

#include <stddef.h>
#include <stdint.h>

typedef struct rf_watchlog rf_watchlog;

typedef struct rf_wev {
  uint64_t index;
  const char *key, *val; /* val NULL when deleted */
  size_t klen, vlen;
} rf_wev;

rf_watchlog *rf_watchlog_new(size_t max_entries, size_t max_bytes,
                             uint64_t floor); /* NULL out of memory */
void rf_watchlog_free(rf_watchlog *wl);       /* NULL is fine */

/* Record a change of entry index (>= every index added before; > floor).
** 0, or -1 out of memory: then the log was reset to floor = index, as
** the changes of index can no longer be complete. */
int rf_watchlog_add(rf_watchlog *wl, uint64_t index, const void *key,
                    size_t klen, const void *val, size_t vlen, int deleted);
/* Entry index is complete: evict the oldest entries beyond the bounds. */
void rf_watchlog_seal(rf_watchlog *wl, uint64_t index);
/* Forget every change; the log is complete from floor on. */
void rf_watchlog_reset(rf_watchlog *wl, uint64_t floor);

uint64_t rf_watchlog_floor(const rf_watchlog *wl);
uint64_t rf_watchlog_last(const rf_watchlog *wl); /* floor when empty */
size_t rf_watchlog_count(const rf_watchlog *wl);  /* changes held */
size_t rf_watchlog_bytes(const rf_watchlog *wl);
/* Position of the first change with index > since (count if none). */
size_t rf_watchlog_find(const rf_watchlog *wl, uint64_t since);
/* The change at pos, or NULL past the end. */
const rf_wev *rf_watchlog_at(const rf_watchlog *wl, size_t pos);

#endif
