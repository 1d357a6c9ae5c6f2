/*
** match.c -- Lua 5.4 pattern matching with a step meter.
**
** Same semantics as the stock string.find/match/gmatch/gsub (classes,
** sets, anchors, %b, %f, captures, position captures, back-references),
** but every step of the backtracking matcher (a character tried against
** an item, a match attempt, a byte compared by %b or a back-reference) is
** counted and charged to the state's meter in batches, and recursion is
** limited to MAXDEPTH levels.  A pathological pattern therefore fails with
** the budget error instead of holding the event loop.  The charge depends
** only on the subject, the pattern and the arguments, so every replica
** stops at the same step.  All state is on the C stack or in Lua values:
** a Lua error (the budget, a bad pattern) leaks nothing.
*/
#include <ctype.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "meter.h"

#define MAXCAPS 32   /* LUA_MAXCAPTURES */
#define MAXDEPTH 200 /* MAXCCALLS: nested matcher calls */
#define BATCH 1024   /* steps between charges */
#define UNFINISHED (-1)
#define POSITION (-2)
#define ESC '%'
#define SPECIALS "^$*+?.([%-"

typedef struct mstate {
  const char *s0, *send; /* subject */
  const char *pend;      /* end of pattern */
  lua_State *L;
  int depth;             /* levels of recursion left */
  int level;             /* captures open or closed */
  uint64_t steps;        /* not yet charged */
  struct { const char *init; ptrdiff_t len; } cap[MAXCAPS];
} mstate;

static const char *domatch(mstate *ms, const char *s, const char *p);

static void step(mstate *ms, uint64_t n) {
  if ((ms->steps += n) >= BATCH) {
    uint64_t c = ms->steps;
    ms->steps = 0;
    rf_meter_charge(ms->L, c);
  }
}

static void flush(mstate *ms) {
  if (ms->steps) rf_meter_charge(ms->L, ms->steps);
  ms->steps = 0;
}

/* -- single items ---------------------------------------------------------- */

static int classmatch(int c, int cl) {
  int r;
  switch (tolower(cl)) {
    case 'a': r = isalpha(c); break;
    case 'c': r = iscntrl(c); break;
    case 'd': r = isdigit(c); break;
    case 'g': r = isgraph(c); break;
    case 'l': r = islower(c); break;
    case 'p': r = ispunct(c); break;
    case 's': r = isspace(c); break;
    case 'u': r = isupper(c); break;
    case 'w': r = isalnum(c); break;
    case 'x': r = isxdigit(c); break;
    case 'z': r = c == 0; break; /* deprecated, still in 5.4 */
    default: return cl == c; /* %. %% %q ... stand for themselves */
  }
  return isupper(cl) ? !r : r != 0;
}

/* Is c in the set from '[' at p to its ']' at last? */
static int setmatch(int c, const char *p, const char *last) {
  int yes = 1;
  if (p[1] == '^') yes = 0, p++;
  while (++p < last) {
    if (*p == ESC) {
      if (classmatch(c, (unsigned char)*++p)) return yes;
    } else if (p[1] == '-' && p + 2 < last) {
      if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2]) return yes;
      p += 2;
    } else if ((unsigned char)*p == c) {
      return yes;
    }
  }
  return !yes;
}

/* The end of the single-character item at p. */
static const char *itemend(mstate *ms, const char *p) {
  char c = *p++;
  if (c == ESC) {
    if (p >= ms->pend)
      luaL_error(ms->L, "malformed pattern (ends with '%%')");
    return p + 1;
  }
  if (c != '[') return p;
  if (*p == '^') p++;
  do { /* the first character of a set is never its end */
    if (p >= ms->pend) luaL_error(ms->L, "malformed pattern (missing ']')");
    if (*p++ == ESC && p < ms->pend) p++;
  } while (*p != ']');
  return p + 1;
}

static int single(mstate *ms, const char *s, const char *p, const char *ep) {
  int c;
  step(ms, 1);
  if (s >= ms->send) return 0;
  c = (unsigned char)*s;
  switch (*p) {
    case '.': return 1;
    case ESC: return classmatch(c, (unsigned char)p[1]);
    case '[': return setmatch(c, p, ep - 1);
    default: return (unsigned char)*p == c;
  }
}

/* -- repetitions, captures, %b, %f ------------------------------------------ */

static const char *greedy(mstate *ms, const char *s, const char *p,
                          const char *ep) {
  ptrdiff_t n = 0;
  while (single(ms, s + n, p, ep)) n++;
  for (; n >= 0; n--) { /* give characters back one by one */
    const char *r = domatch(ms, s + n, ep + 1);
    if (r) return r;
  }
  return NULL;
}

