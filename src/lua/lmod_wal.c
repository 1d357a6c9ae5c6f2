/*
** lmod_wal.c -- rafting.wal: the write-ahead log driven from Lua specs.
**
** Each call runs the WAL's own uv loop until everything it started has
** completed, so from Lua every operation is synchronous:
**
**   local w, warnings = wal.open(dir, {segment_bytes=, sync="always"|"none",
**                                      max_batch_bytes=, fail={sync=N,...}})
**   w:save(hs_or_nil, {{index=, term=, type=, data=}, ...}) -> true | nil, msg
**   w:pipeline{{hs=, entries=} | {compact={index, term}}, ...}
**       -> statuses (one per item, in order), completion order ok (boolean)
**   w:compact(index, term)  w:load() -> hs, entries  w:info()  w:close()
**
** fail={what=N} makes the N-th I/O call of that kind ("write", "sync",
** "rename", "unlink", "syncdir") fail with EIO: fault injection for specs.
** Warnings the WAL logs are collected; w:warnings() returns them.
**
** Memory: the userdata owns the loop, the storage and the warning strings;
** __gc closes whatever is still open.  Entry data crosses as Lua strings
** (copied both ways).
*/
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

#include "rafting/wal.h"

#define FAIL_KINDS 5
static const char *fail_names[FAIL_KINDS] = {"write", "sync", "rename",
                                             "unlink", "syncdir"};

typedef struct lwal {
  uv_loop_t loop;
  int loop_open;
  rf_storage *s;
  char **warn;               /* logged lines */
  size_t nwarn;
  int fail_at[FAIL_KINDS];   /* fail the N-th call (0: never) */
  int calls[FAIL_KINDS];
  int order[64];             /* pipeline: completion order */
  int nord;
} lwal;

typedef struct cb { lwal *lw; int idx, status, called; } cb;

static void on_log(void *ud, int level, const char *msg) {
  lwal *lw = ud;
  char **w = realloc(lw->warn, (lw->nwarn + 1) * sizeof(*w));
  (void)level;
  if (w == NULL) return;
  lw->warn = w;
  if ((w[lw->nwarn] = strdup(msg)) != NULL) lw->nwarn++;
}

static int on_io(void *ud, const char *what) {
  lwal *lw = ud;
  for (int i = 0; i < FAIL_KINDS; i++)
    if (strcmp(what, fail_names[i]) == 0 && lw->fail_at[i] > 0 &&
        ++lw->calls[i] == lw->fail_at[i])
      return UV_EIO;
  return 0;
}

static void on_done(void *ud, int status) {
  cb *c = ud;
  c->status = status;
  c->called = 1;
  if (c->lw->nord < 64) c->lw->order[c->lw->nord++] = c->idx;
}

static lwal *check(lua_State *L) {
  lwal *lw = luaL_checkudata(L, 1, "rafting.wal");
  if (lw->s == NULL) luaL_error(L, "wal is closed");
  return lw;
}

