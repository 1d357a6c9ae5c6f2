/*
** sandbox.c -- the environment command handlers run in.
**
** Replicas must compute the same thing from the same entry, so everything
** that could differ between processes is gone or replaced:
**   - no io, os (but a clock reading the entry's time), require, package,
**     debug, collectgarbage, dofile, loadfile, string.dump;
**   - load takes text only and defaults to the call's environment;
**   - pairs and next walk keys in a fixed order (numbers, strings by bytes,
**     booleans); keys of other types have no such order and raise;
**   - table.sort is a stable merge sort (Lua's quicksort picks random
**     pivots, which reorders equal elements differently per process);
**   - tostring and string.format never show addresses ("%p" raises);
**   - math.random is reseeded from the entry index before every call, and
**     math.randomseed needs an explicit seed;
**   - setmetatable refuses __gc (finalizers run at GC time) and __mode
**     (weak tables empty at GC time), and gives the table a private copy
**     of the metatable, so writing __mode into it later changes nothing;
**   - pcall, xpcall and coroutine.resume/wrap cannot catch the budget or
**     memory-cap errors: once a limit fires the call is over.
** The base environment is built once; every call gets an empty globals
** table that reads through to it, and library tables are read-only
** proxies, so nothing a handler stores survives the call.  All state here
** is Lua-owned.
*/
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "meter.h"
#include "smint.h"

/* registry keys (their addresses) */
static const char BASEKEY = 0; /* the base environment */
static const char SEEDKEY = 0; /* the real math.randomseed */
static const char ENVKEY = 0;  /* the running call's environment */
static const char ENVMT = 0;   /* metatable of every call's environment */
static const char PROXIES = 0; /* set of the read-only library tables */
static const char COPYMARK = 0; /* key in metatable copies: protected? */


/* -- deterministic order ------------------------------------------------- */

static int keyrank(lua_State *L, int i) {
  switch (lua_type(L, i)) {
    case LUA_TNUMBER: return 0;
    case LUA_TSTRING: return 1;
    case LUA_TBOOLEAN: return 2;
    default:
      return luaL_error(L, "table keys of type %s have no deterministic "
                        "order (pairs/next)", luaL_typename(L, i));
  }
}

/* Order of keys at a and b: numbers < strings (bytes) < false < true. */
int rf_sandbox_keycmp(lua_State *L, int a, int b) {
  int ra = keyrank(L, a), rb = keyrank(L, b);
  size_t la, lb;
  const char *sa, *sb;
  if (ra != rb) return ra - rb;
  if (ra == 0) /* numbers compare without metamethods: cannot raise */
    return lua_compare(L, a, b, LUA_OPLT) ? -1 : lua_compare(L, b, a, LUA_OPLT);
  if (ra == 2) return lua_toboolean(L, a) - lua_toboolean(L, b);
  sa = lua_tolstring(L, a, &la);
  sb = lua_tolstring(L, b, &lb);
  return rf_store_keycmp(sa, la, sb, lb);
}