static const char *lazy(mstate *ms, const char *s, const char *p,
                        const char *ep) {
  for (;;) {
    const char *r = domatch(ms, s, ep + 1);
    if (r) return r;
    if (!single(ms, s, p, ep)) return NULL;
    s++;
  }
}

static const char *opencap(mstate *ms, const char *s, const char *p,
                           ptrdiff_t what) {
  const char *r;
  if (ms->level >= MAXCAPS) luaL_error(ms->L, "too many captures");
  ms->cap[ms->level].init = s;
  ms->cap[ms->level].len = what;
  ms->level++;
  if ((r = domatch(ms, s, p)) == NULL) ms->level--;
  return r;
}

static const char *closecap(mstate *ms, const char *s, const char *p) {
  const char *r;
  int l = ms->level - 1;
  while (l >= 0 && ms->cap[l].len != UNFINISHED) l--;
  if (l < 0) luaL_error(ms->L, "invalid pattern capture");
  ms->cap[l].len = s - ms->cap[l].init;
  if ((r = domatch(ms, s, p)) == NULL) ms->cap[l].len = UNFINISHED;
  return r;
}

static int capindex(mstate *ms, int c) {
  int l = c - '1';
  if (l < 0 || l >= ms->level || ms->cap[l].len == UNFINISHED)
    return luaL_error(ms->L, "invalid capture index %%%d", l + 1);
  return l;
}

static const char *backref(mstate *ms, const char *s, int c) {
  int l = capindex(ms, c);
  size_t len = (size_t)ms->cap[l].len;
  if (ms->cap[l].len < 0) return NULL; /* a position never matches */
  step(ms, rf_meter_bytes(len));
  if ((size_t)(ms->send - s) >= len && memcmp(ms->cap[l].init, s, len) == 0)
    return s + len;
  return NULL;
}

static const char *balance(mstate *ms, const char *s, const char *p) {
  int depth = 1;
  char open, close;
  if (p + 1 >= ms->pend)
    luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
  open = p[0], close = p[1];
  if (s >= ms->send || *s != open) return NULL;
  while (++s < ms->send) {
    step(ms, 1);
    if (*s == close) {
      if (--depth == 0) return s + 1;
    } else if (*s == open) {
      depth++;
    }
  }
  return NULL;
}

/* %f[set] at p (pointing at '['): returns the end of the set, or NULL. */
static const char *frontier(mstate *ms, const char *s, const char *p) {
  const char *ep;
  int prev, cur;
  if (*p != '[') luaL_error(ms->L, "missing '[' after '%%f' in pattern");
  ep = itemend(ms, p);
  prev = s == ms->s0 ? 0 : (unsigned char)s[-1];
  cur = s < ms->send ? (unsigned char)*s : 0;
  step(ms, 1);
  if (!setmatch(prev, p, ep - 1) && setmatch(cur, p, ep - 1)) return ep;
  return NULL;
}

/* -- the matcher ------------------------------------------------------------- */

/* One item at p; returns the match end, or NULL.  Items that need no
** backtracking loop here; the others recurse. */
static const char *item(mstate *ms, const char *s, const char *p) {
  const char *ep;
  for (;;) {
    step(ms, 1);
    if (p == ms->pend) return s;
    switch (*p) {
      case '(':
        if (p[1] == ')') return opencap(ms, s, p + 2, POSITION);
        return opencap(ms, s, p + 1, UNFINISHED);
      case ')':
        return closecap(ms, s, p + 1);
      case '$':
        if (p + 1 == ms->pend) return s == ms->send ? s : NULL;
        break;
      case ESC:
        if (p[1] == 'b') {
          if ((s = balance(ms, s, p + 2)) == NULL) return NULL;
          p += 4;
          continue;
        }
        if (p[1] == 'f') {
          if ((ep = frontier(ms, s, p + 2)) == NULL) return NULL;
          p = ep;
          continue;
        }
        if (isdigit((unsigned char)p[1])) {
          if ((s = backref(ms, s, (unsigned char)p[1])) == NULL) return NULL;
          p += 2;
          continue;
        }
        break;
    }
    ep = itemend(ms, p);
    if (!single(ms, s, p, ep)) {
      if (*ep == '*' || *ep == '?' || *ep == '-') { /* may match empty */
        p = ep + 1;
        continue;
      }
      return NULL;
    }
    switch (*ep) {
      case '?': {
        const char *r = domatch(ms, s + 1, ep + 1);
        if (r) return r;
        p = ep + 1;
        continue;
      }
      case '+': return greedy(ms, s + 1, p, ep);
      case '*': return greedy(ms, s, p, ep);
      case '-': return lazy(ms, s, p, ep);
      default: s++, p = ep; continue;
    }
  }
}

