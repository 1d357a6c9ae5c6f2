/*
** kvapi.c -- the kv table handlers use: get, put, delete, scan.
**
** Reads see the store as changed by this call's own writes so far; writes
** go to the write batch (rf_sm.batch, a store with tombstones) and reach
** the store only when the handler returns without error.  Batch bytes are
** charged against the memory cap like Lua's own heap.  Iterators point into
** the trees and own nothing, so raising mid-scan is harmless; no user code
** can run during a scan, so the trees do not change under it.
*/
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "smint.h"

#define NODECOST 64 /* per batch entry, beyond key and value bytes */

/* 1 live (value set), 0 absent or deleted in the batch, -1 not in it. */
static int inbatch(rf_sm *sm, const char *k, size_t kl, rf_store_kv *kv) {
  rf_store_iter it;
  rf_store_seek(sm->batch, &it, k, kl);
  if (!rf_store_next(&it, kv) || rf_store_keycmp(kv->key, kv->klen, k, kl))
    return -1;
  return !kv->dead;
}

static int lookup(rf_sm *sm, const char *k, size_t kl, rf_store_kv *kv) {
  int r = inbatch(sm, k, kl, kv);
  if (r >= 0) return r;
  return rf_store_get(sm->store, k, kl, &kv->val, &kv->vlen);
}

/* A script's top level runs at load, against whatever store the loading
** replica has then (a leader's check, a snapshot's restore): what it read
** or wrote there would differ between replicas. */
static rf_sm *usable(lua_State *L, const char *fn) {
  rf_sm *sm = rf_sm_host(L);
  if (sm->loading)
    luaL_error(L, "kv.%s: not available while the script loads (use kv in "
               "handlers)", fn);
  return sm;
}

/* Keys under RF_SM_RESERVED hold the deployed scripts: invisible here. */
static rf_sm *writable(lua_State *L, const char *fn, size_t need) {
  rf_sm *sm = usable(L, fn);
  size_t kl;
  const char *k = lua_tolstring(L, 1, &kl);
  if (sm->readonly)
    luaL_error(L, "kv.%s: queries are read-only", fn);
  if (rf_sm_reserved(k, kl))
    luaL_error(L, "kv.%s: keys beginning with \\0rafting/ are reserved", fn);
  if (sm->mem + sm->batchmem + need + NODECOST > sm->memcap)
    rf_sm_memerror(L);
  sm->batchmem += need + NODECOST;
  return sm;
}

static int kv_get(lua_State *L) {
  size_t kl;
  const char *k = luaL_checklstring(L, 1, &kl);
  rf_store_kv kv;
  usable(L, "get");
  if (!rf_sm_reserved(k, kl) && lookup(rf_sm_host(L), k, kl, &kv)) {
    lua_pushlstring(L, kv.val, kv.vlen);
    rf_sm_charge(L, kv.vlen / 32); /* the copy, after it (see meter.h) */
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static int kv_put(lua_State *L) {
  size_t kl, vl;
  const char *k = luaL_checklstring(L, 1, &kl);
  const char *v = luaL_checklstring(L, 2, &vl);
  rf_sm *sm = writable(L, "put", kl + vl);
  if (rf_store_put(sm->batch, k, kl, v, vl)) return luaL_error(L, "kv.put: out of memory");
  return 0;
}

static int kv_delete(lua_State *L) {
  size_t kl;
  const char *k = luaL_checklstring(L, 1, &kl);
  rf_sm *sm = writable(L, "delete", kl);
  rf_store_kv kv;
  int existed = lookup(sm, k, kl, &kv);
  if (existed && rf_store_tombstone(sm->batch, k, kl))
    return luaL_error(L, "kv.delete: out of memory");
  lua_pushboolean(L, existed);
  return 1;
}

static int hasprefix(const rf_store_kv *kv, const char *p, size_t pl) {
  return kv->klen >= pl && memcmp(kv->key, p, pl) == 0;
}

/* Step a source of the merge: 1 while it has an entry under the prefix
** (reserved keys skipped: they sort first and are few). */
static int step(rf_store_iter *it, rf_store_kv *kv, const char *p, size_t pl) {
  while (rf_store_next(it, kv))
    if (!hasprefix(kv, p, pl)) return 0;
    else if (!rf_sm_reserved(kv->key, kv->klen)) return 1;
  return 0;
}

static void emit(lua_State *L, const rf_store_kv *kv, lua_Integer n) {
  lua_createtable(L, 0, 2);
  lua_pushlstring(L, kv->key, kv->klen);
  lua_setfield(L, -2, "key");
  lua_pushlstring(L, kv->val, kv->vlen);
  lua_setfield(L, -2, "value");
  lua_rawseti(L, -2, n);
}

/* Position a source at the first key under the prefix and after sa (sa
** NULL: no lower bound).  1 while it has such an entry. */
static int start(const rf_store *st, rf_store_iter *it, rf_store_kv *kv,
                 const char *p, size_t pl, const char *sa, size_t sal) {
  int after = sa != NULL && rf_store_keycmp(sa, sal, p, pl) >= 0;
  rf_store_seek(st, it, after ? sa : p, after ? sal : pl);
  if (!step(it, kv, p, pl)) return 0;
  if (after && rf_store_keycmp(kv->key, kv->klen, sa, sal) == 0)
    return step(it, kv, p, pl);
  return 1;
}

/* kv.scan(prefix, limit, start_after): {{key=, value=}, ...} in key order,
** keys above start_after only, merging the store with the batch (the batch
** wins; its tombstones hide keys). */
static int kv_scan(lua_State *L) {
  rf_sm *sm = usable(L, "scan");
  size_t pl, sal = 0;
  const char *p = luaL_optlstring(L, 1, "", &pl);
  lua_Integer limit = luaL_optinteger(L, 2, LUA_MAXINTEGER), n = 0;
  const char *sa = luaL_optlstring(L, 3, NULL, &sal);
  rf_store_iter a, b;
  rf_store_kv x, y;
  int hx, hy, c;
  luaL_argcheck(L, limit >= 0, 2, "limit must be >= 0");
  lua_newtable(L);
  rf_json_markarray(L, -1);
  hx = start(sm->store, &a, &x, p, pl, sa, sal);
  hy = start(sm->batch, &b, &y, p, pl, sa, sal);
  while ((hx || hy) && n < limit) {
    rf_sm_charge(L, 1);
    c = !hx ? 1 : !hy ? -1 : rf_store_keycmp(x.key, x.klen, y.key, y.klen);
    if (c < 0) {
      emit(L, &x, ++n);
      hx = step(&a, &x, p, pl);
      continue;
    }
    if (!y.dead) emit(L, &y, ++n);
    if (c == 0) hx = step(&a, &x, p, pl);
    hy = step(&b, &y, p, pl);
  }
  return 1;
}

void rf_kvapi_push(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"get", kv_get}, {"put", kv_put}, {"delete", kv_delete},
    {"scan", kv_scan}, {NULL, NULL}
  };
  luaL_newlib(L, fns);
}
