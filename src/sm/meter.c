/*
** meter.c -- charged wrappers for the standard library (see meter.h).
**
** Each wrapped function keeps the original as upvalue 1 and a static cost
** row as upvalue 2; the wrapper computes the cost from the arguments,
** charges it (which may raise the budget error) and only then calls the
** original.  A cost function never raises on a bad argument: it returns
** a small cost and lets the original report the error.  What is not
** wrapped is O(1), or its work is already charged elsewhere (pairs, next,
** table.sort, json, kv: the sandbox), or it runs Lua code that the count
** hook meters.  docs/commands.md lists every function with its charge.
*/
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "meter.h"

static const char METERKEY = 0; /* registry: userdata holding the charge fn */

/* pre is charged before the call: work the function does without
** allocating (loops, scans of existing strings).  post, computed from
** the same arguments, is charged after it returns: work proportional to
** the result it allocated, which the memory cap bounds for one call (so a
** single huge result still fails with the memory error), while a loop
** repeating it runs out of budget. */
typedef struct cost {
  const char *lib, *name; /* lib NULL: a global */
  uint64_t (*pre)(lua_State *L);
  uint64_t (*post)(lua_State *L);
} cost;

uint64_t rf_meter_bytes(uint64_t n) { return n / RF_METER_BYTES + 1; }

void rf_meter_charge(lua_State *L, uint64_t n) {
  rf_meter_fn *f;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &METERKEY);
  f = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (f != NULL) (*f)(L, n);
}

/* -- reading arguments without raising --------------------------------------- */

static size_t slen(lua_State *L, int i) {
  return lua_type(L, i) == LUA_TSTRING ? lua_rawlen(L, i) : 0;
}

static lua_Integer optint(lua_State *L, int i, lua_Integer d) {
  int ok;
  lua_Integer v = lua_tointegerx(L, i, &ok);
  return ok ? v : d;
}

/* #t as the library will see it (may run __len); 0 if not a table. */
static lua_Integer tlen(lua_State *L, int i) {
  if (lua_type(L, i) != LUA_TTABLE) return 0;
  return luaL_len(L, i);
}

/* Elements from i to j inclusive, saturated. */
static uint64_t span(lua_Integer i, lua_Integer j) {
  if (j < i) return 0;
  return (uint64_t)j - (uint64_t)i + 1;
}

static uint64_t satadd(uint64_t a, uint64_t b) {
  return a + b < a ? UINT64_MAX : a + b;
}