static const char *domatch(mstate *ms, const char *s, const char *p) {
  const char *r;
  if (ms->depth-- == 0) luaL_error(ms->L, "pattern too complex");
  r = item(ms, s, p);
  ms->depth++;
  return r;
}

static void start(mstate *ms, lua_State *L, const char *s, size_t ls,
                  const char *p, size_t lp) {
  ms->L = L;
  ms->s0 = s, ms->send = s + ls;
  ms->pend = p + lp;
  ms->steps = 0;
}

static void restart(mstate *ms) {
  ms->level = 0;
  ms->depth = MAXDEPTH;
}

/* -- captures to Lua ---------------------------------------------------------- */

/* Push capture i (the whole match s..e when there are none); returns its
** length, or POSITION when it pushed a position. */
static ptrdiff_t getcap(mstate *ms, int i, const char *s, const char *e,
                        const char **out) {
  if (i >= ms->level) {
    if (i != 0) luaL_error(ms->L, "invalid capture index %%%d", i + 1);
    *out = s;
    return e - s;
  }
  if (ms->cap[i].len == UNFINISHED) luaL_error(ms->L, "unfinished capture");
  *out = ms->cap[i].init;
  if (ms->cap[i].len == POSITION)
    lua_pushinteger(ms->L, (ms->cap[i].init - ms->s0) + 1);
  return ms->cap[i].len;
}

static void pushcap(mstate *ms, int i, const char *s, const char *e) {
  const char *c;
  ptrdiff_t n = getcap(ms, i, s, e, &c);
  if (n != POSITION) lua_pushlstring(ms->L, c, (size_t)n);
}

/* Push all captures (or the whole match when s is not NULL and there are
** none); returns how many. */
static int pushcaps(mstate *ms, const char *s, const char *e) {
  int i, n = (ms->level == 0 && s) ? 1 : ms->level;
  luaL_checkstack(ms->L, n, "too many captures");
  for (i = 0; i < n; i++) pushcap(ms, i, s, e);
  return n;
}

/* -- find, match -------------------------------------------------------------- */

static size_t startpos(lua_Integer pos, size_t len) {
  if (pos > 0) return (size_t)pos;
  if (pos == 0) return 1;
  if (pos < -(lua_Integer)len) return 1;
  return len + (size_t)pos + 1;
}

static int plain(const char *p, size_t lp) {
  size_t i;
  for (i = 0; i < lp; i++)
    if (p[i] && strchr(SPECIALS, p[i])) return 0;
  return 1;
}

/* Plain search; charged by the bytes scanned and compared. */
static const char *memfind(lua_State *L, const char *s, size_t ls,
                           const char *p, size_t lp) {
  const char *q = s, *end;
  if (lp == 0) return s;
  if (lp > ls) return NULL;
  end = s + (ls - lp) + 1; /* candidates start before end */
  while ((q = memchr(q, *p, (size_t)(end - q))) != NULL) {
    rf_meter_charge(L, rf_meter_bytes((size_t)(q - s) + lp));
    if (memcmp(q + 1, p + 1, lp - 1) == 0) return q;
    s = ++q;
  }
  rf_meter_charge(L, rf_meter_bytes((size_t)(end - s)));
  return NULL;
}

static int findaux(lua_State *L, int find) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = startpos(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls) {
    luaL_pushfail(L);
    return 1;
  }
  if (find && (lua_toboolean(L, 4) || plain(p, lp))) {
    const char *q = memfind(L, s + init, ls - init, p, lp);
    if (q) {
      lua_pushinteger(L, (q - s) + 1);
      lua_pushinteger(L, (lua_Integer)((q - s) + lp));
      return 2;
    }
  } else {
    mstate ms;
    const char *s1 = s + init, *e;
    int anchor = *p == '^';
    if (anchor) p++, lp--;
    start(&ms, L, s, ls, p, lp);
    do {
      restart(&ms);
      if ((e = domatch(&ms, s1, p)) != NULL) {
        flush(&ms);
        if (!find) return pushcaps(&ms, s1, e);
        lua_pushinteger(L, (s1 - s) + 1);
        lua_pushinteger(L, e - s);
        return pushcaps(&ms, NULL, NULL) + 2;
      }
    } while (s1++ < ms.send && !anchor);
    flush(&ms);
  }
  luaL_pushfail(L);
  return 1;
}

int rf_match_find(lua_State *L) { return findaux(L, 1); }
int rf_match_match(lua_State *L) { return findaux(L, 0); }

/* -- gmatch ------------------------------------------------------------------- */

typedef struct gstate {
  mstate ms;
  size_t pos;   /* where the next search starts */
  size_t last;  /* end of the last match + 1; 0: none yet */
} gstate;

