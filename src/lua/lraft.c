/*
** lraft.c -- converting between Lua values and the core's C types, for the
** rafting.core and rafting.driver modules (see lraft.h).
*/
#define LUA_LIB
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "lua/lraft.h"

/* -- names -------------------------------------------------------------- */

const char *const lraft_msg_names[RAFT_MSG_TYPE_MAX + 1] = {
  NULL, "prevote", "prevote_resp", "vote", "vote_resp", "append",
  "append_resp", "heartbeat", "heartbeat_resp", "snapshot",
  "snapshot_resp", "timeout_now"
};

const char *const lraft_entry_names[] = {"normal", "noop", "conf", NULL};

const char *const lraft_role_names[] = {
  "follower", "precandidate", "candidate", "leader"
};

const char *lraft_errname (int err) {
  switch (err) {
    case RAFT_ENOTLEADER: return "notleader";
    case RAFT_ENOMEM: return "nomem";
    case RAFT_EINVAL: return "inval";
    case RAFT_EBUSY: return "busy";
    case RAFT_ETOOBIG: return "toobig";
    case RF_ENOTCOMMITTED: return "notcommitted";
    case RF_ETIMEDOUT: return "timedout";
    case RF_ESTOPPING: return "stopping";
    case RF_ESTORAGE: return "storage";
    case RF_ESNAPSHOT: return "snapshot";
    case RF_EFAILED: return "failed";
    case RF_EFORGED: return "forged";
    default: return "unknown";
  }
}

/* nil, lraft_errname, message: the usual failure triple */
int lraft_pusherr (lua_State *L, int err) {
  luaL_pushfail(L);
  lua_pushstring(L, lraft_errname(err));
  lua_pushstring(L, rf_strerror(err));
  return 3;
}


/* -- reading Lua tables into C --------------------------------------------- */

/* t[k] as a non-negative integer; 'def' when absent */
uint64_t lraft_getu64 (lua_State *L, int t, const char *k, uint64_t def) {
  uint64_t v = def;
  int isnum;
  lua_Integer i;
  if (lua_getfield(L, t, k) != LUA_TNIL) {
    i = lua_tointegerx(L, -1, &isnum);
    if (!isnum || i < 0)
      luaL_error(L, "field '%s' must be a non-negative integer", k);
    v = (uint64_t)i;
  }
  lua_pop(L, 1);
  return v;
}

int lraft_getint (lua_State *L, int t, const char *k, int def) {
  uint64_t v = lraft_getu64(L, t, k, (uint64_t)def);
  if (v > 0x7fffffff) luaL_error(L, "field '%s' is too large", k);
  return (int)v;
}

int lraft_getbool (lua_State *L, int t, const char *k, int def) {
  int v = def;
  if (lua_getfield(L, t, k) != LUA_TNIL) v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* index of name in list, or -1 */
int lraft_findname (const char *const *list, int n, const char *name) {
  int i;
  for (i = 0; i < n; i++)
    if (list[i] && strcmp(list[i], name) == 0) return i;
  return -1;
}

/*
** Convert the entry list at 'list' into a raft_entry array held by a new
** userdata (pushed).  The data strings are kept alive in the 'anchor' table,
** so a __index that made a fresh string cannot let the GC free it.
** 'first' > 0 demands consecutive indexes from it (restored logs).
*/
raft_entry *lraft_toentries (lua_State *L, int list, int anchor,
                              uint64_t first, size_t *n) {
  size_t i, len = (size_t)luaL_len(L, list);
  raft_entry *es = (raft_entry *)lua_newuserdatauv(L,
                                     (len ? len : 1) * sizeof(*es), 0);
  for (i = 0; i < len; i++) {
    raft_entry *e = &es[i];
    int t, ty;
    if (lua_geti(L, list, (lua_Integer)i + 1) != LUA_TTABLE)
      luaL_error(L, "entry %d is not a table", (int)i + 1);
    t = lua_gettop(L);
    e->term = lraft_getu64(L, t, "term", 0);
    e->index = lraft_getu64(L, t, "index", first ? first + i : 0);
    if (first && e->index != first + i)
      luaL_error(L, "entry %d has index %d, expected %d", (int)i + 1,
                 (int)e->index, (int)(first + i));
    lua_getfield(L, t, "type");
    ty = lua_isnil(L, -1) ? 0
         : lraft_findname(lraft_entry_names, 3, luaL_checkstring(L, -1));
    if (ty < 0) luaL_error(L, "entry %d: bad type '%s'", (int)i + 1,
                           lua_tostring(L, -1));
    e->type = ty;
    lua_pop(L, 1);
    if (lua_getfield(L, t, "data") == LUA_TNIL) {
      e->data = NULL;
      e->len = 0;
    } else {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "entry %d: data must be a string", (int)i + 1);
      e->data = (const uint8_t *)lua_tolstring(L, -1, &e->len);
      lua_pushvalue(L, -1);
      lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    }
    lua_pop(L, 2);  /* data, entry */
  }
  *n = len;
  return es;
}


