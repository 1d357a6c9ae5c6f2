/*
** test_members.c -- the address book (src/members.c): set and clash rules,
** the encoding that rides in CONF entries and snapshots (round trip, every
** truncation and random corruption refused or decoded sanely), and the
** DIR/members file (round trip, atomic replace, corrupt files refused).
** Prints its seed.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rafting/bytes.h"
#include "rafting/members.h"

#include "check.h"

static rf_member mk(uint64_t id, const char *peer, const char *http) {
  rf_member m;
  char why[128];
  if (rf_member_parse(&m, id, peer, http, why, sizeof(why)) < 0) {
    fprintf(stderr, "parse %s %s: %s\n", peer, http, why);
    exit(1);
  }
  return m;
}

static void test_book(void) {
  rf_members b;
  rf_member m = mk(1, "127.0.0.1:7001", "127.0.0.1:8001"), bad;
  char why[128];
  rf_members_init(&b);
  CHECK(rf_members_set(&b, &m) == 1);
  CHECK(rf_members_set(&b, &m) == 0); /* the same: no change */
  m = mk(1, "127.0.0.1:7011", "127.0.0.1:8001");
  CHECK(rf_members_set(&b, &m) == 1); /* newest wins */
  CHECK(rf_members_get(&b, 1)->peer_port == 7011);
  m = mk(2, "[::1]:7002", "localhost:8002");
  CHECK(rf_members_set(&b, &m) == 1);
  CHECK(b.n == 2 && rf_members_get(&b, 3) == NULL);
  /* clash: another member's address, localhost being 127.0.0.1 */
  m = mk(3, "127.0.0.1:7003", "127.0.0.1:8002");
  CHECK(rf_members_clash(&b, &m) == 2);
  m = mk(3, "localhost:7011", "127.0.0.1:8003");
  CHECK(rf_members_clash(&b, &m) == 1);
  m = mk(1, "127.0.0.1:7011", "127.0.0.1:8001"); /* itself: no clash */
  CHECK(rf_members_clash(&b, &m) == RAFT_NONE);
  /* refused input */
  CHECK(rf_member_parse(&bad, 0, "127.0.0.1:1", "127.0.0.1:2", why,
                        sizeof(why)) == RF_EINVAL);
  CHECK(rf_member_parse(&bad, 4, "example.com:1", "127.0.0.1:2", why,
                        sizeof(why)) == RF_EINVAL);
  CHECK(strstr(why, "numeric") != NULL);
  CHECK(rf_member_parse(&bad, 4, "127.0.0.1:1", "127.0.0.1:0", why,
                        sizeof(why)) == RF_EINVAL);
  memset(&bad, 0, sizeof(bad));
  bad.id = 5;
  CHECK(rf_members_set(&b, &bad) == RF_EINVAL);
  rf_members_remove(&b, 1);
  CHECK(b.n == 1 && rf_members_get(&b, 1) == NULL && rf_members_get(&b, 2));
  for (uint64_t id = 10; b.n < RF_MEMBERS_MAX; id++) {
    char p[32];
    snprintf(p, sizeof(p), "10.0.0.1:%d", (int)id);
    m = mk(id, p, p);
    CHECK(rf_members_set(&b, &m) == 1);
  }
  /* full: the entry set longest ago makes room, bootstrap voters last,
  ** and setting an entry again (a CONF entry naming it) refreshes it */
  m = mk(9999, "10.0.0.2:1", "10.0.0.2:2");
  CHECK(rf_members_set(&b, &m) == 1);
  CHECK(b.n == RF_MEMBERS_MAX && rf_members_get(&b, 2) == NULL);
  CHECK(rf_members_get(&b, 9999) != NULL && rf_members_get(&b, 10) != NULL);
  b.boot[0] = 10;
  b.n_boot = 1;
  m = *rf_members_get(&b, 12);
  CHECK(rf_members_set(&b, &m) == 1); /* unchanged, but moved: fresh now */
  CHECK(rf_members_set(&b, &m) == 0); /* the newest already */
  m = mk(9998, "10.0.0.3:1", "10.0.0.3:2");
  CHECK(rf_members_set(&b, &m) == 1);
  CHECK(rf_members_get(&b, 10) != NULL && rf_members_get(&b, 11) == NULL);
  m = mk(9997, "10.0.0.4:1", "10.0.0.4:2");
  CHECK(rf_members_set(&b, &m) == 1);
  CHECK(rf_members_get(&b, 12) != NULL && rf_members_get(&b, 13) == NULL);
  CHECK(b.n == RF_MEMBERS_MAX);
}

