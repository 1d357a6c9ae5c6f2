/*
** lmod_driver.c -- require("rafting.driver"): the node driver over an I/O
** written in Lua, for the simulator (lua/rafting/sim.lua).
**
**   local d = driver.new(opts, io)
**
** opts are rafting.core's (id, voters, timing, restore) plus request_ticks;
** io is a table of functions the driver calls:
**   io.save(hs|nil, must_sync, entries, snap_index, snap_term) -> true to
**     complete now; otherwise the write is in flight until d:saved(ok)
**   io.send(msg)                 io.install(index, term) -> true | false
**   io.apply(entry) -> result string | nil, error code name, message
**   io.compact(index, term)
** Requests: d:propose(data, cb) calls cb(status, index, term, result) once;
** d:read(cb) calls cb(status) once; status is nil (ok) or an error name.
** Membership: d:change(op, id, cb[, context]) (as propose), d:transfer(id),
** d:conf_at(index); io.save gets a 6th argument, the adopted snapshot's
** configuration {voters=, learners=} (or nil).
**
** Failing allocations (specs): with opts.alloc_hook = true every allocation
** of the driver and its core goes through a hook that counts them
** (d:allocs(): calls, and blocks not yet freed) and fails the ones d:fail_allocs(after, span) names: the
** allocations after+1 .. after+span from now return NULL (frees always
** work); d:fail_allocs(nil) stops.  Without it the C library allocates.
**
** The driver is C and must never be unwound by a Lua error: every call into
** Lua is a lua_pcall, and the first error is kept and raised once the
** driver call that led to it has returned.  Memory: the rf_driver is owned
** by the userdata (freed by close/__gc); request callbacks live in the
** userdata's uservalue table until they run.
*/
#define LUA_LIB
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "lua/lraft.h"
#include "rafting/driver.h"

#define DRIVER_MT "rafting.driver"

enum { UV_IO = 1, UV_REQS = 2 }; /* uservalue slots */

typedef struct LDriver {
  rf_io io;          /* first: the driver's I/O */
  rf_driver *d;
  lua_State *L;      /* the state of the method running now */
  int self;          /* stack index of the userdata in that call */
  int failed;        /* a Lua callback raised; the error is in the registry */
  int err_ref;
  rf_io_done done;   /* a save in flight */
  void *done_ud;
  lua_Integer next_req;
  struct LDriver *outer; /* 'current' when this method call began */
  lua_State *outer_L;    /* L and self of an enclosing call, restored */
  int outer_self;
  lua_Integer allocs;    /* allocation calls so far (alloc_hook) */
  lua_Integer live;      /* blocks allocated and not freed */
  lua_Integer fail_lo, fail_hi; /* they fail while lo <= allocs <= hi */
} LDriver;

/* The driver's allocator with opts.alloc_hook: counts, and fails on cue. */
static void *alloc_hook (void *ud, void *ptr, size_t size) {
  LDriver *ld = (LDriver *)ud;
  lua_Integer n;
  void *p;
  if (size == 0) {
    if (ptr != NULL) ld->live--;
    free(ptr);
    return NULL;
  }
  n = ++ld->allocs;
  if (n >= ld->fail_lo && n <= ld->fail_hi) return NULL;
  p = realloc(ptr, size);
  if (p != NULL && ptr == NULL) ld->live++;
  return p;
}

/* -- calling Lua from the driver ---------------------------------------- */

static int msghandler (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) return 1;  /* keep non-string errors as they are */
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Call the function on top with nargs below it; keep nres results.  On an
** error remember the first one; 0 then (results are nils). */
static int callio (LDriver *ld, int nargs, int nres) {
  lua_State *L = ld->L;
  int base = lua_gettop(L) - nargs, rc;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  rc = lua_pcall(L, nargs, nres, base);
  lua_remove(L, base);
  if (rc == LUA_OK) return 1;
  if (!ld->failed) {
    ld->failed = 1;
    ld->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    lua_pop(L, 1);
  }
  for (int i = 0; i < nres; i++) lua_pushnil(L);
  return 0;
}

