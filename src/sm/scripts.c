/*
** scripts.c -- deployed scripts as replicated state (see rafting/sm.h).
**
** A script is one store key, RF_SM_RESERVED "scripts/" name, whose value
** is  u8 version (1) | u64 index | 32-byte sha256 | source.  The store is
** what snapshots save and restore, so the scripts in force at any index
** travel with the state they shaped, and a replica replaying the log
** installs each version exactly where the others did.  The key
** RF_SM_RESERVED "scripts-seeded" marks that a script entry ever applied:
** from then on the config's bootstrap script (script.seed) is a no-op, so
** a DELETE is not undone by the next election.
**
** Every change rebuilds the whole Lua state (rf_sm_build) from kv.lua,
** the replica-local script if any, then the stored scripts in key (name)
** order: the same order, so the same name table, on every replica.
*/
#include <stdlib.h>
#include <string.h>

#include "rafting/util.h"
#include "smint.h"

#define PREFIX RF_SM_RESERVED "scripts/"
#define PREFIX_LEN (RF_SM_RESERVED_LEN + 8)
#define SEEDED RF_SM_RESERVED "scripts-seeded"
#define SEEDED_LEN (RF_SM_RESERVED_LEN + 14)
#define HEAD 41 /* version, index, sha256 */
#define VERSION 1

int rf_sm_reserved(const void *key, size_t len) {
  return len >= RF_SM_RESERVED_LEN &&
         memcmp(key, RF_SM_RESERVED, RF_SM_RESERVED_LEN) == 0;
}

int rf_sm_script_name_ok(const char *name, size_t len) {
  size_t i;
  if (len == 0 || len > RF_SM_SCRIPT_NAME_MAX || name[0] == '.') return 0;
  for (i = 0; i < len; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
      return 0;
  }
  return 1;
}

/* -- stored records ------------------------------------------------------ */

typedef struct record {
  const char *name; /* into the key: not NUL-terminated */
  size_t nlen;
  uint64_t index;
  const unsigned char *sha;
  const char *src;
  size_t len;
} record;

static int decode(const rf_store_kv *kv, record *r) {
  const unsigned char *v = kv->val;
  int i;
  if (kv->klen <= PREFIX_LEN || kv->vlen < HEAD || v[0] != VERSION) return 0;
  r->name = (const char *)kv->key + PREFIX_LEN;
  r->nlen = kv->klen - PREFIX_LEN;
  for (r->index = 0, i = 1; i <= 8; i++) r->index = r->index << 8 | v[i];
  r->sha = v + 9;
  r->src = (const char *)v + HEAD;
  r->len = kv->vlen - HEAD;
  return 1;
}

/* Iterate the stored scripts: *first 1 to start. */
static int nextrec(rf_store *st, rf_store_iter *it, int *first, record *r) {
  rf_store_kv kv;
  if (*first) rf_store_seek(st, it, PREFIX, PREFIX_LEN);
  *first = 0;
  while (rf_store_next(it, &kv)) {
    if (kv.klen < PREFIX_LEN || memcmp(kv.key, PREFIX, PREFIX_LEN) != 0)
      return 0;
    if (decode(&kv, r)) return 1;
  }
  return 0;
}

static int findrec(rf_sm *sm, const char *name, size_t nlen, record *r) {
  rf_store_kv kv;
  char key[PREFIX_LEN + RF_SM_SCRIPT_NAME_MAX];
  if (nlen > RF_SM_SCRIPT_NAME_MAX) return 0;
  memcpy(key, PREFIX, PREFIX_LEN);
  memcpy(key + PREFIX_LEN, name, nlen);
  kv.key = key;
  kv.klen = PREFIX_LEN + nlen;
  if (!rf_store_get(sm->store, key, kv.klen, &kv.val, &kv.vlen)) return 0;
  return decode(&kv, r);
}

/* -- building from the store --------------------------------------------- */

/* The scripts a build loads: the base ones, then the stored ones by name,
** with `add` put in its place (replacing its namesake) and `skip` left out.
** Names of stored scripts are copied (a key is not NUL-terminated). */
typedef struct plan {
  smsrc *list;
  char **owned;
  int n;
} plan;

