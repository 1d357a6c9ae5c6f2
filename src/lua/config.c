/*
** config.c -- load and validate a cluster config written in Lua.
**
** The file runs in a fresh lua_State with only the base, string, table and
** math libraries (no io, os, require, dofile, loadfile), as text only, under
** an instruction budget that library work (string.rep, patterns, ...) is
** charged to as well (sm/meter.h).  Its result table is then checked by a C function that itself runs
** in protected mode, so every validation failure is a Lua error whose message
** already names the file and the field.
**
** Memory: every C allocation made while Lua may raise an error is stored in
** the caller's rf_config at once, so a longjmp never strands a pointer; on
** failure rf_config_load() frees the partial rf_config before returning.
** Strings are copied out of Lua; nothing points into the (closed) state.
*/
#include "rafting/config.h"
#include "rafting/log.h"
#include "rafting/util.h"
#include "sm/meter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define CFG_INSTR_STEP 1000
#define CFG_INSTR_MAX 10000000L /* ~ 0.1 s of Lua: plenty for any config */
#define CFG_MEM_MAX (64u << 20)   /* a config is a small table */
#define CFG_MAX_CLUSTER 64
#define FRAME_SLACK 1024 /* envelope around a message's entries */
#define FRAME_HEADER 4   /* the length before each peer frame */

typedef struct ctx {
  const char *path;
  rf_config *out;
  long instr;
  size_t mem;  /* bytes the Lua state holds, at most CFG_MEM_MAX */
  int mem_hit; /* an allocation was refused for the cap */
} ctx;

static const char *const top_keys[] = {"cluster", "nodes", "timing",
                                       "storage", "wal", "commands",
                                       "limits", "log", "auth", "tls", NULL};
static const char *const log_keys[] = {"level", "format", NULL};
static const char *const tls_keys[] = {"ca", "cert", "key", NULL};
static const char *const wal_keys[] = {"sync", "segment_bytes", "batch_bytes",
                                       NULL};
static const char *const node_keys[] = {"id", "peer", "http", NULL};
static const char *const timing_keys[] = {"tick_ms", "election_ticks",
                                          "heartbeat_ticks", "pre_vote",
                                          "check_quorum", NULL};

/* limits.*: one row per key; off is the field's offset in rf_config. */
typedef struct limit_def {
  const char *name;
  size_t off;
  int is_int; /* int field (bounded by INT_MAX) rather than size_t */
  lua_Integer dflt;
} limit_def;

#define LIM(f, isint, d) {#f, offsetof(rf_config, f), isint, d}
static const limit_def limit_defs[] = {
    LIM(max_frame_bytes, 0, 4 << 20),  LIM(max_msg_bytes, 0, 2 << 20),
    LIM(max_inflight, 1, 64),          LIM(send_queue_bytes, 0, 8 << 20),
    LIM(max_inflight_bytes, 0, 4 << 20),
    LIM(max_body_bytes, 0, 1 << 20),   LIM(max_header_bytes, 0, 8 << 10),
    LIM(max_url_bytes, 0, 4 << 10),    LIM(max_connections, 1, 1024),
    LIM(idle_timeout_ms, 1, 30000),    LIM(request_timeout_ms, 1, 10000),
    LIM(forward_timeout_ms, 1, 5000),  LIM(commit_timeout_ms, 1, 5000),
    LIM(sm_instructions, 0, 1000000),  LIM(sm_memory_bytes, 0, 64 << 20),
    LIM(snapshot_entries, 0, 0),       LIM(snapshot_log_bytes, 0, 1 << 30),
    LIM(snapshot_log_percent, 0, 50),  LIM(snapshot_min_log_bytes, 0, 4 << 20),
    LIM(snapshot_trailing, 0, 1000),   LIM(snapshot_chunk_bytes, 0, 256 << 10),
    LIM(max_snapshot_bytes, 0, 1 << 30),
    LIM(max_peer_connections, 1, -4), /* negative: that many per node */
    LIM(peer_handshake_timeout_ms, 1, 5000),
    LIM(peer_frame_timeout_ms, 1, 10000),
    LIM(peer_buffer_bytes, 0, 32 << 20),
    LIM(watch_history_entries, 0, 10000),
    LIM(watch_history_bytes, 0, 16 << 20),
    LIM(loop_warn_ms, 1, 100),
    {NULL, 0, 0, 0}};

/* Upper bounds beyond the field's type, with the reason a user reads. */
static const struct limit_max {
  const char *name;
  lua_Integer max;
  const char *why;
} limit_maxes[] = {
    {"max_frame_bytes", 1 << 30, "1 GiB: a frame's length and libuv's "
                                 "buffers are 32-bit"},
    {"max_msg_bytes", 1 << 30, "1 GiB, as max_frame_bytes"},
    {"max_body_bytes", 1 << 30, "1 GiB"},
    {"max_header_bytes", 1 << 20, "1 MiB"},
    {"max_url_bytes", 1 << 20, "1 MiB"},
    {"snapshot_chunk_bytes", 1 << 30, "1 GiB, as max_frame_bytes"},
    {"snapshot_log_percent", 10000, "a hundred times the state"},
    {"max_peer_connections", 1024, "a peer needs one"},
    {NULL, 0, NULL}};