/* Keep an error of our own as if a callback had raised it. */
static void keeperr (LDriver *ld, const char *msg, const char *name) {
  if (ld->failed) return;
  lua_pushfstring(ld->L, msg, name);
  ld->failed = 1;
  ld->err_ref = luaL_ref(ld->L, LUA_REGISTRYINDEX);
}

/* Push io[name]; 0 (nothing pushed) when the driver already failed or the
** function is missing (kept as the error to raise: no luaL_error here,
** the C driver is on the stack). */
static int getio (LDriver *ld, const char *name) {
  lua_State *L = ld->L;
  if (ld->failed) return 0;
  if (!lua_checkstack(L, 16)) {
    ld->failed = 1; /* no room even for a message */
    ld->err_ref = LUA_REFNIL;
    return 0;
  }
  lua_getiuservalue(L, ld->self, UV_IO);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  if (lua_isfunction(L, -1)) return 1;
  lua_pop(L, 1);
  keeperr(ld, "io.%s is not a function", name);
  return 0;
}

/* Raise the error a callback kept, now that the driver has returned. */
static void raise_kept (LDriver *ld) {
  lua_State *L = ld->L;
  if (!ld->failed) return;
  if (ld->err_ref == LUA_REFNIL) {
    ld->failed = 0;
    luaL_error(L, "driver: out of Lua stack in an I/O callback");
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ld->err_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ld->err_ref);
  ld->failed = 0;
  lua_error(L);
}

/* -- the I/O ------------------------------------------------------------- */

static void pushhs (lua_State *L, const raft_hard_state *hs) {
  lua_createtable(L, 0, 3);
  lraft_setint(L, "term", hs->term);
  lraft_setint(L, "vote", hs->vote);
  lraft_setint(L, "commit", hs->commit);
}

static int io_save (rf_io *io, const rf_io_save *s, rf_io_done done, void *ud) {
  LDriver *ld = (LDriver *)io;
  lua_State *L = ld->L;
  int now;
  if (!getio(ld, "save")) return RF_EIO;
  if (s->hs) pushhs(L, s->hs);
  else lua_pushnil(L);
  lua_pushboolean(L, s->must_sync);
  lraft_pushentries(L, s->entries, s->n_entries);
  lua_pushinteger(L, (lua_Integer)s->snap_index);
  lua_pushinteger(L, (lua_Integer)s->snap_term);
  if (s->snap_conf) lraft_pushconf(L, s->snap_conf);
  else lua_pushnil(L);
  if (!callio(ld, 6, 1)) {
    lua_pop(L, 1);
    return RF_EIO;
  }
  now = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (now) {
    done(ud, 0);
  } else {
    ld->done = done;
    ld->done_ud = ud;
  }
  return 0;
}

static void io_send (rf_io *io, const raft_msg *m) {
  LDriver *ld = (LDriver *)io;
  if (!getio(ld, "send")) return;
  lraft_pushmsg(ld->L, m);
  callio(ld, 1, 0);
}

static int io_install (rf_io *io, uint64_t index, uint64_t term) {
  LDriver *ld = (LDriver *)io;
  int ok;
  if (!getio(ld, "install")) return RF_EIO;
  lua_pushinteger(ld->L, (lua_Integer)index);
  lua_pushinteger(ld->L, (lua_Integer)term);
  callio(ld, 2, 1);
  ok = lua_toboolean(ld->L, -1);
  lua_pop(ld->L, 1);
  return ok ? 0 : RF_ESTORAGE;
}

static int io_apply (rf_io *io, const raft_entry *e, rf_buf *res) {
  LDriver *ld = (LDriver *)io;
  lua_State *L = ld->L;
  int rc = 0;
  size_t len;
  const char *s;
  if (!getio(ld, "apply")) return RF_EIO;
  lraft_pushentry(L, e);
  callio(ld, 1, 3);
  if (lua_isnil(L, -3) && lua_isstring(L, -2)) { /* nil, code, message */
    rc = RF_EFAILED;
    s = lua_tolstring(L, -1, &len);
  } else {
    s = lua_tolstring(L, -3, &len);
  }
  if (s != NULL) rf_buf_add(res, s, len);
  lua_pop(L, 3);
  return rc;
}