/* comp: 0 key order, -1 the < operator, else the index of a function. */
static int before(lua_State *L, int x, int y, int comp) {
  int r;
  if (comp == 0) return rf_sandbox_keycmp(L, x, y) < 0;
  if (comp < 0) return lua_compare(L, x, y, LUA_OPLT);
  lua_pushvalue(L, comp);
  lua_pushvalue(L, x);
  lua_pushvalue(L, y);
  lua_call(L, 2, 1);
  r = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

/* Merge src[lo..mid-1] and src[mid..hi-1] into dst; stable. */
static void merge(lua_State *L, int src, int dst, lua_Integer lo,
                  lua_Integer mid, lua_Integer hi, int comp) {
  lua_Integer i = lo, j = mid, k = lo;
  while (i < mid && j < hi) {
    lua_rawgeti(L, src, i);
    lua_rawgeti(L, src, j);
    if (before(L, lua_gettop(L), lua_gettop(L) - 1, comp)) {
      lua_rawseti(L, dst, k++); /* right one first */
      lua_pop(L, 1);
      j++;
    } else {
      lua_pop(L, 1);
      lua_rawseti(L, dst, k++);
      i++;
    }
  }
  for (; i < mid; i++) lua_rawgeti(L, src, i), lua_rawseti(L, dst, k++);
  for (; j < hi; j++) lua_rawgeti(L, src, j), lua_rawseti(L, dst, k++);
}

static uint64_t sortcost(lua_Integer n) {
  uint64_t c = 1, m = (uint64_t)n;
  while (m >>= 1) c++;
  return (uint64_t)n * c;
}

/* Sort the raw array t[1..n] with a bottom-up merge sort (see before()
** for comp).  The scratch array is a Lua table: an error mid-sort (a
** comparator raising, the budget) leaves nothing to free. */
void rf_sandbox_sort(lua_State *L, int t, lua_Integer n, int comp) {
  int a, b, tmp;
  lua_Integer w, i;
  t = lua_absindex(L, t);
  if (comp > 0) comp = lua_absindex(L, comp);
  rf_sm_charge(L, sortcost(n));
  lua_createtable(L, (int)(n < 1 << 20 ? n : 1 << 20), 0);
  a = t, b = lua_gettop(L);
  for (w = 1; w < n; w *= 2) {
    for (i = 1; i <= n; i += 2 * w) {
      lua_Integer mid = i + w <= n + 1 ? i + w : n + 1;
      lua_Integer hi = i + 2 * w <= n + 1 ? i + 2 * w : n + 1;
      merge(L, a, b, i, mid, hi, comp);
    }
    tmp = a, a = b, b = tmp;
  }
  if (a != t)
    for (i = 1; i <= n; i++) lua_rawgeti(L, a, i), lua_rawseti(L, t, i);
  lua_pop(L, 1);
}

/* Push the keys of table t as a sorted array.  Keys that cannot be
** ordered raise, naming the lowest such type: lua_next meets them in an
** order of addresses, which differs between replicas. */
void rf_sandbox_sortedkeys(lua_State *L, int t) {
  lua_Integer n = 0;
  int bad = LUA_NUMTYPES;
  t = lua_absindex(L, t);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int ty = lua_type(L, -2);
    lua_pop(L, 1);
    if (ty != LUA_TNUMBER && ty != LUA_TSTRING && ty != LUA_TBOOLEAN) {
      if (ty < bad) bad = ty;
      continue;
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, ++n);
  }
  if (bad < LUA_NUMTYPES)
    luaL_error(L, "table keys of type %s have no deterministic order "
               "(pairs/next)", lua_typename(L, bad));
  rf_sandbox_sort(L, -1, n, 0);
}


/* -- pairs, next --------------------------------------------------------- */

static int pairsaux(lua_State *L) {
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(2));
  for (;;) {
    if (lua_rawgeti(L, lua_upvalueindex(1), ++i) == LUA_TNIL) return 1;
    lua_pushvalue(L, -1);
    if (lua_rawget(L, 1) != LUA_TNIL) break; /* skip keys set to nil */
    lua_pop(L, 2);
  }
  lua_pushinteger(L, i);
  lua_replace(L, lua_upvalueindex(2));
  return 2;
}

static int s_pairs(lua_State *L) {
  luaL_checkany(L, 1);
  if (luaL_getmetafield(L, 1, "__pairs") != LUA_TNIL) {
    lua_pushvalue(L, 1);
    lua_call(L, 1, 3);
    return 3;
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  rf_sandbox_sortedkeys(L, 1);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, pairsaux, 2);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* The least key greater than the given one: a scan, charged per key. */
static int s_next(lua_State *L) {
  int found = 0;
  lua_Integer n = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (!lua_isnil(L, 2)) keyrank(L, 2);
  lua_pushnil(L); /* 3: best so far */
  lua_pushnil(L); /* 4: traversal key */
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    n++;
    keyrank(L, 4);
    if ((lua_isnil(L, 2) || rf_sandbox_keycmp(L, 2, 4) < 0) &&
        (!found || rf_sandbox_keycmp(L, 4, 3) < 0)) {
      lua_pushvalue(L, 4);
      lua_replace(L, 3);
      found = 1;
    }
  }
  rf_sm_charge(L, (uint64_t)n);
  if (!found) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 3);
  lua_rawget(L, 1);
  return 2;
}


/* -- text without addresses ---------------------------------------------- */

static int isref(lua_State *L, int i) {
  int t = lua_type(L, i);
  return t == LUA_TTABLE || t == LUA_TFUNCTION || t == LUA_TUSERDATA ||
         t == LUA_TTHREAD || t == LUA_TLIGHTUSERDATA;
}

