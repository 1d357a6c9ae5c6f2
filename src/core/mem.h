/*
** mem.h -- the core's allocator: raft_config.realloc, or the C library.
**
** One function like lua_Alloc: fn(ud, ptr, size) resizes ptr to size,
** size 0 frees (and returns NULL); NULL on failure leaves ptr alone.  The
** log's blobs keep a pointer to the rmem that made them, so whoever drops
** the last reference frees them the same way.
*/
#ifndef RAFTING_CORE_MEM_H
#define RAFTING_CORE_MEM_H

#include <stdlib.h>
#include <string.h>

typedef void *(*rmem_fn)(void *ud, void *ptr, size_t size);

typedef struct rmem {
  rmem_fn fn; /* NULL: malloc/realloc/free */
  void *ud;
} rmem;

/* Resize (never free: size 0 is taken as 1, so a NULL is only failure). */
static inline void *rmem_realloc(const rmem *m, void *p, size_t size) {
  if (size == 0) size = 1;
  if (m->fn != NULL) return m->fn(m->ud, p, size);
  return realloc(p, size);
}

static inline void *rmem_alloc(const rmem *m, size_t size) {
  return rmem_realloc(m, NULL, size);
}

static inline void *rmem_calloc(const rmem *m, size_t n, size_t size) {
  void *p;
  if (size && n > (size_t)-1 / size) return NULL;
  p = rmem_alloc(m, n * size);
  if (p != NULL) memset(p, 0, n * size);
  return p;
}

static inline void rmem_free(const rmem *m, void *p) {
  if (p == NULL) return;
  if (m->fn != NULL) m->fn(m->ud, p, 0);
  else free(p);
}

#endif
