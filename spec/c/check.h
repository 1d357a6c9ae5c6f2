/*
** check.h -- what the C tests under spec/c share: checks that count and
** name each failure, the summary main() ends with, a scratch directory,
** and running a uv loop until a condition holds or a deadline passes.
**
** Header-only, for one test program each: it defines the static failure
** count.  A failed check prints "FAIL file:line: what" on stderr and the
** test goes on; check_summary() turns the count into the exit status.
** The loop helper is there when <uv.h> was included first.
*/
#ifndef RAFTING_SPEC_CHECK_H
#define RAFTING_SPEC_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int failures;

#define CHECK(c)                                                        \
  do {                                                                  \
    if (!(c)) {                                                         \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);      \
      failures++;                                                       \
    }                                                                   \
  } while (0)

/* got == want, for status codes; both are shown with strerror_fn's text. */
#define CHECK_STATUS(got, want, strerror_fn)                            \
  do {                                                                  \
    int g_ = (got), w_ = (want);                                        \
    if (g_ != w_) {                                                     \
      fprintf(stderr, "FAIL %s:%d: %s = %d (%s), want %d (%s)\n",       \
              __FILE__, __LINE__, #got, g_, strerror_fn(g_), w_,        \
              strerror_fn(w_));                                         \
      failures++;                                                       \
    }                                                                   \
  } while (0)

/* The end of main(): one line saying how it went; the exit status. */
static inline int check_summary(const char *name) {
  if (failures) {
    fprintf(stderr, "%s: %d check(s) failed\n", name, failures);
    return 1;
  }
  printf("%s: ok\n", name);
  return 0;
}

/* A fresh directory "$TMPDIR/<prefix>-XXXXXX" (TMPDIR: /tmp if unset)
** into root[size]; 0, or -1 having said why. */
static inline int check_tmpdir(char *root, size_t size, const char *prefix) {
  const char *tmp = getenv("TMPDIR");
  snprintf(root, size, "%s/%s-XXXXXX", tmp ? tmp : "/tmp", prefix);
  if (mkdtemp(root) == NULL) {
    perror("mkdtemp");
    return -1;
  }
  return 0;
}

/* Remove what check_tmpdir() made, and all in it. */
static inline void check_rmtree(const char *root) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
}

#ifdef UV_VERSION_MAJOR
static inline void check_tick_(uv_timer_t *t) { (void)t; }

/* Run loop until cond holds or ms pass.  tick is an initialised timer the
** test owns (and closes at the end); it wakes the loop every 5 ms so that
** cond and the deadline are looked at even when nothing else happens. */
#define CHECK_WAIT(loop, tick, cond, ms)                                \
  do {                                                                  \
    uint64_t end_ = uv_now(loop) + (ms);                                \
    uv_timer_start((tick), check_tick_, 5, 5);                          \
    while (!(cond) && uv_now(loop) < end_)                              \
      uv_run((loop), UV_RUN_ONCE);                                      \
    uv_timer_stop(tick);                                                \
  } while (0)
#endif

#endif
