/*
** json.c -- JSON for handlers: arguments in, results out, and the json
** table of the sandbox.
**
** Parsing is jansson's (integers stay integers).  The parsed tree is C
** memory, so it is parked in rf_sm.pending while it becomes Lua values: a
** Lua error halfway leaves it for the host to free.  Encoding is here,
** because it must be deterministic: object keys are sorted (integers, then
** strings by bytes), and it writes into the host-owned rf_sm.scratch.
**
** Mapping: objects <-> tables (a null member is dropped: absent is nil);
** arrays <-> tables marked by json.array (an empty one stays "[]"), null
** elements <-> json.null; a table with keys 1..n encodes as an array too.
** Strings are bytes: invalid UTF-8 is escaped as \u00XX on output.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "smint.h"

#define MAXDEPTH 100
#define TREECOST 24 /* tree bytes per input byte, worst case, roughly */

static const char NULLKEY = 0; /* its address is json.null */
static const char ARRAYKEY = 0; /* registry key: the array marker */


/* -- JSON -> Lua --------------------------------------------------------- */

static void push(lua_State *L, json_t *v, int depth);

static void pushobject(lua_State *L, json_t *v, int depth) {
  const char *k;
  json_t *m;
  lua_createtable(L, 0, (int)json_object_size(v));
  json_object_foreach(v, k, m) {
    if (json_is_null(m)) continue;
    lua_pushstring(L, k);
    push(L, m, depth + 1);
    lua_rawset(L, -3);
  }
}

static void pusharray(lua_State *L, json_t *v, int depth) {
  size_t i, n = json_array_size(v);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    push(L, json_array_get(v, i), depth + 1);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  rf_json_markarray(L, -1);
}

static void push(lua_State *L, json_t *v, int depth) {
  if (depth > MAXDEPTH) luaL_error(L, "json: nesting deeper than %d", MAXDEPTH);
  luaL_checkstack(L, 4, "json nesting");
  rf_sm_charge(L, 1);
  switch (json_typeof(v)) {
    case JSON_OBJECT: pushobject(L, v, depth); break;
    case JSON_ARRAY: pusharray(L, v, depth); break;
    case JSON_STRING:
      lua_pushlstring(L, json_string_value(v), json_string_length(v));
      break;
    case JSON_INTEGER: lua_pushinteger(L, json_integer_value(v)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    default: lua_pushlightuserdata(L, (void *)&NULLKEY); break;
  }
}

void rf_json_push(lua_State *L, json_t *v) { push(L, v, 0); }


/* -- Lua -> JSON --------------------------------------------------------- */

static void encode(lua_State *L, int i, rf_buf *b, int depth);

static void number(lua_State *L, int i, rf_buf *b) {
  char s[40];
  int prec;
  double d;
  if (lua_isinteger(L, i)) {
    rf_buf_printf(b, "%lld", (long long)lua_tointeger(L, i));
    return;
  }
  d = lua_tonumber(L, i);
  if (!isfinite(d)) luaL_error(L, "json: cannot encode %s", isnan(d) ? "NaN" : "inf");
  for (prec = 15; prec < 17; prec++) { /* shortest text that reads back */
    snprintf(s, sizeof(s), "%.*g", prec, d);
    if (strtod(s, NULL) == d) break;
  }
  snprintf(s, sizeof(s), "%.*g", prec, d);
  if (strpbrk(s, ".eEn") == NULL) strcat(s, ".0"); /* stays a float */
  rf_buf_str(b, s);
}

static int marked(lua_State *L, int t) {
  int r;
  if (!lua_getmetatable(L, t)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ARRAYKEY);
  r = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return r;
}

/* Array length when t is an array (marked, or keys exactly 1..n), else -1. */
static lua_Integer arraylen(lua_State *L, int t) {
  lua_Integer n = 0, max = 0, k;
  if (marked(L, t)) return (lua_Integer)lua_rawlen(L, t);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || (k = lua_tointeger(L, -1)) < 1) {
      lua_pop(L, 1);
      return -1;
    }
    if (k > max) max = k;
    n++;
  }
  return n > 0 && max == n ? n : -1;
}

static void array(lua_State *L, int t, lua_Integer n, rf_buf *b, int depth) {
  lua_Integer i;
  rf_buf_add(b, "[", 1);
  for (i = 1; i <= n; i++) {
    if (i > 1) rf_buf_add(b, ",", 1);
    lua_rawgeti(L, t, i);
    encode(L, lua_gettop(L), b, depth + 1);
    lua_pop(L, 1);
  }
  rf_buf_add(b, "]", 1);
}