/* ---- errors ------------------------------------------------------------ */

/* Raise "path: field: message".  Never returns. */
static int fail(lua_State *L, const ctx *x, const char *field,
                const char *fmt, ...) {
  va_list ap;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "%s: %s: ", x->path, field);
  luaL_addvalue(&b);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  luaL_addvalue(&b);
  luaL_pushresult(&b);
  return lua_error(L);
}

static char *dup_or_raise(lua_State *L, const char *s) {
  char *d = strdup(s);
  if (d == NULL) luaL_error(L, "out of memory");
  return d;
}

/* ---- unknown keys ------------------------------------------------------ */

static int known(const char *const *keys, const char *k) {
  for (; *keys; keys++)
    if (strcmp(*keys, k) == 0) return 1;
  return 0;
}

/* Push the display name of the key at index k inside table prefix. */
static void push_keyname(lua_State *L, const char *prefix, int k) {
  k = lua_absindex(L, k);
  if (lua_type(L, k) == LUA_TSTRING)
    lua_pushfstring(L, "%s%s%s", prefix, *prefix ? "." : "",
                    lua_tostring(L, k));
  else if (lua_isinteger(L, k))
    lua_pushfstring(L, "%s[%I]", prefix, lua_tointeger(L, k));
  else
    lua_pushfstring(L, "%s[<%s key>]", prefix, luaL_typename(L, k));
}

/* Reject any key of the table at idx not in keys; prefix names the table. */
static void check_keys(lua_State *L, const ctx *x, int idx, const char *prefix,
                       const char *const *keys) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING && known(keys, lua_tostring(L, -1)))
      continue;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (const char *const *k = keys; *k; k++) {
      if (k != keys) luaL_addstring(&b, ", ");
      luaL_addstring(&b, *k);
    }
    luaL_pushresult(&b);
    const char *list = lua_tostring(L, -1);
      push_keyname(L, prefix, -2);
    fail(L, x, lua_tostring(L, -1), "unknown key (expected one of: %s)",
         list);
  }
}

/* ---- typed fields ------------------------------------------------------ */

/* Push t[name] (raw: a metatable cannot run code here); return its type. */
static int rawfield(lua_State *L, int t, const char *name) {
  lua_pushstring(L, name);
  return lua_rawget(L, t);
}

/* Value at top as an integer in [min, max]; pops it. */
static lua_Integer to_int(lua_State *L, const ctx *x, const char *field,
                          lua_Integer min, lua_Integer max) {
  int ok = 0;
  lua_Integer v = 0;
  if (lua_type(L, -1) == LUA_TNUMBER) v = lua_tointegerx(L, -1, &ok);
  if (!ok) {
    if (lua_type(L, -1) == LUA_TNUMBER)
      fail(L, x, field, "expected an integer, got %s", lua_tostring(L, -1));
    fail(L, x, field, "expected an integer, got %s", luaL_typename(L, -1));
  }
  if (v < min || v > max) {
    if (min == 1 && v < 1) fail(L, x, field, "must be positive, got %I", v);
    fail(L, x, field, "must be between %I and %I, got %I", min, max, v);
  }
  lua_pop(L, 1);
  return v;
}

static lua_Integer opt_int(lua_State *L, const ctx *x, int t,
                           const char *sect, const char *name,
                           lua_Integer dflt, lua_Integer min,
                           lua_Integer max) {
  if (rawfield(L, t, name) == LUA_TNIL) {
    lua_pop(L, 1);
    return dflt;
  }
  lua_pushfstring(L, "%s.%s", sect, name);
  lua_insert(L, -2);
  lua_Integer v = to_int(L, x, lua_tostring(L, -2), min, max);
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, const ctx *x, int t, const char *sect,
                    const char *name, int dflt) {
  int ty = rawfield(L, t, name);
  int v = ty == LUA_TNIL ? dflt : lua_toboolean(L, -1);
  if (ty != LUA_TNIL && ty != LUA_TBOOLEAN) {
    lua_pushfstring(L, "%s.%s", sect, name);
    fail(L, x, lua_tostring(L, -1), "expected a boolean, got %s",
         luaL_typename(L, -2));
  }
  lua_pop(L, 1);
  return v;
}

/* t[name] as a string, or NULL if nil and !required.  Leaves it pushed. */
static const char *get_str(lua_State *L, const ctx *x, int t,
                           const char *field, const char *name, int required) {
  int ty = rawfield(L, t, name);
  if (ty == LUA_TNIL && !required) return NULL;
  if (ty == LUA_TNIL) fail(L, x, field, "missing (a string is required)");
  if (ty != LUA_TSTRING)
    fail(L, x, field, "expected a string, got %s", luaL_typename(L, -1));
  return lua_tostring(L, -1);
}

/* Optional subtable t[name]: its absolute index, or 0 if nil. */
static int opt_table(lua_State *L, const ctx *x, int t, const char *name) {
  int ty = rawfield(L, t, name);
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (ty != LUA_TTABLE)
    fail(L, x, name, "expected a table, got %s", luaL_typename(L, -1));
  return lua_gettop(L);
}

