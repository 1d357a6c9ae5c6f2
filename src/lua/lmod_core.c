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

#define NODE_MT "rafting.core.node"

typedef struct Node {
  raft *r;
} Node;


/* -- names -------------------------------------------------------------- */

static const char *const msg_names[RAFT_MSG_TYPE_MAX + 1] = {
  NULL, "prevote", "prevote_resp", "vote", "vote_resp", "append",
  "append_resp", "heartbeat", "heartbeat_resp", "snapshot",
  "snapshot_resp", "timeout_now"
};

static const char *const entry_names[] = {"normal", "noop", "conf", NULL};

static const char *const role_names[] = {
  "follower", "precandidate", "candidate", "leader"
};

static const char *errname (int err) {
  switch (err) {
    case RAFT_ENOTLEADER: return "notleader";
    case RAFT_ENOMEM: return "nomem";
    case RAFT_EINVAL: return "inval";
    case RAFT_EBUSY: return "busy";
    case RAFT_ETOOBIG: return "toobig";
    case RAFT_ENOTREADY: return "notready";
    default: return "unknown";
  }
}

/* nil, errname, message: the usual failure triple */
static int pusherr (lua_State *L, int err) {
  luaL_pushfail(L);
  lua_pushstring(L, errname(err));
  lua_pushstring(L, raft_strerror(err));
  return 3;
}


/* -- reading Lua tables into C --------------------------------------------- */