static int io_compact (rf_io *io, uint64_t index, uint64_t term) {
  LDriver *ld = (LDriver *)io;
  if (!getio(ld, "compact")) return RF_EIO;
  lua_pushinteger(ld->L, (lua_Integer)index);
  lua_pushinteger(ld->L, (lua_Integer)term);
  callio(ld, 2, 0);
  return 0;
}

static void io_wake (rf_io *io) { (void)io; } /* the simulator polls */

static const rf_io_ops lua_io = {io_save, io_send, io_install, io_apply,
                                 io_compact, io_wake};

/* -- requests ------------------------------------------------------------ */

/* The callback stored under key ud, taken out of the requests table. */
static int takereq (LDriver *ld, void *ud) {
  lua_State *L = ld->L;
  if (ld->failed) return 0; /* an error is on its way up, or a finalizer */
  lua_getiuservalue(L, ld->self, UV_REQS);
  lua_rawgeti(L, -1, (lua_Integer)(intptr_t)ud);
  lua_pushnil(L);
  lua_rawseti(L, -3, (lua_Integer)(intptr_t)ud);
  lua_remove(L, -2);
  if (lua_isfunction(L, -1)) return 1;
  lua_pop(L, 1);
  keeperr(ld, "driver: a request answered %s", "twice (or never asked)");
  return 0;
}

static void pushstatus (lua_State *L, int status) {
  if (status == 0) lua_pushnil(L);
  else lua_pushstring(L, lraft_errname(status));
}

/* The driver whose method runs now: requests complete only inside a method
** call of their own driver (a callback may call another driver's method;
** 'outer' restores this on the way back). */
static LDriver *current;

static void on_written (void *ud, int status, uint64_t index, uint64_t term,
                        const char *res, size_t len) {
  LDriver *ld = current;
  if (!takereq(ld, ud)) return;
  pushstatus(ld->L, status);
  lua_pushinteger(ld->L, (lua_Integer)index);
  lua_pushinteger(ld->L, (lua_Integer)term);
  lua_pushlstring(ld->L, res, len);
  callio(ld, 4, 0);
}

static void on_readable (void *ud, int status) {
  LDriver *ld = current;
  if (!takereq(ld, ud)) return;
  pushstatus(ld->L, status);
  callio(ld, 1, 0);
}

/* -- methods ------------------------------------------------------------- */

static LDriver *check (lua_State *L) {
  LDriver *ld = (LDriver *)luaL_checkudata(L, 1, DRIVER_MT);
  if (ld->d == NULL) luaL_error(L, "attempt to use a closed driver");
  return ld;
}

/* Before a call into the driver (which may call back into Lua). */
/* Before a call into the driver (which may call back into Lua).  Every
** argument is checked before: nothing may raise between enter and leave. */
static LDriver *enter (lua_State *L) {
  LDriver *ld = check(L);
  ld->outer_L = ld->L;
  ld->outer_self = ld->self;
  ld->L = L;
  ld->self = 1;
  ld->outer = current;
  current = ld;
  return ld;
}

/* After it: the enclosing call (if any) gets its stack back; L is this
** call's, where a kept error is raised. */
static lua_State *restore (LDriver *ld) {
  lua_State *L = ld->L;
  current = ld->outer;
  ld->L = ld->outer_L;
  ld->self = ld->outer_self;
  return L;
}

static void raise_on (LDriver *ld, lua_State *L) {
  lua_State *keep = ld->L;
  int self = ld->self;
  if (!ld->failed) return;
  ld->L = L;
  ld->self = 1;
  raise_kept(ld); /* does not return */
  ld->L = keep;
  ld->self = self;
}

static int leave (LDriver *ld, int nres) {
  raise_on(ld, restore(ld));
  return nres;
}

