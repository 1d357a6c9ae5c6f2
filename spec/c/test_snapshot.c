/*
** test_snapshot.c -- the snapshot store driven the way the node drives it,
** from C: a snapshot streamed from one store to another on the same loop,
** each chunk read from inside the previous read's callback and received
** from inside it (on disk and in memory); a save submitted from inside a
** done; close() while a save is in flight, from inside a callback, and with
** queued chunks (UV_ECANCELED, no callback after close's done, nothing
** leaked -- run under ASan); a snapshot of another format version is
** refused by name.  The format and the store's contract case by
** case live in spec/storage/snapshot_spec.lua.  Exits non-zero and names
** every failed check.
*/
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <uv.h>

#include "rafting/snapshot.h"

#include "check.h"

static char root[64];

static rf_store *make_store(int n, int seed) {
  rf_store *st = rf_store_new();
  char k[32], v[64];
  for (int i = 0; i < n; i++) {
    int kl = snprintf(k, sizeof(k), "key-%d-%06d", seed, i);
    int vl = snprintf(v, sizeof(v), "%d%c%0*d", i, 0, i % 40, seed);
    CHECK(rf_store_put(st, k, (size_t)kl, v, (size_t)vl) == 0);
  }
  return st;
}

/* Serialize st: the buffer (caller frees or hands to save) and meta. */
static char *serialize(rf_store *st, uint64_t index, rf_snap_meta *m,
                       size_t *len) {
  rf_buf b;
  rf_buf_init(&b);
  CHECK(rf_snap_serialize(st, index, 1, NULL, &b, m) == 0);
  return rf_buf_take(&b, len);
}

static rf_snapstore *open_store(uv_loop_t *loop, const char *name) {
  char dir[128], err[512];
  rf_snapstore *s;
  if (name) snprintf(dir, sizeof(dir), "%s/%s", root, name);
  s = rf_snapstore_open(loop, name ? dir : NULL, err, sizeof(err));
  if (s == NULL) fprintf(stderr, "open %s: %s\n", name ? dir : "-", err);
  return s;
}

/* ------------------------------------------------------------ transfer */

/* A sender and a receiver in one: read a chunk, receive it; from the
** chunk's done, read the next one; finish at the end. */
typedef struct xfer {
  rf_snapstore *from, *to;
  rf_snap_meta m;
  uint64_t off;
  size_t chunk;
  int reads, chunks, finished, status;
} xfer;

static void on_chunk(void *ud, int status);

static void on_read(void *ud, int status, const void *data, size_t len) {
  xfer *x = ud;
  x->reads++;
  if (status < 0 || len == 0) {
    x->status = status;
    return;
  }
  CHECK(rf_snapstore_recv_chunk(x->to, x->off, data, len, on_chunk, x) == 0);
  x->off += len;
}

static void on_finish(void *ud, int status) {
  xfer *x = ud;
  x->finished = 1;
  x->status = status;
}

static void on_chunk(void *ud, int status) {
  xfer *x = ud;
  x->chunks++;
  CHECK(status == 0);
  CHECK(rf_snapstore_recv_offset(x->to) == x->off);
  if (x->off == x->m.size)
    CHECK(rf_snapstore_recv_finish(x->to, on_finish, x) == 0);
  else
    CHECK(rf_snapstore_read(x->from, x->m.index, x->off, x->chunk, on_read,
                            x) == 0);
}

static void on_status(void *ud, int status) { *(int *)ud = status; }

static void closed(void *ud) { (*(int *)ud)++; }

