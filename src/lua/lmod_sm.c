/*
** lmod_sm.c -- require("rafting.sm"): the state machine host for specs.
**
**   sm.new{commands=, builtin=, budget=, memory=, log=true}
**                                       -> host | nil, err
**   host:apply(index, entry)            -> ok, text, code
**   host:query(name [, json])           -> ok, text, code
**       text is the result JSON when ok, else the error message; code is
**       nil or "notfound" / "failed" / "badentry" / "nomem"
**   host:get(key) host:scan([prefix [, limit]]) -> {{key, value}, ...}
**   host:count() host:bytes() host:digest() host:applied() host:memory()
**   host:has_command(name) host:has_query(name) host:logs() host:close()
**   host:check(name, source) -> ok, msg, code   (would it deploy?)
**   host:scripts() host:scripts_digest()        (GET /scripts, /status)
**   host:restore_from(other) -> ok, msg  (other's store, as a snapshot)
**   sm.encode(name, time_ms, {argname = "value", ...}) -> entry
**   sm.encode_json(name, time_ms, json) -> entry | nil, err
**   sm.decode(entry) -> {time=, name=, kind="args"|"json", args=|json=}
**
** The host is a full userdata owning the rf_sm* and two rf_bufs: results
** are written there, not on the C stack, so a Lua error while pushing them
** leaks nothing; __gc/__close/close() free it all.
*/
#define LUA_LIB
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "rafting/sm.h"

#define HOST_MT "rafting.sm.host"

typedef struct Host {
  rf_sm *sm;
  rf_buf out;  /* last result */
  rf_buf logs; /* print() output, one line each */
  int log;
} Host;

static Host *tohost(lua_State *L) {
  Host *h = luaL_checkudata(L, 1, HOST_MT);
  luaL_argcheck(L, h->sm != NULL, 1, "host is closed");
  return h;
}

static const char *codename(int rc) {
  switch (rc) {
    case RF_SM_ENOTFOUND: return "notfound";
    case RF_SM_EFAILED: return "failed";
    case RF_SM_EBADENTRY: return "badentry";
    case RF_SM_ECONFLICT: return "conflict";
    default: return "nomem";
  }
}

static void onlog(void *ud, const char *msg, size_t len) {
  Host *h = ud;
  rf_buf_add(&h->logs, msg, len);
  rf_buf_add(&h->logs, "\n", 1);
}

static const char *optfield(lua_State *L, const char *k) {
  const char *s;
  lua_getfield(L, 1, k);
  s = luaL_optstring(L, -1, NULL);
  lua_pop(L, 1);
  return s;
}

static lua_Integer optint(lua_State *L, const char *k) {
  lua_Integer v;
  lua_getfield(L, 1, k);
  v = luaL_optinteger(L, -1, 0);
  lua_pop(L, 1);
  luaL_argcheck(L, v >= 0, 1, k);
  return v;
}

