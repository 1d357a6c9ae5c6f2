/*
** raftmsg.h -- comparing Raft messages field by field in the C tests
** (codec round trips, transport deliveries).  Header-only; owns nothing.
*/
#ifndef RAFTING_TEST_RAFTMSG_H
#define RAFTING_TEST_RAFTMSG_H

#include <string.h>

#include "rafting/raft.h"

/* 1 when a and b carry the same fields and entries (data compared by
** content, not by pointer). */
static inline int msg_equal(const raft_msg *a, const raft_msg *b) {
  if (a->type != b->type || a->from != b->from || a->to != b->to ||
      a->term != b->term || a->index != b->index ||
      a->log_term != b->log_term || a->commit != b->commit ||
      !a->reject != !b->reject || a->hint_index != b->hint_index ||
      a->hint_term != b->hint_term || a->context != b->context ||
      a->n_entries != b->n_entries)
    return 0;
  for (size_t i = 0; i < a->n_entries; i++) {
    const raft_entry *x = &a->entries[i], *y = &b->entries[i];
    if (x->term != y->term || x->index != y->index || x->type != y->type ||
        x->len != y->len || (x->len && memcmp(x->data, y->data, x->len)))
      return 0;
  }
  return 1;
}

#endif
