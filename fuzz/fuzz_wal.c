/*
** fuzz_wal.c -- libFuzzer target: WAL recovery (src/storage/wal_recover.c)
** on segment files built from the input.
**
** Random bytes almost never pass a record's checksums, so the input is a
** program that writes up to four segment files: valid records (entries,
** hard states, snapshots, segment headers, with fields from the input and
** correct checksums) mixed with raw bytes, truncations and bit flips.
** Recovery must give a log or an error message, never a crash; a log must
** be contiguous from snap_index + 1 to next - 1, and every entry's bytes
** must lie inside what recovery read (ASan checks the reads below).
** The files live in a private temp directory (removed at exit), rewritten
** for every input; recovery may repair them (truncate, remove) when the
** input's first byte asks.
*/
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/wal_internal.h"

#define NSEG 4
#define SEGMAX 16384

typedef struct seg {
  uint8_t b[SEGMAX];
  size_t n;
  uint64_t seq, base;
} seg;

typedef struct input {
  const uint8_t *p;
  size_t left;
} input;

static char dir[64];
static int dirfd_ = -1;
static seg segs[NSEG];

static void fail(const char *what) {
  fprintf(stderr, "fuzz_wal: %s\n", what);
  abort();
}

static void clear_dir(void);

static void cleanup(void) {
  clear_dir();
  rmdir(dir);
}

static uint8_t next_byte(input *in) {
  if (in->left == 0) return 0;
  in->left--;
  return *in->p++;
}

static void clear_dir(void) {
  DIR *d = opendir(dir);
  struct dirent *de;
  if (d == NULL) fail("opendir");
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.') unlinkat(dirfd_, de->d_name, 0);
  closedir(d);
}

static int room(const seg *s, size_t len) { return s->n + WAL_HDR + len <= SEGMAX; }

static void start_seg(seg *s, uint64_t seq, uint64_t base, input *in) {
  wal_seghdr h = {.seq = seq, .base = base};
  h.hs.term = next_byte(in);
  h.hs.vote = next_byte(in) % 4;
  h.hs.commit = next_byte(in);
  h.snap_index = base > 0 ? base - 1 : 0;
  h.snap_term = next_byte(in) % 2 ? h.hs.term : 0;
  s->seq = seq;
  s->base = base;
  s->n = wal_encode_seghdr(s->b, &h);
}

/* Run the input's ops; returns the number of segments written. */
static int build(input *in, uint64_t *next) {
  int ns = 1;
  uint8_t pay[64];
  start_seg(&segs[0], 1, 1, in);
  while (in->left > 0) {
    seg *s = &segs[ns - 1];
    uint8_t op = next_byte(in), a = next_byte(in), b = next_byte(in);
    size_t len;
    raft_hard_state hs;
    switch (op % 8) {
      case 0: /* a new segment, usually starting where the log is */
        if (ns == NSEG) break;
        start_seg(&segs[ns], segs[ns - 1].seq + (a % 8 ? 1 : 2),
                  b ? b : *next, in);
        ns++;
        break;
      case 1: /* an entry at any index */
      case 7: /* the next entry */
        len = next_byte(in) % sizeof pay;
        for (size_t i = 0; i < len; i++) pay[i] = next_byte(in);
        if (!room(s, len)) break;
        s->n += wal_encode(s->b + s->n, WAL_REC_ENTRY, a % 3,
                           op % 8 == 7 ? *next : b, a, pay, len);
        *next = (op % 8 == 7 ? *next : b) + 1;
        break;
      case 2:
        hs.term = a, hs.vote = b % 4, hs.commit = next_byte(in);
        if (room(s, WAL_HS_PAYLOAD)) s->n += wal_encode_hs(s->b + s->n, &hs);
        break;
      case 3:
        if (room(s, 0))
          s->n += wal_encode(s->b + s->n, WAL_REC_SNAPSHOT, a % 2, b,
                             next_byte(in), NULL, 0);
        break;
      case 4: /* raw bytes: garbage or a record of an unknown type */
        len = a % 48;
        for (size_t i = 0; i < len && s->n < SEGMAX; i++)
          s->b[s->n++] = next_byte(in);
        break;
      case 5: /* a torn tail */
        s->n -= a < s->n ? a : s->n;
        break;
      case 6: /* a flipped bit */
        if (s->n) s->b[((size_t)a << 8 | b) % s->n] ^= 1u << (next_byte(in) % 8);
        break;
    }
  }
  return ns;
}

static void write_seg(const seg *s) {
  char name[WAL_NAME_LEN + 1];
  int fd;
  wal_seg_name(name, s->seq, s->base);
  if ((fd = openat(dirfd_, name, O_CREAT | O_TRUNC | O_WRONLY, 0600)) < 0)
    fail("cannot create a segment");
  if (wal_write_all(fd, s->b, s->n) != 0) fail("cannot write a segment");
  close(fd);
}

static void on_warn(void *ud, int level, const char *msg) {
  (void)ud, (void)level;
  if (msg == NULL || msg[0] == '\0') fail("an empty warning");
}

static void check(const wal_recovery *rec) {
  unsigned sum = 0;
  if (rec->next != rec->snap_index + 1 + rec->n) fail("next != snap + n + 1");
  for (size_t i = 0; i < rec->n; i++) {
    const raft_entry *e = &rec->ents[i];
    if (e->index != rec->snap_index + 1 + i) fail("entries not contiguous");
    for (size_t k = 0; k < e->len; k++) sum += e->data[k]; /* ASan: in bounds */
  }
  (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input in = {data, size};
  wal_recovery rec;
  char err[256];
  uint64_t next = 1;
  int repair, ns;
  if (dirfd_ < 0) {
    snprintf(dir, sizeof dir, "/tmp/fuzz_wal.XXXXXX");
    if (mkdtemp(dir) == NULL || (dirfd_ = open(dir, O_RDONLY)) < 0)
      fail("cannot make a temp directory");
    atexit(cleanup);
  }
  if (size == 0) return 0;
  repair = next_byte(&in) & 1;
  clear_dir();
  ns = build(&in, &next);
  for (int i = 0; i < ns; i++) write_seg(&segs[i]);
  err[0] = '\0';
  if (wal_recover(dirfd_, dir, repair, &rec, on_warn, NULL, err, sizeof err) == 0)
    check(&rec);
  else if (err[0] == '\0')
    fail("an error without a message");
  wal_recovery_free(&rec);
  return 0;
}