/* Upvalues: subject, pattern, state.  The pointers in ms are refreshed
** from the upvalues on every call (the strings are kept alive by them). */
static int gmatchstep(lua_State *L) {
  size_t ls, lp;
  const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
  const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
  gstate *g = lua_touserdata(L, lua_upvalueindex(3));
  size_t i;
  start(&g->ms, L, s, ls, p, lp);
  for (i = g->pos; i <= ls; i++) {
    const char *e;
    restart(&g->ms);
    e = domatch(&g->ms, s + i, p);
    if (e != NULL && (size_t)(e - s) + 1 != g->last) {
      g->pos = (size_t)(e - s);
      g->last = g->pos + 1;
      flush(&g->ms);
      return pushcaps(&g->ms, s + i, e);
    }
  }
  flush(&g->ms);
  g->pos = ls + 1;
  return 0;
}

int rf_match_gmatch(lua_State *L) {
  size_t ls;
  gstate *g;
  size_t init;
  luaL_checklstring(L, 1, &ls);
  luaL_checkstring(L, 2);
  init = startpos(luaL_optinteger(L, 3, 1), ls) - 1;
  lua_settop(L, 2);
  g = lua_newuserdatauv(L, sizeof(*g), 0);
  g->pos = init > ls ? ls + 1 : init;
  g->last = 0;
  lua_pushcclosure(L, gmatchstep, 3);
  return 1;
}

/* -- gsub --------------------------------------------------------------------- */

/* The replacement string at index 3, with %0-%9 and %%. */
static void addstring(mstate *ms, luaL_Buffer *b, const char *s,
                      const char *e) {
  size_t l;
  const char *r = lua_tolstring(ms->L, 3, &l), *q;
  step(ms, rf_meter_bytes(l));
  while ((q = memchr(r, ESC, l)) != NULL) {
    luaL_addlstring(b, r, (size_t)(q - r));
    q++;
    if (*q == ESC) {
      luaL_addchar(b, ESC);
    } else if (*q == '0') {
      luaL_addlstring(b, s, (size_t)(e - s));
    } else if (isdigit((unsigned char)*q)) {
      const char *c;
      ptrdiff_t n = getcap(ms, *q - '1', s, e, &c);
      if (n == POSITION) luaL_addvalue(b);
      else luaL_addlstring(b, c, (size_t)n);
    } else {
      luaL_error(ms->L, "invalid use of '%c' in replacement string", ESC);
    }
    l -= (size_t)(q + 1 - r);
    r = q + 1;
  }
  luaL_addlstring(b, r, l);
}

/* Add the replacement of match s..e; returns whether it changed anything. */
static int addvalue(mstate *ms, luaL_Buffer *b, const char *s, const char *e,
                    int tr) {
  lua_State *L = ms->L;
  if (tr == LUA_TFUNCTION) {
    int n;
    lua_pushvalue(L, 3);
    n = pushcaps(ms, s, e);
    lua_call(L, n, 1);
  } else if (tr == LUA_TTABLE) {
    pushcap(ms, 0, s, e);
    lua_gettable(L, 3);
  } else {
    addstring(ms, b, s, e);
    return 1;
  }
  if (!lua_toboolean(L, -1)) { /* nil or false: keep the match */
    lua_pop(L, 1);
    luaL_addlstring(b, s, (size_t)(e - s));
    return 0;
  }
  if (!lua_isstring(L, -1))
    return luaL_error(L, "invalid replacement value (a %s)",
                      luaL_typename(L, -1));
  luaL_addvalue(b);
  return 1;
}

int rf_match_gsub(lua_State *L) {
  size_t ls, lp;
  const char *src = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp), *last = NULL, *e;
  int tr = lua_type(L, 3), anchor = *p == '^', changed = 0;
  lua_Integer maxn = luaL_optinteger(L, 4, (lua_Integer)ls + 1), n = 0;
  mstate ms;
  luaL_Buffer b;
  luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING ||
                   tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
                   "string/function/table");
  luaL_buffinit(L, &b);
  if (anchor) p++, lp--;
  start(&ms, L, src, ls, p, lp);
  while (n < maxn) {
    restart(&ms);
    if ((e = domatch(&ms, src, p)) != NULL && e != last) {
      n++;
      changed = addvalue(&ms, &b, src, e, tr) | changed;
      src = last = e;
    } else if (src < ms.send) {
      luaL_addchar(&b, *src++);
    } else {
      break;
    }
    if (anchor) break;
  }
  flush(&ms);
  if (!changed) {
    lua_pushvalue(L, 1);
  } else {
    luaL_addlstring(&b, src, (size_t)(ms.send - src));
    luaL_pushresult(&b);
  }
  lua_pushinteger(L, n);
  return 2;
}
