/*
** test_wal.c -- the WAL driven the way the node drives it, from C: saves
** pipelined and submitted from inside done callbacks (order, group commit),
** close() while a write is in flight or from inside a done callback (no
** done after close, nothing leaked -- run under ASan), and a larger log
** across rollovers and a reopen; a segment of another format version is
** refused by name.  The format and recovery cases live in
** spec/storage/wal_spec.lua.  Exits non-zero and names every failed check.
*/
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <uv.h>

#include "rafting/bytes.h"
#include "rafting/wal.h"
#include "storage/wal_internal.h"

#include "check.h"

static char root[64];

static void quiet(void *ud, int level, const char *msg) {
  (void)ud; (void)level; (void)msg;
}

static rf_storage *open_wal(uv_loop_t *loop, const char *name,
                            uint64_t seg_bytes) {
  char dir[128], err[512];
  rf_wal_opts o;
  rf_storage *s;
  rf_wal_opts_default(&o);
  o.log = quiet;
  if (seg_bytes) o.segment_bytes = seg_bytes;
  snprintf(dir, sizeof(dir), "%s/%s", root, name);
  s = rf_storage_wal(loop, dir, &o, err, sizeof(err));
  if (s == NULL) fprintf(stderr, "open %s: %s\n", dir, err);
  return s;
}

/* A stand-in for the node: batch i saves entry i (and a hard state). */
typedef struct driver {
  rf_storage *s;
  int next;        /* next batch to submit */
  int last;        /* batches to submit in all */
  int done_upto;   /* batches completed, in order */
  int bad_order, bad_status;
  int close_after; /* close the storage from inside this batch's done */
  int calls_after_close;
  int closed;
  uint8_t data[64];
} driver;

typedef struct ticket { driver *d; int i; } ticket;
static ticket tickets[2000];

static void on_done(void *ud, int status);

static void submit(driver *d) {
  int i = d->next++;
  raft_entry e = {1, (uint64_t)i, 0, (size_t)(i % 64), d->data};
  raft_hard_state hs = {1, 1, (uint64_t)(i - 1)};
  tickets[i] = (ticket){d, i};
  CHECK(d->s->ops->save(d->s, &hs, &e, 1, 1, on_done, &tickets[i]) == 0);
}

static void on_done(void *ud, int status) {
  ticket *t = ud;
  driver *d = t->d;
  if (d->closed) { d->calls_after_close++; return; }
  if (status != 0) d->bad_status++;
  if (t->i != d->done_upto + 1) d->bad_order++;
  d->done_upto = t->i;
  if (t->i == d->close_after) {
    d->s->ops->close(d->s);
    d->closed = 1;
    return;
  }
  /* like the node: the next ready goes out from the done callback, and
  ** a couple more right behind it (pipelining) */
  for (int k = 0; k < 3 && d->next <= d->last; k++) submit(d);
}

static void test_pipelined(void) {
  uv_loop_t loop;
  driver d = {0};
  rf_wal_info in;
  uv_loop_init(&loop);
  d.s = open_wal(&loop, "pipe", 4096);
  if (d.s == NULL) { failures++; return; }
  for (int i = 0; i < 64; i++) d.data[i] = (uint8_t)(i * 7);
  d.next = 1;
  d.last = 1500;
  for (int k = 0; k < 4; k++) submit(&d);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(d.done_upto == 1500);
  CHECK(d.bad_order == 0);
  CHECK(d.bad_status == 0);
  rf_wal_info_get(d.s, &in);
  CHECK(in.saves == 1500);
  CHECK(in.last_index == 1500);
  CHECK(d.s->last_index == 1500);
  CHECK(in.syncs < 1500); /* group commit shared some syncs */
  CHECK(in.segments > 10);
  printf("pipelined: 1500 saves, %llu writes, %llu syncs, %llu segments\n",
         (unsigned long long)in.writes, (unsigned long long)in.syncs,
         (unsigned long long)in.segments);
  d.s->ops->close(d.s);
  uv_run(&loop, UV_RUN_DEFAULT);

  /* reopen: every acknowledged entry, with its data */
  d.s = open_wal(&loop, "pipe", 4096);
  if (d.s != NULL) {
    raft_hard_state hs;
    const raft_entry *e;
    size_t n;
    CHECK(d.s->ops->load(d.s, &hs, &e, &n) == 0);
    CHECK(n == 1500);
    CHECK(hs.commit == 1499);
    for (size_t i = 0; i < n; i++) {
      if (e[i].index != i + 1 || e[i].len != (i + 1) % 64 ||
          (e[i].len && memcmp(e[i].data, d.data, e[i].len) != 0)) {
        CHECK(!"entry differs");
        break;
      }
    }
    d.s->ops->close(d.s);
  }
  CHECK(uv_loop_close(&loop) == 0);
}

static void test_close_in_done(void) {
  uv_loop_t loop;
  driver d = {0};
  uv_loop_init(&loop);
  d.s = open_wal(&loop, "closedone", 0);
  if (d.s == NULL) { failures++; return; }
  d.next = 1;
  d.last = 100;
  d.close_after = 7;
  for (int k = 0; k < 4; k++) submit(&d);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(d.closed);
  CHECK(d.done_upto == 7);
  CHECK(d.calls_after_close == 0);
  CHECK(uv_loop_close(&loop) == 0);
}