/* Like luaL_tolstring, but a value without __tostring becomes its type. */
static const char *safestring(lua_State *L, int i, size_t *len) {
  if (isref(L, i)) {
    if (luaL_getmetafield(L, i, "__tostring") == LUA_TNIL) {
      lua_pushstring(L, luaL_typename(L, i));
      return lua_tolstring(L, -1, len);
    }
    lua_pop(L, 1);
  }
  return luaL_tolstring(L, i, len);
}

static int s_tostring(lua_State *L) {
  luaL_checkany(L, 1);
  safestring(L, 1, NULL);
  return 1;
}

static int s_print(lua_State *L) {
  rf_sm *sm = rf_sm_host(L);
  int i, n = lua_gettop(L);
  luaL_Buffer b;
  size_t len;
  const char *s;
  if (sm->log == NULL) return 0;
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    safestring(L, i, &len);
    rf_sm_charge(L, rf_meter_bytes(len));
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  s = lua_tolstring(L, -1, &len);
  sm->log(sm->log_ud, s, len);
  return 0;
}

/* string.format, refusing %p and showing references by type only */
static int s_format(lua_State *L) {
  size_t len, i;
  const char *f = luaL_checklstring(L, 1, &len);
  int a, n = lua_gettop(L);
  for (i = 0; i < len; i++) {
    if (f[i] != '%') continue;
    if (++i < len && f[i] == '%') continue;
    while (i < len && f[i] && strchr("-+ #0123456789.", f[i])) i++;
    if (i < len && f[i] == 'p')
      return luaL_error(L, "string.format: '%%p' is not available "
                        "(addresses differ between replicas)");
  }
  for (a = 2; a <= n; a++) {
    if (!isref(L, a)) continue;
    safestring(L, a, NULL);
    lua_replace(L, a);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, 1);
  return 1;
}


/* -- load, setmetatable, clocks, random ---------------------------------- */

static int s_load(lua_State *L) {
  const char *mode = luaL_optstring(L, 3, "t");
  int n = lua_gettop(L);
  if (strcmp(mode, "t") != 0)
    return luaL_error(L, "load: only text chunks are allowed (mode \"t\")");
  lua_settop(L, 4);
  lua_pushliteral(L, "t");
  lua_replace(L, 3);
  if (n < 4) { /* default to this call's environment, not the host's */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ENVKEY);
    lua_replace(L, 4);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 4, LUA_MULTRET);
  return lua_gettop(L);
}

static int rawhas(lua_State *L, int t, const char *k) {
  int r;
  t = lua_absindex(L, t);
  lua_pushstring(L, k);
  r = lua_rawget(L, t) != LUA_TNIL;
  lua_pop(L, 1);
  return r;
}

/* Is t's metatable protected?  A copy made below is when the user's
** metatable had a __metatable field (the copy's marker says so). */
static int protectedmt(lua_State *L) {
  int r;
  if (!lua_getmetatable(L, 1)) return 0;
  if (lua_rawgetp(L, -1, &COPYMARK) != LUA_TNIL) r = lua_toboolean(L, -1);
  else r = rawhas(L, -2, "__metatable");
  lua_pop(L, 2);
  return r;
}

/* Push a copy of the metatable at 2, charged per field.  Lua reads a
** table's weak mode at every collection, so a metatable written after
** setmetatable could make it weak: the table gets this copy, which no
** script can reach (its __metatable hands out the original). */
static void copymt(lua_State *L) {
  int prot = rawhas(L, 2, "__metatable");
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    rf_sm_charge(L, 10); /* the copy rehashes as it grows */
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  if (!prot) {
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pushboolean(L, prot);
  lua_rawsetp(L, -2, &COPYMARK);
}

static int s_setmetatable(lua_State *L) {
  int t = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  if (protectedmt(L))
    return luaL_error(L, "cannot change a protected metatable");
  lua_settop(L, 2);
  if (t == LUA_TTABLE) {
    if (rawhas(L, 2, "__gc"))
      return luaL_error(L, "setmetatable: __gc is not allowed (finalizers "
                        "run at GC time, which differs between replicas)");
    if (rawhas(L, 2, "__mode"))
      return luaL_error(L, "setmetatable: __mode is not allowed (weak "
                        "tables change at GC time)");
    copymt(L);
    lua_replace(L, 2);
  }
  lua_setmetatable(L, 1);
  return 1;
}

static int s_time(lua_State *L) {
  if (!lua_isnoneornil(L, 1))
    return luaL_error(L, "os.time: only os.time() (the entry's time) is "
                      "available");
  lua_pushinteger(L, (lua_Integer)(rf_sm_host(L)->time_ms / 1000));
  return 1;
}

static int s_clock(lua_State *L) {
  lua_pushnumber(L, (lua_Number)rf_sm_host(L)->time_ms / 1000.0);
  return 1;
}

static int s_randomseed(lua_State *L) {
  luaL_checkinteger(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 0);
  return 0;
}

void rf_sandbox_reseed(lua_State *L, lua_Integer seed) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &SEEDKEY);
  lua_pushinteger(L, seed);
  lua_call(L, 1, 0);
}

