/*
** lraft.h -- Lua <-> C conversions shared by the rafting.core and
** rafting.driver modules: messages, entries, configs, status.
**
** Every C buffer made from Lua values (entries, voters) is a full userdata
** pushed on the stack, and every string it points into is kept alive in an
** 'anchor' table, so an error raised halfway leaks nothing.
*/
#ifndef RAFTING_LRAFT_H
#define RAFTING_LRAFT_H

#include <stdint.h>

#include <lua.h>

#include "rafting/raft.h"

extern const char *const lraft_msg_names[RAFT_MSG_TYPE_MAX + 1];
extern const char *const lraft_entry_names[];
extern const char *const lraft_role_names[];

/* A short name for an error code ("notleader", ...). */
const char *lraft_errname (int err);
/* nil, errname, message: the usual failure triple. */
int lraft_pusherr (lua_State *L, int err);

uint64_t lraft_getu64 (lua_State *L, int t, const char *k, uint64_t def);
int lraft_getint (lua_State *L, int t, const char *k, int def);
int lraft_getbool (lua_State *L, int t, const char *k, int def);
int lraft_findname (const char *const *list, int n, const char *name);
raft_entry *lraft_toentries (lua_State *L, int list, int anchor,
                             uint64_t first, size_t *n);
void lraft_tomsg (lua_State *L, int idx, int anchor, raft_msg *m);
void lraft_toconfig (lua_State *L, int anchor, raft_config *c,
                     raft_restore *rs);
/* {voters = {ids}, learners = {ids}} at idx as a raft_conf (a userdata,
** pushed and left); raises on a malformed one. */
raft_conf *lraft_toconf (lua_State *L, int idx);
void lraft_pushconf (lua_State *L, const raft_conf *c);

void lraft_setint (lua_State *L, const char *k, uint64_t v);
void lraft_pushentry (lua_State *L, const raft_entry *e);
void lraft_pushentries (lua_State *L, const raft_entry *es, size_t n);
void lraft_pushmsg (lua_State *L, const raft_msg *m);
int lraft_pushstatus (lua_State *L, const raft_status *st);
/* 9 values: role, term, leader, commit, last_index, last_term, applied,
** vote, first_index -- the simulator polls this after every step. */
int lraft_pushstate (lua_State *L, const raft_status *st);

#endif