/* ---- addresses --------------------------------------------------------- */

/* Canonical form of a host, so "::1" and "0::1" compare equal. */
static void canon_host(const char *host, char *buf, size_t len) {
  unsigned char a[16];
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  if (inet_pton(AF_INET, host, a) == 1)
    inet_ntop(AF_INET, a, buf, (socklen_t)len);
  else if (inet_pton(AF_INET6, host, a) == 1)
    inet_ntop(AF_INET6, a, buf, (socklen_t)len);
  else
    snprintf(buf, len, "%s", host);
}

static int same_addr(const char *h1, int p1, const char *h2, int p2) {
  char a[INET6_ADDRSTRLEN + 16], b[INET6_ADDRSTRLEN + 16];
  if (p1 != p2) return 0;
  canon_host(h1, a, sizeof a);
  canon_host(h2, b, sizeof b);
  return strcmp(a, b) == 0;
}

/* An address (node i, kind) must not repeat any address seen before it. */
static void budget_hook(lua_State *L, lua_Debug *ar);

static void check_dup_addr(lua_State *L, const ctx *x, size_t i, int http) {
  const rf_node_conf *n = &x->out->nodes[i];
  const char *h = http ? n->http_host : n->peer_host;
  int p = http ? n->http_port : n->peer_port;
  for (size_t j = 0; j <= i; j++) {
    const rf_node_conf *m = &x->out->nodes[j];
    for (int k = 0; k < 2; k++) {
      if (j == i && k >= http) break; /* only addresses before this one */
      if (same_addr(h, p, k ? m->http_host : m->peer_host,
                    k ? m->http_port : m->peer_port)) {
        char addr[RF_ADDR_MAX];
        rf_addr_format(addr, sizeof addr, h, p);
        lua_pushfstring(L, "nodes[%d].%s", (int)i + 1, http ? "http" : "peer");
        fail(L, x, lua_tostring(L, -1), "address %s already used by nodes[%d].%s",
             addr, (int)j + 1, k ? "http" : "peer");
      }
    }
  }
}

/* ---- nodes ------------------------------------------------------------- */

static void node_addr(lua_State *L, const ctx *x, int t, size_t i, int http) {
  rf_node_conf *n = &x->out->nodes[i];
  const char *kind = http ? "http" : "peer";
  char host[RF_ADDR_MAX], why[RF_ADDR_MAX + 96];
  int port;
  lua_pushfstring(L, "nodes[%d].%s", (int)i + 1, kind);
  const char *field = lua_tostring(L, -1);
  if (rf_addr_split(get_str(L, x, t, field, kind, 1), host, sizeof host, &port,
                    why, sizeof why) < 0)
    fail(L, x, field, "%s", why);
  lua_pop(L, 2);
  if (http) {
    n->http_host = dup_or_raise(L, host);
    n->http_port = port;
  } else {
    n->peer_host = dup_or_raise(L, host);
    n->peer_port = port;
  }
}

static void load_node(lua_State *L, const ctx *x, int t, size_t i) {
  rf_node_conf *n = &x->out->nodes[i];
  lua_pushfstring(L, "nodes[%d]", (int)i + 1);
  const char *name = lua_tostring(L, -1);
  if (!lua_istable(L, t))
    fail(L, x, name, "expected a table {id=, peer=, http=}, got %s",
         luaL_typename(L, t));
  check_keys(L, x, t, name, node_keys);
  lua_pushfstring(L, "%s.id", name);
  if (rawfield(L, t, "id") == LUA_TNIL)
    fail(L, x, lua_tostring(L, -2), "missing (a positive integer)");
  n->id = (uint64_t)to_int(L, x, lua_tostring(L, -2), 1, LUA_MAXINTEGER);
  for (size_t j = 0; j < i; j++)
    if (x->out->nodes[j].id == n->id)
      fail(L, x, lua_tostring(L, -1), "duplicate id %I", (lua_Integer)n->id);
  lua_pop(L, 1);
  node_addr(L, x, t, i, 0);
  node_addr(L, x, t, i, 1);
  check_dup_addr(L, x, i, 0);
  check_dup_addr(L, x, i, 1);
  lua_pop(L, 1); /* name */
}

/* nodes must be a non-empty list: integer keys 1..n and nothing else. */
static void load_nodes(lua_State *L, const ctx *x, int top) {
  int t;
  lua_Integer n = 0;
  if (rawfield(L, top, "nodes") == LUA_TNIL)
    fail(L, x, "nodes", "missing (a list of {id=, peer=, http=})");
  if (!lua_istable(L, -1))
    fail(L, x, "nodes", "expected a list of tables, got %s",
         luaL_typename(L, -1));
  t = lua_gettop(L);
  for (lua_pushnil(L); lua_next(L, t); lua_pop(L, 1)) n++;
  for (lua_pushnil(L); lua_next(L, t); lua_pop(L, 1)) {
    lua_Integer k = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : 0;
    if (k < 1 || k > n) {
      push_keyname(L, "nodes", -2);
      fail(L, x, lua_tostring(L, -1), "unexpected key (nodes must be a "
                                      "list {{id=, peer=, http=}, ...} "
                                      "without holes)");
    }
  }
  if (n == 0) fail(L, x, "nodes", "must list at least one node");
  rf_config *c = x->out;
  c->nodes = calloc((size_t)n, sizeof *c->nodes);
  if (c->nodes == NULL) luaL_error(L, "out of memory");
  c->n_nodes = (size_t)n;
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, t, i + 1);
    load_node(L, x, lua_gettop(L), (size_t)i);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* ---- sections ---------------------------------------------------------- */