static int l_new(lua_State *L) {
  rf_sm_opts o;
  char err[512];
  Host *h;
  memset(&o, 0, sizeof(o));
  if (lua_isnoneornil(L, 1)) lua_newtable(L), lua_replace(L, 1);
  luaL_checktype(L, 1, LUA_TTABLE);
  o.commands = optfield(L, "commands");
  o.builtin = optfield(L, "builtin");
  o.budget = (uint64_t)optint(L, "budget");
  o.memory = (size_t)optint(L, "memory");
  lua_getfield(L, 1, "log");
  h = lua_newuserdatauv(L, sizeof(*h), 0);
  memset(h, 0, sizeof(*h));
  h->log = lua_toboolean(L, -2);
  luaL_setmetatable(L, HOST_MT);
  if (h->log) o.log = onlog, o.log_ud = h;
  if ((h->sm = rf_sm_new(&o, err, sizeof(err))) == NULL) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

static int result(lua_State *L, Host *h, int rc) {
  lua_pushboolean(L, rc == RF_SM_OK);
  lua_pushlstring(L, h->out.p ? h->out.p : "", h->out.n);
  if (rc == RF_SM_OK) return 2;
  lua_pushstring(L, codename(rc));
  return 3;
}

static int l_apply(lua_State *L) {
  Host *h = tohost(L);
  lua_Integer index = luaL_checkinteger(L, 2);
  size_t len;
  const char *e = luaL_checklstring(L, 3, &len);
  rf_buf_free(&h->out);
  return result(L, h, rf_sm_apply(h->sm, (uint64_t)index, e, len, &h->out));
}

static int l_query(lua_State *L) {
  Host *h = tohost(L);
  const char *name = luaL_checkstring(L, 2);
  size_t len = 0;
  const char *args = luaL_optlstring(L, 3, NULL, &len);
  rf_buf_free(&h->out);
  return result(L, h, rf_sm_query(h->sm, name, args, len, &h->out));
}

static int l_get(lua_State *L) {
  Host *h = tohost(L);
  size_t kl, vl;
  const char *k = luaL_checklstring(L, 2, &kl);
  const void *v;
  if (rf_store_get(rf_sm_store(h->sm), k, kl, &v, &vl)) lua_pushlstring(L, v, vl);
  else lua_pushnil(L);
  return 1;
}

static int l_scan(lua_State *L) {
  Host *h = tohost(L);
  size_t pl;
  const char *p = luaL_optlstring(L, 2, "", &pl);
  lua_Integer limit = luaL_optinteger(L, 3, LUA_MAXINTEGER), n = 0;
  rf_store_iter it;
  rf_store_kv kv;
  lua_newtable(L);
  rf_store_seek(rf_sm_store(h->sm), &it, p, pl);
  while (n < limit && rf_store_next(&it, &kv)) {
    if (kv.klen < pl || memcmp(kv.key, p, pl) != 0) break;
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, kv.key, kv.klen);
    lua_rawseti(L, -2, 1);
    lua_pushlstring(L, kv.val, kv.vlen);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* host:check(name, source): would the script deploy?  ok, msg, code */
static int l_check(lua_State *L) {
  Host *h = tohost(L);
  const char *name = luaL_checkstring(L, 2);
  size_t len;
  const char *src = luaL_checklstring(L, 3, &len);
  rf_buf_free(&h->out);
  return result(L, h, rf_sm_script_check(h->sm, name, src, len, &h->out));
}

/* host:scripts() -> the GET /scripts JSON; host:scripts_digest() */
static int l_scripts(lua_State *L) {
  Host *h = tohost(L);
  rf_buf_free(&h->out);
  rf_sm_scripts_json(h->sm, &h->out);
  lua_pushlstring(L, h->out.p ? h->out.p : "", h->out.n);
  return 1;
}

static int l_scripts_digest(lua_State *L) {
  Host *h = tohost(L);
  rf_buf_free(&h->out);
  rf_sm_scripts_digest_json(h->sm, &h->out);
  lua_pushlstring(L, h->out.p ? h->out.p : "", h->out.n);
  return 1;
}

/* host:restore_from(other): other's store replaces ours, as a snapshot
** taken at other:applied() would; ok, msg (scripts that do not load). */
static int l_restore_from(lua_State *L) {
  Host *h = tohost(L);
  Host *o = luaL_checkudata(L, 2, HOST_MT);
  rf_store *dst = rf_sm_store(h->sm);
  rf_store_iter it;
  rf_store_kv kv;
  int rc;
  luaL_argcheck(L, o->sm != NULL && o != h, 2, "another open host");
  rf_store_clear(dst);
  rf_store_seek(rf_sm_store(o->sm), &it, NULL, 0);
  while (rf_store_next(&it, &kv))
    if (rf_store_put(dst, kv.key, kv.klen, kv.val, kv.vlen))
      return luaL_error(L, "out of memory");
  rf_buf_free(&h->out);
  rc = rf_sm_restored(h->sm, rf_sm_applied(o->sm), &h->out);
  lua_pushboolean(L, rc == 0);
  lua_pushlstring(L, h->out.p ? h->out.p : "", h->out.n);
  return 2;
}

static int l_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)rf_store_count(rf_sm_store(tohost(L)->sm)));
  return 1;
}

static int l_bytes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)rf_store_bytes(rf_sm_store(tohost(L)->sm)));
  return 1;
}

static int l_digest(lua_State *L) {
  char s[17];
  snprintf(s, sizeof(s), "%016llx",
           (unsigned long long)rf_store_digest(rf_sm_store(tohost(L)->sm)));
  lua_pushstring(L, s);
  return 1;
}

static int l_applied(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)rf_sm_applied(tohost(L)->sm));
  return 1;
}

static int l_memory(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)rf_sm_memory(tohost(L)->sm));
  return 1;
}

static int l_has_command(lua_State *L) {
  Host *h = tohost(L);
  lua_pushboolean(L, rf_sm_has_command(h->sm, luaL_checkstring(L, 2)));
  return 1;
}

static int l_has_query(lua_State *L) {
  Host *h = tohost(L);
  lua_pushboolean(L, rf_sm_has_query(h->sm, luaL_checkstring(L, 2)));
  return 1;
}

static int l_logs(lua_State *L) {
  Host *h = tohost(L);
  lua_pushlstring(L, h->logs.p ? h->logs.p : "", h->logs.n);
  rf_buf_free(&h->logs);
  return 1;
}

static int l_close(lua_State *L) {
  Host *h = luaL_checkudata(L, 1, HOST_MT);
  rf_sm_free(h->sm);
  h->sm = NULL;
  rf_buf_free(&h->out);
  rf_buf_free(&h->logs);
  return 0;
}