static uint64_t satmul(uint64_t a, uint64_t b) {
  return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* A string position as string.sub/byte resolve it: 1..len+1 */
static lua_Integer spos(lua_Integer p, size_t len) {
  if (p > 0) return p;
  if (p == 0) return 1;
  if (p < -(lua_Integer)len) return 1;
  return (lua_Integer)len + p + 1;
}

/* Bytes i..j (string.sub conventions) of the string at 1. */
static uint64_t srange(lua_State *L, lua_Integer di, lua_Integer dj) {
  size_t len = slen(L, 1);
  lua_Integer i = spos(optint(L, 2, di), len);
  lua_Integer j = optint(L, 3, dj);
  if (j > (lua_Integer)len) j = (lua_Integer)len;
  else if (j < 0) j = j < -(lua_Integer)len ? 0 : (lua_Integer)len + j + 1;
  return span(i, j);
}

/* Sum of the string arguments' bytes from index i on. */
static uint64_t argbytes(lua_State *L, int i) {
  uint64_t n = 0;
  for (; i <= lua_gettop(L); i++) n += slen(L, i);
  return n;
}

/* Sum of the decimal numbers in a pack format: bounds padding and sizes. */
static uint64_t fmtnums(lua_State *L, int i) {
  size_t len, k;
  const char *f = lua_type(L, i) == LUA_TSTRING ? lua_tolstring(L, i, &len)
                                                : (len = 0, "");
  uint64_t sum = 0, cur = 0;
  for (k = 0; k <= len; k++) {
    if (k < len && f[k] >= '0' && f[k] <= '9') {
      cur = satadd(satmul(cur, 10), (uint64_t)(f[k] - '0'));
    } else {
      sum = satadd(sum, cur);
      cur = 0;
    }
  }
  return satadd(sum, len);
}

/* -- costs ------------------------------------------------------------------------ */

static uint64_t c_args(lua_State *L) { return (uint64_t)lua_gettop(L) + 1; }
static uint64_t c_args4(lua_State *L) { return 4 * (uint64_t)lua_gettop(L) + 1; }
/* per-byte loops in C (case mapping, number parsing, padding) */
static uint64_t c_bytes16(lua_State *L) { return slen(L, 1) / 16 + 1; }
static uint64_t c_bytes4(lua_State *L) { return slen(L, 1) / 4 + 1; }
static uint64_t c_allbytes(lua_State *L) { return rf_meter_bytes(argbytes(L, 1)); }

static uint64_t c_sub(lua_State *L) { return rf_meter_bytes(srange(L, 1, -1)); }

static uint64_t c_byte(lua_State *L) {
  lua_Integer i = optint(L, 2, 1);
  return srange(L, 1, optint(L, 3, i)) + 1;
}

/* rep loops n times (~ one VM instruction each); with an empty string
** and separator it allocates nothing, so that is charged first */
static uint64_t c_rep(lua_State *L) {
  lua_Integer n = optint(L, 2, 0);
  if (n <= 0 || slen(L, 1) + slen(L, 3) > 0) return 1;
  return (uint64_t)n;
}

static uint64_t c_repout(lua_State *L) {
  lua_Integer n = optint(L, 2, 0);
  uint64_t each = slen(L, 1) + slen(L, 3);
  if (n <= 0 || each == 0) return 0;
  return satadd((uint64_t)n, rf_meter_bytes(satmul((uint64_t)n, each)));
}

static uint64_t c_formatout(lua_State *L) {
  return rf_meter_bytes(satadd(slen(L, 1), argbytes(L, 2)));
}

static uint64_t c_packout(lua_State *L) {
  return satadd(fmtnums(L, 1) / 4 + 1, c_allbytes(L));
}

static uint64_t c_packsize(lua_State *L) { return rf_meter_bytes(slen(L, 1)); }

/* unpack: "z" scans the data for its end, "cN" copies N bytes */
static uint64_t c_unpack(lua_State *L) {
  return satadd(rf_meter_bytes(fmtnums(L, 1)), rf_meter_bytes(slen(L, 2)));
}

static uint64_t c_concat(lua_State *L) {
  lua_Integer i = optint(L, 3, 1);
  lua_Integer j = lua_isnoneornil(L, 4) ? tlen(L, 1) : optint(L, 4, 0);
  return satmul(span(i, j), 2) + 1;
}

static uint64_t c_concatout(lua_State *L) {
  lua_Integer i = optint(L, 3, 1);
  lua_Integer j = lua_isnoneornil(L, 4) ? tlen(L, 1) : optint(L, 4, 0);
  return rf_meter_bytes(satmul(span(i, j), slen(L, 2)));
}

static uint64_t c_tunpack(lua_State *L) {
  lua_Integer i = optint(L, 2, 1);
  lua_Integer j = lua_isnoneornil(L, 3) ? tlen(L, 1) : optint(L, 3, 0);
  return span(i, j) + 1;
}

/* insert(t, pos, v) and remove(t, pos) shift up to #t elements */
static uint64_t c_shift(lua_State *L) {
  lua_Integer n = tlen(L, 1);
  return n > 0 ? (uint64_t)n + 1 : 1;
}

static uint64_t c_insert(lua_State *L) {
  return lua_gettop(L) >= 3 ? c_shift(L) : 1;
}

static uint64_t c_remove(lua_State *L) {
  return lua_gettop(L) >= 2 ? c_shift(L) : 1;
}

static uint64_t c_move(lua_State *L) {
  return satmul(span(optint(L, 2, 1), optint(L, 3, 0)), 2) + 1;
}

/* decoding UTF-8 costs about a unit per 4 bytes */
static uint64_t c_utf8range(lua_State *L) { return srange(L, 1, -1) / 4 + 1; }
static uint64_t c_utf8bytes(lua_State *L) { return slen(L, 1) / 4 + 1; }

static uint64_t c_codepoint(lua_State *L) {
  lua_Integer i = optint(L, 2, 1);
  return srange(L, 1, optint(L, 3, i)) + 1;
}

static const cost COSTS[] = {
  {"string", "byte", c_byte, NULL},      {"string", "char", c_args, NULL},
  {"string", "format", c_args, c_formatout},
  {"string", "lower", NULL, c_bytes16},  {"string", "upper", NULL, c_bytes16},
  {"string", "reverse", NULL, c_bytes16}, {"string", "rep", c_rep, c_repout},
  {"string", "sub", NULL, c_sub},        {"string", "pack", c_args, c_packout},
  {"string", "packsize", c_packsize, NULL},
  {"string", "unpack", c_unpack, NULL},
  {"table", "concat", c_concat, c_concatout},
  {"table", "unpack", c_tunpack, NULL},  {"table", "pack", c_args, NULL},
  {"table", "insert", c_insert, NULL},   {"table", "remove", c_remove, NULL},
  {"table", "move", c_move, NULL},       {"utf8", "char", c_args4, NULL},
  {"utf8", "len", c_utf8range, NULL},    {"utf8", "codepoint", c_codepoint, NULL},
  {"utf8", "offset", c_utf8bytes, NULL},    {NULL, "tonumber", c_bytes4, NULL},
  {NULL, "print", c_allbytes, NULL},
  {NULL, NULL, NULL, NULL}
};

/* -- wrappers ------------------------------------------------------------------------ */

static int metered(lua_State *L) {
  const cost *c = lua_touserdata(L, lua_upvalueindex(2));
  uint64_t post = c->post ? c->post(L) : 0;
  int n;
  if (c->pre) rf_meter_charge(L, c->pre(L));
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  n = lua_gettop(L);
  if (post) rf_meter_charge(L, post);
  return n;
}

/* utf8.codes' step skips continuation bytes: charge the run it will skip
** (scanning in charged slices) before calling the real step. */
static int codestep(lua_State *L) {
  size_t len, k;
  const char *s = lua_tolstring(L, 1, &len);
  lua_Integer n = optint(L, 2, 0);
  k = n > 0 ? (size_t)n : 0;
  while (s && k < len && (s[k] & 0xC0) == 0x80) {
    size_t end = k + 4096 < len ? k + 4096 : len;
    rf_meter_charge(L, (end - k) / 4 + 1);
    while (k < end && (s[k] & 0xC0) == 0x80) k++;
  }
  rf_meter_charge(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* utf8.codes: the real one, with its step function wrapped. */
static int codes(lua_State *L) {
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  if (lua_isfunction(L, 1)) {
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, codestep, 1);
    lua_replace(L, 1);
  }
  return lua_gettop(L);
}

/* load(f): each piece the reader returns is charged before it is parsed.
** Upvalue 1: the reader. */
static int reader(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_call(L, 0, 1);
  rf_meter_charge(L, slen(L, -1) / 2 + 1);
  return 1;
}

/* load: compiling costs about a unit per 2 bytes of text. */
static int load(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    rf_meter_charge(L, slen(L, 1) / 2 + 1);
  } else if (lua_type(L, 1) == LUA_TFUNCTION) {
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, reader, 1);
    lua_replace(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* Push the table a row refers to (the globals for lib NULL), or nil. */
static int pushlib(lua_State *L, const char *lib) {
  if (lib == NULL) {
    lua_pushglobaltable(L);
    return 1;
  }
  if (lua_getglobal(L, lib) == LUA_TTABLE) return 1;
  lua_pop(L, 1);
  return 0;
}

/* Error messages name a C function called from C by looking for it in
** the loaded modules: keep the original reachable there as lib.name, so
** "bad argument #1 to 'string.rep'" does not become "to '?'". */
static void keepname(lua_State *L, const char *lib, const char *name) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, lib) != LUA_TTABLE ||
      lua_rawequal(L, -1, -4)) { /* still the live library: replace */
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, lib);
  }
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, name);
  lua_pop(L, 2);
}