static void load_cluster(lua_State *L, const ctx *x, int top) {
  const char *s = get_str(L, x, top, "cluster", "cluster", 1);
  size_t n = strlen(s);
  if (n == 0 || n > CFG_MAX_CLUSTER || n != lua_rawlen(L, -1))
    fail(L, x, "cluster", "must be 1..%d characters", CFG_MAX_CLUSTER);
  for (const char *c = s; *c; c++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "0123456789._-", *c))
      fail(L, x, "cluster", "\"%s\": use only letters, digits, '.', '_', '-'",
           s);
  x->out->cluster = dup_or_raise(L, s);
  lua_pop(L, 1);
}

static void load_timing(lua_State *L, const ctx *x, int top) {
  rf_config *c = x->out;
  int t = opt_table(L, x, top, "timing");
  if (t == 0) return; /* all defaults */
  check_keys(L, x, t, "timing", timing_keys);
  c->tick_ms = (int)opt_int(L, x, t, "timing", "tick_ms", c->tick_ms, 1, 60000);
  c->heartbeat_ticks = (int)opt_int(L, x, t, "timing", "heartbeat_ticks",
                                    c->heartbeat_ticks, 1, 1000000);
  c->election_ticks = (int)opt_int(L, x, t, "timing", "election_ticks",
                                   c->election_ticks, 1, 1000000);
  c->pre_vote = opt_bool(L, x, t, "timing", "pre_vote", c->pre_vote);
  c->check_quorum =
      opt_bool(L, x, t, "timing", "check_quorum", c->check_quorum);
  lua_pop(L, 1);
}

/* wal = { sync = "always" | "none", segment_bytes =, batch_bytes = } */
static void load_wal(lua_State *L, const ctx *x, int top) {
  rf_config *c = x->out;
  const char *sync;
  int t = opt_table(L, x, top, "wal");
  if (t == 0) return;
  check_keys(L, x, t, "wal", wal_keys);
  if ((sync = get_str(L, x, t, "wal.sync", "sync", 0)) != NULL) {
    if (strcmp(sync, "always") == 0) c->wal_sync_none = 0;
    else if (strcmp(sync, "none") == 0) c->wal_sync_none = 1;
    else fail(L, x, "wal.sync", "must be \"always\" or \"none\", got \"%s\"",
              sync);
  }
  lua_pop(L, 1); /* get_str leaves the value (or nil) pushed */
  c->wal_segment_bytes = (size_t)opt_int(L, x, t, "wal", "segment_bytes",
                                         (lua_Integer)c->wal_segment_bytes,
                                         4096, (lua_Integer)1 << 40);
  c->wal_batch_bytes = (size_t)opt_int(L, x, t, "wal", "batch_bytes",
                                       (lua_Integer)c->wal_batch_bytes,
                                       4096, (lua_Integer)1 << 40);
  lua_pop(L, 1);
}

/* log = { level = "debug"|"info"|"warn"|"error", format = "text"|"json" } */
static void load_log(lua_State *L, const ctx *x, int top) {
  rf_config *c = x->out;
  const char *v;
  int t = opt_table(L, x, top, "log");
  if (t == 0) return;
  check_keys(L, x, t, "log", log_keys);
  if ((v = get_str(L, x, t, "log.level", "level", 0)) != NULL &&
      (c->log_level = rf_log_level_parse(v)) < 0)
    fail(L, x, "log.level", "must be \"debug\", \"info\", \"warn\" or "
         "\"error\", got \"%s\"", v);
  lua_pop(L, 1);
  if ((v = get_str(L, x, t, "log.format", "format", 0)) != NULL &&
      (c->log_format = rf_log_format_parse(v)) < 0)
    fail(L, x, "log.format", "must be \"text\" or \"json\", got \"%s\"", v);
  lua_pop(L, 2);
}

static void check_timing(lua_State *L, const ctx *x) {
  const rf_config *c = x->out;
  if (c->election_ticks <= c->heartbeat_ticks)
    fail(L, x, "timing.election_ticks",
         "must be greater than timing.heartbeat_ticks (%d), got %d",
         c->heartbeat_ticks, c->election_ticks);
}

static int all_loopback(const rf_config *c) {
  char h[INET6_ADDRSTRLEN + 16];
  for (size_t i = 0; i < c->n_nodes; i++) {
    canon_host(c->nodes[i].peer_host, h, sizeof h);
    if (strncmp(h, "127.", 4) != 0 && strcmp(h, "::1") != 0) return 0;
  }
  return 1;
}

