/*
** store.h -- the replicated state: an ordered, binary-safe key/value store.
**
** Keys and values are arbitrary bytes (NULs included).  Keys are ordered by
** memcmp over the common length, then shorter first, so every key with a
** given prefix sits in one contiguous run that starts at seek(prefix), and
** iteration from the first key is the same on every replica: it is the
** order snapshots are written in.  A red-black tree (libbsd's
** <bsd/sys/tree.h>) holds the entries.
**
** Memory: the store owns copies of every key and value.  Pointers handed
** out (rf_store_get, rf_store_kv) stay valid until the next change to that
** key, or to the store for iterators.
**
** Write batches: a store can also hold tombstones (rf_store_tombstone), so
** a transaction's writes are buffered in a second store and applied with
** rf_store_merge, which moves nodes and never allocates: a batch is
** applied whole or not at all.  Tombstones are not counted by count/bytes.
*/
#ifndef RAFTING_STORE_H
#define RAFTING_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct rf_store rf_store;

typedef struct rf_store_kv {
  const void *key, *val; /* val is never NULL (empty values point to "") */
  size_t klen, vlen;
  int dead;              /* a tombstone (write batches only) */
} rf_store_kv;

/* A position in the store; any change to the store invalidates it. */
typedef struct rf_store_iter {
  void *node;
} rf_store_iter;

rf_store *rf_store_new(void);       /* NULL when out of memory */
void rf_store_free(rf_store *s);    /* NULL is fine */
void rf_store_clear(rf_store *s);   /* drop every entry and tombstone */

/* 1 and the value when the key is live, else 0 (absent or tombstone). */
int rf_store_get(const rf_store *s, const void *key, size_t klen,
                 const void **val, size_t *vlen);
/* Insert or replace (a tombstone becomes live).  0, or -1 out of memory
** (the store is unchanged). */
int rf_store_put(rf_store *s, const void *key, size_t klen,
                 const void *val, size_t vlen);
/* 1 if a live key was removed, 0 if there was none. */
int rf_store_delete(rf_store *s, const void *key, size_t klen);
/* Record a deletion in a write batch.  0, or -1 out of memory. */
int rf_store_tombstone(rf_store *s, const void *key, size_t klen);
/* Apply batch src to dst (puts replace, tombstones delete) and leave src
** empty.  Moves nodes; cannot fail. */
void rf_store_merge(rf_store *dst, rf_store *src);

/* Bulk load of an empty store from n entries in strictly ascending key
** order: next(ud, i, kv) fills entry i (kv->dead ignored) or returns a
** negative code, which rf_store_load returns.  One allocation per entry
** (node, key and value together) and an O(n) bottom-up tree instead of n
** rebalancing inserts.  0; -1 out of memory; -2 when the store is not empty
** or a key is not above the one before.  On failure the store is empty. */
typedef int (*rf_store_src)(void *ud, size_t i, rf_store_kv *kv);
int rf_store_load(rf_store *s, size_t n, rf_store_src next, void *ud);

/* Black height of the tree, or -1 if it breaks a red-black or order
** invariant (for tests). */
int rf_store_check(const rf_store *s);

/* Exchange the contents of a and b (O(1)). */
void rf_store_swap(rf_store *a, rf_store *b);

size_t rf_store_count(const rf_store *s);   /* live keys */
uint64_t rf_store_bytes(const rf_store *s); /* sum of klen + vlen, live */

/* Position it at the first entry >= key (key NULL: the first entry). */
void rf_store_seek(const rf_store *s, rf_store_iter *it,
                   const void *key, size_t klen);
/* 1 with the entry at it, moving it on; 0 at the end.  Tombstones are
** returned too (kv->dead) so batches can be merged with a store. */
int rf_store_next(rf_store_iter *it, rf_store_kv *kv);

/* Order of two keys: <0, 0, >0. */
int rf_store_keycmp(const void *a, size_t alen, const void *b, size_t blen);

/* 64-bit FNV-1a over every live (klen, key, vlen, value) in order: equal
** stores have equal digests.  For comparing replicas, not cryptographic. */
uint64_t rf_store_digest(const rf_store *s);

#endif