static void test_close_busy(void) {
  uv_loop_t loop;
  driver d = {0};
  uv_loop_init(&loop);
  d.s = open_wal(&loop, "closebusy", 0);
  if (d.s == NULL) { failures++; return; }
  d.next = 1;
  d.last = 10;
  for (int k = 0; k < 10; k++) submit(&d); /* one with the worker, 9 queued */
  d.s->ops->close(d.s);
  d.closed = 1;
  uv_run(&loop, UV_RUN_DEFAULT); /* the running write finishes; no done */
  CHECK(d.calls_after_close == 0);
  /* whatever reached the disk is a clean prefix */
  d.s = open_wal(&loop, "closebusy", 0);
  CHECK(d.s != NULL);
  if (d.s != NULL) {
    raft_hard_state hs;
    const raft_entry *e;
    size_t n;
    CHECK(d.s->ops->load(d.s, &hs, &e, &n) == 0);
    CHECK(n <= 10);
    for (size_t i = 0; i < n; i++) CHECK(e[i].index == i + 1);
    d.s->ops->close(d.s);
  }
  CHECK(uv_loop_close(&loop) == 0);
}

static void count_done(void *ud, int status) {
  if (status == 0) ++*(int *)ud;
}

static int compacted;
static void on_compact(void *ud, int status) {
  (void)ud;
  compacted = status == 0 ? 1 : -1;
}

static void test_empty_and_compact(void) {
  uv_loop_t loop;
  driver d = {0};
  int calls = 0;
  rf_wal_info in;
  uv_loop_init(&loop);
  d.s = open_wal(&loop, "misc", 2048);
  if (d.s == NULL) { failures++; return; }
  d.next = 1;
  d.last = 200;
  submit(&d);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(d.done_upto == 200);
  /* a save with nothing to write completes at once when nothing is ahead */
  CHECK(d.s->ops->save(d.s, NULL, NULL, 0, 1, count_done, &calls) == 0);
  CHECK(calls == 1);
  CHECK(rf_wal_compact(d.s, 150, 1, on_compact, NULL) == 0);
  CHECK(d.s->ops->save(d.s, NULL, NULL, 0, 1, count_done, &calls) == 0);
  CHECK(calls == 1); /* now behind the compaction: in order */
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(compacted == 1);
  CHECK(calls == 2);
  rf_wal_info_get(d.s, &in);
  CHECK(in.first_index == 151);
  CHECK(in.snap_index == 150);
  CHECK(rf_storage_is_wal(d.s));
  CHECK(rf_wal_compact(d.s, 100, 1, on_compact, NULL) < 0);
  d.s->ops->close(d.s);
  CHECK(uv_loop_close(&loop) == 0);
}

/* Rewrite the format version of every segment under root/name/wal. */
static int set_version(const char *name, uint32_t v) {
  char dir[128], path[128 + 1 + sizeof(((struct dirent *)0)->d_name)];
  uint8_t b[4];
  struct dirent *e;
  DIR *d;
  int n = 0;
  snprintf(dir, sizeof(dir), "%s/%s/%s", root, name, WAL_SUBDIR);
  if ((d = opendir(dir)) == NULL) return 0;
  while ((e = readdir(d)) != NULL) {
    int fd;
    if (strlen(e->d_name) != WAL_NAME_LEN) continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    if ((fd = open(path, O_WRONLY)) < 0) continue;
    rf_put_le32(b, v);
    n += pwrite(fd, b, 4, WAL_VERSION_AT) == 4;
    close(fd);
  }
  closedir(d);
  return n;
}

/* Another format version is named and refused, never replayed. */
static void test_version(void) {
  uv_loop_t loop;
  char dir[128], err[512];
  rf_wal_opts o;
  rf_storage *s;
  uv_loop_init(&loop);
  s = open_wal(&loop, "version", 0);
  if (s == NULL) { failures++; return; }
  s->ops->close(s);
  CHECK(set_version("version", WAL_VERSION + 1) == 1);
  rf_wal_opts_default(&o);
  o.log = quiet;
  snprintf(dir, sizeof(dir), "%s/version", root);
  err[0] = '\0';
  s = rf_storage_wal(&loop, dir, &o, err, sizeof(err));
  CHECK(s == NULL);
  if (s) s->ops->close(s);
  CHECK(strstr(err, "unsupported format version 2 in ") != NULL);
  CHECK(strstr(err, "/version/wal/") != NULL);
  CHECK(set_version("version", WAL_VERSION) == 1); /* and back: readable */
  s = open_wal(&loop, "version", 0);
  CHECK(s != NULL);
  if (s) s->ops->close(s);
  CHECK(uv_loop_close(&loop) == 0);
}

int main(void) {
  if (check_tmpdir(root, sizeof(root), "test_wal") != 0) return 1;
  test_version();
  test_pipelined();
  test_close_in_done();
  test_close_busy();
  test_empty_and_compact();
  check_rmtree(root);
  return check_summary("test_wal");
}
