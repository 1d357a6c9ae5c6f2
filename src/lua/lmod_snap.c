/*
** lmod_snap.c -- rafting.snap: the snapshot format and the snapshot store
** driven from Lua specs.
**
** Each call on a store runs the store's private uv loop until everything
** it started has completed, so from Lua every operation is synchronous:
**
**   snap.serialize(kv, index, term[, extra]) -> bytes, meta
**       extra: {voters = {ids}, learners = {ids}, blob = bytes}: the
**       configuration (none without voters) and membership blob recorded
**       kv: {key = value, ...}, or {{key, value}, ...} applied in order
**       (value false deletes), so specs can build one state two ways
**   snap.stream(kv, index, term, bufsize[, extra]) -> bytes, meta | nil, msg, code
**       the same through rf_snap_write with a bufsize-byte buffer
**   snap.restore(bytes) -> kv, meta | nil, msg, code
**   snap.check(bytes)   -> meta | nil, msg, code      (restore into NULL)
**   snap.head(bytes[, total]) -> meta | nil, msg, code (rf_snap_head)
**   snap.checksum(bytes) -> the 8-byte trailer for bytes
**   st:head(index) -> meta with blob | nil, msg, code (rf_snapstore_head)
**   snap.open(dir | nil) -> st | nil, msg             (nil: in memory)
**   st:save(bytes, meta)  st:load()  st:latest()  st:read(index, off, len)
**   st:recv_begin(meta)  st:recv_chunk(off, data)  st:recv_finish()
**   st:recv_abort()  st:recv_offset()  st:saving()  st:errmsg()  st:close()
**   st:fail{write=N, sync=, rename=, syncdir=, unlink=}   (N-th call: EIO)
**   st:batch(items, close) -> results, in_order
**       items {"save", bytes, meta} | {"read", index, off, len} |
**       {"begin", meta} | {"chunk", off, data} | {"finish"} | {"abort"},
**       all submitted before the loop runs (close: then close the store);
**       results[i] = {status=, sync=true if done at the call (begin,
**       abort, or refused), data=}; in_order: callbacks came in order
**   snap.bench{n=, klen=, vlen=, dir=} -> timings (ms) and sizes
**
** Failures return nil, message, code (codes: snap.CORRUPT, NONE, BUSY,
** STALE, INVAL, CANCELED, IO).  Metas are {index=, term=, size=, nkeys=,
** conf = {voters = {..}, learners = {..}} or nil}, plus blob = bytes when
** not empty and the call had the file's bytes (not st:latest()).
**
** Memory: the userdata owns the loop and the store; __gc closes them.
** Bytes cross as Lua strings, copied both ways.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>
#include <xxhash.h>

#include "rafting/bytes.h"
#include "rafting/snapshot.h"

#define MT "rafting.snap"
#define FAIL_KINDS 5
#define MAX_BATCH 256
static const char *fail_names[FAIL_KINDS] = {"write", "sync", "rename",
                                             "syncdir", "unlink"};

typedef struct lsnap {
  uv_loop_t loop;
  int loop_open;
  rf_snapstore *s;
  int fail_at[FAIL_KINDS], calls[FAIL_KINDS];
  int order[MAX_BATCH], nord;
} lsnap;

typedef struct cb {
  lsnap *ls;
  int idx, status, called, sync;
  char *data;
  size_t len;
} cb;

/* ------------------------------------------------------------ helpers */

static int push_err(lua_State *L, int code, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg ? msg : rf_snap_strerror(code));
  lua_pushinteger(L, code);
  return 3;
}

static void push_ids(lua_State *L, const uint64_t *ids, size_t n,
                     const char *name) {
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)ids[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, name);
}

static void push_meta(lua_State *L, const rf_snap_meta *m) {
  lua_createtable(L, 0, 8);
  if (m->has_conf) {
    lua_createtable(L, 0, 2);
    push_ids(L, m->conf.voters, m->conf.n_voters, "voters");
    push_ids(L, m->conf.learners, m->conf.n_learners, "learners");
    lua_setfield(L, -2, "conf");
  }

  lua_pushinteger(L, (lua_Integer)m->index);
  lua_setfield(L, -2, "index");
  lua_pushinteger(L, (lua_Integer)m->term);
  lua_setfield(L, -2, "term");
  lua_pushinteger(L, (lua_Integer)m->size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)m->nkeys);
  lua_setfield(L, -2, "nkeys");
}

