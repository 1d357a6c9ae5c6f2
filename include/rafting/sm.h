/*
** sm.h -- the replicated state machine: Lua commands as transactions over
** the ordered store, run in a deterministic sandbox.
**
** Every replica applies the same log entries in the same order, so each
** entry carries everything a command may depend on: its name, its
** arguments and a time stamped by the leader at propose time.  Handlers
** live in lua/rafting/sm/kv.lua (put, delete, cas) and in an optional user
** script; docs/commands.md is the script author's reference (handler
** arguments, the kv API, sandbox rules, limits).
**
** Entry payload (all integers big-endian, str = uvarint length + bytes):
**
**   u8 version (1) | u64 time_ms | str name | u8 kind | body
**   kind 1 (ARGS): uvarint n, then n x (str arg-name, str value)
**   kind 2 (JSON): str json-text (any JSON value; an object by convention)
**
** No byte may follow the body.  ARGS carries binary values (REST's
** PUT/DELETE/cas); JSON carries POST /cmd bodies.
**
** Memory: rf_sm owns its Lua state, store and scratch buffers.  Results go
** into the caller's rf_buf (appended; the caller frees it).  The host is
** single-threaded: one call at a time.
*/
#ifndef RAFTING_SM_H
#define RAFTING_SM_H

#include <stddef.h>
#include <stdint.h>

#include "rafting/buf.h"
#include "rafting/error.h"
#include "rafting/store.h"

#define RF_SM_VERSION 1
#define RF_SM_DEFAULT_BUDGET 1000000u            /* VM instructions/call */
#define RF_SM_DEFAULT_MEMORY (64u * 1024 * 1024) /* bytes per Lua state */

/* Return codes: RF_E* codes of rafting/error.h.  Each error puts a message in the result buffer: plain
** UTF-8 text naming the script and line where there is one; escape it
** (rf_buf_json_str) to embed it in JSON. */
enum {
  RF_SM_OK = RF_OK,
  RF_SM_ENOTFOUND = RF_ENOTFOUND, /* no such command or query (REST: 404) */
  RF_SM_EFAILED = RF_EFAILED,     /* handler error, budget or memory cap (422) */
  RF_SM_EBADENTRY = RF_EBADENTRY, /* malformed entry or arguments (400) */
  RF_SM_ENOMEM = RF_ENOMEM,       /* the host itself ran out of memory (500) */
  RF_SM_ECONFLICT = RF_ECONFLICT  /* a script name clash (409) */
};

enum { RF_SM_ARGS = 1, RF_SM_JSON = 2 }; /* entry kinds */

typedef struct rf_sm rf_sm;

typedef struct rf_sm_opts {
  /* A script loaded on this replica only, outside the replicated set:
  ** for tools and unit specs.  Nodes leave it NULL and deploy scripts
  ** through the log (rf_sm_script_*).  NULL: none. */
  const char *commands;
  const char *builtin;  /* NULL: kv.lua as compiled in; else a file */
  uint64_t budget;      /* VM instructions per call; 0: the default */
  size_t memory;        /* Lua heap + write batch cap; 0: the default */
  /* print() from scripts; NULL: discarded.  msg is not NUL-terminated. */
  void (*log)(void *ud, const char *msg, size_t len);
  void *log_ud;
} rf_sm_opts;

/* A named binary argument (ARGS entries). */
typedef struct rf_sm_arg {
  const char *name;
  const void *val;
  size_t len;
} rf_sm_arg;

/* A decoded entry: pointers into the entry bytes. */
typedef struct rf_sm_entry {
  uint64_t time_ms;
  const char *name; /* not NUL-terminated */
  size_t name_len;
  int kind;
  const unsigned char *body; /* ARGS: the pairs; JSON: the text */
  size_t body_len;
  size_t nargs; /* ARGS only */
} rf_sm_entry;

/* o may be NULL (all defaults).  On failure NULL, with a message in err
** naming the script and line. */
rf_sm *rf_sm_new(const rf_sm_opts *o, char *err, size_t errlen);
void rf_sm_free(rf_sm *sm);

/* Append an entry to out.  Names are 1..255 bytes without NUL.
** rf_sm_encode_json checks json (len 0 means "{}") and returns
** RF_SM_EBADENTRY with a message in out when it is not valid JSON, so REST
** can answer 400 before proposing.  0, or an RF_SM_E* code. */
int rf_sm_encode_args(rf_buf *out, const char *name, uint64_t time_ms,
                      const rf_sm_arg *args, size_t nargs);
int rf_sm_encode_json(rf_buf *out, const char *name, uint64_t time_ms,
                      const char *json, size_t len);