static int s_sort(lua_State *L) {
  lua_Integer n, i;
  int comp = -1;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
    comp = 2;
  }
  n = luaL_len(L, 1);
  lua_createtable(L, (int)(n < 1 << 20 ? n : 1 << 20), 0); /* raw copy */
  for (i = 1; i <= n; i++) lua_geti(L, 1, i), lua_rawseti(L, -2, i);
  rf_sandbox_sort(L, -1, n, comp);
  for (i = 1; i <= n; i++) lua_rawgeti(L, -1, i), lua_seti(L, 1, i);
  return 0;
}


/* -- limits cannot be caught --------------------------------------------- */

static int finishpcall(lua_State *L, int status, lua_KContext extra) {
  if (status != LUA_OK && status != LUA_YIELD) {
    rf_sm *sm = rf_sm_host(L);
    if (status == LUA_ERRMEM) sm->abort |= ABORT_MEM;
    if (sm->abort) return lua_error(L); /* the call is over */
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
  }
  return lua_gettop(L) - (int)extra;
}

static int s_pcall(lua_State *L) {
  int status;
  luaL_checkany(L, 1);
  lua_pushboolean(L, 1);
  lua_insert(L, 1);
  status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finishpcall);
  return finishpcall(L, status, 0);
}

static int s_xpcall(lua_State *L) {
  int status, n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 2);
  status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finishpcall);
  return finishpcall(L, status, 2);
}

/* coroutine.resume via the real one; a dead coroutine's limit error goes
** on up.  Upvalue 1: the real resume. */
static int resume(lua_State *L, int wrapped) {
  lua_State *co = lua_tothread(L, 1);
  rf_sm *sm = rf_sm_host(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  if (lua_toboolean(L, 1)) return lua_gettop(L) - wrapped;
  if (co && lua_status(co) == LUA_ERRMEM) sm->abort |= ABORT_MEM;
  if (sm->abort || wrapped) {
    lua_settop(L, 2);
    return lua_error(L);
  }
  return lua_gettop(L);
}

static int s_resume(lua_State *L) { return resume(L, 0); }

/* Upvalues: real resume, the coroutine. */
static int wrapaux(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  return resume(L, 1);
}

/* Upvalues: real resume, real create. */
static int s_wrap(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, -2);
  lua_pushcclosure(L, wrapaux, 2);
  return 1;
}


/* -- read-only library tables ------------------------------------------- */

/* Library tables are shared by every call, so handlers get empty proxies
** whose metatable reads through to the real (unreachable) table and
** refuses writes: nothing a call does to them can reach the next call. */

static int readonly(lua_State *L) {
  return luaL_error(L, "library tables are read-only");
}

static int proxypairs(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  return s_pairs(L);
}

static int s_rawset(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &PROXIES);
  lua_pushvalue(L, 1);
  if (lua_rawget(L, -2) != LUA_TNIL) return readonly(L);
  lua_settop(L, 3);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 3, 1);
  return 1;
}

/* Replace the table at the top by a read-only proxy of it. */
static void makeproxy(lua_State *L) {
  lua_newtable(L); /* the proxy */
  lua_createtable(L, 0, 4);
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, readonly);
  lua_setfield(L, -2, "__newindex");
  lua_pushvalue(L, -3);
  lua_pushcclosure(L, proxypairs, 1);
  lua_setfield(L, -2, "__pairs");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_replace(L, -2);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &PROXIES);
  lua_pushvalue(L, -2);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Every table-valued field of g becomes a proxy. */
static void freeze(lua_State *L, int g) {
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &PROXIES);
  lua_pushnil(L);
  while (lua_next(L, g)) {
    if (lua_istable(L, -1)) {
      makeproxy(L);
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, g); /* replacing an existing field: next() stays valid */
    } else {
      lua_pop(L, 1);
    }
  }
}


/* -- building the environment -------------------------------------------- */