/* t[k] as a non-negative integer; 'def' when absent */
static uint64_t getu64 (lua_State *L, int t, const char *k, uint64_t def) {
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

static int getint (lua_State *L, int t, const char *k, int def) {
  uint64_t v = getu64(L, t, k, (uint64_t)def);
  if (v > 0x7fffffff) luaL_error(L, "field '%s' is too large", k);
  return (int)v;
}

static int getbool (lua_State *L, int t, const char *k, int def) {
  int v = def;
  if (lua_getfield(L, t, k) != LUA_TNIL) v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* index of name in list, or -1 */
static int findname (const char *const *list, int n, const char *name) {
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
static raft_entry *toentries (lua_State *L, int list, int anchor,
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
    e->term = getu64(L, t, "term", 0);
    e->index = getu64(L, t, "index", first ? first + i : 0);
    if (first && e->index != first + i)
      luaL_error(L, "entry %d has index %d, expected %d", (int)i + 1,
                 (int)e->index, (int)(first + i));
    lua_getfield(L, t, "type");
    ty = lua_isnil(L, -1) ? 0
         : findname(entry_names, 3, luaL_checkstring(L, -1));
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

static void setint (lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static void pushentry (lua_State *L, const raft_entry *e) {
  lua_createtable(L, 0, 4);
  setint(L, "term", e->term);
  setint(L, "index", e->index);
  lua_pushstring(L, (e->type >= 0 && e->type <= 2) ? entry_names[e->type]
                                                   : "unknown");
  lua_setfield(L, -2, "type");
  lua_pushlstring(L, e->len ? (const char *)e->data : "", e->len);
  lua_setfield(L, -2, "data");
}

static void pushentries (lua_State *L, const raft_entry *es, size_t n) {
  size_t i;
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    pushentry(L, &es[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

static void pushmsg (lua_State *L, const raft_msg *m) {
  lua_createtable(L, 0, 13);
  lua_pushstring(L, (m->type > 0 && m->type <= RAFT_MSG_TYPE_MAX)
                      ? msg_names[m->type] : "unknown");
  lua_setfield(L, -2, "type");
  setint(L, "from", m->from);
  setint(L, "to", m->to);
  setint(L, "term", m->term);
  setint(L, "index", m->index);
  setint(L, "log_term", m->log_term);
  setint(L, "commit", m->commit);
  lua_pushboolean(L, m->reject);
  lua_setfield(L, -2, "reject");
  setint(L, "hint_index", m->hint_index);
  setint(L, "hint_term", m->hint_term);
  setint(L, "context", m->context);
  if (m->n_entries > 0) {  /* absent rather than empty: most msgs have none */
    pushentries(L, m->entries, m->n_entries);
    lua_setfield(L, -2, "entries");
  }
}


/* -- the node object -------------------------------------------------------- */

static Node *tonode (lua_State *L) {
  Node *n = (Node *)luaL_checkudata(L, 1, NODE_MT);
  if (n->r == NULL) luaL_error(L, "attempt to use a closed raft core");
  return n;
}

static int l_new (lua_State *L) {
  raft_config c;
  raft_restore rs;
  raft_entry *log = NULL;
  uint64_t *voters;
  size_t nlog = 0, nv, i;
  int err = 0;
  Node *node;
  memset(&rs, 0, sizeof(rs));
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_newtable(L);  /* 2: anchor for strings the entries point into */
  raft_config_default(&c);
  c.id = getu64(L, 1, "id", 0);
  c.election_ticks = getint(L, 1, "election_ticks", c.election_ticks);
  c.heartbeat_ticks = getint(L, 1, "heartbeat_ticks", c.heartbeat_ticks);
  c.seed = getu64(L, 1, "seed", c.id);
  c.max_msg_bytes = (size_t)getu64(L, 1, "max_msg_bytes", c.max_msg_bytes);
  c.max_inflight = getint(L, 1, "max_inflight", c.max_inflight);
  c.pre_vote = getbool(L, 1, "pre_vote", c.pre_vote);
  c.check_quorum = getbool(L, 1, "check_quorum", c.check_quorum);
  if (lua_getfield(L, 1, "voters") != LUA_TTABLE)  /* 3 */
    return luaL_error(L, "field 'voters' must be a list of node ids");
  nv = (size_t)luaL_len(L, 3);
  voters = (uint64_t *)lua_newuserdatauv(L, (nv ? nv : 1) * sizeof(*voters),
                                         0);  /* 4 */
  for (i = 0; i < nv; i++) {
    int isnum;
    lua_Integer v;
    lua_geti(L, 3, (lua_Integer)i + 1);
    v = lua_tointegerx(L, -1, &isnum);
    if (!isnum || v <= 0) return luaL_error(L, "voters[%d] is not a node id",
                                            (int)i + 1);
    voters[i] = (uint64_t)v;
    lua_pop(L, 1);
  }
  c.voters = voters;
  c.n_voters = nv;
  if (lua_getfield(L, 1, "hard_state") == LUA_TTABLE) {  /* 5 */
    rs.hs.term = getu64(L, 5, "term", 0);
    rs.hs.vote = getu64(L, 5, "vote", 0);
    rs.hs.commit = getu64(L, 5, "commit", 0);
  } else if (!lua_isnil(L, 5))
    return luaL_error(L, "field 'hard_state' must be a table or nil");
  /* snapshot = {index=, term=}: the log was compacted up to there, and
  ** the state machine was rebuilt from a snapshot up to 'applied' */
  if (lua_getfield(L, 1, "snapshot") == LUA_TTABLE) {  /* 6 */
    rs.snap_index = getu64(L, 6, "index", 0);
    rs.snap_term = getu64(L, 6, "term", 0);
    if (rs.snap_index > (uint64_t)LUA_MAXINTEGER / 2)
      return luaL_error(L, "field 'snapshot.index' is too large");
  } else if (!lua_isnil(L, 6))
    return luaL_error(L, "field 'snapshot' must be a table or nil");
  rs.applied = getu64(L, 1, "applied", rs.snap_index);
  if (lua_getfield(L, 1, "log") == LUA_TTABLE)  /* 7 */
    log = toentries(L, 7, 2, rs.snap_index + 1, &nlog);  /* 8 */
  else if (!lua_isnil(L, 7))
    return luaL_error(L, "field 'log' must be a list of entries or nil");
  rs.log = log;
  rs.n = nlog;
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
  const char *ty;
  int t, rc;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_newtable(L);  /* 3: anchor */
  memset(&m, 0, sizeof(m));
  lua_getfield(L, 2, "type");
  ty = lua_tostring(L, -1);
  t = ty ? findname(msg_names, RAFT_MSG_TYPE_MAX + 1, ty) : -1;
  if (t <= 0) return luaL_error(L, "bad message type '%s'", ty ? ty : "?");
  lua_pop(L, 1);
  m.type = (raft_msg_type)t;
  m.from = getu64(L, 2, "from", 0);
  m.to = getu64(L, 2, "to", 0);
  m.term = getu64(L, 2, "term", 0);
  m.index = getu64(L, 2, "index", 0);
  m.log_term = getu64(L, 2, "log_term", 0);
  m.commit = getu64(L, 2, "commit", 0);
  m.reject = getbool(L, 2, "reject", 0);
  m.hint_index = getu64(L, 2, "hint_index", 0);
  m.hint_term = getu64(L, 2, "hint_term", 0);
  m.context = getu64(L, 2, "context", 0);
  if (lua_getfield(L, 2, "entries") == LUA_TTABLE)
    m.entries = toentries(L, lua_gettop(L), 3, 0, &m.n_entries);
  else if (!lua_isnil(L, -1))
    return luaL_error(L, "field 'entries' must be a list or nil");
  rc = raft_step(n->r, &m);
  if (rc != RAFT_OK) return pusherr(L, rc);
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
    lua_pushstring(L, errname(rc));
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
    lua_pushstring(L, errname(rc));
    if (hint == RAFT_NONE) lua_pushnil(L);
    else lua_pushinteger(L, (lua_Integer)hint);
    return 3;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_campaign (lua_State *L) {
  int rc = raft_campaign(tonode(L)->r);
  if (rc != RAFT_OK) return pusherr(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* core:compact(index): the state machine is snapshotted up to index (which
** must be applied and durable): drop the log up to there.  true | nil, err */
static int l_compact (lua_State *L) {
  Node *n = tonode(L);
  lua_Integer i = luaL_checkinteger(L, 2);
  int rc = i <= 0 ? RAFT_EINVAL : raft_compact(n->r, (uint64_t)i);
  if (rc != RAFT_OK) return pusherr(L, rc);
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
  if (rc != RAFT_OK) return pusherr(L, rc);
  lua_createtable(L, 0, 7);
  if (rd.snap_index > 0) {  /* the log was replaced by an adopted snapshot */
    setint(L, "snap_index", rd.snap_index);
    setint(L, "snap_term", rd.snap_term);
  }
  if (rd.hs_changed) {
    lua_createtable(L, 0, 3);
    setint(L, "term", rd.hs.term);
    setint(L, "vote", rd.hs.vote);
    setint(L, "commit", rd.hs.commit);
    lua_setfield(L, -2, "hs");
  }
  pushentries(L, rd.entries, rd.n_entries);
  lua_setfield(L, -2, "entries");
  lua_createtable(L, (int)rd.n_msgs, 0);
  for (i = 0; i < rd.n_msgs; i++) {
    pushmsg(L, &rd.msgs[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "msgs");
  pushentries(L, rd.committed, rd.n_committed);
  lua_setfield(L, -2, "committed");
  lua_createtable(L, (int)rd.n_reads, 0);
  for (i = 0; i < rd.n_reads; i++) {
    lua_createtable(L, 0, 2);
    setint(L, "index", rd.reads[i].index);
    setint(L, "ctx", rd.reads[i].ctx);
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
  size_t i;
  raft_status_get(tonode(L)->r, &st);
  lua_createtable(L, 0, 12);
  setint(L, "id", st.id);
  lua_pushstring(L, role_names[st.role]);
  lua_setfield(L, -2, "role");
  setint(L, "term", st.term);
  setint(L, "vote", st.vote);
  setint(L, "leader", st.leader);
  setint(L, "commit", st.commit);
  setint(L, "applied", st.applied);
  setint(L, "last_index", st.last_index);
  setint(L, "last_term", st.last_term);
  setint(L, "first_index", st.first_index);
  setint(L, "stable_index", st.stable_index);
  lua_createtable(L, 0, (int)st.n_peers);
  for (i = 0; i < st.n_peers && i < RAFT_MAX_NODES; i++) {
    const raft_peer_status *p = &st.peers[i];
    lua_createtable(L, 0, 5);
    setint(L, "match", p->match);
    setint(L, "next", p->next);
    lua_pushstring(L, p->state == RAFT_PR_REPLICATE ? "replicate"
                      : p->state == RAFT_PR_SNAPSHOT ? "snapshot" : "probe");
    lua_setfield(L, -2, "state");
    lua_pushboolean(L, p->active);
    lua_setfield(L, -2, "active");
    setint(L, "inflight", (uint64_t)p->inflight);
    lua_rawseti(L, -2, (lua_Integer)p->id);
  }
  lua_setfield(L, -2, "peers");
  return 1;
}

/*
** role, term, leader, commit, last_index, last_term, applied, vote,
** first_index as plain values: the simulator polls this after every step,
** so no table.
*/
static int l_state (lua_State *L) {
  raft_status st;
  raft_status_get(tonode(L)->r, &st);
  lua_pushstring(L, role_names[st.role]);
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

static int l_entry (lua_State *L) {
  Node *n = tonode(L);
  lua_Integer i = luaL_checkinteger(L, 2);
  raft_entry e;
  if (i <= 0 || raft_log_entry(n->r, (uint64_t)i, &e) != RAFT_OK)
    luaL_pushfail(L);
  else pushentry(L, &e);
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
                    role_names[st.role], (int)st.term);
  }
  return 1;
}

/* core.defaults() -> the C defaults of raft_config_default() */
static int l_defaults (lua_State *L) {
  raft_config c;
  raft_config_default(&c);
  lua_createtable(L, 0, 6);
  setint(L, "election_ticks", (uint64_t)c.election_ticks);
  setint(L, "heartbeat_ticks", (uint64_t)c.heartbeat_ticks);
  setint(L, "max_msg_bytes", c.max_msg_bytes);
  setint(L, "max_inflight", (uint64_t)c.max_inflight);
  lua_pushboolean(L, c.pre_vote);
  lua_setfield(L, -2, "pre_vote");
  lua_pushboolean(L, c.check_quorum);
  lua_setfield(L, -2, "check_quorum");
  return 1;
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
    lua_pushstring(L, msg_names[i]);
    lua_rawseti(L, -2, i);
  }
  lua_setfield(L, -2, "msg_types");
  return 1;
}
