/*
** entry.c -- the state machine's log entry payload (format in rafting/sm.h).
**
** Decoding only points into the caller's bytes; it checks every length
** against what is left, so a corrupt entry is an error, never a read past
** the end.  Encoding appends to the caller's rf_buf.
*/
#include <string.h>

#include <jansson.h>

#include "rafting/bytes.h"
#include "rafting/sm.h"

#define MAXNAME 255

static void putvarint(rf_buf *b, uint64_t v) {
  uint8_t p[RF_UVARINT_MAX];
  rf_buf_add(b, p, rf_put_uvarint(p, v));
}

static void putstr(rf_buf *b, const void *s, size_t len) {
  putvarint(b, len);
  rf_buf_add(b, s, len);
}

static int checkname(rf_buf *out, const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n >= 1 && n <= MAXNAME) return 0;
  rf_buf_str(out, "command name must be 1..255 bytes");
  return RF_SM_EBADENTRY;
}

static void header(rf_buf *out, const char *name, uint64_t time_ms, int kind) {
  unsigned char p[9];
  p[0] = RF_SM_VERSION;
  rf_put_be64(p + 1, time_ms);
  rf_buf_add(out, p, 9);
  putstr(out, name, strlen(name));
  p[0] = (unsigned char)kind;
  rf_buf_add(out, p, 1);
}

int rf_sm_encode_args(rf_buf *out, const char *name, uint64_t time_ms,
                      const rf_sm_arg *args, size_t nargs) {
  size_t i;
  int rc = checkname(out, name);
  if (rc) return rc;
  header(out, name, time_ms, RF_SM_ARGS);
  putvarint(out, nargs);
  for (i = 0; i < nargs; i++) {
    putstr(out, args[i].name, strlen(args[i].name));
    putstr(out, args[i].val, args[i].len);
  }
  return out->oom ? RF_SM_ENOMEM : 0;
}

int rf_sm_encode_json(rf_buf *out, const char *name, uint64_t time_ms,
                      const char *json, size_t len) {
  json_error_t jerr;
  json_t *v;
  int rc = checkname(out, name);
  if (rc) return rc;
  if (len == 0) json = "{}", len = 2;
  v = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (v == NULL) {
    rf_buf_printf(out, "invalid JSON arguments: %s at line %d column %d",
                  jerr.text, jerr.line, jerr.column);
    return RF_SM_EBADENTRY;
  }
  json_decref(v);
  header(out, name, time_ms, RF_SM_JSON);
  putstr(out, json, len);
  return out->oom ? RF_SM_ENOMEM : 0;
}


/* -- decoding ------------------------------------------------------------ */

typedef struct reader {
  const unsigned char *p;
  size_t left;
} reader;

static int getvarint(reader *r, uint64_t *v) {
  int k = rf_get_uvarint(r->p, r->left, v);
  if (k <= 0) return -1;
  r->p += k;
  r->left -= (size_t)k;
  return 0;
}

static int getstr(reader *r, const unsigned char **s, size_t *len) {
  uint64_t n;
  if (getvarint(r, &n) || n > r->left) return -1;
  *s = r->p;
  *len = (size_t)n;
  r->p += n;
  r->left -= n;
  return 0;
}

/* Walk the ARGS pairs once to check them and count them. */
static int checkargs(reader *r, size_t *nargs) {
  uint64_t n, i;
  const unsigned char *s;
  size_t len;
  if (getvarint(r, &n) || n > r->left) return -1;
  for (i = 0; i < n; i++)
    if (getstr(r, &s, &len) || getstr(r, &s, &len)) return -1;
  *nargs = (size_t)n;
  return 0;
}

int rf_sm_decode(const void *entry, size_t len, rf_sm_entry *e) {
  reader r = {entry, len};
  const unsigned char *name, *body;
  memset(e, 0, sizeof(*e));
  if (len < 10 || r.p[0] != RF_SM_VERSION) return RF_SM_EBADENTRY;
  e->time_ms = rf_get_be64(r.p + 1);
  r.p += 9, r.left -= 9;
  if (getstr(&r, &name, &e->name_len) || e->name_len == 0 ||
      e->name_len > MAXNAME || memchr(name, 0, e->name_len) || r.left < 1)
    return RF_SM_EBADENTRY;
  e->name = (const char *)name;
  e->kind = *r.p++;
  r.left--;
  body = r.p;
  if (e->kind == RF_SM_ARGS) {
    if (checkargs(&r, &e->nargs)) return RF_SM_EBADENTRY;
    e->body = body;
    e->body_len = (size_t)(r.p - body);
  } else if (e->kind == RF_SM_JSON) {
    if (getstr(&r, &e->body, &e->body_len)) return RF_SM_EBADENTRY;
  } else {
    return RF_SM_EBADENTRY;
  }
  return r.left == 0 ? 0 : RF_SM_EBADENTRY;
}

int rf_sm_entry_arg(const rf_sm_entry *e, size_t *pos, rf_sm_arg *a,
                    size_t *name_len) {
  reader r = {e->body, e->body_len};
  uint64_t n;
  const unsigned char *name, *val;
  if (e->kind != RF_SM_ARGS || *pos > e->body_len) return 0;
  if (*pos == 0) { /* skip the count */
    if (getvarint(&r, &n)) return 0;
  } else {
    r.p += *pos;
    r.left -= *pos;
  }
  if (r.left == 0 || getstr(&r, &name, name_len) || getstr(&r, &val, &a->len))
    return 0;
  a->name = (const char *)name;
  a->val = val;
  *pos = (size_t)(r.p - e->body);
  return 1;
}