/* 0 and e filled, or RF_SM_EBADENTRY. */
int rf_sm_decode(const void *entry, size_t len, rf_sm_entry *e);
/* Iterate an ARGS entry: *pos (a byte offset) starts at 0; 1 with the
** next arg, 0 at the end.  a->name is NOT NUL-terminated: its length is
** in *name_len. */
int rf_sm_entry_arg(const rf_sm_entry *e, size_t *pos, rf_sm_arg *a,
                    size_t *name_len);

/* Apply log entry `index`: run its command as a transaction.  0 with the
** JSON of the handler's return value appended to result; or an error code
** with the message.  On error the store is unchanged.  Same entries in the
** same order give the same store and results on every replica. */
int rf_sm_apply(rf_sm *sm, uint64_t index, const void *entry, size_t len,
                rf_buf *result);
/* Run a read-only query of the user script (writes raise an error).
** args_json may be NULL/0 ("{}").  Sees the last applied index and time. */
int rf_sm_query(rf_sm *sm, const char *name, const char *args_json,
                size_t len, rf_buf *result);

/* 1 if name is a command (or, for rf_sm_has_query, a query). */
int rf_sm_has_command(const rf_sm *sm, const char *name);
int rf_sm_has_query(const rf_sm *sm, const char *name);

/* Observe the changes of applied entries (GET /watch): fn runs once per
** entry whose command succeeded, before its write batch reaches the store,
** with the batch (live nodes: puts; dead: deletes; possibly empty) and the
** store as it was.  batch == NULL: the whole state was replaced at index
** (rf_sm_restored).  fn must not call back into sm.  fn NULL: none. */
typedef void (*rf_sm_observer)(void *ud, uint64_t index, const rf_store *batch,
                               const rf_store *store);
void rf_sm_observe(rf_sm *sm, rf_sm_observer fn, void *ud);
/* The store was just loaded from a snapshot taken at index: the scripts
** are reloaded from it.  0, or -1 with the error in msg (the scripts in
** the snapshot do not load here: a different budget or memory cap). */
int rf_sm_restored(rf_sm *sm, uint64_t index, rf_buf *msg);

/* -- deployed scripts (scripts.c) --------------------------------------
**
** Scripts are part of the replicated state: one store key each, under the
** reserved prefix RF_SM_RESERVED, so snapshots carry them and the set in
** force at index i is the store's at i.  Users can neither read nor write
** reserved keys (REST refuses them, kv.* in scripts hides them).  Entries
** (ARGS kind, built with rf_sm_encode_args):
**
**   script.put    name, source   install or replace a script
**   script.delete name           remove it
**   script.seed   name, source   script.put unless any script entry ever
**                                applied (the config's bootstrap script)
**
** Applying one rebuilds the Lua state from the built-in kv.lua and every
** stored script in name order; a script that fails to load changes
** nothing (RF_SM_EFAILED, the same on every replica). */
#define RF_SM_RESERVED "\0rafting/"
#define RF_SM_RESERVED_LEN 9
#define RF_SM_SCRIPT_NAME_MAX 64

/* 1 if key begins with RF_SM_RESERVED. */
int rf_sm_reserved(const void *key, size_t len);
/* 1 if name is a valid script name: 1..64 of [A-Za-z0-9_.-], no leading '.'. */
int rf_sm_script_name_ok(const char *name, size_t len);
/* Would the script load in place of (or beside) the installed ones?  0;
** RF_EBADENTRY (syntax, shape, top-level error: 400) or RF_ECONFLICT (a
** name another script has: 409), with the message in msg. */
int rf_sm_script_check(rf_sm *sm, const char *name, const void *src,
                       size_t len, rf_buf *msg);
/* The installed script's source, or NULL. */
const char *rf_sm_script_source(rf_sm *sm, const char *name, size_t *len);
/* Its sha256 (hex) into out, 1; or 0 when absent. */
int rf_sm_script_sha(rf_sm *sm, const char *name, char out[65]);
/* [{"name","sha256","index","commands":[...],"queries":[...]}] by name. */
void rf_sm_scripts_json(rf_sm *sm, rf_buf *out);
/* {"count":N,"digest":hex}: equal on replicas with equal scripts. */
void rf_sm_scripts_digest_json(rf_sm *sm, rf_buf *out);
/* 1 once any script entry applied (seeds are then no-ops). */
int rf_sm_scripts_seeded(rf_sm *sm);
/* Counts the Lua states built: changes whenever the scripts in force may
** have (an install, a delete, a snapshot restored); starts at 1. */
uint64_t rf_sm_scripts_generation(const rf_sm *sm);

rf_store *rf_sm_store(rf_sm *sm); /* direct reads (REST GET, snapshots) */
uint64_t rf_sm_applied(const rf_sm *sm); /* index of the last apply */
size_t rf_sm_memory(const rf_sm *sm);    /* bytes the Lua state holds */
const char *rf_sm_strerror(int code);

#endif
