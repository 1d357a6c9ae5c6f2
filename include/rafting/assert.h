/*
** assert.h -- rafting's own assert, on in every build.
**
** RF_ASSERT(cond) checks a safety property (a committed entry is never
** removed, one vote per term, ...).  Unlike assert(3) it does not depend on
** NDEBUG: a release build that breaks Raft's safety must stop, not go on
** with a corrupt log.  On failure it prints
**   assertion failed: COND (file:line, function)
** to stderr and calls abort().  Keep the condition cheap (O(1)): it runs on
** every step of a production node.
*/
#ifndef RAFTING_ASSERT_H
#define RAFTING_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#if defined(__GNUC__)
#define RF_ASSERT_NORETURN __attribute__((noreturn, cold))
#define RF_ASSERT_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define RF_ASSERT_NORETURN
#define RF_ASSERT_UNLIKELY(x) (x)
#endif

RF_ASSERT_NORETURN static inline void rf_assert_fail(const char *cond,
                                                     const char *file,
                                                     int line,
                                                     const char *func) {
  fprintf(stderr, "assertion failed: %s (%s:%d, %s)\n", cond, file, line,
          func);
  fflush(stderr);
  abort();
}

#define RF_ASSERT(cond)                                                      \
  (RF_ASSERT_UNLIKELY(!(cond))                                               \
       ? rf_assert_fail(#cond, __FILE__, __LINE__, __func__)                 \
       : (void)0)

#endif
