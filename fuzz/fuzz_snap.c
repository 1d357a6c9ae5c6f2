/*
** fuzz_snap.c -- libFuzzer target: the snapshot format (src/storage/
** snapshot.c) on arbitrary bytes: both versions, the length-prefixed
** configuration and membership blob of version 2, the records.
**
** Random bytes rarely end in the right checksum, so an input whose first
** byte is odd has its trailer replaced by the right one first (the parse
** then gets past the checksum to everything else).  Parsing must give a
** store or RF_SNAP_ECORRUPT with an offset inside the input, never a
** crash.  An accepted snapshot must survive its round trips: rf_snap_head
** agrees with the full parse; serializing the store with the parsed
** configuration and blob gives the input's bytes back (the format is
** canonical); rf_snap_rehead output parses to the same keys.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "rafting/bytes.h"
#include "rafting/snapshot.h"

#define MAX_BYTES (1 << 20)

static void fail(const char *what) {
  fprintf(stderr, "fuzz_snap: %s\n", what);
  abort();
}

static int to_buf(void *ud, const void *p, size_t len) {
  rf_buf_add(ud, p, len);
  return 0;
}

/* The accepted snapshot p[0..n) (meta m, parsed into st) round-trips. */
static void round_trips(const uint8_t *p, size_t n, const rf_snap_meta *m,
                        rf_store *st) {
  rf_snap_extra x = {m->has_conf ? &m->conf : NULL, p + m->blob_off,
                     m->blob_len};
  rf_snap_meta h, m2;
  rf_store *back;
  rf_buf b;
  if (rf_snap_head(p, n, n, &h, NULL, 0) != 0) fail("head refuses it");
  if (h.index != m->index || h.nkeys != m->nkeys || h.blob_len != m->blob_len)
    fail("head disagrees");
  if (m->blob_off + m->blob_len > n) fail("blob outside the input");
  rf_buf_init(&b);
  if (rf_snap_serialize(st, m->index, m->term, &x, &b, &m2) != 0) {
    rf_buf_free(&b);
    return; /* out of memory */
  }
  if (memcmp(p, "RFSNAP02", 8) == 0 && (b.n != n || memcmp(b.p, p, n) != 0))
    fail("not canonical: serialize gives other bytes");
  b.n = 0;
  if (rf_snap_rehead(p, n, &x, to_buf, &b, &m2) != 0 || b.oom) {
    rf_buf_free(&b);
    return;
  }
  if ((back = rf_store_new()) == NULL) {
    rf_buf_free(&b);
    return;
  }
  if (rf_snap_restore(b.p, b.n, back, NULL, NULL, 0) != 0)
    fail("rehead output does not parse");
  if (rf_store_count(back) != rf_store_count(st)) fail("rehead lost keys");
  rf_store_free(back);
  rf_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *p;
  rf_snap_meta m;
  rf_store *st;
  char err[300];
  int rc;
  if (size < 1 || size > MAX_BYTES) return 0;
  /* the input minus its first byte (the mode) */
  if ((p = malloc(size - 1 ? size - 1 : 1)) == NULL) return 0;
  memcpy(p, data + 1, size - 1);
  size--;
  if ((data[0] & 1) && size >= 8)
    rf_put_le64(p + size - 8, XXH3_64bits(p, size - 8));
  if ((st = rf_store_new()) == NULL) {
    free(p);
    return 0;
  }
  rc = rf_snap_restore(p, size, st, &m, err, sizeof(err));
  if (rc == 0) {
    round_trips(p, size, &m, st);
  } else if (rc == RF_SNAP_ECORRUPT) {
    unsigned long off;
    if (sscanf(err, "snapshot at offset %lu:", &off) != 1) fail("no offset");
    if (off > size) fail("offset past the input");
    if (rf_store_count(st) != 0) fail("a refused snapshot left keys");
  } else if (rc != UV_ENOMEM) {
    fail("unexpected error code");
  }
  rf_store_free(st);
  free(p);
  return 0;
}