static uint64_t field_u64(lua_State *L, int t, const char *k) {
  lua_Integer v;
  lua_getfield(L, t, k);
  v = lua_isnil(L, -1) ? 0 : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  return (uint64_t)v;
}

static void get_meta(lua_State *L, int t, rf_snap_meta *m) {
  luaL_checktype(L, t, LUA_TTABLE);
  memset(m, 0, sizeof(*m));
  m->index = field_u64(L, t, "index");
  m->term = field_u64(L, t, "term");
  m->size = field_u64(L, t, "size");
  m->nkeys = field_u64(L, t, "nkeys");
}

/* A store from the table at t (see serialize above); raises on OOM. */
static rf_store *build_store(lua_State *L, int t) {
  rf_store *st = rf_store_new();
  size_t kl, vl;
  int rc = 0;
  if (st == NULL) luaL_error(L, "out of memory");
  lua_rawgeti(L, t, 1);
  if (lua_istable(L, -1)) { /* {{k, v}, ...} in order */
    lua_Integer n = luaL_len(L, t);
    lua_pop(L, 1);
    for (lua_Integer i = 1; i <= n && rc == 0; i++) {
      lua_rawgeti(L, t, i);
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);
      const char *k = luaL_checklstring(L, -2, &kl);
      if (lua_toboolean(L, -1)) {
        const char *v = luaL_checklstring(L, -1, &vl);
        rc = rf_store_put(st, k, kl, v, vl);
      } else {
        rf_store_delete(st, k, kl);
      }
      lua_pop(L, 3);
    }
  } else {
    lua_pop(L, 1);
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, t)) {
      const char *k = luaL_checklstring(L, -2, &kl);
      const char *v = luaL_checklstring(L, -1, &vl);
      rc = rf_store_put(st, k, kl, v, vl);
      lua_pop(L, 1);
    }
  }
  if (rc < 0) {
    rf_store_free(st);
    luaL_error(L, "out of memory");
  }
  return st;
}

/* ------------------------------------------------------------ format */