/* -- entries ------------------------------------------------------------- */

/* Entries are built in a buffer owned by a userdata for the same reason
** results are: a failing push must not leak it. */
static int bufgc(lua_State *L) {
  rf_buf_free(lua_touserdata(L, 1));
  return 0;
}

static rf_buf *tmpbuf(lua_State *L) {
  rf_buf *b = lua_newuserdatauv(L, sizeof(*b), 0);
  rf_buf_init(b);
  if (luaL_newmetatable(L, "rafting.sm.buf")) {
    lua_pushcfunction(L, bufgc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}

/* encode(name, time_ms, args): args maps names to strings; they are
** encoded in sorted order so equal tables give equal entries. */
static int l_encode(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_Integer t = luaL_checkinteger(L, 2);
  lua_Integer i, n = 0;
  rf_sm_arg a[64];
  rf_buf *b;
  int rc;
  if (lua_isnoneornil(L, 3)) lua_newtable(L), lua_replace(L, 3);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_newtable(L); /* 6: the names */
  lua_pushnil(L);
  while (lua_next(L, 3)) {
    luaL_argcheck(L, lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1) &&
                  n < 64, 3, "up to 64 string names -> string values");
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, 6, ++n);
  }
  lua_pushvalue(L, 5);
  lua_pushvalue(L, 6);
  lua_call(L, 1, 0); /* table.sort(names) */
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 6, i);
    a[i - 1].name = lua_tostring(L, -1); /* anchored in the names table */
    lua_gettable(L, 3);
    a[i - 1].val = lua_tolstring(L, -1, &a[i - 1].len);
    lua_rawseti(L, 6, n + i); /* anchor the value (a number made string) */
  }
  b = tmpbuf(L);
  rc = rf_sm_encode_args(b, name, (uint64_t)t, a, (size_t)n);
  if (rc) return luaL_error(L, "encode: %s", b->p ? b->p : rf_sm_strerror(rc));
  lua_pushlstring(L, b->p, b->n);
  return 1;
}

static int l_encode_json(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_Integer t = luaL_checkinteger(L, 2);
  size_t len = 0;
  const char *json = luaL_optlstring(L, 3, NULL, &len);
  rf_buf *b = tmpbuf(L);
  int rc = rf_sm_encode_json(b, name, (uint64_t)t, json, len);
  if (rc) {
    luaL_pushfail(L);
    lua_pushlstring(L, b->p ? b->p : "", b->n);
    return 2;
  }
  lua_pushlstring(L, b->p, b->n);
  return 1;
}

static int l_decode(lua_State *L) {
  size_t len, pos = 0, nl;
  const char *s = luaL_checklstring(L, 1, &len);
  rf_sm_entry e;
  rf_sm_arg a;
  if (rf_sm_decode(s, len, &e)) {
    luaL_pushfail(L);
    lua_pushliteral(L, "malformed entry");
    return 2;
  }
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)e.time_ms);
  lua_setfield(L, -2, "time");
  lua_pushlstring(L, e.name, e.name_len);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, e.kind == RF_SM_ARGS ? "args" : "json");
  lua_setfield(L, -2, "kind");
  if (e.kind == RF_SM_JSON) {
    lua_pushlstring(L, (const char *)e.body, e.body_len);
    lua_setfield(L, -2, "json");
    return 1;
  }
  lua_newtable(L);
  while (rf_sm_entry_arg(&e, &pos, &a, &nl)) {
    lua_pushlstring(L, a.name, nl);
    lua_pushlstring(L, a.val, a.len);
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "args");
  return 1;
}

static const luaL_Reg host_methods[] = {
  {"apply", l_apply}, {"query", l_query}, {"get", l_get}, {"scan", l_scan},
  {"count", l_count}, {"bytes", l_bytes}, {"digest", l_digest},
  {"applied", l_applied}, {"memory", l_memory},
  {"has_command", l_has_command}, {"has_query", l_has_query},
  {"logs", l_logs}, {"close", l_close}, {"check", l_check},
  {"scripts", l_scripts}, {"scripts_digest", l_scripts_digest},
  {"restore_from", l_restore_from}, {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"new", l_new}, {"encode", l_encode}, {"encode_json", l_encode_json},
  {"decode", l_decode}, {NULL, NULL}
};

LUAMOD_API int luaopen_rafting_sm(lua_State *L) {
  luaL_newmetatable(L, HOST_MT);
  luaL_newlib(L, host_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_pushinteger(L, RF_SM_DEFAULT_BUDGET);
  lua_setfield(L, -2, "DEFAULT_BUDGET");
  lua_pushinteger(L, RF_SM_DEFAULT_MEMORY);
  lua_setfield(L, -2, "DEFAULT_MEMORY");
  return 1;
}