static void push_warnings(lua_State *L, lwal *lw) {
  lua_createtable(L, (int)lw->nwarn, 0);
  for (size_t i = 0; i < lw->nwarn; i++) {
    lua_pushstring(L, lw->warn[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

static lua_Integer field_int(lua_State *L, int t, const char *k,
                             lua_Integer dflt) {
  lua_Integer v;
  lua_getfield(L, t, k);
  v = lua_isnil(L, -1) ? dflt : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  return v;
}

static int l_open(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  lwal *lw = lua_newuserdatauv(L, sizeof(*lw), 0);
  rf_wal_opts o;
  char err[512];
  memset(lw, 0, sizeof(*lw));
  luaL_setmetatable(L, "rafting.wal");
  rf_wal_opts_default(&o);
  if (lua_istable(L, 2)) {
    o.segment_bytes = (uint64_t)field_int(L, 2, "segment_bytes",
                                          (lua_Integer)o.segment_bytes);
    o.max_batch_bytes = (size_t)field_int(L, 2, "max_batch_bytes",
                                          (lua_Integer)o.max_batch_bytes);
    lua_getfield(L, 2, "sync");
    if (!lua_isnil(L, -1) &&
        (o.sync = rf_wal_sync_parse(luaL_checkstring(L, -1))) < 0)
      return luaL_error(L, "sync must be \"always\" or \"none\"");
    lua_pop(L, 1);
    lua_getfield(L, 2, "fail");
    if (lua_istable(L, -1))
      for (int i = 0; i < FAIL_KINDS; i++)
        lw->fail_at[i] = (int)field_int(L, -1, fail_names[i], 0);
    lua_pop(L, 1);
  }
  o.log = on_log;
  o.log_ud = lw;
  o.io_hook = on_io;
  o.io_ud = lw;
  if (uv_loop_init(&lw->loop) < 0) return luaL_error(L, "uv_loop_init");
  lw->loop_open = 1;
  lw->s = rf_storage_wal(&lw->loop, dir, &o, err, sizeof(err));
  if (lw->s == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    push_warnings(L, lw);
    return 3;
  }
  push_warnings(L, lw);
  return 2;
}

static void get_hs(lua_State *L, int t, raft_hard_state *hs) {
  hs->term = (uint64_t)field_int(L, t, "term", 0);
  hs->vote = (uint64_t)field_int(L, t, "vote", 0);
  hs->commit = (uint64_t)field_int(L, t, "commit", 0);
}

/* Entries from the table at t into a userdata array left on the stack;
** data points into the Lua strings, which the table keeps alive. */
static raft_entry *get_entries(lua_State *L, int t, size_t *n) {
  raft_entry *e;
  *n = lua_isnil(L, t) ? 0 : (size_t)luaL_len(L, t);
  e = lua_newuserdatauv(L, (*n ? *n : 1) * sizeof(*e), 0);
  for (size_t i = 0; i < *n; i++) {
    lua_rawgeti(L, t, (lua_Integer)i + 1);
    luaL_checktype(L, -1, LUA_TTABLE);
    int et = lua_gettop(L);
    e[i].index = (uint64_t)field_int(L, et, "index", 0);
    e[i].term = (uint64_t)field_int(L, et, "term", 0);
    e[i].type = (int)field_int(L, et, "type", 0);
    lua_getfield(L, et, "data");
    e[i].data = (const uint8_t *)luaL_optlstring(L, -1, "", &e[i].len);
    lua_pop(L, 2);
  }
  return e;
}

static int push_status(lua_State *L, int status) {
  if (status == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, uv_strerror(status));
  lua_pushinteger(L, status);
  return 3;
}

static int l_save(lua_State *L) {
  lwal *lw = check(L);
  raft_hard_state hs;
  raft_entry *e;
  size_t n;
  cb c = {lw, 0, 0, 0};
  int rc;
  if (!lua_isnil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    get_hs(L, 2, &hs);
  }
  e = get_entries(L, 3, &n);
  rc = lw->s->ops->save(lw->s, lua_isnil(L, 2) ? NULL : &hs, e, n, 1,
                        on_done, &c);
  if (rc < 0) return push_status(L, rc);
  uv_run(&lw->loop, UV_RUN_DEFAULT);
  if (!c.called) return luaL_error(L, "save: done never called");
  return push_status(L, c.status);
}

static int l_compact(lua_State *L) {
  lwal *lw = check(L);
  cb c = {lw, 0, 0, 0};
  int rc = rf_wal_compact(lw->s, (uint64_t)luaL_checkinteger(L, 2),
                          (uint64_t)luaL_checkinteger(L, 3), on_done, &c);
  if (rc < 0) return push_status(L, rc);
  uv_run(&lw->loop, UV_RUN_DEFAULT);
  if (!c.called) return luaL_error(L, "compact: done never called");
  return push_status(L, c.status);
}

/* Submit every item before running the loop once: group commit. */
static int l_pipeline(lua_State *L) {
  lwal *lw = check(L);
  size_t n = (size_t)luaL_len(L, 2);
  cb *cbs;
  int ok = 1;
  luaL_argcheck(L, n <= 64, 2, "at most 64 items");
  cbs = lua_newuserdatauv(L, (n ? n : 1) * sizeof(*cbs), 0);
  lw->nord = 0;
  for (size_t i = 0; i < n; i++) {
    int top = lua_gettop(L), item, rc;
    cbs[i] = (cb){lw, (int)i, 0, 0};
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    item = lua_gettop(L);
    lua_getfield(L, item, "compact");
    if (lua_istable(L, -1)) {
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);
      rc = rf_wal_compact(lw->s, (uint64_t)luaL_checkinteger(L, -2),
                          (uint64_t)luaL_checkinteger(L, -1), on_done, &cbs[i]);
    } else {
      raft_hard_state hs;
      raft_entry *e;
      size_t ne;
      lua_getfield(L, item, "hs");
      if (!lua_isnil(L, -1)) get_hs(L, lua_gettop(L), &hs);
      int has_hs = !lua_isnil(L, -1);
      lua_getfield(L, item, "entries");
      e = get_entries(L, lua_gettop(L), &ne);
      rc = lw->s->ops->save(lw->s, has_hs ? &hs : NULL, e, ne, 1,
                            on_done, &cbs[i]);
    }
    if (rc < 0) cbs[i] = (cb){lw, (int)i, rc, 1};
    lua_settop(L, top);
  }
  uv_run(&lw->loop, UV_RUN_DEFAULT);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    if (!cbs[i].called) return luaL_error(L, "pipeline: done never called");
    lua_pushinteger(L, cbs[i].status);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  for (int i = 1; i < lw->nord; i++)
    if (lw->order[i] < lw->order[i - 1]) ok = 0;
  lua_pushboolean(L, ok);
  return 2;
}

static int l_load(lua_State *L) {
  lwal *lw = check(L);
  raft_hard_state hs;
  const raft_entry *e;
  size_t n;
  int rc = lw->s->ops->load(lw->s, &hs, &e, &n);
  if (rc < 0) return push_status(L, rc);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)hs.term);
  lua_setfield(L, -2, "term");
  lua_pushinteger(L, (lua_Integer)hs.vote);
  lua_setfield(L, -2, "vote");
  lua_pushinteger(L, (lua_Integer)hs.commit);
  lua_setfield(L, -2, "commit");
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)e[i].index);
    lua_setfield(L, -2, "index");
    lua_pushinteger(L, (lua_Integer)e[i].term);
    lua_setfield(L, -2, "term");
    lua_pushinteger(L, e[i].type);
    lua_setfield(L, -2, "type");
    lua_pushlstring(L, (const char *)e[i].data, e[i].len);
    lua_setfield(L, -2, "data");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 2;
}