/* "memory", or a directory; '%' may only start "%d" (the node id). */
static void load_storage(lua_State *L, const ctx *x, int top) {
  const char *s = get_str(L, x, top, "storage", "storage", 0);
  if (s == NULL) s = "memory";
  else if (*s == '\0' || strlen(s) != lua_rawlen(L, -1))
    fail(L, x, "storage", "must be \"memory\" or a directory path");
  const char *pct = s;
  while ((pct = strchr(pct, '%')) != NULL && pct[1] == 'd') pct += 2;
  if (pct != NULL)
    fail(L, x, "storage", "\"%s\": only \"%%d\" (the node id) may follow "
                          "'%%'", s);
  /* Nodes on one machine must not share a WAL directory. */
  if (strcmp(s, "memory") != 0 && strstr(s, "%d") == NULL &&
      x->out->n_nodes > 1 && all_loopback(x->out))
    fail(L, x, "storage", "\"%s\" would be shared by every node on this "
                          "host; add \"%%d\" (replaced by the node id)", s);
  x->out->storage = dup_or_raise(L, s);
  lua_pop(L, 1);
}

/* commands: a readable Lua file, relative paths taken from the config's
** directory; stored resolved so the node can open it from anywhere. */
static void load_commands(lua_State *L, const ctx *x, int top) {
  const char *s = get_str(L, x, top, "commands", "commands", 0);
  if (s == NULL) {
    lua_pop(L, 1);
    return;
  }
  if (*s == '\0' || strlen(s) != lua_rawlen(L, -1))
    fail(L, x, "commands", "must be the path of a Lua file");
  const char *slash = strrchr(x->path, '/');
  if (*s != '/' && slash != NULL)
    lua_pushfstring(L, "%s/%s", lua_pushlstring(L, x->path,
                                                (size_t)(slash - x->path)), s);
  else
    lua_pushstring(L, s);
  const char *path = lua_tostring(L, -1);
  if (access(path, R_OK) != 0)
    fail(L, x, "commands", "cannot read \"%s\": %s", path, strerror(errno));
  x->out->commands = dup_or_raise(L, path);
  lua_settop(L, top);
}

static void check_max(lua_State *L, const ctx *x, const char *name,
                      lua_Integer v) {
  for (const struct limit_max *m = limit_maxes; m->name; m++) {
    if (strcmp(m->name, name) != 0 || v <= m->max) continue;
    lua_pushfstring(L, "limits.%s", name);
    fail(L, x, lua_tostring(L, -1), "must be at most %I (%s), got %I", m->max,
         m->why, v);
  }
}

/* tls.<name>: a path with only "%d" after '%', relative to the config's
** directory; stored resolved, "%d" kept for the node to replace. */
static char *tls_path(lua_State *L, const ctx *x, int t, const char *name) {
  lua_pushfstring(L, "tls.%s", name);
  const char *field = lua_tostring(L, -1);
  const char *s = get_str(L, x, t, field, name, 1), *pct = s;
  if (*s == '\0' || strlen(s) != lua_rawlen(L, -1))
    fail(L, x, field, "must be the path of a PEM file");
  while ((pct = strchr(pct, '%')) != NULL && pct[1] == 'd') pct += 2;
  if (pct != NULL)
    fail(L, x, field, "\"%s\": only \"%%d\" (the node id) may follow '%%'",
         s);
  const char *slash = strrchr(x->path, '/');
  if (*s != '/' && slash != NULL)
    lua_pushfstring(L, "%s/%s", lua_pushlstring(L, x->path,
                                                (size_t)(slash - x->path)), s);
  else
    lua_pushstring(L, s);
  char *d = dup_or_raise(L, lua_tostring(L, -1));
  lua_settop(L, t);
  return d;
}

/* tls = { ca =, cert =, key = }: all three, or no tls at all.  The files
** are read when the node starts (rafting/tls.h names what is wrong). */
static void load_tls(lua_State *L, const ctx *x, int top) {
  int t = opt_table(L, x, top, "tls");
  if (t == 0) return;
  check_keys(L, x, t, "tls", tls_keys);
  x->out->tls_ca = tls_path(L, x, t, "ca");
  x->out->tls_cert = tls_path(L, x, t, "cert");
  x->out->tls_key = tls_path(L, x, t, "key");
  lua_settop(L, top);
}

/* Limits where 0 means "none" (docs/config.md): the snapshot ceilings,
** the amortized trigger and the held-loop warning. */
static lua_Integer limit_min(const char *name) {
  return strcmp(name, "snapshot_entries") == 0 ||
                 strcmp(name, "snapshot_log_bytes") == 0 ||
                 strcmp(name, "snapshot_log_percent") == 0 ||
                 strcmp(name, "loop_warn_ms") == 0
             ? 0 : 1;
}

