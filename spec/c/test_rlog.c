/*
** test_rlog.c -- the core's in-memory log (src/core/log.h), a ring since
** issue 13: random appends, truncations, compactions and resets against a
** plain array model, across the ring's wrap and growth.  Every entry's
** term and bytes are checked after each step, and every blob is freed
** exactly once.  The seed is printed (RAFTING_SEED=N repeats a run).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "core/log.h"

#define MAXN 5000

static long live; /* blocks the log's allocator holds */

static void *counting(void *ud, void *p, size_t size) {
  (void)ud;
  if (size == 0) {
    if (p) live--;
    free(p);
    return NULL;
  }
  if (!p) live++;
  return realloc(p, size);
}

typedef struct model {
  uint64_t snap, snap_term;
  uint64_t term[MAXN], tag[MAXN]; /* [k]: index snap + 1 + k */
  size_t n;
} model;

static void check_same(const rlog *l, const model *m) {
  raft_entry e;
  CHECK(rlog_first(l) == m->snap + 1 && rlog_last(l) == m->snap + m->n);
  CHECK(rlog_term(l, m->snap) == m->snap_term);
  CHECK(rlog_term(l, m->snap + m->n + 1) == 0);
  for (size_t k = 0; k < m->n; k++) {
    uint64_t tag;
    rlog_view(l, m->snap + 1 + k, &e);
    memcpy(&tag, e.data, sizeof(tag));
    if (e.term != m->term[k] || e.len != sizeof(tag) || tag != m->tag[k]) {
      CHECK(!"entry differs from the model");
      return;
    }
  }
}

static void step(rlog *l, model *m, const rmem *mem, uint64_t *next_tag) {
  int op = rand() % 100;
  if (op < 60 && m->n < MAXN) { /* append a run */
    uint64_t term = m->n ? m->term[m->n - 1] : m->snap_term;
    term += (uint64_t)(rand() % 8 == 0);
    for (int r = rand() % 40; r >= 0 && m->n < MAXN; r--) {
      uint64_t tag = (*next_tag)++;
      CHECK(rlog_append(l, term, 0, rlog_blob_new(mem, &tag, sizeof(tag))) ==
            RAFT_OK);
      m->term[m->n] = term;
      m->tag[m->n++] = tag;
    }
  } else if (op < 75 && m->n > 0) { /* truncate a tail */
    size_t keep = (size_t)rand() % m->n;
    rlog_truncate(l, m->snap + 1 + keep);
    m->n = keep;
  } else if (op < 97 && m->n > 0) { /* compact a prefix */
    size_t drop = 1 + (size_t)rand() % m->n;
    rlog_compact(l, m->snap + drop);
    m->snap_term = m->term[drop - 1];
    m->snap += drop;
    memmove(m->term, m->term + drop, (m->n - drop) * sizeof(*m->term));
    memmove(m->tag, m->tag + drop, (m->n - drop) * sizeof(*m->tag));
    m->n -= drop;
  } else { /* a snapshot replaces it all */
    m->snap += 1 + (uint64_t)(rand() % 100);
    m->snap_term += (uint64_t)(rand() % 2);
    rlog_reset(l, m->snap, m->snap_term);
    m->n = 0;
  }
}

int main(void) {
  const char *env = getenv("RAFTING_SEED");
  unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
  static model m;
  rmem mem = {counting, NULL};
  rlog l;
  uint64_t next_tag = 1;
  printf("test_rlog: seed %u (RAFTING_SEED=%u repeats)\n", seed, seed);
  srand(seed);
  for (int run = 0; run < 20; run++) {
    memset(&m, 0, sizeof(m));
    rlog_init(&l, &mem);
    for (int i = 0; i < 2000; i++) {
      step(&l, &m, &mem, &next_tag);
      check_same(&l, &m);
    }
    rlog_free(&l);
    CHECK(live == 0);
  }
  return check_summary("test_rlog");
}
