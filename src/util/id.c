/*
** id.c -- node ids written by people (command lines, ctl arguments).
*/
#include <errno.h>
#include <stdlib.h>

#include "rafting/util.h"

uint64_t rf_parse_id(const char *s) {
  char *end;
  unsigned long long v;
  if (s == NULL || *s == '\0' || *s == '-' || *s == '+') return 0;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno || *end != '\0') return 0;
  return (uint64_t)v;
}