static void load_limits(lua_State *L, const ctx *x, int top) {
  int t = opt_table(L, x, top, "limits");
  const char *names[sizeof limit_defs / sizeof *limit_defs];
  size_t n = 0;
  for (; limit_defs[n].name; n++) names[n] = limit_defs[n].name;
  names[n] = NULL;
  if (t != 0) check_keys(L, x, t, "limits", names);
  for (const limit_def *d = limit_defs; d->name; d++) {
    char *f = (char *)x->out + d->off;
    lua_Integer max = d->is_int ? INT_MAX : LUA_MAXINTEGER;
    lua_Integer dflt = d->dflt > 0 ? d->dflt
                                   : -d->dflt * (lua_Integer)x->out->n_nodes;
    lua_Integer v = t ? opt_int(L, x, t, "limits", d->name, dflt,
                                limit_min(d->name), max)
                      : dflt;
    check_max(L, x, d->name, v);
    if (d->is_int) *(int *)f = (int)v;
    else *(size_t *)f = (size_t)v;
  }
  if (t != 0) lua_pop(L, 1);
}

/* Limits that only make sense together: a full AppendEntries (up to
** max_msg_bytes of entries, and the core refuses larger proposals) must
** fit in one frame, and the transport queues at least one whole frame. */
static void check_limits(lua_State *L, const ctx *x) {
  const rf_config *c = x->out;
  if (c->max_frame_bytes < c->max_msg_bytes + FRAME_SLACK)
    fail(L, x, "limits.max_frame_bytes", "must be at least "
         "limits.max_msg_bytes + %d = %I, or a full AppendEntries does not "
         "fit in a frame", FRAME_SLACK,
         (lua_Integer)(c->max_msg_bytes + FRAME_SLACK));
  if (c->peer_buffer_bytes < c->max_frame_bytes + FRAME_HEADER)
    fail(L, x, "limits.peer_buffer_bytes", "must be at least "
         "limits.max_frame_bytes + %d = %I (one whole frame)", FRAME_HEADER,
         (lua_Integer)(c->max_frame_bytes + FRAME_HEADER));
  if (c->snapshot_log_bytes &&
      c->snapshot_min_log_bytes > c->snapshot_log_bytes)
    fail(L, x, "limits.snapshot_min_log_bytes", "must be at most "
         "limits.snapshot_log_bytes = %I (the floor is under the ceiling)",
         (lua_Integer)c->snapshot_log_bytes);
  if (c->send_queue_bytes < c->max_frame_bytes + FRAME_HEADER)
    fail(L, x, "limits.send_queue_bytes", "must be at least "
         "limits.max_frame_bytes + %d = %I (one whole frame)", FRAME_HEADER,
         (lua_Integer)(c->max_frame_bytes + FRAME_HEADER));
}

/* ---- auth -------------------------------------------------------------- */

#define TOKEN_MIN 16   /* bytes: shorter ones are guessable */
#define TOKEN_MAX 1024
#define TOKENS_MAX 1024

static const char *const auth_keys[] = {"tokens", "tokens_file", NULL};
static const char *const token_keys[] = {"name", "token", "role", NULL};
static const char *const role_names[] = {"read", "write", "admin", NULL};

/* Visible ASCII only: a token travels in a header and a name in logs. */
static int visible(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] <= ' ' || s[i] > '~') return 0;
  return 1;
}

static void load_token(lua_State *L, const ctx *x, int t, const char *f) {
  rf_config *c = x->out;
  rf_token_conf *tk = &c->tokens[c->n_tokens];
  const char *v;
  size_t n;
  int r;
  check_keys(L, x, t, f, token_keys);
  lua_pushfstring(L, "%s.name", f);
  v = get_str(L, x, t, lua_tostring(L, -1), "name", 1);
  n = lua_rawlen(L, -1);
  if (n == 0 || n > 64 || !visible(v, n))
    fail(L, x, lua_tostring(L, -2), "1 to 64 visible ASCII characters");
  for (size_t i = 0; i < c->n_tokens; i++)
    if (strcmp(c->tokens[i].name, v) == 0)
      fail(L, x, lua_tostring(L, -2), "duplicate name \"%s\"", v);
  tk->name = dup_or_raise(L, v);
  c->n_tokens++; /* owned now: freed with the config on any error below */
  lua_pushfstring(L, "%s.token", f);
  v = get_str(L, x, t, lua_tostring(L, -1), "token", 1);
  n = lua_rawlen(L, -1);
  if (n < TOKEN_MIN || n > TOKEN_MAX || !visible(v, n))
    fail(L, x, lua_tostring(L, -2), "%d to %d visible ASCII characters "
         "(e.g. openssl rand -hex 32)", TOKEN_MIN, TOKEN_MAX);
  for (size_t i = 0; i + 1 < c->n_tokens; i++)
    if (strcmp(c->tokens[i].token, v) == 0)
      fail(L, x, lua_tostring(L, -2), "same token as \"%s\"",
           c->tokens[i].name);
  tk->token = dup_or_raise(L, v);
  lua_pushfstring(L, "%s.role", f);
  v = get_str(L, x, t, lua_tostring(L, -1), "role", 1);
  for (r = 0; role_names[r] && strcmp(role_names[r], v) != 0; r++) {}
  if (role_names[r] == NULL)
    fail(L, x, lua_tostring(L, -2), "\"%s\": expected read, write or admin",
         v);
  tk->role = RF_ROLE_READ + r;
}

