/*
** test_watchlog.c -- the bounded history GET /watch answers from: order,
** lookup by index, eviction of whole entries by count and by bytes (the
** floor rising with them), a lone oversized entry kept, reset, and the
** ring growing past its first capacity while wrapped.
*/
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "http/watchlog.h"

static int add(rf_watchlog *wl, uint64_t index, const char *k, const char *v) {
  return rf_watchlog_add(wl, index, k, strlen(k), v, v ? strlen(v) : 0, v == NULL);
}

static void test_order_and_find(void) {
  rf_watchlog *wl = rf_watchlog_new(100, 1 << 20, 4);
  const rf_wev *e;
  CHECK(rf_watchlog_floor(wl) == 4 && rf_watchlog_last(wl) == 4);
  CHECK(add(wl, 5, "a", "1") == 0);
  rf_watchlog_seal(wl, 5);
  CHECK(add(wl, 7, "b", "2") == 0 && add(wl, 7, "c", NULL) == 0);
  rf_watchlog_seal(wl, 7);
  CHECK(rf_watchlog_count(wl) == 3 && rf_watchlog_last(wl) == 7);
  CHECK(rf_watchlog_find(wl, 0) == 0 && rf_watchlog_find(wl, 4) == 0);
  CHECK(rf_watchlog_find(wl, 5) == 1 && rf_watchlog_find(wl, 6) == 1);
  CHECK(rf_watchlog_find(wl, 7) == 3 && rf_watchlog_find(wl, 99) == 3);
  e = rf_watchlog_at(wl, 2);
  CHECK(e && e->index == 7 && e->klen == 1 && e->key[0] == 'c' && e->val == NULL);
  e = rf_watchlog_at(wl, 1);
  CHECK(e && e->vlen == 1 && memcmp(e->val, "2", 1) == 0);
  CHECK(rf_watchlog_at(wl, 3) == NULL);
  rf_watchlog_reset(wl, 9);
  CHECK(rf_watchlog_count(wl) == 0 && rf_watchlog_floor(wl) == 9 &&
        rf_watchlog_bytes(wl) == 0 && rf_watchlog_last(wl) == 9);
  rf_watchlog_free(wl);
}

/* At most 3 entries: a multi-change entry leaves whole, raising the floor. */
static void test_evict_entries(void) {
  rf_watchlog *wl = rf_watchlog_new(3, 1 << 20, 0);
  char k[16];
  for (uint64_t i = 1; i <= 10; i++) {
    for (int j = 0; j < (int)(i % 3) + 1; j++) {
      snprintf(k, sizeof(k), "k%d", j);
      CHECK(add(wl, i, k, "v") == 0);
    }
    rf_watchlog_seal(wl, i);
  }
  CHECK(rf_watchlog_floor(wl) == 7);
  CHECK(rf_watchlog_at(wl, 0)->index == 8);
  CHECK(rf_watchlog_count(wl) == 3 + 1 + 2); /* entries 8, 9 and 10 */
  rf_watchlog_free(wl);
}

/* By bytes: old entries go; one entry over the bound alone is kept. */
static void test_evict_bytes(void) {
  char big[4096], val[101];
  rf_watchlog *wl = rf_watchlog_new(1000, 3000, 0);
  memset(big, 'x', sizeof(big) - 1);
  memset(val, 'v', sizeof(val) - 1);
  val[sizeof(val) - 1] = '\0';
  big[sizeof(big) - 1] = '\0';
  for (uint64_t i = 1; i <= 20; i++) {
    CHECK(add(wl, i, "key", val) == 0);
    rf_watchlog_seal(wl, i);
  }
  CHECK(rf_watchlog_bytes(wl) <= 3000 && rf_watchlog_count(wl) > 10 &&
        rf_watchlog_count(wl) < 20);
  CHECK(rf_watchlog_floor(wl) == 20 - rf_watchlog_count(wl));
  CHECK(add(wl, 21, "big", big) == 0);
  rf_watchlog_seal(wl, 21);
  CHECK(rf_watchlog_count(wl) == 1 && rf_watchlog_floor(wl) == 20);
  CHECK(rf_watchlog_at(wl, 0)->vlen == sizeof(big) - 1);
  rf_watchlog_free(wl);
}

/* The ring wraps (evictions move head), then grows: order survives. */
static void test_wrap_and_grow(void) {
  rf_watchlog *wl = rf_watchlog_new(50, 1 << 30, 0);
  uint64_t i;
  for (i = 1; i <= 200; i++) { /* head moves around the 64 slots */
    CHECK(add(wl, i, "k", "v") == 0);
    rf_watchlog_seal(wl, i);
  }
  CHECK(rf_watchlog_count(wl) == 50 && rf_watchlog_floor(wl) == 150);
  for (int j = 0; j < 100; j++) /* one entry of 100 changes: must grow */
    CHECK(add(wl, i, "m", "v") == 0);
  rf_watchlog_seal(wl, i);
  CHECK(rf_watchlog_count(wl) == 149 && rf_watchlog_floor(wl) == 151);
  for (size_t p = 1; p < rf_watchlog_count(wl); p++)
    CHECK(rf_watchlog_at(wl, p - 1)->index <= rf_watchlog_at(wl, p)->index);
  CHECK(rf_watchlog_find(wl, 200) == 49);
  rf_watchlog_free(wl);
}

int main(void) {
  test_order_and_find();
  test_evict_entries();
  test_evict_bytes();
  test_wrap_and_grow();
  return check_summary("test_watchlog");
}