static int push(plan *p, const char *name, size_t nlen, const char *src,
                size_t len) {
  smsrc *l = realloc(p->list, (size_t)(p->n + 1) * sizeof(*l));
  char **o = l ? realloc(p->owned, (size_t)(p->n + 1) * sizeof(*o)) : NULL;
  char *copy = o ? malloc(nlen + 1) : NULL;
  if (l) p->list = l;
  if (o) p->owned = o;
  if (copy == NULL) return -1;
  memcpy(copy, name, nlen);
  copy[nlen] = '\0';
  p->owned[p->n] = copy;
  p->list[p->n++] = (smsrc){copy, src, len};
  return 0;
}

static void planfree(plan *p) {
  int i;
  for (i = 0; i < p->n; i++) free(p->owned[i]);
  free(p->owned);
  free(p->list);
}

static int namecmp(const char *a, size_t al, const char *b, size_t bl) {
  int c = memcmp(a, b, al < bl ? al : bl);
  return c ? c : (al > bl) - (al < bl);
}

static int makeplan(rf_sm *sm, const smsrc *add, const char *skip, plan *p) {
  rf_store_iter it;
  record r;
  int first = 1, i, added = add == NULL, rc = 0;
  memset(p, 0, sizeof(*p));
  for (i = 0; i < sm->nbase && rc == 0; i++)
    rc = push(p, sm->base[i].name, strlen(sm->base[i].name), sm->base[i].src,
              sm->base[i].len);
  while (rc == 0 && nextrec(sm->store, &it, &first, &r)) {
    int c = added ? 1 : namecmp(add->name, strlen(add->name), r.name, r.nlen);
    if (c <= 0) {
      rc = push(p, add->name, strlen(add->name), add->src, add->len);
      added = 1;
    }
    if (rc == 0 && c != 0 &&
        !(skip && namecmp(skip, strlen(skip), r.name, r.nlen) == 0))
      rc = push(p, r.name, r.nlen, r.src, r.len);
  }
  if (rc == 0 && !added) rc = push(p, add->name, strlen(add->name), add->src, add->len);
  return rc;
}

/* Build the Lua state for the stored scripts changed by add/skip. */
static int rebuild(rf_sm *sm, const smsrc *add, const char *skip, int keep,
                   rf_buf *msg) {
  plan p;
  int rc;
  if (makeplan(sm, add, skip, &p) < 0) {
    planfree(&p);
    rf_buf_str(msg, "out of memory");
    return RF_SM_ENOMEM;
  }
  rc = rf_sm_build(sm, p.list, p.n, keep, msg);
  planfree(&p);
  if (rc == 0) return 0;
  return sm->clash ? RF_SM_ECONFLICT : RF_SM_EBADENTRY;
}

/* A deployed script may not take a base script's display name. */
static int basename_taken(rf_sm *sm, const char *name, rf_buf *msg) {
  int i;
  for (i = 0; i < sm->nbase; i++)
    if (strcmp(sm->base[i].name, name) == 0) {
      rf_buf_printf(msg, "%s: the name of a built-in script", name);
      return 1;
    }
  return 0;
}

int rf_sm_script_check(rf_sm *sm, const char *name, const void *src,
                       size_t len, rf_buf *msg) {
  smsrc add = {name, src, len};
  if (!rf_sm_script_name_ok(name, strlen(name))) {
    rf_buf_str(msg, "a script name is 1..64 of A-Z a-z 0-9 _ . - "
               "(not starting with '.')");
    return RF_SM_EBADENTRY;
  }
  if (basename_taken(sm, name, msg)) return RF_SM_ECONFLICT;
  return rebuild(sm, &add, NULL, 0, msg);
}

int rf_sm_restored(rf_sm *sm, uint64_t index, rf_buf *msg) {
  int rc;
  sm->applied = index;
  if (sm->observe) sm->observe(sm->observe_ud, index, NULL, sm->store);
  rc = rebuild(sm, NULL, NULL, 1, msg);
  return rc ? -1 : 0;
}

/* -- applying script.* entries ------------------------------------------- */

/* The ARGS of a script entry: name (valid) and, for put/seed, source. */
static int entryargs(const rf_sm_entry *e, char *name, const char **src,
                     size_t *len, rf_buf *result) {
  rf_sm_arg a;
  size_t pos = 0, nl;
  int have = 0;
  *src = NULL;
  *len = 0;
  while (e->kind == RF_SM_ARGS && rf_sm_entry_arg(e, &pos, &a, &nl)) {
    if (nl == 4 && memcmp(a.name, "name", 4) == 0 &&
        rf_sm_script_name_ok(a.val, a.len)) {
      memcpy(name, a.val, a.len);
      name[a.len] = '\0';
      have = 1;
    } else if (nl == 6 && memcmp(a.name, "source", 6) == 0) {
      *src = a.val;
      *len = a.len;
    }
  }
  if (have) return 0;
  rf_buf_str(result, "a script entry needs a valid name");
  return RF_SM_EBADENTRY;
}