/* The list at the top of the stack; field names it in messages. */
static void load_token_list(lua_State *L, const ctx *x, const char *field) {
  int t = lua_gettop(L);
  size_t n;
  if (!lua_istable(L, t))
    fail(L, x, field, "expected a list of tokens, got %s",
         luaL_typename(L, t));
  n = lua_rawlen(L, t);
  if (n == 0 || n > TOKENS_MAX)
    fail(L, x, field, "1 to %d tokens expected", TOKENS_MAX);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_Integer i = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : 0;
    lua_pop(L, 1);
    if (i < 1 || (size_t)i > n) {
      push_keyname(L, field, -1);
      fail(L, x, lua_tostring(L, -1), "not an element of the list");
    }
  }
  if ((x->out->tokens = calloc(n, sizeof(rf_token_conf))) == NULL)
    luaL_error(L, "out of memory");
  for (size_t i = 1; i <= n; i++) {
    int top = lua_gettop(L);
    const char *f = lua_pushfstring(L, "%s[%d]", field, (int)i);
    if (lua_rawgeti(L, t, (lua_Integer)i) != LUA_TTABLE)
      fail(L, x, f, "expected a table { name =, token =, role = }, got %s",
           luaL_typename(L, -1));
    load_token(L, x, lua_gettop(L), f);
    lua_settop(L, top);
  }
}

/* tokens_file: a Lua file returning the list, relative to the config's
** directory, run like the config (text only, same libraries, budget). */
static void load_tokens_file(lua_State *L, const ctx *x, const char *s) {
  const char *slash = strrchr(x->path, '/');
  ctx y = *x;
  if (*s != '/' && slash != NULL)
    lua_pushfstring(L, "%s/%s", lua_pushlstring(L, x->path,
                                                (size_t)(slash - x->path)), s);
  else
    lua_pushstring(L, s);
  y.path = lua_tostring(L, -1);
  if (luaL_loadfilex(L, y.path, "t") != LUA_OK) lua_error(L);
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, CFG_INSTR_STEP);
  lua_call(L, 0, 1);
  lua_sethook(L, NULL, 0, 0);
  load_token_list(L, &y, "tokens");
}

static void load_auth(lua_State *L, const ctx *x, int top) {
  int t = opt_table(L, x, top, "auth");
  int ty;
  if (t == 0) return;
  check_keys(L, x, t, "auth", auth_keys);
  ty = rawfield(L, t, "tokens_file");
  if (ty != LUA_TNIL) {
    if (ty != LUA_TSTRING || lua_rawlen(L, -1) == 0)
      fail(L, x, "auth.tokens_file", "expected the path of a Lua file");
    if (rawfield(L, t, "tokens") != LUA_TNIL)
      fail(L, x, "auth", "give tokens or tokens_file, not both");
    lua_pop(L, 1);
    load_tokens_file(L, x, lua_tostring(L, -1));
  } else {
    lua_pop(L, 1);
    if (rawfield(L, t, "tokens") == LUA_TNIL)
      fail(L, x, "auth", "tokens or tokens_file is required");
    load_token_list(L, x, "auth.tokens");
  }
  lua_settop(L, top);
}

/* ---- loading ----------------------------------------------------------- */

/* lua_CFunction run in protected mode: validate(ctx, table). */
static int validate(lua_State *L) {
  const ctx *x = lua_touserdata(L, 1);
  const int top = 2;
  check_keys(L, x, top, "", top_keys);
  load_cluster(L, x, top);
  load_nodes(L, x, top);
  load_timing(L, x, top);
  check_timing(L, x);
  load_storage(L, x, top);
  load_wal(L, x, top);
  load_log(L, x, top);
  load_commands(L, x, top);
  load_limits(L, x, top);
  check_limits(L, x);
  load_auth(L, x, top);
  load_tls(L, x, top);
  return 0;
}

/* Message handler for the chunk: the Lua message plus a traceback. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Add n to the config's instruction count; past the cap, raise an error
** naming the file and line (level: the running Lua function). */
static void spend(lua_State *L, uint64_t n, int level) {
  ctx *x = *(ctx **)lua_getextraspace(L);
  lua_Debug ar;
  if (n < (uint64_t)(CFG_INSTR_MAX - x->instr)) {
    x->instr += (long)n;
    return;
  }
  x->instr = CFG_INSTR_MAX;
  if (lua_getstack(L, level, &ar) && lua_getinfo(L, "Sl", &ar) &&
      ar.currentline > 0)
    lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
  else
    lua_pushfstring(L, "%s: ", x->path);
  lua_pushfstring(L, "config still running after %d instructions "
                  "(endless loop?)", (int)CFG_INSTR_MAX);
  lua_concat(L, 2);
  lua_error(L);
}

/* Count hook: a config that loops forever fails instead of hanging. */
static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  spend(L, CFG_INSTR_STEP, 0);
}

/* Library work (string.rep, patterns...), charged from a C function. */
static void charge(lua_State *L, uint64_t n) { spend(L, n, 1); }