static int pushresult (LDriver *ld, int rc) {
  lua_State *L = restore(ld);
  raise_on(ld, L);
  if (rc < 0) return lraft_pusherr(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}


static int l_tick (lua_State *L) {
  LDriver *ld = enter(L);
  rf_driver_tick(ld->d);
  return leave(ld, 0);
}

static int l_step (lua_State *L) {
  LDriver *ld;
  raft_msg m;
  check(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_newtable(L); /* 3: anchor */
  lraft_tomsg(L, 2, 3, &m);
  ld = enter(L);
  return pushresult(ld, rf_driver_step(ld->d, &m));
}

static int l_campaign (lua_State *L) {
  LDriver *ld = enter(L);
  return pushresult(ld, rf_driver_campaign(ld->d));
}

/* Park cb at a fresh key of the requests table; the key is the ud. */
static void *parkreq (lua_State *L, LDriver *ld, int cb) {
  lua_Integer key = ++ld->next_req;
  lua_getiuservalue(L, 1, UV_REQS);
  lua_pushvalue(L, cb);
  lua_rawseti(L, -2, key);
  lua_pop(L, 1);
  return (void *)(intptr_t)key;
}

static void dropreq (LDriver *ld, void *ud) {
  lua_getiuservalue(ld->L, 1, UV_REQS);
  lua_pushnil(ld->L);
  lua_rawseti(ld->L, -2, (lua_Integer)(intptr_t)ud);
  lua_pop(ld->L, 1);
}

/* d:propose(data, cb) -> index, term | nil, err, message */
static int l_propose (lua_State *L) {
  LDriver *ld = check(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  uint64_t index = 0, term = 0;
  void *key;
  int rc;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  key = parkreq(L, ld, 3);
  enter(L);
  rc = rf_driver_propose(ld->d, data, len, on_written, key, &index, &term);
  if (rc < 0) {
    dropreq(ld, key);
    return pushresult(ld, rc);
  }
  lua_pushinteger(L, (lua_Integer)index);
  lua_pushinteger(L, (lua_Integer)term);
  return leave(ld, 2);
}

/* d:change(op, id, cb[, context]) -> index, term | nil, err, message; op
** is "add_learner", "add_voter" or "remove"; cb as propose's; context: a
** string stored after the configuration in the entry */
static int l_change (lua_State *L) {
  static const char *const ops[] = {"add_learner", "add_voter", "remove", NULL};
  LDriver *ld = check(L);
  raft_conf_change c;
  uint64_t index = 0, term = 0;
  lua_Integer id;
  void *key;
  int rc;
  c.op = RAFT_CONF_ADD_LEARNER + luaL_checkoption(L, 2, NULL, ops);
  id = luaL_checkinteger(L, 3);
  luaL_argcheck(L, id > 0, 3, "not a node id");
  c.id = (uint64_t)id;
  c.context = luaL_optlstring(L, 5, NULL, &c.context_len);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  key = parkreq(L, ld, 4);
  enter(L);
  rc = rf_driver_change(ld->d, &c, on_written, key, &index, &term);
  if (rc < 0) {
    dropreq(ld, key);
    return pushresult(ld, rc);
  }
  lua_pushinteger(L, (lua_Integer)index);
  lua_pushinteger(L, (lua_Integer)term);
  return leave(ld, 2);
}

/* d:transfer(id) -> true | nil, err, message */
static int l_transfer (lua_State *L) {
  lua_Integer id = (check(L), luaL_checkinteger(L, 2));
  LDriver *ld;
  luaL_argcheck(L, id > 0, 2, "not a node id");
  ld = enter(L);
  return pushresult(ld, rf_driver_transfer(ld->d, (uint64_t)id));
}

/* d:conf_at(index) -> {voters=, learners=} | nil */
static int l_conf_at (lua_State *L) {
  LDriver *ld = check(L);
  lua_Integer i = luaL_checkinteger(L, 2);
  raft_conf c;
  if (i < 0 || rf_driver_conf_at(ld->d, (uint64_t)i, &c) < 0) luaL_pushfail(L);
  else lraft_pushconf(L, &c);
  return 1;
}

/* d:read(cb) -> true | nil, err, message */
static int l_read (lua_State *L) {
  LDriver *ld = check(L);
  void *key;
  int rc;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  key = parkreq(L, ld, 2);
  enter(L);
  rc = rf_driver_read(ld->d, on_readable, key);
  if (rc < 0) dropreq(ld, key);
  return pushresult(ld, rc);
}

/* d:process() -> true when more batches wait (a write is not in flight) */
static int l_process (lua_State *L) {
  LDriver *ld = enter(L);
  int more = rf_driver_process(ld->d);
  lua_pushboolean(L, more);
  return leave(ld, 1);
}

/* d:saved(ok): the write in flight completed (ok) or failed */
static int l_saved (lua_State *L) {
  LDriver *ld = check(L);
  rf_io_done done = ld->done;
  int ok = lua_toboolean(L, 2);
  if (done == NULL) return luaL_error(L, "no write is in flight");
  enter(L);
  ld->done = NULL;
  done(ld->done_ud, ok ? 0 : RF_EIO);
  return leave(ld, 0);
}

static int l_saving (lua_State *L) {
  LDriver *ld = check(L);
  lua_pushboolean(L, ld->done != NULL);
  return 1;
}

static int l_compact (lua_State *L) {
  lua_Integer i = (check(L), luaL_checkinteger(L, 2));
  LDriver *ld = enter(L);
  return pushresult(ld, i <= 0 ? RF_EINVAL : rf_driver_compact(ld->d, (uint64_t)i));
}

static int l_report_snapshot (lua_State *L) {
  LDriver *ld;
  lua_Integer to = (check(L), luaL_checkinteger(L, 2));
  luaL_checkany(L, 3);
  if (to <= 0) return luaL_argerror(L, 2, "not a node id");
  ld = enter(L);
  rf_driver_report_snapshot(ld->d, (uint64_t)to, lua_toboolean(L, 3));
  return leave(ld, 0);
}

static int l_status (lua_State *L) {
  raft_status st;
  rf_driver_status(check(L)->d, &st);
  return lraft_pushstatus(L, &st);
}

static int l_state (lua_State *L) {
  raft_status st;
  rf_driver_status(check(L)->d, &st);
  return lraft_pushstate(L, &st);
}

static int l_term_at (lua_State *L) {
  LDriver *ld = check(L);
  lua_Integer i = luaL_checkinteger(L, 2);
  uint64_t t = i > 0 ? rf_driver_term_at(ld->d, (uint64_t)i) : 0;
  if (t == 0) luaL_pushfail(L);
  else lua_pushinteger(L, (lua_Integer)t);
  return 1;
}

static int l_entry (lua_State *L) {
  LDriver *ld = check(L);
  lua_Integer i = luaL_checkinteger(L, 2);
  raft_entry e;
  if (i <= 0 || rf_driver_entry(ld->d, (uint64_t)i, &e) < 0) luaL_pushfail(L);
  else lraft_pushentry(L, &e);
  return 1;
}

static int l_waiting (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)rf_driver_waiting(check(L)->d));
  return 1;
}

/* d:allocs() -> allocation calls so far, blocks not freed (0, 0 without
** opts.alloc_hook; also after close: the second is then the leak) */
static int l_allocs (lua_State *L) {
  LDriver *ld = (LDriver *)luaL_checkudata(L, 1, DRIVER_MT);
  lua_pushinteger(L, ld->allocs);
  lua_pushinteger(L, ld->live);
  return 2;
}

/* d:fail_allocs(after, span=1): allocations after+1 .. after+span from now
** fail; d:fail_allocs(nil): none does */
static int l_fail_allocs (lua_State *L) {
  LDriver *ld = (LDriver *)luaL_checkudata(L, 1, DRIVER_MT);
  if (lua_isnoneornil(L, 2)) {
    ld->fail_lo = ld->fail_hi = 0;
  } else {
    lua_Integer after = luaL_checkinteger(L, 2);
    lua_Integer span = luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, after >= 0, 2, "negative");
    luaL_argcheck(L, span >= 1, 3, "not positive");
    ld->fail_lo = ld->allocs + after + 1;
    ld->fail_hi = ld->allocs + after + span;
  }
  return 0;
}

