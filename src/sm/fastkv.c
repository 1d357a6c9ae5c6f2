/*
** fastkv.c -- kv.lua's put and delete, applied without Lua.
**
** Most entries of most logs are PUT and DELETE /kv/{key}: the built-in
** put and delete with binary arguments.  Through Lua each costs a fresh
** environment, a run of kv.lua's chunk and the handler (~10 us); here it
** costs the tree operation, which is what bounds how fast a node replays
** its log after a crash and how much CPU a write takes on every replica.
**
** Same result, same writes: put answers true, delete whether the key
** existed, both through the write batch and the watch observer like a Lua
** call.  Any entry whose Lua run could end differently (a missing
** argument, a reserved key, near the memory cap, arguments so large that
** copying them into Lua could reach the instruction budget) is left to
** kv.lua, which then fails it exactly as before.  Only for the kv.lua
** compiled in: a replaced one (rf_sm_opts.builtin) always runs.
*/
#include <string.h>

#include "smint.h"

#define NODECOST 64 /* as kvapi.c charges a batch entry */

typedef struct kvargs {
  const rf_sm_arg *key, *value; /* the last of each name, as Lua's table */
  rf_sm_arg k, v;
  size_t bytes;
} kvargs;

static void collect(const rf_sm_entry *e, kvargs *a) {
  rf_sm_arg x;
  size_t pos = 0, nl;
  memset(a, 0, sizeof(*a));
  while (rf_sm_entry_arg(e, &pos, &x, &nl)) {
    a->bytes += nl + x.len;
    if (nl == 3 && memcmp(x.name, "key", 3) == 0) a->k = x, a->key = &a->k;
    else if (nl == 5 && memcmp(x.name, "value", 5) == 0)
      a->v = x, a->value = &a->v;
  }
}

/* Could Lua's run of this entry fail, or come near a limit?  Each byte
** copied into a Lua string costs at most 1/32 instruction (meter.h), the
** handler itself well under a thousand, one more per argument (pushargs);
** in memory, Lua holds the arguments
** as strings (and a fresh environment) besides the batch's charge. */
#define LUA_SLACK (256 * 1024) /* an environment, kv.lua's closures, slack */
#define ARGCOST 80 /* a table slot and two short strings, per argument */
static int lua_could_differ(const rf_sm *sm, const rf_sm_entry *e,
                            const kvargs *a, size_t need) {
  return a->key == NULL || rf_sm_reserved(a->key->val, a->key->len) ||
         2 * (a->bytes / 32 + e->nargs + 1000) > sm->budget ||
         sm->mem + 2 * a->bytes + ARGCOST * e->nargs + need + NODECOST +
         LUA_SLACK > sm->memcap;
}

static int commit(rf_sm *sm, rf_buf *result, const char *res) {
  if (sm->observe) sm->observe(sm->observe_ud, sm->index, sm->batch, sm->store);
  rf_store_merge(sm->store, sm->batch);
  rf_buf_str(result, res);
  return result->oom ? RF_SM_ENOMEM : RF_SM_OK;
}

int rf_sm_fastkv(rf_sm *sm, const smname *fn, const rf_sm_entry *e,
                 rf_buf *result) {
  kvargs a;
  const void *v;
  size_t vl;
  int put;
  if (!sm->fastkv || fn->script != 0 || fn->query || e->kind != RF_SM_ARGS)
    return RF_SM_FASTKV_NO;
  put = strcmp(fn->name, "put") == 0;
  if (!put && strcmp(fn->name, "delete") != 0) return RF_SM_FASTKV_NO;
  collect(e, &a);
  if ((put && a.value == NULL) ||
      lua_could_differ(sm, e, &a,
                       a.key ? a.key->len + (put ? a.value->len : 0) : 0))
    return RF_SM_FASTKV_NO;
  if (put) {
    if (rf_store_put(sm->batch, a.key->val, a.key->len, a.value->val,
                     a.value->len))
      return RF_SM_FASTKV_NO; /* out of memory: Lua says so as usual */
    return commit(sm, result, "true");
  }
  if (!rf_store_get(sm->store, a.key->val, a.key->len, &v, &vl))
    return commit(sm, result, "false");
  if (rf_store_tombstone(sm->batch, a.key->val, a.key->len)) {
    rf_store_clear(sm->batch);
    return RF_SM_FASTKV_NO;
  }
  return commit(sm, result, "true");
}