static void test_transfer(const char *from_dir, const char *to_dir) {
  uv_loop_t loop;
  rf_store *st = make_store(5000, 1), *back = rf_store_new();
  rf_snapstore *a, *b;
  rf_snap_meta m;
  size_t len;
  char *buf = serialize(st, 77, &m, &len), err[512];
  xfer x;
  rf_buf out;
  int saved = 1, nclosed = 0;
  uv_loop_init(&loop);
  a = open_store(&loop, from_dir);
  b = open_store(&loop, to_dir);
  CHECK(a && b);
  CHECK(rf_snapstore_save(a, buf, len, &m, on_status, &saved) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(saved == 0);
  memset(&x, 0, sizeof(x));
  x.from = a;
  x.to = b;
  x.m = m;
  x.chunk = 1000;
  x.status = 1;
  CHECK(rf_snapstore_recv_begin(b, &m) == 0);
  CHECK(rf_snapstore_read(a, m.index, 0, x.chunk, on_read, &x) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(x.finished && x.status == 0);
  CHECK(x.chunks == (int)((m.size + x.chunk - 1) / x.chunk));
  rf_buf_init(&out);
  CHECK(rf_snapstore_load(b, &out, &m, err, sizeof(err)) == 0);
  CHECK(rf_snap_restore(out.p, out.n, back, NULL, err, sizeof(err)) == 0);
  CHECK(rf_store_digest(back) == rf_store_digest(st));
  rf_buf_free(&out);
  rf_snapstore_close(a, closed, &nclosed);
  rf_snapstore_close(b, closed, &nclosed);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(nclosed == 2);
  CHECK(uv_loop_close(&loop) == 0);
  rf_store_free(st);
  rf_store_free(back);
}

/* ------------------------------------------------------------ chains */

typedef struct chain {
  rf_snapstore *s;
  rf_store *st;
  int saves, last, status, after_close;
  int close_in; /* close from inside the done of this save */
  int *closed;
} chain;

static void chain_done(void *ud, int status) {
  chain *c = ud;
  rf_snap_meta m;
  size_t len;
  char *buf;
  if (c->closed && *c->closed) c->after_close++;
  c->status = status;
  if (status < 0) return;
  c->saves++;
  if (c->saves == c->close_in) {
    rf_snapstore_close(c->s, closed, c->closed);
    return;
  }
  if (c->saves == c->last) return;
  CHECK(!rf_snapstore_saving(c->s));
  buf = serialize(c->st, (uint64_t)c->saves + 1, &m, &len);
  CHECK(rf_snapstore_save(c->s, buf, len, &m, chain_done, c) == 0);
}

static void test_chain(const char *dir) {
  uv_loop_t loop;
  rf_snap_meta m;
  size_t len;
  int nclosed = 0;
  chain c = {0};
  char *buf;
  uv_loop_init(&loop);
  c.s = open_store(&loop, dir);
  c.st = make_store(100, 2);
  c.last = 6;
  c.close_in = 4;
  c.closed = &nclosed;
  buf = serialize(c.st, 1, &m, &len);
  CHECK(rf_snapstore_save(c.s, buf, len, &m, chain_done, &c) == 0);
  CHECK(rf_snapstore_saving(c.s));
  buf = serialize(c.st, 2, &m, &len); /* refused: the buffer is taken */
  CHECK(rf_snapstore_save(c.s, buf, len, &m, chain_done, &c) ==
        RF_SNAP_EBUSY);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(c.saves == 4 && c.status == 0);
  CHECK(nclosed == 1 && c.after_close == 0);
  CHECK(uv_loop_close(&loop) == 0);
  rf_store_free(c.st);
}

/* ------------------------------------------------------------ close */

typedef struct counts { int ok, canceled, other, after; int *closed; } counts;

static void count_done(void *ud, int status) {
  counts *k = ud;
  if (*k->closed) k->after++;
  if (status == 0) k->ok++;
  else if (status == UV_ECANCELED) k->canceled++;
  else k->other++;
}

static void test_close_pending(const char *dir) {
  uv_loop_t loop;
  rf_snapstore *s;
  rf_store *st = make_store(2000, 3);
  rf_snap_meta m, m2;
  size_t len, len2;
  char *buf = serialize(st, 10, &m, &len), *copy;
  int nclosed = 0;
  counts k = {0, 0, 0, 0, &nclosed};
  uv_loop_init(&loop);
  s = open_store(&loop, dir);
  copy = serialize(st, 20, &m2, &len2);
  CHECK(rf_snapstore_save(s, buf, len, &m, count_done, &k) == 0);
  CHECK(rf_snapstore_recv_begin(s, &m2) == 0);
  for (size_t off = 0; off < len2; off += 512) {
    size_t n = len2 - off < 512 ? len2 - off : 512;
    CHECK(rf_snapstore_recv_chunk(s, off, copy + off, n, count_done, &k) ==
          0);
  }
  CHECK(rf_snapstore_recv_finish(s, count_done, &k) == 0);
  rf_snapstore_close(s, closed, &nclosed); /* the save is in flight */
  CHECK(rf_snapstore_read(s, 10, 0, 10, NULL, NULL) == UV_EINVAL);
  CHECK(nclosed == 0); /* never from inside close() */
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(nclosed == 1);
  CHECK(k.ok == 1 && k.other == 0 && k.after == 0);
  CHECK(k.canceled == (int)((len2 + 511) / 512) + 1);
  CHECK(uv_loop_close(&loop) == 0);
  free(copy);
  rf_store_free(st);
  if (dir) { /* the in-flight save made it; the transfer left nothing */
    char path[256];
    snprintf(path, sizeof(path), "%s/%s/snap/receiving.snap.tmp", root, dir);
    CHECK(access(path, F_OK) != 0);
    snprintf(path, sizeof(path), "%s/%s/snap/%016x-%016x.snap", root, dir,
             10, 1);
    CHECK(access(path, F_OK) == 0);
  }
}

/* A transfer begun again drops the old one's queued chunks. */
static void test_restart(const char *dir) {
  uv_loop_t loop;
  rf_snapstore *s;
  rf_store *st = make_store(1000, 4);
  rf_snap_meta m;
  size_t len;
  char *buf = serialize(st, 5, &m, &len);
  int nclosed = 0, fin = 1;
  counts k = {0, 0, 0, 0, &nclosed};
  uv_loop_init(&loop);
  s = open_store(&loop, dir);
  CHECK(rf_snapstore_recv_begin(s, &m) == 0);
  for (int i = 0; i < 4; i++)
    CHECK(rf_snapstore_recv_chunk(s, (uint64_t)i * 100, buf + i * 100, 100,
                                  count_done, &k) == 0);
  CHECK(rf_snapstore_recv_begin(s, &m) == 0);
  CHECK(rf_snapstore_recv_offset(s) == 0);
  CHECK(rf_snapstore_recv_chunk(s, 0, buf, len, count_done, &k) == 0);
  CHECK(rf_snapstore_recv_finish(s, on_status, &fin) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(fin == 0);
  CHECK(k.ok == 2 && k.canceled == 3); /* the first was already running */
  rf_snapstore_close(s, closed, &nclosed);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(nclosed == 1);
  CHECK(uv_loop_close(&loop) == 0);
  free(buf);
  rf_store_free(st);
}

/* -------------------------------------------------------------- version */

/* Give every snapshot under root/name/snap format version v (2 digits). */
static int set_version(const char *name, const char *v) {
  char dir[128], path[512], magic[6];
  struct dirent *e;
  DIR *d;
  int n = 0;
  snprintf(dir, sizeof(dir), "%s/%s/snap", root, name);
  if ((d = opendir(dir)) == NULL) return 0;
  while ((e = readdir(d)) != NULL) {
    int fd;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    if ((fd = open(path, O_RDWR)) < 0) continue;
    if (pread(fd, magic, 6, 0) == 6 && memcmp(magic, "RFSNAP", 6) == 0)
      n += pwrite(fd, v, 2, 6) == 2;
    close(fd);
  }
  closedir(d);
  return n;
}

/* Another format version is named and refused, in memory and on disk. */
static void test_version(void) {
  uv_loop_t loop;
  rf_snapstore *s;
  rf_store *st = make_store(10, 5), *back = rf_store_new();
  rf_snap_meta m;
  rf_buf out;
  char err[512];
  size_t len;
  char *buf = serialize(st, 7, &m, &len);
  int fin = 1, nclosed = 0;
  memcpy(buf + 6, "03", 2);
  CHECK(rf_snap_restore(buf, len, back, NULL, err, sizeof(err)) ==
        RF_SNAP_ECORRUPT);
  CHECK(strstr(err, "unsupported format version 3") != NULL);
  CHECK(rf_store_count(back) == 0);
  memcpy(buf + 6, "02", 2);
  uv_loop_init(&loop);
  s = open_store(&loop, "g");
  CHECK(rf_snapstore_recv_begin(s, &m) == 0);
  CHECK(rf_snapstore_recv_chunk(s, 0, buf, len, on_status, &fin) == 0);
  CHECK(rf_snapstore_recv_finish(s, on_status, &fin) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(fin == 0);
  rf_snapstore_close(s, closed, &nclosed);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(set_version("g", "03") == 1);
  s = open_store(&loop, "g");
  rf_buf_init(&out);
  err[0] = '\0';
  CHECK(s && rf_snapstore_load(s, &out, &m, err, sizeof(err)) < 0);
  CHECK(strstr(err, "unsupported format version 3 in ") != NULL);
  CHECK(strstr(err, "/g/snap/") != NULL);
  rf_buf_free(&out);
  if (s) rf_snapstore_close(s, closed, &nclosed);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(nclosed == 2);
  CHECK(uv_loop_close(&loop) == 0);
  free(buf);
  rf_store_free(st);
  rf_store_free(back);
}

int main(void) {
  if (check_tmpdir(root, sizeof(root), "rafting-snapc") != 0) return 2;
  test_version();
  test_transfer("a", "b");
  test_transfer(NULL, NULL);
  test_transfer("c", NULL);
  test_chain("d");
  test_chain(NULL);
  test_close_pending("e");
  test_close_pending(NULL);
  test_restart("f");
  test_restart(NULL);
  check_rmtree(root);
  return check_summary("test_snapshot");
}
