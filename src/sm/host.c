/*
** host.c -- the replicated state machine host (see rafting/sm.h).
**
** One Lua state per rf_sm, built from the base libraries only (no io, os,
** package, debug), with a counting allocator that enforces the memory cap
** and a count hook that enforces the instruction budget.  Scripts are
** compiled once; before every call the chunk runs again in a fresh
** environment, so its top-level locals and globals never carry state from
** one call to the next: the store is the only state, as on every replica.
**
** A call is one lua_pcall of docall() with a message handler that adds the
** script name and line.  The host touches the Lua API only inside that
** pcall (or the one in rf_sm_new), so a memory error can never escape to a
** panic; C resources used across it hang off rf_sm (smint.h).
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "meter.h"
#include "rafting/metrics.h"
#include "rafting/util.h"
#include "smint.h"

/* lua/rafting/sm/kv.lua, compiled in by cmake/embed.cmake */
extern const char rf_sm_kv_lua[];
extern const size_t rf_sm_kv_lua_len;

#define HOOKSTEP 1000 /* instructions between budget checks */
#define KEEPSCRATCH (64 * 1024)

static const char CHUNKS = 0; /* registry key: the compiled scripts */

rf_sm *rf_sm_host(lua_State *L) { return *(rf_sm **)lua_getextraspace(L); }

void rf_sm_charge(lua_State *L, uint64_t n) {
  rf_sm *sm = rf_sm_host(L);
  sm->used = n > UINT64_MAX - sm->used ? UINT64_MAX : sm->used + n;
  if (sm->used > sm->budget) {
    sm->abort |= ABORT_BUDGET;
    luaL_where(L, 0); /* in a hook, level 0 is the running Lua function */
    lua_pushfstring(L, "instruction budget exceeded (%I)", (lua_Integer)sm->budget);
    lua_concat(L, 2);
    lua_error(L);
  }
}

int rf_sm_memerror(lua_State *L) {
  rf_sm *sm = rf_sm_host(L);
  sm->abort |= ABORT_MEM;
  return luaL_error(L, "memory cap exceeded (%I bytes)", (lua_Integer)sm->memcap);
}

static void hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  rf_sm_charge(L, HOOKSTEP);
}

/* A new long string (a short one is at most 40 bytes + header, and may be
** reused from the string table, which differs between nodes) is charged
** one unit per 32 bytes: the VM's `..` copies its operands inside one
** instruction.  An allocator cannot raise, so past the budget the count
** hook is set to fire at the very next instruction. */
static void chargestring(rf_sm *sm, size_t nsize) {
  if (nsize < 128 || sm->L == NULL) return;
  sm->used += nsize / RF_METER_BYTES;
  if (sm->used > sm->budget) lua_sethook(sm->L, hook, LUA_MASKCOUNT, 1);
}

/* Lua's allocator, refusing growth past the cap (Lua then runs an
** emergency collection and tries once more before raising). */
static void *alloc(void *ud, void *p, size_t osize, size_t nsize) {
  rf_sm *sm = ud;
  void *q;
  if (p == NULL) { /* osize is the type of the object, if any */
    if (osize == LUA_TSTRING && nsize > 0) chargestring(sm, nsize);
    osize = 0;
  }
  if (nsize == 0) {
    free(p);
    sm->mem -= osize;
    return NULL;
  }
  if (nsize > osize && sm->mem + sm->batchmem + (nsize - osize) > sm->memcap)
    return NULL;
  q = realloc(p, nsize);
  if (q == NULL) return nsize <= osize ? p : NULL;
  sm->mem = sm->mem - osize + nsize;
  return q;
}

/* -- errors -------------------------------------------------------------- */