static int l_failed (lua_State *L) {
  int f = rf_driver_failed(check(L)->d);
  if (f == 0) lua_pushboolean(L, 0);
  else lua_pushstring(L, lraft_errname(f));
  return 1;
}

/* Close answers waiting requests (their callbacks run) and frees the
** driver; a write in flight is abandoned, as a crash would. */
static int l_close (lua_State *L) {
  LDriver *ld = (LDriver *)luaL_checkudata(L, 1, DRIVER_MT);
  rf_io_done done = ld->done;
  if (ld->d == NULL) return 0;
  enter(L);
  rf_driver_close(ld->d, NULL, NULL);
  if (done != NULL) { /* the driver waits for it: let it go, then */
    ld->done = NULL;
    done(ld->done_ud, RF_ECANCELED);
  }
  ld->d = NULL;
  return leave(ld, 0);
}

static int l_gc (lua_State *L) {
  LDriver *ld = (LDriver *)luaL_checkudata(L, 1, DRIVER_MT);
  if (ld->d == NULL) return 0;
  ld->failed = 1; /* no Lua calls from a finalizer: nobody listens */
  ld->err_ref = LUA_NOREF;
  ld->L = L;
  ld->self = 1;
  ld->outer = current;
  current = ld;
  rf_driver_close(ld->d, NULL, NULL);
  if (ld->done != NULL) ld->done(ld->done_ud, RF_ECANCELED);
  ld->d = NULL;
  current = ld->outer;
  ld->failed = 0;
  return 0;
}