static int l_info(lua_State *L) {
  lwal *lw = check(L);
  rf_wal_info in;
  rf_wal_info_get(lw->s, &in);
  lua_createtable(L, 0, 14);
#define F(name, v) (lua_pushinteger(L, (lua_Integer)(v)), \
                    lua_setfield(L, -2, name))
  F("snap_index", in.snap_index);
  F("snap_term", in.snap_term);
  F("first_index", in.first_index);
  F("last_index", in.last_index);
  F("term", in.hs.term);
  F("vote", in.hs.vote);
  F("commit", in.hs.commit);
  F("segments", in.segments);
  F("disk_bytes", in.disk_bytes);
  F("writes", in.writes);
  F("syncs", in.syncs);
  F("saves", in.saves);
  F("failed", in.failed);
  F("saved_index", lw->s->last_index);
#undef F
  return 1;
}

static int l_warnings(lua_State *L) {
  lwal *lw = luaL_checkudata(L, 1, "rafting.wal");
  push_warnings(L, lw);
  return 1;
}

static void shut(lwal *lw) {
  if (lw->s) {
    lw->s->ops->close(lw->s);
    lw->s = NULL;
    uv_run(&lw->loop, UV_RUN_DEFAULT);
  }
  if (lw->loop_open) {
    uv_loop_close(&lw->loop);
    lw->loop_open = 0;
  }
}

static int l_close(lua_State *L) {
  shut(luaL_checkudata(L, 1, "rafting.wal"));
  return 0;
}

static int l_gc(lua_State *L) {
  lwal *lw = luaL_checkudata(L, 1, "rafting.wal");
  shut(lw);
  for (size_t i = 0; i < lw->nwarn; i++) free(lw->warn[i]);
  free(lw->warn);
  lw->warn = NULL;
  lw->nwarn = 0;
  return 0;
}

static const luaL_Reg methods[] = {
  {"save", l_save},     {"compact", l_compact}, {"pipeline", l_pipeline},
  {"load", l_load},     {"info", l_info},       {"warnings", l_warnings},
  {"close", l_close},   {"__gc", l_gc},         {"__close", l_close},
  {NULL, NULL}
};

int luaopen_rafting_wal(lua_State *L);

int luaopen_rafting_wal(lua_State *L) {
  if (luaL_newmetatable(L, "rafting.wal")) {
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
  }
  lua_newtable(L);
  lua_pushcfunction(L, l_open);
  lua_setfield(L, -2, "open");
  return 1;
}