/* The command and query names of script `name`, sorted. */
static int cmpstr(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void namelist(rf_sm *sm, const char *name, int query, rf_buf *out) {
  const char **v = malloc((sm->nnames + 1) * sizeof(*v));
  size_t i, n = 0;
  if (v == NULL) {
    out->oom = 1;
    return;
  }
  for (i = 0; i < sm->nnames; i++)
    if (sm->names[i].query == query &&
        strcmp(sm->script[sm->names[i].script], name) == 0 &&
        sm->names[i].script >= sm->nbase)
      v[n++] = sm->names[i].name;
  qsort(v, n, sizeof(*v), cmpstr);
  rf_buf_str(out, "[");
  for (i = 0; i < n; i++) {
    if (i) rf_buf_str(out, ",");
    rf_buf_json_str(out, v[i], strlen(v[i]));
  }
  rf_buf_str(out, "]");
  free(v);
}

static void hex(const unsigned char *d, char out[65]) {
  static const char digits[] = "0123456789abcdef";
  int i;
  for (i = 0; i < 32; i++) {
    out[2 * i] = digits[d[i] >> 4];
    out[2 * i + 1] = digits[d[i] & 15];
  }
  out[64] = '\0';
}

static void describe(rf_sm *sm, const char *name, const unsigned char *sha,
                     uint64_t index, rf_buf *out) {
  char h[65];
  hex(sha, h);
  rf_buf_str(out, "{\"name\":");
  rf_buf_json_str(out, name, strlen(name));
  rf_buf_printf(out, ",\"sha256\":\"%s\",\"index\":%llu,\"commands\":", h,
                (unsigned long long)index);
  namelist(sm, name, 0, out);
  rf_buf_str(out, ",\"queries\":");
  namelist(sm, name, 1, out);
  rf_buf_str(out, "}");
}

static int store_script(rf_sm *sm, const char *name, const char *src,
                        size_t len, const unsigned char sha[32]) {
  size_t nl = strlen(name);
  char key[PREFIX_LEN + RF_SM_SCRIPT_NAME_MAX];
  unsigned char *v = malloc(HEAD + len);
  int i, rc;
  if (v == NULL) return -1;
  v[0] = VERSION;
  for (i = 0; i < 8; i++) v[1 + i] = (unsigned char)(sm->index >> (56 - 8 * i));
  memcpy(v + 9, sha, 32);
  if (len) memcpy(v + HEAD, src, len);
  memcpy(key, PREFIX, PREFIX_LEN);
  memcpy(key + PREFIX_LEN, name, nl);
  rc = rf_store_put(sm->store, key, PREFIX_LEN + nl, v, HEAD + len);
  free(v);
  return rc;
}

/* The store could not take the change after the Lua state did: back to
** the scripts the store holds (the host is out of memory; best effort). */
static int undo(rf_sm *sm, rf_buf *result) {
  rf_buf_str(result, "out of memory");
  (void)rebuild(sm, NULL, NULL, 1, result);
  return RF_SM_ENOMEM;
}

static int apply_put(rf_sm *sm, const char *name, const char *src,
                     size_t len, rf_buf *result) {
  smsrc add = {name, src, len};
  unsigned char sha[32];
  int rc;
  if (basename_taken(sm, name, result)) return RF_SM_EFAILED;
  if ((rc = rebuild(sm, &add, NULL, 1, result)) != 0)
    return rc == RF_SM_ENOMEM ? rc : RF_SM_EFAILED;
  rf_sha256(src, len, sha);
  if (store_script(sm, name, src, len, sha) ||
      rf_store_put(sm->store, SEEDED, SEEDED_LEN, "1", 1))
    return undo(sm, result);
  describe(sm, name, sha, sm->index, result);
  return RF_SM_OK;
}

static int apply_delete(rf_sm *sm, const char *name, rf_buf *result) {
  record r;
  char key[PREFIX_LEN + RF_SM_SCRIPT_NAME_MAX];
  size_t nl = strlen(name);
  int rc;
  if (!findrec(sm, name, nl, &r)) {
    rf_buf_printf(result, "no script named '%s'", name);
    return RF_SM_ENOTFOUND;
  }
  if ((rc = rebuild(sm, NULL, name, 1, result)) != 0)
    return rc == RF_SM_ENOMEM ? rc : RF_SM_EFAILED;
  memcpy(key, PREFIX, PREFIX_LEN);
  memcpy(key + PREFIX_LEN, name, nl);
  if (rf_store_put(sm->store, SEEDED, SEEDED_LEN, "1", 1))
    return undo(sm, result);
  (void)rf_store_delete(sm->store, key, PREFIX_LEN + nl); /* frees only */
  rf_buf_str(result, "{\"name\":");
  rf_buf_json_str(result, name, nl);
  rf_buf_str(result, ",\"deleted\":true}");
  return RF_SM_OK;
}

int rf_sm_scripts_apply(rf_sm *sm, const rf_sm_entry *e, rf_buf *result) {
  char name[RF_SM_SCRIPT_NAME_MAX + 1];
  const char *src;
  size_t len, op = e->name_len - 7;
  const char *what = e->name + 7;
  int rc = entryargs(e, name, &src, &len, result);
  if (rc) return rc;
  if (op == 6 && memcmp(what, "delete", 6) == 0)
    return apply_delete(sm, name, result);
  if (src == NULL) {
    rf_buf_str(result, "a script entry needs its source");
    return RF_SM_EBADENTRY;
  }
  if (op == 3 && memcmp(what, "put", 3) == 0)
    return apply_put(sm, name, src, len, result);
  if (op == 4 && memcmp(what, "seed", 4) == 0) {
    if (!rf_sm_scripts_seeded(sm)) return apply_put(sm, name, src, len, result);
    rf_buf_str(result, "{\"name\":");
    rf_buf_json_str(result, name, strlen(name));
    rf_buf_str(result, ",\"skipped\":true}");
    return RF_SM_OK;
  }
  rf_buf_printf(result, "unknown command '%.*s'", (int)e->name_len, e->name);
  return RF_SM_ENOTFOUND;
}

/* -- reading ------------------------------------------------------------- */

const char *rf_sm_script_source(rf_sm *sm, const char *name, size_t *len) {
  record r;
  if (!findrec(sm, name, strlen(name), &r)) return NULL;
  *len = r.len;
  return r.src;
}

int rf_sm_script_sha(rf_sm *sm, const char *name, char out[65]) {
  record r;
  if (!findrec(sm, name, strlen(name), &r)) return 0;
  hex(r.sha, out);
  return 1;
}

void rf_sm_scripts_json(rf_sm *sm, rf_buf *out) {
  rf_store_iter it;
  record r;
  char name[RF_SM_SCRIPT_NAME_MAX + 1];
  int first = 1, n = 0;
  rf_buf_str(out, "[");
  while (nextrec(sm->store, &it, &first, &r)) {
    if (r.nlen > RF_SM_SCRIPT_NAME_MAX) continue;
    memcpy(name, r.name, r.nlen);
    name[r.nlen] = '\0';
    if (n++) rf_buf_str(out, ",");
    describe(sm, name, r.sha, r.index, out);
  }
  rf_buf_str(out, "]");
}

/* sha256 over "name NUL sha256 NUL" of every script in name order. */
void rf_sm_scripts_digest_json(rf_sm *sm, rf_buf *out) {
  rf_store_iter it;
  record r;
  rf_buf all;
  char h[65];
  int first = 1, n = 0;
  rf_buf_init(&all);
  while (nextrec(sm->store, &it, &first, &r)) {
    hex(r.sha, h);
    rf_buf_add(&all, r.name, r.nlen);
    rf_buf_add(&all, "", 1);
    rf_buf_add(&all, h, 65);
    n++;
  }
  if (all.oom) out->oom = 1;
  rf_sha256_hex(all.p ? all.p : "", all.n, h);
  rf_buf_free(&all);
  rf_buf_printf(out, "{\"count\":%d,\"digest\":\"%s\"}", n, h);
}

int rf_sm_scripts_seeded(rf_sm *sm) {
  const void *v;
  size_t vl;
  return rf_store_get(sm->store, SEEDED, SEEDED_LEN, &v, &vl);
}