/* -- pushing C values as Lua tables ----------------------------------------- */

void lraft_setint (lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

void lraft_pushentry (lua_State *L, const raft_entry *e) {
  lua_createtable(L, 0, 4);
  lraft_setint(L, "term", e->term);
  lraft_setint(L, "index", e->index);
  lua_pushstring(L, (e->type >= 0 && e->type <= 2) ? lraft_entry_names[e->type]
                                                   : "unknown");
  lua_setfield(L, -2, "type");
  lua_pushlstring(L, e->len ? (const char *)e->data : "", e->len);
  lua_setfield(L, -2, "data");
}

void lraft_pushentries (lua_State *L, const raft_entry *es, size_t n) {
  size_t i;
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lraft_pushentry(L, &es[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

void lraft_pushmsg (lua_State *L, const raft_msg *m) {
  lua_createtable(L, 0, 13);
  lua_pushstring(L, (m->type > 0 && m->type <= RAFT_MSG_TYPE_MAX)
                      ? lraft_msg_names[m->type] : "unknown");
  lua_setfield(L, -2, "type");
  lraft_setint(L, "from", m->from);
  lraft_setint(L, "to", m->to);
  lraft_setint(L, "term", m->term);
  lraft_setint(L, "index", m->index);
  lraft_setint(L, "log_term", m->log_term);
  lraft_setint(L, "commit", m->commit);
  lua_pushboolean(L, m->reject);
  lua_setfield(L, -2, "reject");
  lraft_setint(L, "hint_index", m->hint_index);
  lraft_setint(L, "hint_term", m->hint_term);
  lraft_setint(L, "context", m->context);
  if (m->n_entries > 0) {  /* absent rather than empty: most msgs have none */
    lraft_pushentries(L, m->entries, m->n_entries);
    lua_setfield(L, -2, "entries");
  }
  if (m->conf != NULL) {
    lraft_pushconf(L, m->conf);
    lua_setfield(L, -2, "conf");
  }
}


static size_t toids (lua_State *L, int t, const char *k, uint64_t *ids) {
  size_t n, i;
  int ty = lua_getfield(L, t, k);
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (ty != LUA_TTABLE) luaL_error(L, "conf.%s must be a list of node ids", k);
  n = (size_t)luaL_len(L, -1);
  if (n > RAFT_MAX_NODES) luaL_error(L, "conf.%s: too many nodes", k);
  for (i = 0; i < n; i++) {
    int isnum;
    lua_Integer v;
    lua_geti(L, -1, (lua_Integer)i + 1);
    v = lua_tointegerx(L, -1, &isnum);
    if (!isnum || v <= 0) luaL_error(L, "conf.%s[%d] is not a node id", k, (int)i + 1);
    ids[i] = (uint64_t)v;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return n;
}

raft_conf *lraft_toconf (lua_State *L, int idx) {
  raft_conf *c;
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) luaL_error(L, "a configuration must be a table");
  c = (raft_conf *)lua_newuserdatauv(L, sizeof(*c), 0);
  memset(c, 0, sizeof(*c));
  c->n_voters = toids(L, idx, "voters", c->voters);
  c->n_learners = toids(L, idx, "learners", c->learners);
  if (raft_conf_check(c) != RAFT_OK)
    luaL_error(L, "a configuration with a repeated node or too many");
  return c;
}

static void pushids (lua_State *L, const uint64_t *ids, size_t n) {
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)ids[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

void lraft_pushconf (lua_State *L, const raft_conf *c) {
  lua_createtable(L, 0, 2);
  pushids(L, c->voters, c->n_voters);
  lua_setfield(L, -2, "voters");
  pushids(L, c->learners, c->n_learners);
  lua_setfield(L, -2, "learners");
}

/* The message table at idx as a raft_msg; entry data anchored in 'anchor'. */
void lraft_tomsg (lua_State *L, int idx, int anchor, raft_msg *m) {
  const char *ty;
  int t;
  memset(m, 0, sizeof(*m));
  lua_getfield(L, idx, "type");
  ty = lua_tostring(L, -1);
  t = ty ? lraft_findname(lraft_msg_names, RAFT_MSG_TYPE_MAX + 1, ty) : -1;
  if (t <= 0) luaL_error(L, "bad message type '%s'", ty ? ty : "?");
  lua_pop(L, 1);
  m->type = (raft_msg_type)t;
  m->from = lraft_getu64(L, idx, "from", 0);
  m->to = lraft_getu64(L, idx, "to", 0);
  m->term = lraft_getu64(L, idx, "term", 0);
  m->index = lraft_getu64(L, idx, "index", 0);
  m->log_term = lraft_getu64(L, idx, "log_term", 0);
  m->commit = lraft_getu64(L, idx, "commit", 0);
  m->reject = lraft_getbool(L, idx, "reject", 0);
  m->hint_index = lraft_getu64(L, idx, "hint_index", 0);
  m->hint_term = lraft_getu64(L, idx, "hint_term", 0);
  m->context = lraft_getu64(L, idx, "context", 0);
  if (lua_getfield(L, idx, "entries") == LUA_TTABLE)
    m->entries = lraft_toentries(L, lua_gettop(L), anchor, 0, &m->n_entries);
  else if (!lua_isnil(L, -1))
    luaL_error(L, "field 'entries' must be a list or nil");
  if (lua_getfield(L, idx, "conf") != LUA_TNIL) m->conf = lraft_toconf(L, -1);
}

/*
** The options table at 1 as a core config and what it restores from.
** Pushes (and leaves) the voters and log buffers; strings are anchored in
** 'anchor'.  Fields: id, voters, election_ticks, heartbeat_ticks, seed,
** max_msg_bytes, max_inflight, max_inflight_bytes, max_apply, pre_vote,
** check_quorum, hard_state,
** snapshot = {index=, term=}, applied, log.
*/
void lraft_toconfig (lua_State *L, int anchor, raft_config *c,
                     raft_restore *rs) {
  uint64_t *voters;
  size_t nv, i;
  int top;
  memset(rs, 0, sizeof(*rs));
  raft_config_default(c);
  c->id = lraft_getu64(L, 1, "id", 0);
  c->election_ticks = lraft_getint(L, 1, "election_ticks", c->election_ticks);
  c->heartbeat_ticks = lraft_getint(L, 1, "heartbeat_ticks", c->heartbeat_ticks);
  c->seed = lraft_getu64(L, 1, "seed", c->id);
  c->max_msg_bytes = (size_t)lraft_getu64(L, 1, "max_msg_bytes", c->max_msg_bytes);
  c->max_inflight = lraft_getint(L, 1, "max_inflight", c->max_inflight);
  c->max_inflight_bytes = (size_t)lraft_getu64(L, 1, "max_inflight_bytes",
                                               c->max_inflight_bytes);
  c->max_apply = (size_t)lraft_getu64(L, 1, "max_apply", c->max_apply);
  c->pre_vote = lraft_getbool(L, 1, "pre_vote", c->pre_vote);
  c->check_quorum = lraft_getbool(L, 1, "check_quorum", c->check_quorum);
  if (lua_getfield(L, 1, "voters") != LUA_TTABLE)
    luaL_error(L, "field 'voters' must be a list of node ids");
  top = lua_gettop(L);
  nv = (size_t)luaL_len(L, top);
  voters = (uint64_t *)lua_newuserdatauv(L, (nv ? nv : 1) * sizeof(*voters), 0);
  for (i = 0; i < nv; i++) {
    int isnum;
    lua_Integer v;
    lua_geti(L, top, (lua_Integer)i + 1);
    v = lua_tointegerx(L, -1, &isnum);
    if (!isnum || v <= 0) luaL_error(L, "voters[%d] is not a node id", (int)i + 1);
    voters[i] = (uint64_t)v;
    lua_pop(L, 1);
  }
  c->voters = voters;
  c->n_voters = nv;
  if (lua_getfield(L, 1, "hard_state") == LUA_TTABLE) {
    rs->hs.term = lraft_getu64(L, -1, "term", 0);
    rs->hs.vote = lraft_getu64(L, -1, "vote", 0);
    rs->hs.commit = lraft_getu64(L, -1, "commit", 0);
  } else if (!lua_isnil(L, -1))
    luaL_error(L, "field 'hard_state' must be a table or nil");
  lua_pop(L, 1);
  /* the log was compacted up to snapshot, and the state machine rebuilt
  ** from a snapshot up to 'applied' */
  if (lua_getfield(L, 1, "snapshot") == LUA_TTABLE) {
    rs->snap_index = lraft_getu64(L, -1, "index", 0);
    rs->snap_term = lraft_getu64(L, -1, "term", 0);
    if (rs->snap_index > (uint64_t)LUA_MAXINTEGER / 2)
      luaL_error(L, "field 'snapshot.index' is too large");

  } else if (!lua_isnil(L, -1))
    luaL_error(L, "field 'snapshot' must be a table or nil");
  lua_pop(L, 1);
  /* the configuration at the snapshot (its buffer stays on the stack) */
  if (lua_getfield(L, 1, "snapshot") == LUA_TTABLE &&
      lua_getfield(L, -1, "conf") != LUA_TNIL)
    rs->conf = lraft_toconf(L, -1);
  rs->applied = lraft_getu64(L, 1, "applied", rs->snap_index);
  if (lua_getfield(L, 1, "log") == LUA_TTABLE) {
    rs->log = lraft_toentries(L, lua_gettop(L), anchor, rs->snap_index + 1, &rs->n);
  } else if (!lua_isnil(L, -1))
    luaL_error(L, "field 'log' must be a list of entries or nil");
}

int lraft_pushstatus (lua_State *L, const raft_status *s) {
  raft_status st = *s;
  size_t i;
  lua_createtable(L, 0, 12);
  lraft_setint(L, "id", st.id);
  lua_pushstring(L, lraft_role_names[st.role]);
  lua_setfield(L, -2, "role");
  lraft_setint(L, "term", st.term);
  lraft_setint(L, "vote", st.vote);
  lraft_setint(L, "leader", st.leader);
  lraft_setint(L, "commit", st.commit);
  lraft_setint(L, "applied", st.applied);
  lraft_setint(L, "last_index", st.last_index);
  lraft_setint(L, "last_term", st.last_term);
  lraft_setint(L, "first_index", st.first_index);
  lraft_setint(L, "stable_index", st.stable_index);
  lua_createtable(L, 0, (int)st.n_peers);
  for (i = 0; i < st.n_peers && i <= RAFT_MAX_NODES; i++) {
    const raft_peer_status *p = &st.peers[i];
    lua_createtable(L, 0, 5);
    lraft_setint(L, "match", p->match);
    lraft_setint(L, "next", p->next);
    lua_pushstring(L, p->state == RAFT_PR_REPLICATE ? "replicate"
                      : p->state == RAFT_PR_SNAPSHOT ? "snapshot" : "probe");
    lua_setfield(L, -2, "state");
    lua_pushboolean(L, p->active);
    lua_setfield(L, -2, "active");
    lraft_setint(L, "inflight", (uint64_t)p->inflight);
    lraft_setint(L, "inflight_bytes", (uint64_t)p->inflight_bytes);
    lua_pushboolean(L, p->voter);
    lua_setfield(L, -2, "voter");
    lua_rawseti(L, -2, (lua_Integer)p->id);
  }
  lua_setfield(L, -2, "peers");
  lraft_pushconf(L, &st.conf);
  lua_setfield(L, -2, "conf");
  lraft_setint(L, "conf_index", st.conf_index);
  lua_pushboolean(L, st.conf_pending);
  lua_setfield(L, -2, "conf_pending");
  lraft_setint(L, "transferee", st.transferee);
  return 1;
}

/*
** role, term, leader, commit, last_index, last_term, applied, vote,
** first_index as plain values: the simulator polls this after every step,
** so no table.
*/
int lraft_pushstate (lua_State *L, const raft_status *s) {
  const raft_status st = *s;
  lua_pushstring(L, lraft_role_names[st.role]);
  lua_pushinteger(L, (lua_Integer)st.term);
  lua_pushinteger(L, (lua_Integer)st.leader);
  lua_pushinteger(L, (lua_Integer)st.commit);
  lua_pushinteger(L, (lua_Integer)st.last_index);
  lua_pushinteger(L, (lua_Integer)st.last_term);
  lua_pushinteger(L, (lua_Integer)st.applied);
  lua_pushinteger(L, (lua_Integer)st.vote);
  lua_pushinteger(L, (lua_Integer)st.first_index);
  return 9;
}