/* Does msg begin with "chunk:line:"? ([string "..."] chunks included) */
static int located(const char *msg) {
  const char *p = msg;
  if (strncmp(p, "[string \"", 9) == 0 && (p = strstr(p, "\"]")) != NULL)
    p += 2;
  else
    while (*p && *p != ':' && *p != '\n') p++;
  if (*p != ':' || p == msg) return 0;
  if (*++p < '0' || *p > '9') return 0;
  while (*p >= '0' && *p <= '9') p++;
  return *p == ':';
}

/* Message handler: a string message that names the innermost Lua line,
** or at least the script when no Lua function is running (errors raised
** by the host itself, such as a result JSON cannot hold). */
static int msgh(lua_State *L) {
  lua_Debug ar;
  int level;
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
  }
  if (located(msg)) return 1;
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline > 0) {
      lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
      return 1;
    }
  }
  {
    const char *name = rf_sm_host(L)->script[rf_sm_host(L)->cur];
    size_t n = strlen(name);
    if (strncmp(msg, name, n) == 0 && msg[n] == ':') return 1; /* named */
    lua_pushfstring(L, "%s: %s", name, msg);
  }
  return 1;
}

/* -- loading ------------------------------------------------------------- */

static int addname(rf_sm *sm, const char *name, int script, int query) {
  smname *p = realloc(sm->names, (sm->nnames + 1) * sizeof(*p));
  if (p == NULL) return -1;
  sm->names = p;
  if ((p[sm->nnames].name = strdup(name)) == NULL) return -1;
  p[sm->nnames].script = script;
  p[sm->nnames].query = query;
  sm->nnames++;
  return 0;
}

static const smname *findname(const rf_sm *sm, const char *name, size_t len,
                              int query) {
  size_t i;
  for (i = 0; i < sm->nnames; i++)
    if (sm->names[i].query == query && strlen(sm->names[i].name) == len &&
        memcmp(sm->names[i].name, name, len) == 0)
      return &sm->names[i];
  return NULL;
}

/* Run chunk i in a fresh environment; leave its module table on the
** stack, checked: { commands = {name = fn}, queries = {name = fn} }. */
static void runchunk(lua_State *L, int i) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &CHUNKS);
  lua_rawgeti(L, -1, i + 1);
  lua_remove(L, -2);
  rf_sandbox_env(L);
  if (lua_setupvalue(L, -2, 1) == NULL) luaL_error(L, "chunk has no _ENV");
  lua_call(L, 0, 1);
  if (!lua_istable(L, -1))
    luaL_error(L, "%s: the script must return a table "
               "{ commands = {...}, queries = {...} }",
               rf_sm_host(L)->script[i]);
}

/* A name another script has: an error of its own kind (REST: 409). */
static void clash(lua_State *L, const char *msg, ...) {
  va_list ap;
  rf_sm_host(L)->clash = 1;
  va_start(ap, msg);
  lua_pushvfstring(L, msg, ap);
  va_end(ap);
  lua_error(L);
}

/* Record the names of module field `field` (at the top) for script i, in
** key order: the first mistake reported is the same on every replica. */
static void register_names(lua_State *L, int i, const char *field) {
  rf_sm *sm = rf_sm_host(L);
  int query = field[0] == 'q';
  const smname *old;
  const char *name;
  lua_Integer k, n;
  if (lua_getfield(L, -1, field) == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1)) luaL_error(L, "%s: %s must be a table", sm->script[i], field);
  rf_sandbox_sortedkeys(L, -1);
  n = (lua_Integer)lua_rawlen(L, -1);
  for (k = 1; k <= n; k++) {
    lua_rawgeti(L, -1, k);
    lua_pushvalue(L, -1);
    lua_rawget(L, -4); /* the keys' table, then the field's */
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "%s: %s must map names to functions (a %s key)",
                 sm->script[i], field, luaL_typename(L, -2));
    name = lua_tostring(L, -2);
    if (!lua_isfunction(L, -1))
      luaL_error(L, "%s: %s.%s must be a function, not a %s", sm->script[i],
                 field, name, luaL_typename(L, -1));
    if (strlen(name) == 0 || strlen(name) > 255)
      luaL_error(L, "%s: bad %s name", sm->script[i], field);
    if (!query && strncmp(name, "script.", 7) == 0)
      clash(L, "%s: command '%s': the prefix 'script.' is reserved",
            sm->script[i], name);
    if ((old = findname(sm, name, strlen(name), query)) != NULL)
      clash(L, "%s: %s '%s' is already defined by %s", sm->script[i],
            query ? "query" : "command", name, sm->script[old->script]);
    if (addname(sm, name, i, query)) luaL_error(L, "out of memory");
    lua_pop(L, 2);
  }
  lua_pop(L, 2);
}

