/*
** fuzz_entry.c -- libFuzzer target: state machine entries and JSON
** (src/sm/entry.c, src/sm/json.c).
**
** The first input byte picks what the rest is:
**   0: an entry payload: rf_sm_decode() must give an entry or
**      RF_SM_EBADENTRY; an ARGS entry's pairs must iterate to its count and
**      re-encode to the same bytes; a decoded entry is applied.
**   1: the JSON arguments of a command: rf_sm_encode_json() checks them,
**      rf_sm_apply() runs fuzz/echo.lua's echo, which turns them into Lua
**      values and back into JSON; the result must be valid JSON.
**   2: the same through a query.
** One rf_sm is made at start (echo.lua) and replaced every 1000 runs so its
** store stays small.  Buffers are freed on every run.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "rafting/sm.h"

#ifndef FUZZ_DIR
#error "FUZZ_DIR must name the fuzz/ directory"
#endif

static rf_sm *sm;
static uint64_t runs, applied; /* applied: the last index given */

static void fail(const char *what) {
  fprintf(stderr, "fuzz_entry: %s\n", what);
  abort();
}

static void need_sm(void) {
  char err[256];
  rf_sm_opts o = {0};
  if (sm && runs % 1000) return;
  rf_sm_free(sm);
  applied = 0;
  o.commands = FUZZ_DIR "/echo.lua";
  o.memory = 16u << 20;
  if ((sm = rf_sm_new(&o, err, sizeof err)) == NULL) {
    fprintf(stderr, "fuzz_entry: %s\n", err);
    abort();
  }
}

static void check_json(const rf_buf *b) {
  json_error_t e;
  json_t *v = json_loadb(b->p, b->n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
  /* "\u0000" in a key is valid JSON that jansson does not take */
  if (v == NULL && json_error_code(&e) != json_error_null_byte_in_key) {
    fprintf(stderr, "result: %.*s\n%s\n", (int)b->n, b->p, e.text);
    fail("a result is not valid JSON");
  }
  json_decref(v);
}

/* Iterate the pairs, re-encode them, compare. */
static void roundtrip_args(const uint8_t *p, size_t n, const rf_sm_entry *e) {
  rf_sm_arg *args = calloc(e->nargs + 1, sizeof *args);
  char **names = calloc(e->nargs + 1, sizeof *names);
  char name[256];
  size_t pos = 0, k = 0, nl;
  rf_buf out = {0};
  rf_sm_arg a;
  int plain = 1; /* no NUL in any name: encodable */
  if (args == NULL || names == NULL) fail("out of memory");
  while (rf_sm_entry_arg(e, &pos, &a, &nl)) {
    if (k == e->nargs) fail("more args than the count");
    names[k] = malloc(nl + 1);
    memcpy(names[k], a.name, nl);
    names[k][nl] = '\0';
    plain &= memchr(a.name, 0, nl) == NULL;
    args[k] = a;
    args[k].name = names[k];
    k++;
  }
  if (k != e->nargs) fail("fewer args than the count");
  memcpy(name, e->name, e->name_len);
  name[e->name_len] = '\0';
  if (plain) {
    if (rf_sm_encode_args(&out, name, e->time_ms, args, k) != 0)
      fail("a decoded entry does not encode");
    /* the count may be a non-minimal varint: compare when minimal */
    if (out.n == n && memcmp(out.p, p, n) != 0) fail("re-encoding differs");
  }
  rf_buf_free(&out);
  for (size_t i = 0; i < k; i++) free(names[i]);
  free(names);
  free(args);
}

static void entry(const uint8_t *p, size_t n) {
  rf_sm_entry e;
  rf_buf res = {0};
  int rc = rf_sm_decode(p, n, &e);
  if (rc != 0) {
    if (rc != RF_SM_EBADENTRY) fail("bad error code");
    return;
  }
  if (e.kind == RF_SM_ARGS) roundtrip_args(p, n, &e);
  rc = rf_sm_apply(sm, ++applied, p, n, &res);
  if (rc == 0) check_json(&res);
  rf_buf_free(&res);
}

static void json(const uint8_t *p, size_t n, int query) {
  rf_buf ent = {0}, res = {0};
  int rc;
  if (query) {
    rc = rf_sm_query(sm, "echo", (const char *)p, n, &res);
  } else if (rf_sm_encode_json(&ent, "echo", 1700000000000u, (const char *)p,
                               n) != 0) {
    rc = -1;
  } else {
    rc = rf_sm_apply(sm, ++applied, ent.p, ent.n, &res);
    if (rc == RF_SM_EBADENTRY) fail("an encoded entry is refused");
  }
  if (rc == 0) check_json(&res);
  rf_buf_free(&ent);
  rf_buf_free(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  need_sm();
  runs++;
  switch (data[0] % 3) {
    case 0: entry(data + 1, size - 1); break;
    case 1: json(data + 1, size - 1, 0); break;
    default: json(data + 1, size - 1, 1); break;
  }
  return 0;
}
