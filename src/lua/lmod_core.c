/*
** lmod_core.c -- require("rafting.core"): one pure Raft core as a Lua object.
**
** Used by the simulator (lua/rafting/sim.lua) and the core specs.  Every
** argument is converted into buffers owned by Lua's GC (full userdata)
** *before* the core is called, so an error raised by a bad argument never
** skips a free; the only C-owned memory is the raft* itself, released by
** __gc/__close/close().  Everything read out of a ready batch is copied
** into Lua values before raft_advance() invalidates it.
*/
#define LUA_LIB
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "rafting/raft.h"
#include "lua/lraft.h"

#define NODE_MT "rafting.core.node"

typedef struct Node {
  raft *r;
} Node;


/* -- the node object -------------------------------------------------------- */

static Node *tonode (lua_State *L) {
  Node *n = (Node *)luaL_checkudata(L, 1, NODE_MT);
  if (n->r == NULL) luaL_error(L, "attempt to use a closed raft core");
  return n;
}

static int l_new (lua_State *L) {
  raft_config c;
  raft_restore rs;
  int err = 0;
  Node *node;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_newtable(L);  /* 2: anchor for strings the entries point into */
  lraft_toconfig(L, 2, &c, &rs);
  /* the object exists before the core, so raft_new's result has an owner */
  node = (Node *)lua_newuserdatauv(L, sizeof(*node), 0);
  node->r = NULL;
  luaL_setmetatable(L, NODE_MT);
  node->r = raft_new_restore(&c, &rs, &err);
  if (node->r == NULL)
    return luaL_error(L, "raft_new: %s", raft_strerror(err ? err
                                                            : RAFT_EINVAL));
  return 1;
}

static int l_close (lua_State *L) {
  Node *n = (Node *)luaL_checkudata(L, 1, NODE_MT);
  if (n->r) {
    raft_free(n->r);
    n->r = NULL;
  }
  return 0;
}

static int l_tick (lua_State *L) {
  raft_tick(tonode(L)->r);
  return 0;
}

