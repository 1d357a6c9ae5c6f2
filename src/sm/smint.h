/*
** smint.h -- what the state machine host's files share (not public).
**
** host.c    the rf_sm object: Lua state, allocator cap, instruction budget,
**           apply/query as protected calls, commit or rollback
** sandbox.c the deterministic environment handlers run in
** kvapi.c   the kv table: reads through the write batch, buffered writes
** json.c    JSON <-> Lua (jansson parses; encoding sorts keys)
** fastkv.c kv.lua's put and delete without Lua (the common entries)
** scripts.c the deployed scripts: reserved store keys, script.* entries,
**           rebuilding the Lua state from them
**
** Memory: C resources that live across a Lua call (write batch, JSON tree
** being converted, output scratch) hang off rf_sm, never off the C stack,
** so a Lua error (longjmp) can never leak them; host.c releases them after
** every call.
*/
#ifndef RAFTING_SMINT_H
#define RAFTING_SMINT_H

#include <jansson.h>
#include <lua.h>

#include "rafting/sm.h"

enum { ABORT_BUDGET = 1, ABORT_MEM = 2 }; /* rf_sm.abort bits */

/* One script of a build: borrowed text, display name (in errors). */
typedef struct smsrc {
  const char *name;
  const char *src;
  size_t len;
} smsrc;

typedef struct smname {
  char *name;
  int script; /* index into rf_sm.script */
  int query;  /* 1: a query, 0: a command */
} smname;

struct rf_sm {
  lua_State *L;
  size_t mem, memcap;    /* Lua heap bytes; cap on mem + batchmem */
  size_t batchmem;       /* bytes charged for this call's writes */
  uint64_t budget, used; /* instructions: allowed, charged this call */
  int abort;             /* limits fired this call: not catchable */
  int readonly;          /* in a query: kv writes raise */
  int cur;               /* script of the running call */
  rf_store *store, *batch;
  uint64_t index, time_ms;        /* of the running call */
  uint64_t applied, applied_time; /* of the last applied entry */
  json_t *pending;                /* JSON tree being converted */
  rf_buf scratch;                 /* JSON output */
  char **script;                  /* display names, by script number */
  int nscripts;
  smsrc base[2];                  /* kv.lua, a local script: owned text */
  int nbase;
  const smsrc *loading;           /* the build in progress (rf_sm_build) */
  int clash;                      /* the last build failed on a name */
  int fastkv;                     /* kv.lua is the compiled-in one */
  uint64_t generation;            /* Lua states built and kept */
  smname *names;
  size_t nnames;
  void (*log)(void *ud, const char *msg, size_t len);
  void *log_ud;
  rf_sm_observer observe; /* rf_sm_observe */
  void *observe_ud;
};

rf_sm *rf_sm_host(lua_State *L);
/* Add n to this call's instruction count; raises when over budget. */
void rf_sm_charge(lua_State *L, uint64_t n);
/* Raise the memory-cap error (uncatchable by the handler). */
int rf_sm_memerror(lua_State *L);

/* Replace the Lua state with one running scripts list[0..n) in that
** order (keep 1), or only try (keep 0).  0, or -1 with the error in msg
** (sm->clash set when a name was taken).  Outside any Lua call. */
int rf_sm_build(rf_sm *sm, const smsrc *list, int n, int keep, rf_buf *msg);

/* scripts.c */
/* Apply a script.* entry (rf_sm_apply dispatches on the prefix). */
int rf_sm_scripts_apply(rf_sm *sm, const rf_sm_entry *e, rf_buf *result);

/* fastkv.c */
#define RF_SM_FASTKV_NO 1 /* not an entry fastkv runs: run it in Lua */
/* Apply kv.lua's put or delete in C when the result is sure to be the
** same: RF_SM_OK (or ENOMEM), or RF_SM_FASTKV_NO with nothing done. */
int rf_sm_fastkv(rf_sm *sm, const smname *fn, const rf_sm_entry *e,
                 rf_buf *result);

/* sandbox.c */
void rf_sandbox_open(lua_State *L); /* once: build the base environment */
void rf_sandbox_env(lua_State *L);  /* push a fresh per-call environment */
void rf_sandbox_dropenv(lua_State *L); /* forget it (no allocation) */
void rf_sandbox_reseed(lua_State *L, lua_Integer seed);
void rf_sandbox_sort(lua_State *L, int t, lua_Integer n, int comp);
int rf_sandbox_keycmp(lua_State *L, int a, int b);
/* Push the keys of table t as an array in the sandbox's key order (the
** same on every replica, unlike lua_next's); raises on unorderable keys. */
void rf_sandbox_sortedkeys(lua_State *L, int t);

/* kvapi.c */
void rf_kvapi_push(lua_State *L); /* the kv table */

/* json.c */
void rf_json_push(lua_State *L, json_t *v);            /* tree -> Lua */
void rf_json_encode(lua_State *L, int idx, rf_buf *b); /* raises */
void rf_json_markarray(lua_State *L, int idx);
void rf_json_pushlib(lua_State *L); /* the json table */

#endif
