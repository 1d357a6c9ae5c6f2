/*
** meter.h -- charging C library work to an instruction budget.
**
** The count hook only sees VM instructions; a C function such as
** string.rep("", 1e9) or a pathological pattern runs for seconds inside
** one of them.  rf_meter_open() replaces, in place, the functions of the
** standard libraries already loaded in a state (base, string, table,
** utf8) by wrappers that charge their work to `charge` before doing it,
** and string.find/match/gmatch/gsub by a matcher that charges every step
** (match.c).  The charge is a pure function of the arguments, so every
** replica runs out of budget at the same place.  No C memory: the charge
** function pointer lives in a Lua userdata in the registry.
*/
#ifndef RAFTING_METER_H
#define RAFTING_METER_H

#include <stdint.h>

#include <lua.h>

/* Add n units; raises (longjmp) when the budget is exhausted. */
typedef void (*rf_meter_fn)(lua_State *L, uint64_t n);

void rf_meter_open(lua_State *L, rf_meter_fn charge);
/* Charge n units through the state's meter (no-op before rf_meter_open). */
void rf_meter_charge(lua_State *L, uint64_t n);
/* Bytes-based work: one unit per RF_METER_BYTES bytes, at least one. */
#define RF_METER_BYTES 32
uint64_t rf_meter_bytes(uint64_t n);

/* match.c: metered string.find, match, gmatch, gsub */
int rf_match_find(lua_State *L);
int rf_match_match(lua_State *L);
int rf_match_gmatch(lua_State *L);
int rf_match_gsub(lua_State *L);

#endif
