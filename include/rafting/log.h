/*
** log.h -- the node's diagnostic log: one line per event on stderr.
**
** Lines read "2026-11-26T10:20:01.123Z INFO  [n1] became leader in term 3".
** Process-wide (one node per process): level and node id are set once at
** start.  No memory is owned by callers.
*/
#ifndef RAFTING_LOG_H
#define RAFTING_LOG_H

#include <stdint.h>

enum { RF_DEBUG = 0, RF_INFO, RF_WARN, RF_ERROR };

void rf_log_init(uint64_t node_id, int level);
/* Parse "debug", "info", "warn", "error"; -1 if none of them. */
int rf_log_level_parse(const char *name);
int rf_log_enabled(int level);
void rf_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