/* t[name] = closure(f, t[name]) if t[name] is a function; lib names t. */
static void wrap(lua_State *L, const char *lib, const char *name,
                 lua_CFunction f, const void *row) {
  if (lua_getfield(L, -1, name) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return;
  }
  keepname(L, lib, name);
  if (row) {
    lua_pushlightuserdata(L, (void *)row);
    lua_pushcclosure(L, f, 2);
  } else {
    lua_pushcclosure(L, f, 1);
  }
  lua_setfield(L, -2, name);
}

static void setfn(lua_State *L, const char *name, lua_CFunction f) {
  lua_pushcfunction(L, f);
  lua_setfield(L, -2, name);
}

void rf_meter_open(lua_State *L, rf_meter_fn charge) {
  const cost *c;
  rf_meter_fn *u = lua_newuserdatauv(L, sizeof(*u), 0);
  *u = charge;
  lua_rawsetp(L, LUA_REGISTRYINDEX, &METERKEY);
  for (c = COSTS; c->name; c++) {
    if (!pushlib(L, c->lib)) continue;
    wrap(L, c->lib ? c->lib : LUA_GNAME, c->name, metered, c);
    lua_pop(L, 1);
  }
  if (pushlib(L, "utf8")) {
    wrap(L, "utf8", "codes", codes, NULL);
    lua_pop(L, 1);
  }
  if (pushlib(L, NULL)) {
    wrap(L, LUA_GNAME, "load", load, NULL);
    lua_pop(L, 1);
  }
  if (pushlib(L, "string")) {
    setfn(L, "find", rf_match_find);
    setfn(L, "match", rf_match_match);
    setfn(L, "gmatch", rf_match_gmatch);
    setfn(L, "gsub", rf_match_gsub);
    lua_pop(L, 1);
  }
}
