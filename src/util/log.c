/*
** log.c -- the node's diagnostic log (see rafting/log.h).
*/
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "rafting/log.h"

static uint64_t log_node;
static int log_level = RF_INFO;

void rf_log_init(uint64_t node_id, int level) {
  log_node = node_id;
  log_level = level;
}

int rf_log_level_parse(const char *name) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

int rf_log_enabled(int level) { return level >= log_level; }

void rf_log(int level, const char *fmt, ...) {
  static const char *const tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
  char line[1024], stamp[32];
  struct timeval tv;
  struct tm tm;
  va_list ap;
  int n;
  if (!rf_log_enabled(level)) return;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  n = snprintf(line, sizeof(line), "%s.%03ldZ %s [n%llu] ", stamp,
               (long)(tv.tv_usec / 1000), tags[level & 3],
               (unsigned long long)log_node);
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof(line))
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", line); /* one write per line: lines never mix */
}