static void object(lua_State *L, int t, rf_buf *b, int depth) {
  lua_Integer n = 0, i;
  int keys;
  size_t len;
  const char *s;
  lua_newtable(L);
  keys = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING && !lua_isinteger(L, -1))
      luaL_error(L, "json: cannot encode a table key of type %s",
                 lua_isnumber(L, -1) ? "float" : luaL_typename(L, -1));
    lua_pushvalue(L, -1);
    lua_rawseti(L, keys, ++n);
  }
  rf_sandbox_sort(L, keys, n, 0);
  rf_buf_add(b, "{", 1);
  for (i = 1; i <= n; i++) {
    if (i > 1) rf_buf_add(b, ",", 1);
    lua_rawgeti(L, keys, i);
    if (lua_isinteger(L, -1)) {
      rf_buf_printf(b, "\"%lld\"", (long long)lua_tointeger(L, -1));
    } else {
      s = lua_tolstring(L, -1, &len);
      rf_buf_json_str(b, s, len);
    }
    rf_buf_add(b, ":", 1);
    lua_rawget(L, t);
    encode(L, lua_gettop(L), b, depth + 1);
    lua_pop(L, 1);
  }
  rf_buf_add(b, "}", 1);
  lua_pop(L, 1);
}

static void encode(lua_State *L, int i, rf_buf *b, int depth) {
  rf_sm *sm = rf_sm_host(L);
  const char *s;
  size_t len;
  lua_Integer n;
  if (depth > MAXDEPTH)
    luaL_error(L, "json: nesting deeper than %d (a cycle?)", MAXDEPTH);
  luaL_checkstack(L, 6, "json nesting");
  rf_sm_charge(L, 1);
  if (b->oom) luaL_error(L, "json: out of memory");
  if (b->n > sm->memcap) luaL_error(L, "json: output exceeds the memory cap");
  switch (lua_type(L, i)) {
    case LUA_TNIL: rf_buf_str(b, "null"); break;
    case LUA_TBOOLEAN: rf_buf_str(b, lua_toboolean(L, i) ? "true" : "false"); break;
    case LUA_TNUMBER: number(L, i, b); break;
    case LUA_TSTRING:
      s = lua_tolstring(L, i, &len);
      rf_sm_charge(L, len); /* escaping: about a unit per byte */
      rf_buf_json_str(b, s, len);
      break;
    case LUA_TTABLE:
      if ((n = arraylen(L, i)) >= 0) array(L, i, n, b, depth);
      else object(L, i, b, depth);
      break;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, i) == &NULLKEY) {
        rf_buf_str(b, "null");
        break;
      }
      /* FALLTHROUGH */
    default:
      luaL_error(L, "json: cannot encode a %s value", luaL_typename(L, i));
  }
}

void rf_json_encode(lua_State *L, int idx, rf_buf *b) {
  encode(L, lua_absindex(L, idx), b, 0);
  if (b->oom) luaL_error(L, "json: out of memory");
}


/* -- the json table ------------------------------------------------------ */

void rf_json_markarray(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ARRAYKEY);
  lua_setmetatable(L, idx);
}

static int j_encode(lua_State *L) {
  rf_sm *sm = rf_sm_host(L);
  luaL_checkany(L, 1);
  sm->scratch.n = 0;
  rf_json_encode(L, 1, &sm->scratch);
  lua_pushlstring(L, sm->scratch.p, sm->scratch.n);
  return 1;
}

static int j_decode(lua_State *L) {
  rf_sm *sm = rf_sm_host(L);
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  json_error_t err;
  size_t used = sm->mem + sm->batchmem;
  if (used >= sm->memcap || len > (sm->memcap - used) / TREECOST)
    return rf_sm_memerror(L); /* the parsed tree lives outside the cap */
  rf_sm_charge(L, len); /* parsing: about a unit per byte, charged first */
  json_decref(sm->pending);
  sm->pending = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
  if (sm->pending == NULL)
    return luaL_error(L, "json.decode: %s at line %d column %d", err.text,
                      err.line, err.column);
  rf_json_push(L, sm->pending);
  json_decref(sm->pending);
  sm->pending = NULL;
  return 1;
}

static int j_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (lua_getmetatable(L, 1) && !marked(L, 1))
    return luaL_error(L, "json.array: the table already has a metatable");
  lua_settop(L, 1);
  rf_json_markarray(L, 1);
  return 1;
}

void rf_json_pushlib(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"encode", j_encode}, {"decode", j_decode}, {"array", j_array},
    {NULL, NULL}
  };
  lua_createtable(L, 0, 1); /* the marker metatable, fixed for good */
  lua_pushliteral(L, "json.array");
  lua_setfield(L, -2, "__metatable");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ARRAYKEY);
  luaL_newlib(L, fns);
  lua_pushlightuserdata(L, (void *)&NULLKEY);
  lua_setfield(L, -2, "null");
}
