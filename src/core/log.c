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

void rlog_free(rlog *l) {
  for (size_t i = 0; i < l->n; i++) rlog_blob_unref(l->e[i].blob);
  rmem_free(l->mem, l->e);
  rlog_init(l, l->mem);
}

uint64_t rlog_last(const rlog *l) { return l->snap_index + l->n; }
uint64_t rlog_first(const rlog *l) { return l->snap_index + 1; }

static const rent *at(const rlog *l, uint64_t i) {
  if (i <= l->snap_index || i > rlog_last(l)) return NULL;
  return &l->e[i - l->snap_index - 1];
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

int rlog_append(rlog *l, uint64_t term, int type, rblob *blob) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    rent *e = rmem_realloc(l->mem, l->e, cap * sizeof(*e));
    if (e == NULL) return RAFT_ENOMEM;
    l->e = e;
    l->cap = cap;
  }
  RF_ASSERT(l->n == 0 || l->e[l->n - 1].term <= term); /* terms never go back */
  l->e[l->n].term = term;
  l->e[l->n].type = type;
  l->e[l->n].blob = blob;
  l->n++;
  return RAFT_OK;
}

void rlog_truncate(rlog *l, uint64_t i) {
  RF_ASSERT(i > l->snap_index);
  while (rlog_last(l) >= i && l->n > 0) rlog_blob_unref(l->e[--l->n].blob);
}

void rlog_compact(rlog *l, uint64_t i) {
  size_t drop;
  RF_ASSERT(i > l->snap_index && i <= rlog_last(l));
  drop = (size_t)(i - l->snap_index);
  l->snap_term = rlog_term(l, i);
  for (size_t k = 0; k < drop; k++) rlog_blob_unref(l->e[k].blob);
  memmove(l->e, l->e + drop, (l->n - drop) * sizeof(*l->e));
  l->n -= drop;
  l->snap_index = i;
}

void rlog_reset(rlog *l, uint64_t i, uint64_t term) {
  for (size_t k = 0; k < l->n; k++) rlog_blob_unref(l->e[k].blob);
  l->n = 0;
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
