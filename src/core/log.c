/*
** log.c -- the core's in-memory Raft log (see log.h).
*/
#include <stddef.h>
#include <string.h>

#include "rafting/assert.h"
#include "log.h"

rblob *rlog_blob_new(const rmem *m, const void *data, size_t len) {
  rblob *b = rmem_alloc(m, sizeof(*b) + (len ? len : 1));
  if (b == NULL) return NULL;
  b->mem = m;
  b->ref = 1;
  b->len = len;
  if (len) memcpy(b->data, data, len);
  return b;
}

void rlog_blob_unref(rblob *b) {
  if (b != NULL && --b->ref == 0) rmem_free(b->mem, b);
}

void rlog_unref_data(const uint8_t *data) {
  if (data != NULL)
    rlog_blob_unref((rblob *)(void *)(data - offsetof(rblob, data)));
}

void rlog_init(rlog *l, const rmem *m) {
  memset(l, 0, sizeof(*l));
  l->mem = m;
}

/* The k-th live entry.  The log is a ring so that compaction, which drops
** from the front while appends go on at the back, never moves the rest:
** a memmove of the whole log on every step cost more than the frees. */
static rent *slot(const rlog *l, size_t k) {
  return &l->e[(l->head + k) & (l->cap - 1)];
}

static void unref_range(rlog *l, size_t from, size_t to) {
  for (size_t k = from; k < to; k++) rlog_blob_unref(slot(l, k)->blob);
}

void rlog_free(rlog *l) {
  unref_range(l, 0, l->n);
  rmem_free(l->mem, l->e);
  rlog_init(l, l->mem);
}

uint64_t rlog_last(const rlog *l) { return l->snap_index + l->n; }
uint64_t rlog_first(const rlog *l) { return l->snap_index + 1; }

static const rent *at(const rlog *l, uint64_t i) {
  if (i <= l->snap_index || i > rlog_last(l)) return NULL;
  return slot(l, (size_t)(i - l->snap_index - 1));
}

uint64_t rlog_term(const rlog *l, uint64_t i) {
  const rent *e;
  if (i == l->snap_index) return l->snap_term;
  e = at(l, i);
  return e ? e->term : 0;
}

int rlog_has(const rlog *l, uint64_t i, uint64_t term) {
  if (i == 0) return term == 0;
  if (i < l->snap_index || i > rlog_last(l)) return 0;
  return rlog_term(l, i) == term;
}

uint64_t rlog_conflict_by_term(const rlog *l, uint64_t i, uint64_t term) {
  if (i > rlog_last(l)) i = rlog_last(l);
  /* terms are non-decreasing along the log, so walk back to the first fit */
  while (i > l->snap_index && rlog_term(l, i) > term) i--;
  return i;
}

/* Double the ring; the part that wrapped to the front moves after the old
** end, so the entries stay in order from head. */
static int grow(rlog *l) {
  size_t cap = l->cap ? l->cap * 2 : 64, wrapped;
  rent *e = rmem_realloc(l->mem, l->e, cap * sizeof(*e));
  if (e == NULL) return RAFT_ENOMEM;
  wrapped = l->head + l->n > l->cap ? l->head + l->n - l->cap : 0;
  memcpy(e + l->cap, e, wrapped * sizeof(*e));
  l->e = e;
  l->cap = cap;
  return RAFT_OK;
}

int rlog_append(rlog *l, uint64_t term, int type, rblob *blob) {
  rent *e;
  if (l->n == l->cap && grow(l) != RAFT_OK) return RAFT_ENOMEM;
  RF_ASSERT(l->n == 0 || slot(l, l->n - 1)->term <= term); /* never back */
  e = slot(l, l->n++);
  e->term = term;
  e->type = type;
  e->blob = blob;
  return RAFT_OK;
}

void rlog_truncate(rlog *l, uint64_t i) {
  RF_ASSERT(i > l->snap_index);
  while (rlog_last(l) >= i && l->n > 0) rlog_blob_unref(slot(l, --l->n)->blob);
}

void rlog_compact(rlog *l, uint64_t i) {
  size_t drop;
  RF_ASSERT(i > l->snap_index && i <= rlog_last(l));
  drop = (size_t)(i - l->snap_index);
  l->snap_term = rlog_term(l, i);
  unref_range(l, 0, drop);
  l->head = (l->head + drop) & (l->cap - 1);
  l->n -= drop;
  l->snap_index = i;
}

void rlog_reset(rlog *l, uint64_t i, uint64_t term) {
  unref_range(l, 0, l->n);
  l->head = l->n = 0;
  l->snap_index = i;
  l->snap_term = term;
}

void rlog_view(const rlog *l, uint64_t i, raft_entry *out) {
  const rent *e = at(l, i);
  RF_ASSERT(e != NULL);
  out->term = e->term;
  out->index = i;
  out->type = e->type;
  out->len = e->blob->len;
  out->data = e->blob->data;
}

void rlog_ref(const rlog *l, uint64_t i, raft_entry *out) {
  rlog_view(l, i, out);
  at(l, i)->blob->ref++;
}
