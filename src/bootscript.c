/*
** bootscript.c -- the config's commands file, deployed through the log
** (see bootscript.h).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootscript.h"
#include "rafting/error.h"
#include "rafting/log.h"
#include "rafting/util.h"

struct rf_bootscript {
  rf_sm *sm;
  char name[RF_SM_SCRIPT_NAME_MAX + 1]; /* the file's base name */
  char *src;
  size_t len;
  char sha[65];
  uint64_t proposed_term; /* the seed was proposed, or not needed, in it */
  uint64_t seen;          /* rf_sm_scripts_generation last compared */
  char warned[65];        /* the replicated version last warned about */
};

static int fail(rf_bootscript *b, char *err, size_t errlen, const char *fmt,
                const char *a, const char *c) {
  snprintf(err, errlen, fmt, a, c);
  rf_bootscript_free(b);
  return RF_ESCRIPT;
}

int rf_bootscript_open(const char *path, rf_sm *sm, rf_bootscript **out,
                       char *err, size_t errlen) {
  rf_bootscript *b;
  const char *base = path ? strrchr(path, '/') : NULL;
  rf_buf msg;
  int rc;
  *out = NULL;
  if (path == NULL) return 0;
  base = base ? base + 1 : path;
  if ((b = calloc(1, sizeof(*b))) == NULL)
    return snprintf(err, errlen, "out of memory"), RF_ENOMEM;
  b->sm = sm;
  if (!rf_sm_script_name_ok(base, strlen(base)))
    return fail(b, err, errlen, "commands %s: the file name must be a script "
                "name: 1..64 of A-Z a-z 0-9 _ . -%s", path, "");
  strcpy(b->name, base);
  if (rf_read_file(path, &b->src, &b->len) < 0)
    return fail(b, err, errlen, "cannot read %s%s", path, "");
  rf_sha256_hex(b->src, b->len, b->sha);
  rf_buf_init(&msg);
  rc = rf_sm_script_check(sm, b->name, b->src, b->len, &msg);
  if (rc != 0) {
    rc = fail(b, err, errlen, "%s (commands = %s)",
              msg.p ? msg.p : "out of memory", path);
    rf_buf_free(&msg);
    return rc;
  }
  rf_buf_free(&msg);
  *out = b;
  return 0;
}

void rf_bootscript_free(rf_bootscript *b) {
  if (b == NULL) return;
  free(b->src);
  free(b);
}

static void on_seeded(void *ud, int status, uint64_t index, uint64_t term,
                      const char *res, size_t len) {
  rf_logrec r;
  (void)ud, (void)term;
  if (status == 0 || status == RF_ESTOPPING || status == RF_ENOTCOMMITTED)
    return; /* installed, or the next leader proposes it again */
  rf_log_begin(&r, RF_ERROR, "bootstrap script not installed");
  rf_log_u64(&r, "index", index);
  rf_log_str(&r, "error", len ? res : rf_strerror(status));
  rf_log_end(&r);
}

static void propose_seed(rf_bootscript *b, rf_driver *drv) {
  rf_sm_arg args[2];
  rf_buf e;
  uint64_t term = rf_driver_term(drv);
  int rc;
  if (b->proposed_term == term) return;
  args[0] = (rf_sm_arg){"name", b->name, strlen(b->name)};
  args[1] = (rf_sm_arg){"source", b->src, b->len};
  rf_buf_init(&e);
  rf_sm_encode_args(&e, "script.seed", (uint64_t)rf_wall_ms(), args, 2);
  rc = e.oom ? RF_ENOMEM : rf_driver_propose(drv, e.p, e.n, on_seeded, NULL,
                                             NULL, NULL);
  rf_buf_free(&e);
  if (rc == RF_EBUSY || rc == RF_ENOTLEADER || rc == RF_ESTOPPING)
    return; /* a transfer, or no longer leading: see the next run */
  b->proposed_term = term;
  if (rc < 0) { /* too large for max_msg_bytes, out of memory: say it once */
    rf_logrec r;
    rf_log_begin(&r, RF_ERROR, "bootstrap script not proposed");
    rf_log_str(&r, "script", b->name);
    rf_log_str(&r, "error", rf_strerror(rc));
    rf_log_end(&r);
  }
}

static void check_version(rf_bootscript *b) {
  char sha[65];
  rf_logrec r;
  if (!rf_sm_script_sha(b->sm, b->name, sha) || strcmp(sha, b->sha) == 0 ||
      strcmp(sha, b->warned) == 0)
    return;
  strcpy(b->warned, sha);
  rf_log_begin(&r, RF_WARN, "commands file differs from the replicated script");
  rf_log_str(&r, "script", b->name);
  rf_log_str(&r, "file_sha256", b->sha);
  rf_log_str(&r, "replicated_sha256", sha);
  rf_log_str(&r, "effect", "this node runs the replicated script; deploy "
             "the file with PUT /scripts/{name} to change it");
  rf_log_end(&r);
}

/* Runs after every driver run: a store lookup only once per term on a
** leader, and a comparison only when the scripts changed. */
void rf_bootscript_sync(rf_bootscript *b, rf_driver *drv, int ready) {
  if (b == NULL || rf_driver_failed(drv)) return;
  if (rf_driver_role(drv) == RAFT_LEADER &&
      b->proposed_term != rf_driver_term(drv)) {
    if (rf_sm_scripts_seeded(b->sm)) b->proposed_term = rf_driver_term(drv);
    else propose_seed(b, drv);
  }
  if (ready && b->seen != rf_sm_scripts_generation(b->sm)) {
    b->seen = rf_sm_scripts_generation(b->sm);
    check_version(b);
  }
}