static int l_step (lua_State *L) {
  Node *n = tonode(L);
  raft_msg m;
  int rc;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_newtable(L);  /* 3: anchor */
  lraft_tomsg(L, 2, 3, &m);
  rc = raft_step(n->r, &m);
  if (rc != RAFT_OK) return lraft_pusherr(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_propose (lua_State *L) {
  Node *n = tonode(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  uint64_t index = 0, term = 0;
  int rc = raft_propose(n->r, data, len, &index, &term);
  if (rc != RAFT_OK) {
    uint64_t hint = raft_leader(n->r);
    luaL_pushfail(L);
    lua_pushstring(L, lraft_errname(rc));
    if (hint == RAFT_NONE) lua_pushnil(L);
    else lua_pushinteger(L, (lua_Integer)hint);
    return 3;
  }
  lua_pushinteger(L, (lua_Integer)index);
  lua_pushinteger(L, (lua_Integer)term);
  return 2;
}

static int l_read_index (lua_State *L) {
  Node *n = tonode(L);
  lua_Integer ctx = luaL_checkinteger(L, 2);
  int rc = raft_read_index(n->r, (uint64_t)ctx);
  if (rc != RAFT_OK) {
    uint64_t hint = raft_leader(n->r);
    luaL_pushfail(L);
    lua_pushstring(L, lraft_errname(rc));
    if (hint == RAFT_NONE) lua_pushnil(L);
    else lua_pushinteger(L, (lua_Integer)hint);
    return 3;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_campaign (lua_State *L) {
  int rc = raft_campaign(tonode(L)->r);
  if (rc != RAFT_OK) return lraft_pusherr(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* core:compact(index): the state machine is snapshotted up to index (which
** must be applied and durable): drop the log up to there.  true | nil, err */
static int l_compact (lua_State *L) {
  Node *n = tonode(L);
  lua_Integer i = luaL_checkinteger(L, 2);
  int rc = i <= 0 ? RAFT_EINVAL : raft_compact(n->r, (uint64_t)i);
  if (rc != RAFT_OK) return lraft_pusherr(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* core:report_snapshot(to, ok): the runtime finished (true) or gave up
** (false) streaming the snapshot a SNAPSHOT message asked for */
static int l_report_snapshot (lua_State *L) {
  Node *n = tonode(L);
  lua_Integer to = luaL_checkinteger(L, 2);
  int ok;
  luaL_checkany(L, 3);
  ok = lua_toboolean(L, 3);
  if (to <= 0) return luaL_argerror(L, 2, "not a node id");
  raft_report_snapshot(n->r, (uint64_t)to, ok);
  return 0;
}

static int l_has_ready (lua_State *L) {
  lua_pushboolean(L, raft_has_ready(tonode(L)->r));
  return 1;
}

static int l_ready (lua_State *L) {
  Node *n = tonode(L);
  raft_ready rd;
  size_t i;
  int rc;
  if (!raft_has_ready(n->r)) {
    luaL_pushfail(L);
    return 1;
  }
  memset(&rd, 0, sizeof(rd));
  rc = raft_ready_get(n->r, &rd);
  if (rc != RAFT_OK) return lraft_pusherr(L, rc);
  lua_createtable(L, 0, 7);
  if (rd.snap_index > 0) {  /* the log was replaced by an adopted snapshot */
    lraft_setint(L, "snap_index", rd.snap_index);
    if (rd.snap_conf != NULL) {
      lraft_pushconf(L, rd.snap_conf);
      lua_setfield(L, -2, "snap_conf");
    }
    lraft_setint(L, "snap_term", rd.snap_term);
  }
  if (rd.hs_changed) {
    lua_createtable(L, 0, 3);
    lraft_setint(L, "term", rd.hs.term);
    lraft_setint(L, "vote", rd.hs.vote);
    lraft_setint(L, "commit", rd.hs.commit);
    lua_setfield(L, -2, "hs");
  }
  lraft_pushentries(L, rd.entries, rd.n_entries);
  lua_setfield(L, -2, "entries");
  lua_createtable(L, (int)rd.n_msgs, 0);
  for (i = 0; i < rd.n_msgs; i++) {
    lraft_pushmsg(L, &rd.msgs[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "msgs");
  lraft_pushentries(L, rd.committed, rd.n_committed);
  lua_setfield(L, -2, "committed");
  lua_createtable(L, (int)rd.n_reads, 0);
  for (i = 0; i < rd.n_reads; i++) {
    lua_createtable(L, 0, 2);
    lraft_setint(L, "index", rd.reads[i].index);
    lraft_setint(L, "ctx", rd.reads[i].ctx);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "reads");
  return 1;
}

static int l_advance (lua_State *L) {
  raft_advance(tonode(L)->r);
  return 0;
}

static int l_status (lua_State *L) {
  raft_status st;
  raft_status_get(tonode(L)->r, &st);
  return lraft_pushstatus(L, &st);
}

/* role, term, leader, commit, last_index, last_term, applied, vote,
** first_index as plain values (see lraft_pushstate) */
static int l_state (lua_State *L) {
  raft_status st;
  raft_status_get(tonode(L)->r, &st);
  return lraft_pushstate(L, &st);
}

static int l_entry (lua_State *L) {
  Node *n = tonode(L);
  lua_Integer i = luaL_checkinteger(L, 2);
  raft_entry e;
  if (i <= 0 || raft_log_entry(n->r, (uint64_t)i, &e) != RAFT_OK)
    luaL_pushfail(L);
  else lraft_pushentry(L, &e);
  return 1;
}

/* term of entry i, or nil: cheap for log comparisons */
static int l_term_at (lua_State *L) {
  Node *n = tonode(L);
  lua_Integer i = luaL_checkinteger(L, 2);
  raft_entry e;
  if (i <= 0 || raft_log_entry(n->r, (uint64_t)i, &e) != RAFT_OK)
    luaL_pushfail(L);
  else lua_pushinteger(L, (lua_Integer)e.term);
  return 1;
}

static int l_tostring (lua_State *L) {
  Node *n = (Node *)luaL_checkudata(L, 1, NODE_MT);
  if (n->r == NULL) lua_pushliteral(L, "raft core (closed)");
  else {
    raft_status st;
    raft_status_get(n->r, &st);
    lua_pushfstring(L, "raft core %d (%s, term %d)", (int)st.id,
                    lraft_role_names[st.role], (int)st.term);
  }
  return 1;
}

/* core.defaults() -> the C defaults of raft_config_default() */
static int l_defaults (lua_State *L) {
  raft_config c;
  raft_config_default(&c);
  lua_createtable(L, 0, 6);
  lraft_setint(L, "election_ticks", (uint64_t)c.election_ticks);
  lraft_setint(L, "heartbeat_ticks", (uint64_t)c.heartbeat_ticks);
  lraft_setint(L, "max_msg_bytes", c.max_msg_bytes);
  lraft_setint(L, "max_inflight", (uint64_t)c.max_inflight);
  lraft_setint(L, "max_inflight_bytes", (uint64_t)c.max_inflight_bytes);
  lua_pushboolean(L, c.pre_vote);
  lua_setfield(L, -2, "pre_vote");
  lua_pushboolean(L, c.check_quorum);
  lua_setfield(L, -2, "check_quorum");
  return 1;
}

/* core.conf_decode(data) -> {voters=, learners=}, context | nil: a CONF
** entry's payload as the C core reads it (raft_conf_context) */
static int l_conf_decode (lua_State *L) {
  size_t len, ctx_len;
  const uint8_t *data = (const uint8_t *)luaL_checklstring(L, 1, &len);
  const uint8_t *ctx;
  raft_conf c;
  if (raft_conf_decode(data, len, &c) != RAFT_OK ||
      raft_conf_context(data, len, &ctx, &ctx_len) != RAFT_OK) {
    luaL_pushfail(L);
    return 1;
  }
  lraft_pushconf(L, &c);
  lua_pushlstring(L, (const char *)ctx, ctx_len);
  return 2;
}

static const luaL_Reg node_methods[] = {
  {"tick", l_tick},
  {"step", l_step},
  {"propose", l_propose},
  {"read_index", l_read_index},
  {"campaign", l_campaign},
  {"compact", l_compact},
  {"report_snapshot", l_report_snapshot},
  {"has_ready", l_has_ready},
  {"ready", l_ready},
  {"advance", l_advance},
  {"status", l_status},
  {"state", l_state},
  {"entry", l_entry},
  {"term_at", l_term_at},
  {"close", l_close},
  {NULL, NULL}
};

static const luaL_Reg node_meta[] = {
  {"__gc", l_close},
  {"__close", l_close},
  {"__tostring", l_tostring},
  {"__index", NULL},  /* placeholder */
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"new", l_new},
  {"defaults", l_defaults},
  {"conf_decode", l_conf_decode},
  {NULL, NULL}
};

LUAMOD_API int luaopen_rafting_core (lua_State *L) {
  int i;
  luaL_newmetatable(L, NODE_MT);
  luaL_setfuncs(L, node_meta, 0);
  luaL_newlib(L, node_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_createtable(L, RAFT_MSG_TYPE_MAX, 0);  /* core.msg_types: the names */
  for (i = 1; i <= RAFT_MSG_TYPE_MAX; i++) {
    lua_pushstring(L, lraft_msg_names[i]);
    lua_rawseti(L, -2, i);
  }
  lua_setfield(L, -2, "msg_types");
  return 1;
}