static void test_encoding(uint64_t seed) {
  rf_members b, back;
  rf_member out[RF_MEMBERS_MAX], m;
  raft_conf conf = {3, 1, {1, 2, 3}, {4}};
  rf_buf enc;
  size_t n;
  rf_members_init(&b);
  m = mk(1, "127.0.0.1:7001", "127.0.0.1:8001"); rf_members_set(&b, &m);
  m = mk(2, "[fe80::1]:7002", "[::1]:65535"); rf_members_set(&b, &m);
  m = mk(4, "localhost:7004", "localhost:8004"); rf_members_set(&b, &m);
  m = mk(9, "127.0.0.9:7009", "127.0.0.9:8009"); rf_members_set(&b, &m);
  rf_buf_init(&enc);
  CHECK(rf_members_encode(&b, &conf, &enc) == 0);
  /* members of conf only (3 is unknown, 9 is no member) */
  CHECK(rf_members_decode((uint8_t *)enc.p, enc.n, out, RF_MEMBERS_MAX, &n) == 0);
  CHECK(n == 3 && out[0].id == 1 && out[1].id == 2 && out[2].id == 4);
  CHECK(strcmp(out[1].peer_host, "fe80::1") == 0 && out[1].http_port == 65535);
  CHECK(rf_members_decode((uint8_t *)enc.p, enc.n, out, 2, &n) == RF_EINVAL);
  rf_members_init(&back);
  CHECK(rf_members_merge(&back, (uint8_t *)enc.p, enc.n) == 3);
  CHECK(rf_members_merge(&back, (uint8_t *)enc.p, enc.n) == 0);
  CHECK(rf_members_get(&back, 4)->http_port == 8004);
  /* every truncation and an extra byte are refused, the book unchanged */
  for (size_t cut = 0; cut < enc.n; cut++)
    CHECK(rf_members_merge(&back, (uint8_t *)enc.p, cut) == RF_EINVAL);
  rf_buf_add(&enc, "x", 1);
  CHECK(rf_members_merge(&back, (uint8_t *)enc.p, enc.n) == RF_EINVAL);
  enc.n--;
  CHECK(back.n == 3);
  /* random corruption: refused, or decoded into valid members */
  for (int round = 0; round < 20000; round++) {
    uint8_t copy[512];
    size_t k;
    memcpy(copy, enc.p, enc.n);
    for (int f = 0; f < 1 + (int)(rf_splitmix64(&seed) % 3); f++)
      copy[rf_splitmix64(&seed) % enc.n] = (uint8_t)rf_splitmix64(&seed);
    if (rf_members_decode(copy, enc.n, out, RF_MEMBERS_MAX, &k) == 0)
      for (size_t i = 0; i < k; i++)
        CHECK(out[i].id != 0 && out[i].peer_port > 0 && out[i].http_port > 0);
  }
  /* an empty configuration encodes as no member */
  rf_buf_reset(&enc);
  memset(&conf, 0, sizeof(conf));
  CHECK(rf_members_encode(&b, &conf, &enc) == 0 && enc.n == 2);
  rf_buf_free(&enc);
}

static void write_file(const char *dir, const char *text) {
  char path[512];
  FILE *f;
  snprintf(path, sizeof(path), "%s/members", dir);
  f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

static void test_file(void) {
  char dir[256], err[512];
  rf_members b, got;
  rf_member m;
  if (check_tmpdir(dir, sizeof(dir), "members") < 0) exit(1);
  CHECK(rf_members_load(&got, dir, err, sizeof(err)) == RF_ENONE);
  rf_members_init(&b);
  b.n_boot = 3;
  b.boot[0] = 1; b.boot[1] = 2; b.boot[2] = 3;
  m = mk(1, "127.0.0.1:7001", "127.0.0.1:8001"); rf_members_set(&b, &m);
  m = mk(7, "[::1]:7007", "[::1]:8007"); rf_members_set(&b, &m);
  CHECK(rf_members_store(&b, dir, err, sizeof(err)) == 0);
  CHECK(rf_members_load(&got, dir, err, sizeof(err)) == 0);
  CHECK(got.n_boot == 3 && got.boot[2] == 3 && got.n == 2);
  CHECK(strcmp(rf_members_get(&got, 7)->peer_host, "::1") == 0);
  /* replaced whole: a joined node has no bootstrap voters */
  b.n_boot = 0;
  rf_members_remove(&b, 1);
  CHECK(rf_members_store(&b, dir, err, sizeof(err)) == 0);
  CHECK(rf_members_load(&got, dir, err, sizeof(err)) == 0);
  CHECK(got.n_boot == 0 && got.n == 1 && rf_members_get(&got, 1) == NULL);
  /* corrupt files: named, with the line */
  write_file(dir, "rafting-members 1\nbootstrap 1 x\n");
  CHECK(rf_members_load(&got, dir, err, sizeof(err)) == RF_ECORRUPT);
  CHECK(strstr(err, "members:2") != NULL);
  write_file(dir, "rafting-members 1\nmember 4 127.0.0.1:1\n");
  CHECK(rf_members_load(&got, dir, err, sizeof(err)) == RF_ECORRUPT);
  write_file(dir, "rafting-members 1\nmember 4 127.0.0.1:1 127.0.0.1:2");
  CHECK(rf_members_load(&got, dir, err, sizeof(err)) == RF_ECORRUPT);
  CHECK(strstr(err, "cut short") != NULL);
  write_file(dir, "something else\n");
  CHECK(rf_members_load(&got, dir, err, sizeof(err)) == RF_ECORRUPT);
  CHECK(got.n == 0);
  check_rmtree(dir);
}

int main(void) {
  uint64_t seed = (uint64_t)time(NULL);
  const char *s = getenv("SEED");
  if (s) seed = strtoull(s, NULL, 10);
  printf("test_members: seed %llu (SEED=%llu to replay)\n",
         (unsigned long long)seed, (unsigned long long)seed);
  test_book();
  test_encoding(seed);
  test_file();
  return check_summary("test_members");
}
