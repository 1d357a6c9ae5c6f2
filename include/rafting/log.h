/*
** log.h -- the node's diagnostic log: one line per event on stderr.
**
** Two formats (docs/logging.md):
**   text  2026-11-26T10:20:01.123Z INFO  node=1 term=3 msg="became leader"
**   json  {"ts":"2026-11-26T10:20:01.123Z","level":"info","node":1,"term":3,
**          "msg":"became leader"}
** A line is built in a caller-owned rf_logrec (no heap): rf_log_begin()
** starts it with the time, level, node, current term and msg; typed fields
** follow; rf_log_end() writes it with one write, so lines never mix.  All
** calls on a record whose level is disabled do nothing.  rf_log() is the
** printf-style shorthand for a line with a message only.
**
** Process-wide (one node per process): level, format and node id are set
** once at start; the node registers a term getter while its core lives.
*/
#ifndef RAFTING_LOG_H
#define RAFTING_LOG_H

#include <stddef.h>
#include <stdint.h>

enum { RF_DEBUG = 0, RF_INFO, RF_WARN, RF_ERROR };
enum { RF_LOG_TEXT = 0, RF_LOG_JSON };

void rf_log_init(uint64_t node_id, int level);
void rf_log_set_format(int format);
/* Parse "debug", "info", "warn", "error"; -1 if none of them. */
int rf_log_level_parse(const char *name);
/* Parse "text", "json"; -1 if neither. */
int rf_log_format_parse(const char *name);
int rf_log_enabled(int level);
/* Lines carry term=get(ud) while a getter is set (NULL unsets it); a term
** of 0 is left out. */
void rf_log_set_term(uint64_t (*get)(void *ud), void *ud);

typedef struct rf_logrec {
  int on;     /* level enabled: the other calls append */
  int json;
  size_t len;
  char buf[2048];
} rf_logrec;

int rf_log_begin(rf_logrec *r, int level, const char *msg);
void rf_log_u64(rf_logrec *r, const char *key, uint64_t v);
void rf_log_i64(rf_logrec *r, const char *key, int64_t v);
void rf_log_num(rf_logrec *r, const char *key, double v); /* 3 decimals */
void rf_log_str(rf_logrec *r, const char *key, const char *v);
void rf_log_end(rf_logrec *r);

void rf_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Progress of long work (WAL replay, snapshot load and transfer): call
** rf_progress_step() as work is done; it logs "<what> progress" with
** done/total/rate at most once a second (a monotonic clock read every
** `every` steps, 256 unless changed), and rf_progress_end() one "<what>
** done" line with the totals and the duration.  unit names the counted
** thing ("entries", "bytes"); a second counter (count_name = count, e.g.
** entries while bytes are the unit) is added to the lines when named.
** Only a process that called rf_log_init() (a node) writes these lines:
** the storage libraries stay quiet inside test modules. */
typedef struct rf_progress {
  const char *what, *unit;
  uint64_t total, done, calls, every;
  uint64_t start_ns, last_ns;
  const char *count_name;
  uint64_t count;
} rf_progress;

void rf_progress_start(rf_progress *p, const char *what, const char *unit,
                       uint64_t total);
void rf_progress_step(rf_progress *p, uint64_t done);
void rf_progress_end(rf_progress *p);

#endif