/* The Lua allocator, capped: a config that builds huge strings fails with
** a message instead of taking the machine's memory. */
static void *cfg_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  ctx *x = ud;
  size_t old = p ? osize : 0;
  void *q;
  if (nsize == 0) {
    free(p);
    x->mem -= old;
    return NULL;
  }
  if (nsize > old && nsize - old > CFG_MEM_MAX - x->mem) {
    x->mem_hit = 1;
    return NULL;
  }
  if ((q = realloc(p, nsize)) != NULL) x->mem = x->mem - old + nsize;
  return q;
}

static void open_libs(lua_State *L) {
  static const luaL_Reg libs[] = {{LUA_GNAME, luaopen_base},
                                  {LUA_STRLIBNAME, luaopen_string},
                                  {LUA_TABLIBNAME, luaopen_table},
                                  {LUA_MATHLIBNAME, luaopen_math},
                                  {NULL, NULL}};
  for (const luaL_Reg *l = libs; l->func; l++) {
    luaL_requiref(L, l->name, l->func, 1);
    lua_pop(L, 1);
  }
  rf_meter_open(L, charge);
  lua_pushnil(L); /* a config is one self-contained file */
  lua_setglobal(L, "dofile");
  lua_pushnil(L);
  lua_setglobal(L, "loadfile");
}

static void set_defaults(rf_config *c) {
  memset(c, 0, sizeof *c);
  c->tick_ms = 10;
  c->election_ticks = 30;
  c->heartbeat_ticks = 5;
  c->pre_vote = 1;
  c->check_quorum = 1;
  c->wal_segment_bytes = 64u << 20;
  c->wal_batch_bytes = 8u << 20;
  c->log_level = RF_INFO;
  c->log_format = RF_LOG_TEXT;
}

/* Run the chunk, then validate its table; -1 with the message at top. */
static int run(lua_State *L, ctx *x) {
  *(ctx **)lua_getextraspace(L) = x;
  open_libs(L);
  lua_pushcfunction(L, msghandler);
  if (luaL_loadfilex(L, x->path, "t") != LUA_OK) return -1;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, CFG_INSTR_STEP);
  if (lua_pcall(L, 0, 1, 1) != LUA_OK) return -1;
  lua_sethook(L, NULL, 0, 0);
  if (x->instr >= CFG_INSTR_MAX) { /* load's parser swallowed the error */
    lua_pushfstring(L, "%s: config still running after %d instructions",
                    x->path, (int)CFG_INSTR_MAX);
    return -1;
  }
  if (!lua_istable(L, -1)) {
    lua_pushfstring(L, "%s: must return a table, got %s", x->path,
                    luaL_typename(L, -1));
    return -1;
  }
  lua_pushcfunction(L, validate);
  lua_pushlightuserdata(L, x);
  lua_pushvalue(L, -3);
  return lua_pcall(L, 2, 0, 0) == LUA_OK ? 0 : -1;
}

int rf_config_load(const char *path, rf_config *out, char *err,
                   size_t errlen) {
  ctx x = {path, out, 0, 0, 0};
  lua_State *L;
  int rc = -1;
  set_defaults(out);
  if ((out->path = strdup(path)) == NULL ||
      (L = lua_newstate(cfg_alloc, &x)) == NULL) {
    snprintf(err, errlen, "%s: out of memory", path);
    rf_config_free(out);
    return -1;
  }
  rc = run(L, &x);
  if (rc != 0) {
    const char *msg = lua_tostring(L, -1);
    if (x.mem_hit && msg && strcmp(msg, "not enough memory") == 0)
      snprintf(err, errlen, "%s: config needs more than %u MiB of memory",
               path, CFG_MEM_MAX >> 20);
    else
      snprintf(err, errlen, "%s", msg ? msg : "unknown error");
    rf_config_free(out);
  }
  lua_close(L);
  return rc;
}

void rf_config_free(rf_config *c) {
  for (size_t i = 0; c->nodes && i < c->n_nodes; i++) {
    free(c->nodes[i].peer_host);
    free(c->nodes[i].http_host);
  }
  free(c->nodes);
  free(c->path);
  free(c->cluster);
  free(c->storage);
  free(c->commands);
  for (size_t i = 0; c->tokens && i < c->n_tokens; i++) {
    free(c->tokens[i].name);
    free(c->tokens[i].token);
  }
  free(c->tokens);
  free(c->tls_ca);
  free(c->tls_cert);
  free(c->tls_key);
  memset(c, 0, sizeof *c);
}

int rf_config_path_for(const char *tmpl, uint64_t id, char *buf,
                       size_t len) {
  size_t k = 0;
  for (const char *p = tmpl; *p; p++) {
    if (k + 1 >= len) return -1;
    if (p[0] == '%' && p[1] == 'd') {
      int n = snprintf(buf + k, len - k, "%llu", (unsigned long long)id);
      if (n < 0 || (size_t)n >= len - k) return -1;
      k += (size_t)n;
      p++;
    } else {
      buf[k++] = *p;
    }
  }
  if (k >= len) return -1;
  buf[k] = '\0';
  return 0;
}

const rf_node_conf *rf_config_node(const rf_config *c, uint64_t id) {
  for (size_t i = 0; i < c->n_nodes; i++)
    if (c->nodes[i].id == id) return &c->nodes[i];
  return NULL;
}
