/*
** memory.c -- the memory storage backend (see rafting/storage.h).
**
** It keeps nothing: the core already holds the log in memory and a restart
** of a memory node starts empty (it catches up from the leader).  What it
** does keep is the bookkeeping /status shows.
*/
#include <stdlib.h>

#include "rafting/storage.h"

static int mem_load(rf_storage *s, raft_hard_state *hs,
                    const raft_entry **ents, size_t *n) {
  (void)s;
  hs->term = hs->vote = hs->commit = 0;
  *ents = NULL;
  *n = 0;
  return 0;
}

static int mem_save(rf_storage *s, const raft_hard_state *hs,
                    const raft_entry *ents, size_t n, int sync,
                    rf_storage_done done, void *ud) {
  (void)hs;
  (void)sync;
  if (n > 0) s->last_index = ents[n - 1].index;
  done(ud, 0);
  return 0;
}

static int mem_compact(rf_storage *s, uint64_t index, uint64_t term,
                       rf_storage_done done, void *ud) {
  (void)term;
  if (s->last_index < index) s->last_index = index;
  done(ud, 0);
  return 0;
}

static void mem_start(const rf_storage *s, uint64_t *index, uint64_t *term) {
  (void)s;
  *index = *term = 0;
}

static void mem_close(rf_storage *s) { free(s); }

static const rf_storage_ops mem_ops = {"memory", mem_load, mem_save,
                                       mem_compact, mem_start, mem_close};

rf_storage *rf_storage_memory(void) {
  rf_storage *s = calloc(1, sizeof(*s));
  if (s != NULL) s->ops = &mem_ops;
  return s;
}