static const char *const BASENAMES[] = {
  "assert", "error", "getmetatable", "ipairs", "rawequal", "rawget",
  "rawlen", "select", "tonumber", "type", "_VERSION", NULL
};

static const char *const LIBS[] = {"string", "table", "math", "utf8", NULL};

/* t[name] = f with the value t[name] had as its upvalue */
static void override(lua_State *L, int t, const char *name, lua_CFunction f) {
  lua_getfield(L, t, name);
  lua_pushcclosure(L, f, 1);
  lua_setfield(L, t, name);
}

/* Push a shallow copy of the table at i. */
static void copytable(lua_State *L, int i) {
  i = lua_absindex(L, i);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, i)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
}

static void opencoroutine(lua_State *L, int g) {
  lua_getglobal(L, "coroutine");
  copytable(L, -1);
  lua_getfield(L, -1, "resume");
  lua_pushcclosure(L, s_resume, 1);
  lua_setfield(L, -2, "resume");
  lua_getfield(L, -2, "resume");
  lua_getfield(L, -3, "create");
  lua_pushcclosure(L, s_wrap, 2);
  lua_setfield(L, -2, "wrap");
  lua_setfield(L, g, "coroutine");
  lua_pop(L, 1);
}

static void openlibs(lua_State *L, int g) {
  const char *const *p;
  for (p = LIBS; *p; p++) {
    lua_getglobal(L, *p);
    copytable(L, -1);
    lua_setfield(L, g, *p);
    lua_pop(L, 1);
  }
  lua_getfield(L, g, "table");
  lua_pushcfunction(L, s_sort);
  lua_setfield(L, -2, "sort");
  lua_pop(L, 1);
  lua_getfield(L, g, "math");
  lua_getfield(L, -1, "randomseed");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SEEDKEY);
  lua_pushcclosure(L, s_randomseed, 1);
  lua_setfield(L, -2, "randomseed");
  lua_pop(L, 1);
  opencoroutine(L, g);
}

/* The string library is also reached through the string metatable, so it
** is changed in place (and the metatable hidden). */
static void fixstrings(lua_State *L) {
  lua_getglobal(L, "string");
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  override(L, lua_gettop(L), "format", s_format);
  lua_pop(L, 1);
  lua_pushliteral(L, "");
  lua_getmetatable(L, -1);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 2);
}

static void openos(lua_State *L, int g) {
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, s_time);
  lua_setfield(L, -2, "time");
  lua_pushcfunction(L, s_clock);
  lua_setfield(L, -2, "clock");
  lua_setfield(L, g, "os");
}

static void openbase(lua_State *L, int g) {
  static const luaL_Reg fns[] = {
    {"pairs", s_pairs}, {"next", s_next}, {"tostring", s_tostring},
    {"print", s_print}, {"pcall", s_pcall}, {"xpcall", s_xpcall},
    {NULL, NULL}
  };
  const char *const *p;
  for (p = BASENAMES; *p; p++) {
    lua_getglobal(L, *p);
    lua_setfield(L, g, *p);
  }
  luaL_setfuncs(L, fns, 0);
  lua_getglobal(L, "load");
  lua_pushcclosure(L, s_load, 1);
  lua_setfield(L, g, "load");
  lua_pushcfunction(L, s_setmetatable);
  lua_setfield(L, g, "setmetatable");
  lua_getglobal(L, "rawset");
  lua_pushcclosure(L, s_rawset, 1);
  lua_setfield(L, g, "rawset");
}

void rf_sandbox_open(lua_State *L) {
  int g;
  fixstrings(L);
  lua_newtable(L);
  g = lua_gettop(L);
  openbase(L, g);
  openlibs(L, g);
  openos(L, g);
  rf_json_pushlib(L);
  lua_setfield(L, g, "json");
  rf_kvapi_push(L);
  lua_setfield(L, g, "kv");
  freeze(L, g);
  lua_createtable(L, 0, 2); /* the environments' metatable */
  lua_pushvalue(L, g);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ENVMT);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &BASEKEY);
  lua_pushboolean(L, 0); /* make ENVKEY exist: clearing it never allocates */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ENVKEY);
}

void rf_sandbox_dropenv(lua_State *L) {
  lua_pushboolean(L, 0);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ENVKEY);
}

/* A call's globals: an empty table reading through to the base. */
void rf_sandbox_env(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ENVMT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "_G");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ENVKEY);
}
