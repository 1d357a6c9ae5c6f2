/*
** watchlog.c -- the bounded history of changes (see watchlog.h).
**
** A ring of pointers (capacity a power of two) in index order; each change
** is one block: the rf_wev, then its key, then its value.
*/
#include <stdlib.h>
#include <string.h>

#include "http/watchlog.h"

#define EVCOST (sizeof(rf_wev) + 16) /* bytes charged beyond key + value */

struct rf_watchlog {
  rf_wev **ring;
  size_t cap, head, n; /* n changes from ring[head], wrapping */
  size_t entries;      /* distinct indexes among them */
  size_t bytes;
  size_t max_entries, max_bytes;
  uint64_t floor;
};

static size_t cost(const rf_wev *e) { return EVCOST + e->klen + e->vlen; }

rf_watchlog *rf_watchlog_new(size_t max_entries, size_t max_bytes,
                             uint64_t floor) {
  rf_watchlog *wl = calloc(1, sizeof(*wl));
  if (wl == NULL) return NULL;
  wl->max_entries = max_entries ? max_entries : 1;
  wl->max_bytes = max_bytes;
  wl->floor = floor;
  return wl;
}

const rf_wev *rf_watchlog_at(const rf_watchlog *wl, size_t pos) {
  return pos < wl->n ? wl->ring[(wl->head + pos) & (wl->cap - 1)] : NULL;
}

/* Drop the oldest change; the floor rises when its entry is gone. */
static void pop(rf_watchlog *wl) {
  rf_wev *e = wl->ring[wl->head];
  const rf_wev *next;
  wl->head = (wl->head + 1) & (wl->cap - 1);
  wl->n--;
  wl->bytes -= cost(e);
  next = rf_watchlog_at(wl, 0);
  if (next == NULL || next->index != e->index) {
    wl->entries--;
    wl->floor = e->index;
  }
  free(e);
}

void rf_watchlog_reset(rf_watchlog *wl, uint64_t floor) {
  while (wl->n) pop(wl);
  wl->floor = floor;
}

void rf_watchlog_free(rf_watchlog *wl) {
  if (wl == NULL) return;
  rf_watchlog_reset(wl, 0);
  free(wl->ring);
  free(wl);
}

static int grow(rf_watchlog *wl) {
  size_t cap = wl->cap ? wl->cap * 2 : 64;
  rf_wev **r = malloc(cap * sizeof(*r));
  if (r == NULL) return -1;
  for (size_t i = 0; i < wl->n; i++) r[i] = (rf_wev *)rf_watchlog_at(wl, i);
  free(wl->ring);
  wl->ring = r;
  wl->cap = cap;
  wl->head = 0;
  return 0;
}

int rf_watchlog_add(rf_watchlog *wl, uint64_t index, const void *key,
                    size_t klen, const void *val, size_t vlen, int deleted) {
  rf_wev *e;
  char *p;
  if (deleted) vlen = 0;
  if ((wl->n == wl->cap && grow(wl) < 0) ||
      (e = malloc(sizeof(*e) + klen + vlen + 1)) == NULL) {
    rf_watchlog_reset(wl, index);
    return -1;
  }
  p = (char *)(e + 1);
  memcpy(p, key, klen);
  if (vlen) memcpy(p + klen, val, vlen);
  e->index = index;
  e->key = p;
  e->klen = klen;
  e->val = deleted ? NULL : p + klen;
  e->vlen = vlen;
  if (rf_watchlog_last(wl) != index || wl->n == 0) wl->entries++;
  wl->ring[(wl->head + wl->n++) & (wl->cap - 1)] = e;
  wl->bytes += cost(e);
  return 0;
}

void rf_watchlog_seal(rf_watchlog *wl, uint64_t index) {
  while (wl->n && rf_watchlog_at(wl, 0)->index != index &&
         (wl->entries > wl->max_entries || wl->bytes > wl->max_bytes))
    pop(wl);
}

uint64_t rf_watchlog_floor(const rf_watchlog *wl) { return wl->floor; }
size_t rf_watchlog_count(const rf_watchlog *wl) { return wl->n; }
size_t rf_watchlog_bytes(const rf_watchlog *wl) { return wl->bytes; }

uint64_t rf_watchlog_last(const rf_watchlog *wl) {
  return wl->n ? rf_watchlog_at(wl, wl->n - 1)->index : wl->floor;
}

size_t rf_watchlog_find(const rf_watchlog *wl, uint64_t since) {
  size_t lo = 0, hi = wl->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (rf_watchlog_at(wl, mid)->index <= since) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
