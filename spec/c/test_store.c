/*
** test_store.c -- rf_store_load: a bulk-loaded store equals one built by
** inserts, stays a valid red-black tree under later puts, tombstones and
** deletes (which must free inline values correctly: run under ASan), and
** rejects unsorted input or a non-empty store leaving the store empty.
** Random keys; the seed is printed (RAFTING_SEED=N repeats a run).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rafting/store.h"

#include "../spec/c/check.h"

typedef struct {
  char (*k)[24];
  size_t *kl;
  size_t n;
  int fail_at; /* source error at this index, or -1 */
} src;

static int next(void *ud, size_t i, rf_store_kv *kv) {
  src *s = ud;
  if ((int)i == s->fail_at) return -7;
  kv->key = s->k[i];
  kv->klen = s->kl[i];
  kv->val = s->k[i];
  kv->vlen = i % 5 == 0 ? 0 : s->kl[i]; /* some empty values */
  return 0;
}

static int cmpkey(const void *a, const void *b) {
  return rf_store_keycmp(a, strlen(a), b, strlen(b));
}

/* n distinct random keys, sorted. */
static src make_keys(size_t n) {
  src s = {calloc(n, 24), calloc(n, sizeof(size_t)), 0, -1};
  for (size_t i = 0; i < n; i++)
    snprintf(s.k[i], 24, "k%08x%04x", (unsigned)rand(), (unsigned)(i & 0xffff));
  qsort(s.k, n, 24, cmpkey);
  for (size_t i = 0; i < n; i++) s.kl[i] = strlen(s.k[i]);
  s.n = n;
  return s;
}

static void same_by_inserts(const rf_store *bulk, src *s) {
  rf_store *ins = rf_store_new();
  rf_store_kv kv = {0};
  for (size_t i = s->n; i-- > 0;) { /* reverse order: real rebalancing */
    next(s, i, &kv);
    CHECK(rf_store_put(ins, kv.key, kv.klen, kv.val, kv.vlen) == 0);
  }
  CHECK(rf_store_count(ins) == rf_store_count(bulk));
  CHECK(rf_store_bytes(ins) == rf_store_bytes(bulk));
  CHECK(rf_store_digest(ins) == rf_store_digest(bulk));
  rf_store_free(ins);
}

static void test_size(size_t n) {
  src s = make_keys(n);
  rf_store *st = rf_store_new();
  const void *v;
  size_t vl;
  CHECK(rf_store_load(st, n, next, &s) == 0);
  CHECK(rf_store_check(st) >= 0);
  same_by_inserts(st, &s);
  /* churn: overwrite, tombstone, delete, insert new; check as we go */
  for (size_t j = 0; j < 3 * n + 10; j++) {
    size_t i = n ? (size_t)rand() % n : 0;
    char nk[24];
    switch (rand() % 4) {
    case 0:
      if (n) rf_store_put(st, s.k[i], s.kl[i], "new", 3);
      break;
    case 1:
      if (n) rf_store_delete(st, s.k[i], s.kl[i]);
      break;
    case 2:
      if (n) CHECK(rf_store_tombstone(st, s.k[i], s.kl[i]) == 0);
      break;
    default:
      snprintf(nk, sizeof(nk), "n%d", rand());
      CHECK(rf_store_put(st, nk, strlen(nk), nk, strlen(nk)) == 0);
    }
    if (j % 97 == 0) CHECK(rf_store_check(st) >= 0);
  }
  CHECK(rf_store_check(st) >= 0);
  if (n > 1) {
    rf_store_put(st, s.k[1], s.kl[1], "x", 1);
    CHECK(rf_store_get(st, s.k[1], s.kl[1], &v, &vl) == 1 && vl == 1 &&
          memcmp(v, "x", 1) == 0);
  }
  rf_store_free(st);
  free(s.k);
  free(s.kl);
}

