/*
** log.c -- the node's diagnostic log (see rafting/log.h).
*/
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "rafting/log.h"
#include "rafting/util.h"

static uint64_t log_node;
static int log_inited; /* a node: progress lines are on */
static int log_level = RF_INFO;
static int log_format = RF_LOG_TEXT;
static uint64_t (*term_get)(void *);
static void *term_ud;

void rf_log_init(uint64_t node_id, int level) {
  log_node = node_id;
  log_level = level;
  log_inited = 1;
}

void rf_log_set_format(int format) { log_format = format; }

void rf_log_set_term(uint64_t (*get)(void *ud), void *ud) {
  term_get = get;
  term_ud = ud;
}

static int lookup(const char *const *names, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

int rf_log_level_parse(const char *name) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  return lookup(names, 4, name);
}

int rf_log_format_parse(const char *name) {
  static const char *const names[] = {"text", "json"};
  return lookup(names, 2, name);
}

int rf_log_enabled(int level) { return level >= log_level; }

/* ------------------------------------------------------------ records */

#define RESERVE 3 /* room always kept for "}\n" and the '\0' */

static void put(rf_logrec *r, const char *s, size_t n) {
  size_t room = sizeof(r->buf) - RESERVE - r->len;
  if (n > room) n = room;
  memcpy(r->buf + r->len, s, n);
  r->len += n;
}

static void puts_(rf_logrec *r, const char *s) { put(r, s, strlen(s)); }

/* A JSON string literal; cut (still valid JSON) if the line is full. */
static void put_quoted(rf_logrec *r, const char *s, size_t n) {
  size_t room = sizeof(r->buf) - RESERVE - r->len;
  size_t need = rf_json_quote(NULL, 0, s, n);
  if (need >= room) n = room > 8 ? (room - 8) / 6 : 0; /* \u00XX is 6 */
  r->len += rf_json_quote(r->buf + r->len, room, s, n);
}

/* Text values are bare unless they need quotes to stay one token. */
static int bare(const char *s) {
  if (*s == '\0') return 0;
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || *s == '"' || *s == '=' || *s == '\\' ||
        (unsigned char)*s >= 0x7f)
      return 0;
  return 1;
}

/* Start a field; 0 when the line has no room left for it (and the fields
** after it), so a full line still ends well-formed. */
static int key(rf_logrec *r, const char *k) {
  size_t room = sizeof(r->buf) - RESERVE - r->len;
  if (!r->on || room < strlen(k) + 40) return 0; /* 40: any number, "" */
  if (r->json) {
    puts_(r, ",\"");
    puts_(r, k);
    puts_(r, "\":");
  } else {
    puts_(r, " ");
    puts_(r, k);
    puts_(r, "=");
  }
  return 1;
}

void rf_log_u64(rf_logrec *r, const char *k, uint64_t v) {
  char num[24];
  if (!key(r, k)) return;
  put(r, num, (size_t)snprintf(num, sizeof num, "%" PRIu64, v));
}

void rf_log_i64(rf_logrec *r, const char *k, int64_t v) {
  char num[24];
  if (!key(r, k)) return;
  put(r, num, (size_t)snprintf(num, sizeof num, "%" PRId64, v));
}

void rf_log_num(rf_logrec *r, const char *k, double v) {
  char num[40];
  int n;
  if (!key(r, k)) return;
  if (v != v || v > 1e18 || v < -1e18) v = 0; /* JSON has no NaN/inf */
  n = snprintf(num, sizeof num, "%.3f", v);
  put(r, num, (size_t)(n > 0 && n < (int)sizeof num ? n : 0));
}

void rf_log_str(rf_logrec *r, const char *k, const char *v) {
  if (!key(r, k)) return;
  if (v == NULL) v = "";
  if (!r->json && bare(v)) puts_(r, v);
  else put_quoted(r, v, strlen(v));
}

int rf_log_begin(rf_logrec *r, int level, const char *msg) {
  static const char *const tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
  static const char *const names[] = {"debug", "info", "warn", "error"};
  char stamp[64], date[32];
  uint64_t term = term_get ? term_get(term_ud) : 0;
  struct timeval tv;
  struct tm tm;
  r->on = rf_log_enabled(level);
  if (!r->on) return 0;
  r->json = log_format == RF_LOG_JSON;
  r->len = 0;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(stamp, sizeof stamp, "%s.%03ldZ", date, (long)(tv.tv_usec / 1000) % 1000);
  if (r->json) {
    puts_(r, "{\"ts\":\"");
    puts_(r, stamp);
    puts_(r, "\",\"level\":\"");
    puts_(r, names[level & 3]);
    puts_(r, "\"");
  } else {
    puts_(r, stamp);
    puts_(r, " ");
    puts_(r, tags[level & 3]);
  }
  if (log_node) rf_log_u64(r, "node", log_node);
  if (term) rf_log_u64(r, "term", term);
  key(r, "msg"); /* always fits: the line is still short */
  put_quoted(r, msg, strlen(msg)); /* quoted in text too: it has spaces */
  return 1;
}

void rf_log_end(rf_logrec *r) {
  if (!r->on) return;
  if (r->json) r->buf[r->len++] = '}';
  r->buf[r->len++] = '\n';
  fwrite(r->buf, 1, r->len, stderr); /* one write per line (unbuffered) */
  r->on = 0;
}

void rf_log(int level, const char *fmt, ...) {
  char msg[1024];
  rf_logrec r;
  va_list ap;
  if (!rf_log_enabled(level)) return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  rf_log_begin(&r, level, msg);
  rf_log_end(&r);
}

/* ------------------------------------------------------------ progress */

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void rf_progress_start(rf_progress *p, const char *what, const char *unit,
                       uint64_t total) {
  memset(p, 0, sizeof *p);
  p->what = what;
  p->unit = unit;
  p->total = total;
  p->every = 256;
  p->start_ns = p->last_ns = mono_ns();
}

static void progress_line(rf_progress *p, const char *suffix, uint64_t now) {
  char msg[96];
  double secs = (double)(now - p->start_ns) / 1e9;
  rf_logrec r;
  snprintf(msg, sizeof msg, "%s %s", p->what, suffix);
  if (!rf_log_begin(&r, RF_INFO, msg)) return;
  rf_log_str(&r, "unit", p->unit);
  rf_log_u64(&r, "done", p->done);
  rf_log_u64(&r, "total", p->total);
  if (p->count_name) rf_log_u64(&r, p->count_name, p->count);
  rf_log_num(&r, "rate", secs > 0 ? (double)p->done / secs : 0);
  rf_log_num(&r, "seconds", secs);
  rf_log_end(&r);
}

void rf_progress_step(rf_progress *p, uint64_t done) {
  uint64_t now;
  p->done = done;
  if (!log_inited || ++p->calls % (p->every ? p->every : 1) != 0) return;
  now = mono_ns();
  if (now - p->last_ns < 1000000000u) return;
  p->last_ns = now;
  progress_line(p, "progress", now);
}

void rf_progress_end(rf_progress *p) {
  if (log_inited) progress_line(p, "done", mono_ns());
}