/* The module table (at the top) may hold only `commands` and `queries`:
** a typo such as `command =` would otherwise drop the whole table. */
static void checkshape(lua_State *L, int i) {
  const char *key;
  lua_Integer k, n;
  rf_sandbox_sortedkeys(L, -1);
  n = (lua_Integer)lua_rawlen(L, -1);
  for (k = 1; k <= n; k++) {
    lua_rawgeti(L, -1, k);
    key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (key == NULL || (strcmp(key, "commands") != 0 && strcmp(key, "queries") != 0))
      luaL_error(L, "%s: unexpected key '%s' in the returned table "
                 "(only 'commands' and 'queries' are allowed)",
                 rf_sm_host(L)->script[i], key ? key : luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static void loadscript(lua_State *L, int i) {
  rf_sm *sm = rf_sm_host(L);
  const smsrc *src = &sm->loading[i];
  char chunkname[300];
  snprintf(chunkname, sizeof(chunkname), "@%s", sm->script[i]);
  sm->cur = i; /* errors name it from here on */
  if (luaL_loadbufferx(L, src->src, src->len, chunkname, "t"))
    lua_error(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &CHUNKS);
  lua_insert(L, -2);
  lua_rawseti(L, -2, i + 1);
  lua_pop(L, 1);
  sm->cur = i;
  runchunk(L, i);
  checkshape(L, i);
  register_names(L, i, "commands");
  register_names(L, i, "queries");
  lua_pop(L, 1);
}

static void openlib(lua_State *L, const char *name, lua_CFunction f) {
  luaL_requiref(L, name, f, 1);
  lua_pop(L, 1);
}

/* Drop every reference to the call's environment, so what it built is
** garbage before the next call starts.  Allocates nothing. */
static void dropenv(rf_sm *sm) {
  lua_State *L = sm->L;
  int i;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &CHUNKS);
  for (i = 0; i < sm->nscripts; i++) {
    lua_rawgeti(L, -1, i + 1);
    lua_pushnil(L);
    lua_setupvalue(L, -2, 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  rf_sandbox_dropenv(L);
}

static int init(lua_State *L) {
  rf_sm *sm = rf_sm_host(L);
  int i;
  openlib(L, LUA_GNAME, luaopen_base);
  openlib(L, LUA_STRLIBNAME, luaopen_string);
  openlib(L, LUA_TABLIBNAME, luaopen_table);
  openlib(L, LUA_MATHLIBNAME, luaopen_math);
  openlib(L, LUA_UTF8LIBNAME, luaopen_utf8);
  openlib(L, LUA_COLIBNAME, luaopen_coroutine);
  rf_meter_open(L, rf_sm_charge); /* before the sandbox copies the libs */
  rf_sandbox_open(L);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &CHUNKS);
  lua_sethook(L, hook, LUA_MASKCOUNT, HOOKSTEP);
  rf_sandbox_reseed(L, 0);
  for (i = 0; i < sm->nscripts; i++) {
    sm->used = 0;
    loadscript(L, i);
  }
  return 0;
}

/* -- building a Lua state ------------------------------------------------ */

/* What a build replaces: kept until the new state loaded. */
typedef struct luaset {
  lua_State *L;
  smname *names;
  size_t nnames;
  char **script;
  int nscripts;
} luaset;

static void getset(rf_sm *sm, luaset *s) {
  *s = (luaset){sm->L, sm->names, sm->nnames, sm->script, sm->nscripts};
}

static void putset(rf_sm *sm, const luaset *s) {
  sm->L = s->L;
  sm->names = s->names;
  sm->nnames = s->nnames;
  sm->script = s->script;
  sm->nscripts = s->nscripts;
}

static void freeset(luaset *s) {
  size_t i;
  if (s->L) lua_close(s->L);
  for (i = 0; i < s->nnames; i++) free(s->names[i].name);
  free(s->names);
  for (i = 0; s->script && i < (size_t)s->nscripts; i++) free(s->script[i]);
  free(s->script);
}

/* Load sm->loading into a new state, made current in sm.  0 or -1. */
static int loadall(rf_sm *sm, int n, rf_buf *msg) {
  int i, status;
  if ((sm->script = calloc((size_t)n + 1, sizeof(char *))) == NULL)
    return rf_buf_str(msg, "out of memory"), -1;
  sm->nscripts = n; /* freeset frees the names copied so far */
  for (i = 0; i < n; i++)
    if ((sm->script[i] = strdup(sm->loading[i].name)) == NULL)
      return rf_buf_str(msg, "out of memory"), -1;
  if ((sm->L = lua_newstate(alloc, sm)) == NULL)
    return rf_buf_str(msg, "cannot create a Lua state"), -1;
  *(rf_sm **)lua_getextraspace(sm->L) = sm;
  sm->abort = 0;
  sm->cur = 0;
  lua_pushcfunction(sm->L, msgh);
  lua_pushcfunction(sm->L, init);
  status = lua_pcall(sm->L, 0, 0, 1);
  lua_sethook(sm->L, NULL, 0, 0);
  if (status == LUA_ERRMEM || (status != LUA_OK && (sm->abort & ABORT_MEM)))
    rf_buf_printf(msg, "%s: memory cap exceeded (%zu bytes)",
                  sm->script[sm->cur], sm->memcap);
  else if (status != LUA_OK) {
    const char *m = lua_tostring(sm->L, -1);
    rf_buf_str(msg, m ? m : "cannot load scripts (out of memory)");
  }
  sm->abort = 0;
  lua_settop(sm->L, 0);
  if (status != LUA_OK) return -1;
  dropenv(sm);
  return 0;
}

/* The new state is held to the cap alone: the old one, with whatever
** garbage this replica's queries left in it, is not part of the
** replicated state and must not decide whether a script loads.  A script's
** top level cannot use kv (kvapi.c refuses while sm->loading), and the
** batch is emptied anyway: a load writes nothing. */
int rf_sm_build(rf_sm *sm, const smsrc *list, int n, int keep, rf_buf *msg) {
  luaset old, made;
  size_t oldmem = sm->mem, newmem;
  int rc;
  getset(sm, &old);
  putset(sm, &(luaset){NULL, NULL, 0, NULL, 0});
  sm->loading = list;
  sm->clash = 0;
  sm->mem = 0;
  rc = loadall(sm, n, msg);
  sm->loading = NULL;
  rf_store_clear(sm->batch);
  sm->batchmem = 0;
  newmem = sm->mem;
  getset(sm, &made);
  if (rc == 0 && keep) {
    sm->mem = oldmem + newmem;
    freeset(&old); /* frees oldmem's worth */
    sm->generation++;
    return 0;
  }
  freeset(&made); /* frees newmem's worth */
  sm->mem = oldmem;
  putset(sm, &old);
  return rc;
}

/* Read a whole file into base script i, displayed as name. */
static int readscript(rf_sm *sm, int i, const char *path, const char *name,
                      char *err, size_t errlen) {
  char *p;
  size_t n;
  int rc = rf_read_file(path, &p, &n);
  if (rc < 0) {
    snprintf(err, errlen, "cannot %s %s", rc == RF_EIO ? "read" : "open", path);
    return -1;
  }
  sm->base[i] = (smsrc){strdup(name), p, n};
  sm->nbase = i + 1;
  return sm->base[i].name ? 0 : -1;
}

/* The compiled-in kv.lua as base script 0, named "kv.lua" in errors. */
static int embedscript(rf_sm *sm, char *err, size_t errlen) {
  char *p = malloc(rf_sm_kv_lua_len + 1);
  sm->base[0] = (smsrc){strdup("kv.lua"), p, rf_sm_kv_lua_len};
  sm->nbase = 1;
  if (p == NULL || sm->base[0].name == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  memcpy(p, rf_sm_kv_lua, rf_sm_kv_lua_len + 1);
  sm->fastkv = 1;
  return 0;
}

static int setup(rf_sm *sm, const rf_sm_opts *o, char *err, size_t errlen) {
  rf_buf msg;
  int rc;
  sm->budget = o->budget ? o->budget : RF_SM_DEFAULT_BUDGET;
  sm->memcap = o->memory ? o->memory : RF_SM_DEFAULT_MEMORY;
  sm->log = o->log;
  sm->log_ud = o->log_ud;
  if ((sm->store = rf_store_new()) == NULL || (sm->batch = rf_store_new()) == NULL)
    return snprintf(err, errlen, "out of memory"), -1;
  if ((o->builtin ? readscript(sm, 0, o->builtin, "kv.lua", err, errlen)
                  : embedscript(sm, err, errlen)) ||
      (o->commands && readscript(sm, 1, o->commands, o->commands, err, errlen)))
    return -1;
  rf_buf_init(&msg);
  rc = rf_sm_build(sm, sm->base, sm->nbase, 1, &msg);
  if (rc) snprintf(err, errlen, "%s", msg.p ? msg.p : "out of memory");
  rf_buf_free(&msg);
  return rc;
}

rf_sm *rf_sm_new(const rf_sm_opts *o, char *err, size_t errlen) {
  static const rf_sm_opts defaults;
  rf_sm *sm = calloc(1, sizeof(*sm));
  if (sm == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (setup(sm, o ? o : &defaults, err, errlen)) {
    rf_sm_free(sm);
    return NULL;
  }
  return sm;
}

void rf_sm_free(rf_sm *sm) {
  luaset cur;
  int i;
  if (sm == NULL) return;
  getset(sm, &cur);
  freeset(&cur);
  rf_store_free(sm->store);
  rf_store_free(sm->batch);
  json_decref(sm->pending);
  rf_buf_free(&sm->scratch);
  for (i = 0; i < sm->nbase; i++) {
    free((char *)sm->base[i].name);
    free((char *)sm->base[i].src);
  }
  free(sm);
}

/* -- calls --------------------------------------------------------------- */

typedef struct call {
  const smname *fn;
  const rf_sm_entry *e; /* NULL for queries */
} call;

static void pushargs(lua_State *L, rf_sm *sm, const call *c) {
  rf_sm_arg a;
  size_t pos = 0, nl;
  if (sm->pending) {
    rf_json_push(L, sm->pending);
    return;
  }
  lua_createtable(L, 0, (int)c->e->nargs);
  while (rf_sm_entry_arg(c->e, &pos, &a, &nl)) {
    rf_sm_charge(L, 1);
    lua_pushlstring(L, a.name, nl);
    lua_pushlstring(L, a.val, a.len);
    lua_rawset(L, -3);
  }
}

static void pushctx(lua_State *L, rf_sm *sm, const call *c) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)sm->index);
  lua_setfield(L, -2, "index");
  lua_pushinteger(L, (lua_Integer)sm->time_ms);
  lua_setfield(L, -2, "time");
  lua_pushstring(L, c->fn->name);
  lua_setfield(L, -2, "name");
  lua_pushboolean(L, sm->readonly);
  lua_setfield(L, -2, "query");
}

/* The protected part of a call: run the script, the handler, and encode
** its result into sm->scratch. */
static int docall(lua_State *L) {
  rf_sm *sm = rf_sm_host(L);
  const call *c = lua_touserdata(L, 1);
  const smname *fn = c->fn;
  rf_sandbox_reseed(L, (lua_Integer)sm->index);
  sm->cur = fn->script;
  runchunk(L, fn->script);
  lua_getfield(L, -1, fn->query ? "queries" : "commands");
  if (!lua_istable(L, -1) || lua_getfield(L, -1, fn->name) != LUA_TFUNCTION)
    luaL_error(L, "%s: '%s' is no longer a function", sm->script[fn->script],
               fn->name);
  pushargs(L, sm, c);
  pushctx(L, sm, c);
  lua_call(L, 2, 1);
  sm->scratch.n = 0;
  rf_json_encode(L, -1, &sm->scratch);
  return 0;
}

/* The error text of a failed call, at the top of the stack. */
static void failure(rf_sm *sm, int status, rf_buf *result) {
  const char *m = lua_tostring(sm->L, -1);
  if (status == LUA_ERRMEM || (sm->abort & ABORT_MEM))
    rf_buf_printf(result, "%s: memory cap exceeded (%zu bytes)",
                  sm->script[sm->cur], sm->memcap);
  else if (status == LUA_ERRERR)
    rf_buf_printf(result, "%s: error in the error handler", sm->script[sm->cur]);
  else if (status == LUA_OK) /* the error was swallowed (load's parser) */
    rf_buf_printf(result, "%s: instruction budget exceeded (%llu)",
                  sm->script[sm->cur], (unsigned long long)sm->budget);
  else
    rf_buf_str(result, m ? m : "error");
}

/* Forget everything the call left behind. */
static void endcall(rf_sm *sm) {
  lua_State *L = sm->L;
  lua_sethook(L, NULL, 0, 0);
  lua_settop(L, 0);
  dropenv(sm);
  rf_store_clear(sm->batch);
  json_decref(sm->pending);
  sm->pending = NULL;
  if (sm->scratch.cap > KEEPSCRATCH) rf_buf_free(&sm->scratch);
  if (sm->abort & ABORT_MEM) lua_gc(L, LUA_GCCOLLECT);
  sm->batchmem = 0;
  sm->abort = 0;
  sm->readonly = 0;
}

static int run(rf_sm *sm, call *c, rf_buf *result) {
  lua_State *L = sm->L;
  int status, rc;
  sm->used = 0;
  sm->abort = 0;
  sm->cur = c->fn->script;
  lua_settop(L, 0);
  lua_pushcfunction(L, msgh);
  lua_pushcfunction(L, docall);
  lua_pushlightuserdata(L, c);
  lua_sethook(L, hook, LUA_MASKCOUNT, HOOKSTEP);
  status = lua_pcall(L, 1, 0, 1);
  lua_sethook(L, NULL, 0, 0);
  if (status == LUA_OK && !sm->abort) {
    if (sm->observe && !sm->readonly)
      sm->observe(sm->observe_ud, sm->index, sm->batch, sm->store);
    rf_store_merge(sm->store, sm->batch);
    rf_buf_add(result, sm->scratch.p ? sm->scratch.p : "", sm->scratch.n);
    rc = RF_SM_OK;
  } else {
    if (status == LUA_ERRMEM) sm->abort |= ABORT_MEM;
    if (sm->abort & ABORT_BUDGET) RF_METRIC_INC(sm_budget_instructions);
    else if (sm->abort & ABORT_MEM) RF_METRIC_INC(sm_budget_memory);
    failure(sm, status, result);
    rc = RF_SM_EFAILED;
  }
  endcall(sm);
  return result->oom ? RF_SM_ENOMEM : rc;
}

/* Parse JSON arguments into sm->pending (C only: no Lua yet). */
static int parseargs(rf_sm *sm, const char *json, size_t len, rf_buf *result) {
  json_error_t err;
  if (json == NULL || len == 0) json = "{}", len = 2;
  if (len > sm->memcap / 24) {
    rf_buf_printf(result, "arguments too large for the memory cap");
    return RF_SM_EFAILED;
  }
  sm->pending = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
  if (sm->pending) return 0;
  rf_buf_printf(result, "invalid JSON arguments: %s at line %d column %d",
                err.text, err.line, err.column);
  return RF_SM_EBADENTRY;
}

static int notfound(rf_buf *result, const char *what, const char *name,
                    size_t len) {
  rf_buf_printf(result, "unknown %s '%.*s'", what, (int)len, name);
  return RF_SM_ENOTFOUND;
}

int rf_sm_apply(rf_sm *sm, uint64_t index, const void *entry, size_t len,
                rf_buf *result) {
  rf_sm_entry e;
  call c;
  int rc;
  sm->applied = index; /* even a failed entry is applied (as a no-op) */
  if (rf_sm_decode(entry, len, &e)) {
    rf_buf_str(result, "malformed state machine entry");
    return RF_SM_EBADENTRY;
  }
  sm->index = index;
  sm->time_ms = sm->applied_time = e.time_ms;
  if (e.name_len > 7 && memcmp(e.name, "script.", 7) == 0)
    return rf_sm_scripts_apply(sm, &e, result);
  if ((c.fn = findname(sm, e.name, e.name_len, 0)) == NULL)
    return notfound(result, "command", e.name, e.name_len);
  c.e = &e;
  if ((rc = rf_sm_fastkv(sm, c.fn, &e, result)) != RF_SM_FASTKV_NO) return rc;
  if (e.kind == RF_SM_JSON &&
      (rc = parseargs(sm, (const char *)e.body, e.body_len, result)) != 0) {
    json_decref(sm->pending);
    sm->pending = NULL;
    return rc;
  }
  return run(sm, &c, result);
}

int rf_sm_query(rf_sm *sm, const char *name, const char *args_json,
                size_t len, rf_buf *result) {
  call c;
  int rc;
  if ((c.fn = findname(sm, name, strlen(name), 1)) == NULL)
    return notfound(result, "query", name, strlen(name));
  c.e = NULL;
  if ((rc = parseargs(sm, args_json, len, result)) != 0) {
    json_decref(sm->pending);
    sm->pending = NULL;
    return rc;
  }
  sm->index = sm->applied;
  sm->time_ms = sm->applied_time;
  sm->readonly = 1;
  return run(sm, &c, result);
}

int rf_sm_has_command(const rf_sm *sm, const char *name) {
  return findname(sm, name, strlen(name), 0) != NULL;
}

int rf_sm_has_query(const rf_sm *sm, const char *name) {
  return findname(sm, name, strlen(name), 1) != NULL;
}

void rf_sm_observe(rf_sm *sm, rf_sm_observer fn, void *ud) {
  sm->observe = fn;
  sm->observe_ud = ud;
}

rf_store *rf_sm_store(rf_sm *sm) { return sm->store; }
uint64_t rf_sm_applied(const rf_sm *sm) { return sm->applied; }
uint64_t rf_sm_scripts_generation(const rf_sm *sm) { return sm->generation; }
size_t rf_sm_memory(const rf_sm *sm) { return sm->mem; }

const char *rf_sm_strerror(int code) {
  switch (code) {
    case RF_SM_OK: return "ok";
    case RF_SM_ENOTFOUND: return "unknown command or query";
    case RF_SM_EFAILED: return "command failed";
    case RF_SM_EBADENTRY: return "malformed entry or arguments";
    case RF_SM_ENOMEM: return "out of memory";
    default: return rf_strerror(code);
  }
}