static void get_ids(lua_State *L, int t, const char *k, uint64_t *ids,
                    size_t *n) {
  lua_getfield(L, t, k);
  *n = 0;
  if (lua_istable(L, -1)) {
    lua_Integer len = luaL_len(L, -1);
    luaL_argcheck(L, len <= RAFT_MAX_NODES, t, "too many ids");
    for (lua_Integer i = 1; i <= len; i++) {
      lua_rawgeti(L, -1, i);
      ids[(*n)++] = (uint64_t)luaL_checkinteger(L, -1);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

/* extra at index t (or none): x points into conf and the Lua string. */
static const rf_snap_extra *get_extra(lua_State *L, int t, rf_snap_extra *x,
                                      raft_conf *conf) {
  if (lua_isnoneornil(L, t)) return NULL;
  luaL_checktype(L, t, LUA_TTABLE);
  memset(x, 0, sizeof(*x));
  memset(conf, 0, sizeof(*conf));
  get_ids(L, t, "voters", conf->voters, &conf->n_voters);
  get_ids(L, t, "learners", conf->learners, &conf->n_learners);
  if (conf->n_voters > 0) x->conf = conf;
  lua_getfield(L, t, "blob");
  if (!lua_isnil(L, -1)) x->blob = luaL_checklstring(L, -1, &x->blob_len);
  lua_pop(L, 1); /* the string stays alive in the table */
  return x;
}

/* meta, with blob = the file's blob bytes */
static void push_meta_blob(lua_State *L, const rf_snap_meta *m,
                           const char *p) {
  push_meta(L, m);
  if (m->blob_len == 0) return; /* metas compare equal whatever the call */
  lua_pushlstring(L, p + m->blob_off, m->blob_len);
  lua_setfield(L, -2, "blob");
}

static int l_serialize(lua_State *L) {
  rf_store *st;
  rf_snap_meta m;
  rf_snap_extra xs;
  raft_conf conf;
  const rf_snap_extra *x = get_extra(L, 4, &xs, &conf);
  rf_buf b;
  int rc;
  luaL_checktype(L, 1, LUA_TTABLE);
  st = build_store(L, 1);
  rf_buf_init(&b);
  rc = rf_snap_serialize(st, (uint64_t)luaL_checkinteger(L, 2),
                         (uint64_t)luaL_checkinteger(L, 3), x, &b, &m);
  rf_store_free(st);
  if (rc < 0) {
    rf_buf_free(&b);
    return push_err(L, rc, NULL);
  }
  lua_pushlstring(L, b.p, b.n);
  push_meta_blob(L, &m, b.p);
  rf_buf_free(&b);
  return 2;
}

static int stream_out(void *ud, const void *p, size_t len) {
  luaL_addlstring((luaL_Buffer *)ud, p, len);
  return 0;
}

static int l_stream(lua_State *L) {
  size_t cap = (size_t)luaL_checkinteger(L, 4);
  rf_snap_extra xs;
  raft_conf conf;
  const rf_snap_extra *x = get_extra(L, 5, &xs, &conf);
  rf_store *st;
  rf_snap_meta m;
  luaL_Buffer out;
  char *buf;
  int rc;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argcheck(L, cap > 0 && cap < (1u << 30), 4, "bad buffer size");
  st = build_store(L, 1);
  if ((buf = malloc(cap)) == NULL) {
    rf_store_free(st);
    return luaL_error(L, "out of memory");
  }
  luaL_buffinit(L, &out);
  rc = rf_snap_write(st, (uint64_t)luaL_checkinteger(L, 2),
                     (uint64_t)luaL_checkinteger(L, 3), x, buf, cap, stream_out,
                     &out, &m);
  free(buf);
  rf_store_free(st);
  luaL_pushresult(&out);
  if (rc < 0) return push_err(L, rc, NULL);
  push_meta_blob(L, &m, lua_tostring(L, -1));
  return 2;
}

static int l_restore(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  rf_store *st = rf_store_new();
  rf_store_iter it;
  rf_store_kv kv;
  rf_snap_meta m;
  char err[300];
  int rc;
  if (st == NULL) return luaL_error(L, "out of memory");
  if ((rc = rf_snap_restore(p, len, st, &m, err, sizeof(err))) < 0) {
    rf_store_free(st);
    return push_err(L, rc, err);
  }
  lua_createtable(L, 0, (int)rf_store_count(st));
  rf_store_seek(st, &it, NULL, 0);
  while (rf_store_next(&it, &kv)) {
    lua_pushlstring(L, kv.key, kv.klen);
    lua_pushlstring(L, kv.val, kv.vlen);
    lua_rawset(L, -3);
  }
  rf_store_free(st);
  push_meta_blob(L, &m, p);
  return 2;
}

/* XXH3-64 of a string, as the trailer holds it (8 bytes little-endian):
** lets specs build version 1 files and patch lengths. */
static int l_checksum(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  uint8_t b[8];
  rf_put_le64(b, XXH3_64bits(p, len));
  lua_pushlstring(L, (const char *)b, 8);
  return 1;
}

static int l_snap_head(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  uint64_t total = (uint64_t)luaL_optinteger(L, 2, (lua_Integer)len);
  rf_snap_meta m;
  char err[300];
  int rc = rf_snap_head(p, len, total, &m, err, sizeof(err));
  if (rc < 0) return push_err(L, rc, err);
  push_meta_blob(L, &m, p);
  return 1;
}

static int l_check(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  rf_snap_meta m;
  char err[300];
  int rc = rf_snap_restore(p, len, NULL, &m, err, sizeof(err));
  if (rc < 0) return push_err(L, rc, err);
  push_meta_blob(L, &m, p);
  return 1;
}

static int l_strerror(lua_State *L) {
  lua_pushstring(L, rf_snap_strerror((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* ------------------------------------------------------------ the store */

static int on_io(void *ud, const char *what) {
  lsnap *ls = ud;
  for (int i = 0; i < FAIL_KINDS; i++)
    if (strcmp(what, fail_names[i]) == 0 && ls->fail_at[i] > 0 &&
        ++ls->calls[i] == ls->fail_at[i])
      return UV_EIO;
  return 0;
}

static void on_done(void *ud, int status) {
  cb *c = ud;
  c->status = status;
  c->called = 1;
  if (c->ls->nord < MAX_BATCH) c->ls->order[c->ls->nord++] = c->idx;
}

static void on_read(void *ud, int status, const void *data, size_t len) {
  cb *c = ud;
  on_done(ud, status);
  if (status == 0 && (c->data = malloc(len ? len : 1)) != NULL) {
    memcpy(c->data, data, len);
    c->len = len;
  }
}

static lsnap *check(lua_State *L) {
  lsnap *ls = luaL_checkudata(L, 1, MT);
  if (ls->s == NULL) luaL_error(L, "snapshot store is closed");
  return ls;
}

static int l_open(lua_State *L) {
  const char *dir = luaL_optstring(L, 1, NULL);
  lsnap *ls = lua_newuserdatauv(L, sizeof(*ls), 0);
  char err[512];
  memset(ls, 0, sizeof(*ls));
  luaL_setmetatable(L, MT);
  if (uv_loop_init(&ls->loop) < 0) return luaL_error(L, "uv_loop_init");
  ls->loop_open = 1;
  if ((ls->s = rf_snapstore_open(&ls->loop, dir, err, sizeof(err))) == NULL)
    return push_err(L, UV_EINVAL, err);
  rf_snapstore_set_io_hook(ls->s, on_io, ls);
  return 1;
}

/* Run the loop, then report c the way every call does. */
static int finish_call(lua_State *L, lsnap *ls, cb *c, int rc) {
  if (rc < 0) return push_err(L, rc, NULL);
  uv_run(&ls->loop, UV_RUN_DEFAULT);
  if (!c->called) return luaL_error(L, "callback never called");
  if (c->status < 0)
    return push_err(L, c->status, rf_snapstore_errmsg(ls->s));
  if (c->data) {
    lua_pushlstring(L, c->data, c->len);
    free(c->data);
    return 1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static char *copy_arg(lua_State *L, int i, size_t *len) {
  const char *p = luaL_checklstring(L, i, len);
  char *b = malloc(*len ? *len : 1);
  if (b == NULL) luaL_error(L, "out of memory");
  memcpy(b, p, *len);
  return b;
}

static int l_save(lua_State *L) {
  lsnap *ls = check(L);
  cb c = {ls, 0, 0, 0, 0, NULL, 0};
  rf_snap_meta m;
  size_t len;
  char *b;
  get_meta(L, 3, &m);
  b = copy_arg(L, 2, &len);
  return finish_call(L, ls, &c,
                     rf_snapstore_save(ls->s, b, len, &m, on_done, &c));
}

static int l_read(lua_State *L) {
  lsnap *ls = check(L);
  cb c = {ls, 0, 0, 0, 0, NULL, 0};
  int rc = rf_snapstore_read(ls->s, (uint64_t)luaL_checkinteger(L, 2),
                             (uint64_t)luaL_checkinteger(L, 3),
                             (size_t)luaL_checkinteger(L, 4), on_read, &c);
  int n = finish_call(L, ls, &c, rc);
  if (n == 1 && lua_isboolean(L, -1)) { /* read 0 bytes: "" not true */
    lua_pop(L, 1);
    lua_pushliteral(L, "");
  }
  return n;
}

static int l_load(lua_State *L) {
  lsnap *ls = check(L);
  rf_snap_meta m;
  char err[600];
  rf_buf b;
  int rc;
  rf_buf_init(&b);
  if ((rc = rf_snapstore_load(ls->s, &b, &m, err, sizeof(err))) < 0) {
    rf_buf_free(&b);
    return push_err(L, rc, err);
  }
  lua_pushlstring(L, b.p ? b.p : "", b.n);
  rf_buf_free(&b);
  push_meta(L, &m);
  return 2;
}

static int l_head(lua_State *L) {
  lsnap *ls = check(L);
  rf_snap_meta m;
  char err[600];
  rf_buf b;
  int rc;
  rf_buf_init(&b);
  rc = rf_snapstore_head(ls->s, (uint64_t)luaL_checkinteger(L, 2), &m, &b,
                         err, sizeof(err));
  if (rc < 0) {
    rf_buf_free(&b);
    return push_err(L, rc, err);
  }
  push_meta(L, &m);
  if (b.n > 0) {
    lua_pushlstring(L, b.p, b.n);
    lua_setfield(L, -2, "blob");
  }
  rf_buf_free(&b);
  return 1;
}

static int l_latest(lua_State *L) {
  lsnap *ls = check(L);
  rf_snap_meta m;
  if (rf_snapstore_latest(ls->s, &m) < 0) return 0;
  push_meta(L, &m);
  return 1;
}

static int l_recv_begin(lua_State *L) {
  lsnap *ls = check(L);
  rf_snap_meta m;
  int rc;
  get_meta(L, 2, &m);
  if ((rc = rf_snapstore_recv_begin(ls->s, &m)) < 0)
    return push_err(L, rc, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_recv_chunk(lua_State *L) {
  lsnap *ls = check(L);
  cb c = {ls, 0, 0, 0, 0, NULL, 0};
  size_t len;
  const char *p = luaL_checklstring(L, 3, &len);
  return finish_call(L, ls, &c, rf_snapstore_recv_chunk(
      ls->s, (uint64_t)luaL_checkinteger(L, 2), p, len, on_done, &c));
}

static int l_recv_finish(lua_State *L) {
  lsnap *ls = check(L);
  cb c = {ls, 0, 0, 0, 0, NULL, 0};
  return finish_call(L, ls, &c,
                     rf_snapstore_recv_finish(ls->s, on_done, &c));
}

static int l_recv_abort(lua_State *L) {
  lsnap *ls = check(L);
  rf_snapstore_recv_abort(ls->s);
  uv_run(&ls->loop, UV_RUN_DEFAULT);
  return 0;
}

static int l_recv_offset(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)rf_snapstore_recv_offset(check(L)->s));
  return 1;
}

static int l_saving(lua_State *L) {
  lua_pushboolean(L, rf_snapstore_saving(check(L)->s));
  return 1;
}

static int l_errmsg(lua_State *L) {
  lua_pushstring(L, rf_snapstore_errmsg(check(L)->s));
  return 1;
}

static int l_fail(lua_State *L) {
  lsnap *ls = check(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  for (int i = 0; i < FAIL_KINDS; i++) {
    ls->fail_at[i] = (int)field_u64(L, 2, fail_names[i]);
    ls->calls[i] = 0;
  }
  return 0;
}

/* Submit item i (the table at t); a refusal is recorded in c. */
static void submit(lua_State *L, lsnap *ls, int t, cb *c) {
  const char *what;
  rf_snap_meta m;
  size_t len;
  int rc = 0;
  lua_rawgeti(L, t, 1);
  what = luaL_checkstring(L, -1);
  lua_rawgeti(L, t, 2);
  lua_rawgeti(L, t, 3);
  lua_rawgeti(L, t, 4);
  int a = lua_gettop(L) - 2; /* first argument */
  if (strcmp(what, "save") == 0) {
    char *b = copy_arg(L, a, &len);
    get_meta(L, a + 1, &m);
    rc = rf_snapstore_save(ls->s, b, len, &m, on_done, c);
  } else if (strcmp(what, "read") == 0) {
    rc = rf_snapstore_read(ls->s, (uint64_t)luaL_checkinteger(L, a),
                           (uint64_t)luaL_checkinteger(L, a + 1),
                           (size_t)luaL_checkinteger(L, a + 2), on_read, c);
  } else if (strcmp(what, "begin") == 0) {
    get_meta(L, a, &m);
    rc = rf_snapstore_recv_begin(ls->s, &m);
    c->called = c->sync = 1; /* done at the call: not in the order */
  } else if (strcmp(what, "chunk") == 0) {
    const char *p = luaL_checklstring(L, a + 1, &len);
    rc = rf_snapstore_recv_chunk(ls->s, (uint64_t)luaL_checkinteger(L, a), p,
                                 len, on_done, c);
  } else if (strcmp(what, "finish") == 0) {
    rc = rf_snapstore_recv_finish(ls->s, on_done, c);
  } else if (strcmp(what, "abort") == 0) {
    rf_snapstore_recv_abort(ls->s);
    c->called = c->sync = 1;
  } else {
    luaL_error(L, "batch: unknown item %s", what);
  }
  if (rc < 0) *c = (cb){ls, c->idx, rc, 1, 1, NULL, 0};
  lua_pop(L, 4);
}

static int l_batch(lua_State *L) {
  lsnap *ls = check(L);
  size_t n = (size_t)luaL_len(L, 2);
  int close = lua_toboolean(L, 3), ok = 1;
  cb *cbs;
  luaL_argcheck(L, n <= MAX_BATCH, 2, "too many items");
  cbs = lua_newuserdatauv(L, (n ? n : 1) * sizeof(*cbs), 0);
  ls->nord = 0;
  for (size_t i = 0; i < n; i++) {
    cbs[i] = (cb){ls, (int)i, 0, 0, 0, NULL, 0};
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    submit(L, ls, lua_gettop(L), &cbs[i]);
    lua_pop(L, 1);
  }
  if (close) {
    rf_snapstore_close(ls->s, NULL, NULL);
    ls->s = NULL;
  }
  uv_run(&ls->loop, UV_RUN_DEFAULT);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    if (!cbs[i].called) return luaL_error(L, "batch: item %d never done",
                                          (int)i + 1);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, cbs[i].status);
    lua_setfield(L, -2, "status");
    lua_pushboolean(L, cbs[i].sync);
    lua_setfield(L, -2, "sync");
    if (cbs[i].data) {
      lua_pushlstring(L, cbs[i].data, cbs[i].len);
      lua_setfield(L, -2, "data");
      free(cbs[i].data);
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  for (int i = 1; i < ls->nord; i++)
    if (ls->order[i] < ls->order[i - 1]) ok = 0;
  lua_pushboolean(L, ok);
  return 2;
}

static void shut(lsnap *ls) {
  if (ls->s) {
    rf_snapstore_close(ls->s, NULL, NULL);
    ls->s = NULL;
  }
  if (ls->loop_open) {
    uv_run(&ls->loop, UV_RUN_DEFAULT);
    uv_loop_close(&ls->loop);
    ls->loop_open = 0;
  }
}

static int l_close(lua_State *L) {
  shut(luaL_checkudata(L, 1, MT));
  return 0;
}

/* ------------------------------------------------------------ bench */

static double ms_since(uint64_t t0) {
  return (double)(uv_hrtime() - t0) / 1e6;
}

static void fill(unsigned char *p, size_t n, uint64_t *seed) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t r = rf_splitmix64(seed);
    memcpy(p + i, &r, n - i < 8 ? n - i : 8);
  }
}

static void set_ms(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void bench_done(void *ud, int status) { *(int *)ud = status; }

/* Build n random keys, serialize, save (fsync'ed) to dir, reopen, load,
** restore; times in ms.  Raises on any failure. */
/* fork_ms: what a snapshot child costs the loop (fork() with this store
** in the heap; the child exits at once). */
static void bench_fork(lua_State *L, const rf_store *st) {
  uint64_t t0 = uv_hrtime();
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  set_ms(L, "fork_ms", ms_since(t0));
  if (pid < 0) luaL_error(L, "fork: %s", strerror(errno));
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
  (void)st;
}

static int write_fd(void *ud, const void *p, size_t len) {
  return write(*(int *)ud, p, len) == (ssize_t)len ? 0 : UV_EIO;
}

/* stream_ms: what the child does: rf_snap_write to a file, then fsync. */
static void stream_ms(lua_State *L, const rf_store *st, const char *dir) {
  char path[4200];
  static char buf[1 << 20];
  rf_snap_meta m;
  uint64_t t0 = uv_hrtime();
  int fd, rc;
  snprintf(path, sizeof(path), "%s/snap/stream.bench", dir);
  if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
    luaL_error(L, "%s: %s", path, strerror(errno));
  rc = rf_snap_write(st, 1000, 3, NULL, buf, sizeof(buf), write_fd, &fd, &m);
  if (rc == 0 && fsync(fd) < 0) rc = UV_EIO;
  close(fd);
  unlink(path);
  if (rc < 0) luaL_error(L, "stream: %s", rf_snap_strerror(rc));
  set_ms(L, "stream_ms", ms_since(t0));
}

static int l_bench(lua_State *L) {
  lua_Integer n = field_u64(L, 1, "n"), kl = field_u64(L, 1, "klen"),
              vl = field_u64(L, 1, "vlen");
  lua_getfield(L, 1, "dir");
  const char *dir = luaL_checkstring(L, -1);
  unsigned char k[256], v[256];
  uint64_t seed = 42, t0;
  rf_store *st = rf_store_new(), *back = rf_store_new();
  rf_snapstore *ss;
  rf_snap_meta m, m2;
  uv_loop_t loop;
  char err[600], *p;
  size_t len;
  rf_buf b;
  int status = 1;
  luaL_argcheck(L, kl > 0 && kl <= 256 && vl <= 256, 1, "klen, vlen <= 256");
  lua_newtable(L);
  t0 = uv_hrtime();
  for (lua_Integer i = 0; i < n; i++) {
    fill(k, (size_t)kl, &seed);
    fill(v, (size_t)vl, &seed);
    if (rf_store_put(st, k, (size_t)kl, v, (size_t)vl) < 0)
      return luaL_error(L, "out of memory");
  }
  set_ms(L, "build_ms", ms_since(t0));
  rf_buf_init(&b);
  t0 = uv_hrtime();
  if (rf_snap_serialize(st, 1000, 3, NULL, &b, &m) < 0)
    return luaL_error(L, "serialize: out of memory");
  set_ms(L, "serialize_ms", ms_since(t0));
  lua_pushinteger(L, (lua_Integer)m.size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)m.nkeys);
  lua_setfield(L, -2, "nkeys");
  lua_pushinteger(L, (lua_Integer)rf_store_bytes(st));
  lua_setfield(L, -2, "store_bytes");
  bench_fork(L, st);
  uv_loop_init(&loop);
  if ((ss = rf_snapstore_open(&loop, dir, err, sizeof(err))) == NULL)
    return luaL_error(L, "%s", err);
  stream_ms(L, st, dir);
  p = rf_buf_take(&b, &len);
  t0 = uv_hrtime();
  if (rf_snapstore_save(ss, p, len, &m, bench_done, &status) < 0)
    return luaL_error(L, "save refused");
  uv_run(&loop, UV_RUN_DEFAULT);
  set_ms(L, "save_ms", ms_since(t0));
  if (status != 0) return luaL_error(L, "save: %s", rf_snap_strerror(status));
  rf_snapstore_close(ss, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  t0 = uv_hrtime();
  if ((ss = rf_snapstore_open(&loop, dir, err, sizeof(err))) == NULL ||
      rf_snapstore_load(ss, &b, &m2, err, sizeof(err)) < 0)
    return luaL_error(L, "%s", err);
  set_ms(L, "load_ms", ms_since(t0));
  t0 = uv_hrtime();
  if (rf_snap_restore(b.p, b.n, NULL, NULL, err, sizeof(err)) < 0)
    return luaL_error(L, "%s", err);
  set_ms(L, "check_ms", ms_since(t0));
  t0 = uv_hrtime();
  if (rf_snap_restore(b.p, b.n, back, &m2, err, sizeof(err)) < 0)
    return luaL_error(L, "%s", err);
  set_ms(L, "restore_ms", ms_since(t0));
  lua_pushboolean(L, rf_store_digest(st) == rf_store_digest(back));
  lua_setfield(L, -2, "same");
  rf_buf_free(&b);
  rf_snapstore_close(ss, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  t0 = uv_hrtime();
  rf_store_free(back);
  set_ms(L, "free_ms", ms_since(t0));
  rf_store_free(st);
  return 1;
}

/* ------------------------------------------------------------ module */

static const luaL_Reg methods[] = {
  {"save", l_save},             {"read", l_read},
  {"load", l_load},             {"latest", l_latest},
  {"head", l_head},
  {"recv_begin", l_recv_begin}, {"recv_chunk", l_recv_chunk},
  {"recv_finish", l_recv_finish}, {"recv_abort", l_recv_abort},
  {"recv_offset", l_recv_offset}, {"saving", l_saving},
  {"errmsg", l_errmsg},         {"fail", l_fail},
  {"batch", l_batch},           {"close", l_close},
  {"__gc", l_close},            {"__close", l_close},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"serialize", l_serialize}, {"restore", l_restore}, {"check", l_check},
  {"head", l_snap_head},        {"checksum", l_checksum},
  {"stream", l_stream},
  {"open", l_open},           {"strerror", l_strerror}, {"bench", l_bench},
  {NULL, NULL}
};

int luaopen_rafting_snap(lua_State *L);

int luaopen_rafting_snap(lua_State *L) {
  if (luaL_newmetatable(L, MT)) {
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
  }
  luaL_newlib(L, funcs);
#define K(name, v) (lua_pushinteger(L, v), lua_setfield(L, -2, name))
  K("CORRUPT", RF_SNAP_ECORRUPT);
  K("NONE", RF_SNAP_ENONE);
  K("BUSY", RF_SNAP_EBUSY);
  K("STALE", RF_SNAP_ESTALE);
  K("INVAL", UV_EINVAL);
  K("CANCELED", UV_ECANCELED);
  K("IO", UV_EIO);
  K("MIN", RF_SNAP_MIN);
#undef K
  return 1;
}