/* driver.new(opts, io) */
static int l_new (lua_State *L) {
  rf_driver_opts o;
  raft_restore rs;
  LDriver *ld;
  int rc;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_newtable(L); /* 3: anchor */
  memset(&o, 0, sizeof(o));
  lraft_toconfig(L, 3, &o.core, &rs);
  o.request_ticks = lraft_getint(L, 1, "request_ticks", 50);
  o.readies_per_turn = lraft_getint(L, 1, "readies_per_turn", 0);
  ld = (LDriver *)lua_newuserdatauv(L, sizeof(*ld), 2);
  memset(ld, 0, sizeof(*ld));
  ld->io.ops = &lua_io;
  luaL_setmetatable(L, DRIVER_MT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, UV_IO);
  lua_newtable(L);
  lua_setiuservalue(L, -2, UV_REQS);
  if (lua_getfield(L, 1, "alloc_hook") != LUA_TNIL && lua_toboolean(L, -1)) {
    o.core.realloc = alloc_hook; /* the userdata outlives the driver */
    o.core.realloc_ud = ld;
  }
  lua_pop(L, 1);
  rc = rf_driver_new(&o, &rs, &ld->io, &ld->d);
  if (rc < 0) return luaL_error(L, "driver: %s", rf_strerror(rc));
  return 1;
}

static int l_tostring (lua_State *L) {
  LDriver *ld = (LDriver *)luaL_checkudata(L, 1, DRIVER_MT);
  raft_status st;
  if (ld->d == NULL) {
    lua_pushliteral(L, "driver (closed)");
    return 1;
  }
  rf_driver_status(ld->d, &st);
  lua_pushfstring(L, "driver %d (%s, term %d)", (int)st.id,
                  lraft_role_names[st.role], (int)st.term);
  return 1;
}

static const luaL_Reg methods[] = {
  {"tick", l_tick},
  {"step", l_step},
  {"campaign", l_campaign},
  {"propose", l_propose},
  {"read", l_read},
  {"change", l_change},
  {"transfer", l_transfer},
  {"conf_at", l_conf_at},
  {"process", l_process},
  {"saved", l_saved},
  {"saving", l_saving},
  {"compact", l_compact},
  {"report_snapshot", l_report_snapshot},
  {"status", l_status},
  {"state", l_state},
  {"term_at", l_term_at},
  {"entry", l_entry},
  {"waiting", l_waiting},
  {"failed", l_failed},
  {"allocs", l_allocs},
  {"fail_allocs", l_fail_allocs},
  {"close", l_close},
  {NULL, NULL}
};

static const luaL_Reg meta[] = {
  {"__gc", l_gc},
  {"__close", l_close},
  {"__tostring", l_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"new", l_new},
  {NULL, NULL}
};

LUAMOD_API int luaopen_rafting_driver (lua_State *L) {
  luaL_newmetatable(L, DRIVER_MT);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