static void test_errors(void) {
  src s = make_keys(50);
  rf_store *st = rf_store_new();
  char tmp[24];
  s.fail_at = 30; /* the source's error is returned, store left empty */
  CHECK(rf_store_load(st, s.n, next, &s) == -7);
  CHECK(rf_store_count(st) == 0 && rf_store_check(st) == 1);
  s.fail_at = -1;
  memcpy(tmp, s.k[10], 24); /* out of order */
  memcpy(s.k[10], s.k[11], 24);
  memcpy(s.k[11], tmp, 24);
  size_t t = s.kl[10]; s.kl[10] = s.kl[11]; s.kl[11] = t;
  CHECK(rf_store_load(st, s.n, next, &s) == -2);
  CHECK(rf_store_count(st) == 0);
  memcpy(s.k[11], s.k[10], 24); /* duplicate */
  s.kl[11] = s.kl[10];
  CHECK(rf_store_load(st, s.n, next, &s) == -2);
  CHECK(rf_store_put(st, "a", 1, "b", 1) == 0); /* not empty */
  CHECK(rf_store_load(st, 5, next, &s) == -2);
  CHECK(rf_store_count(st) == 1);
  rf_store_free(st);
  free(s.k);
  free(s.kl);
}

/* Values that grow past a node's room (a block of their own), shrink back
** into it, become empty or tombstones, against a model: every get,
** the iteration, count and bytes agree (and ASan sees no leak). */
static void test_values(void) {
  enum { K = 64, ROUNDS = 20000 };
  static unsigned char val[K][300], buf[300];
  size_t len[K], bytes = 0, count = 0;
  int live[K] = {0};
  rf_store *st = rf_store_new();
  rf_store_iter it;
  rf_store_kv kv;
  char key[16];
  const void *v;
  size_t vl;
  for (int r = 0; r < ROUNDS; r++) {
    int i = rand() % K, op = rand() % 8;
    size_t n = (size_t)(rand() % 4 == 0 ? rand() % 300 : rand() % 12);
    snprintf(key, sizeof(key), "k%02d", i);
    if (op < 5) { /* put */
      for (size_t b = 0; b < n; b++) buf[b] = (unsigned char)rand();
      CHECK(rf_store_put(st, key, 3, buf, n) == 0);
      if (live[i]) bytes -= 3 + len[i]; else count++;
      memcpy(val[i], buf, n);
      len[i] = n;
      live[i] = 1;
      bytes += 3 + n;
    } else if (op < 7) {
      CHECK(rf_store_tombstone(st, key, 3) == 0);
      if (live[i]) { bytes -= 3 + len[i]; count--; }
      live[i] = 0;
    } else {
      CHECK(rf_store_delete(st, key, 3) == live[i]);
      if (live[i]) { bytes -= 3 + len[i]; count--; }
      live[i] = 0;
    }
    if (r % 1000 == 0 || r == ROUNDS - 1) {
      CHECK(rf_store_count(st) == count && rf_store_bytes(st) == bytes);
      for (int j = 0; j < K; j++) {
        snprintf(key, sizeof(key), "k%02d", j);
        int got = rf_store_get(st, key, 3, &v, &vl);
        CHECK(got == live[j]);
        if (got) CHECK(vl == len[j] && memcmp(v, val[j], vl) == 0);
      }
      rf_store_seek(st, &it, NULL, 0);
      while (rf_store_next(&it, &kv)) {
        const char *kc = kv.key; /* "kNN", not NUL-terminated */
        int j = (kc[1] - '0') * 10 + (kc[2] - '0');
        CHECK(kv.dead == !live[j]);
        if (!kv.dead)
          CHECK(kv.vlen == len[j] && memcmp(kv.val, val[j], kv.vlen) == 0);
      }
      CHECK(rf_store_check(st) >= 0);
    }
  }
  rf_store_seek(st, &it, "k3", 2); /* the first key at or above */
  CHECK(rf_store_next(&it, &kv) && memcmp(kv.key, "k3", 2) >= 0);
  rf_store_free(st);
}

int main(void) {
  const char *env = getenv("RAFTING_SEED");
  unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
  size_t sizes[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 17, 100, 1000, 4097};
  printf("test_store: seed %u (RAFTING_SEED=%u repeats)\n", seed, seed);
  srand(seed);
  for (size_t i = 0; i < sizeof(sizes) / sizeof(*sizes); i++)
    test_size(sizes[i]);
  test_errors();
  test_values();
  return check_summary("test_store");
}
