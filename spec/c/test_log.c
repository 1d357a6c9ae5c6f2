/*
** test_log.c -- the structured log (rafting/log.h): text lines split into
** key=value, JSON lines parse (jansson) with their fixed fields, escaping,
** cut lines stay valid, levels filter, progress lines carry done/total.
**
** Each case captures stderr (fd 2) into a temp file around the calls.
*/
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "rafting/log.h"

static int saved_fd = -1;
static FILE *cap;

static void capture(void) {
  fflush(stderr);
  cap = tmpfile();
  if (cap == NULL) { perror("tmpfile"); exit(1); }
  saved_fd = dup(2);
  dup2(fileno(cap), 2);
}

/* Stop capturing; what was written, NUL-terminated (caller frees). */
static char *captured(void) {
  long n;
  char *out;
  fflush(stderr);
  dup2(saved_fd, 2);
  close(saved_fd);
  n = ftell(cap);
  out = calloc(1, (size_t)n + 1);
  rewind(cap);
  if (n > 0 && fread(out, 1, (size_t)n, cap) != (size_t)n) out[0] = '\0';
  fclose(cap);
  return out;
}

static uint64_t fake_term = 7;
static uint64_t get_term(void *ud) { return *(uint64_t *)ud; }

static void test_parse(void) {
  CHECK(rf_log_level_parse("debug") == RF_DEBUG);
  CHECK(rf_log_level_parse("error") == RF_ERROR);
  CHECK(rf_log_level_parse("INFO") == -1);
  CHECK(rf_log_format_parse("text") == RF_LOG_TEXT);
  CHECK(rf_log_format_parse("json") == RF_LOG_JSON);
  CHECK(rf_log_format_parse("xml") == -1);
}

static void test_text(void) {
  rf_logrec r;
  char *out;
  rf_log_set_format(RF_LOG_TEXT);
  capture();
  rf_log_begin(&r, RF_WARN, "peer disconnected");
  rf_log_u64(&r, "peer", 3);
  rf_log_i64(&r, "delta", -2);
  rf_log_str(&r, "plain", "abc");
  rf_log_str(&r, "spaced", "a b=\"c\"\n");
  rf_log_str(&r, "empty", "");
  rf_log_num(&r, "rate", 1.5);
  rf_log_end(&r);
  out = captured();
  CHECK(strlen(out) > 25 && out[4] == '-' && out[10] == 'T' && out[23] == 'Z');
  CHECK(strstr(out, "Z WARN  node=1 term=7 msg=\"peer disconnected\" peer=3 "
                    "delta=-2 plain=abc spaced=\"a b=\\\"c\\\"\\u000a\" empty=\"\" "
                    "rate=1.500\n") != NULL);
  CHECK(strchr(out, '\n') == out + strlen(out) - 1); /* one line */
  free(out);
}

static json_t *one_json(const char *out) {
  json_error_t e;
  json_t *v = json_loads(out, 0, &e);
  if (v == NULL) fprintf(stderr, "not JSON (%s): %s\n", e.text, out);
  return v;
}

static void test_json(void) {
  rf_logrec r;
  char *out;
  json_t *v;
  rf_log_set_format(RF_LOG_JSON);
  capture();
  rf_log_begin(&r, RF_INFO, "became \"leader\"");
  rf_log_str(&r, "bytes", "\x01\xff\xc3\xa9");
  rf_log_u64(&r, "big", (uint64_t)1 << 62);
  rf_log_end(&r);
  out = captured();
  CHECK(out[strlen(out) - 1] == '\n');
  v = one_json(out);
  CHECK(v != NULL);
  if (v) {
    CHECK(strcmp(json_string_value(json_object_get(v, "level")), "info") == 0);
    CHECK(json_integer_value(json_object_get(v, "node")) == 1);
    CHECK(json_integer_value(json_object_get(v, "term")) == 7);
    CHECK(strcmp(json_string_value(json_object_get(v, "msg")),
                 "became \"leader\"") == 0);
    CHECK(strlen(json_string_value(json_object_get(v, "ts"))) == 24);
    /* control and invalid bytes escaped, valid UTF-8 kept */
    CHECK(strstr(out, "\"bytes\":\"\\u0001\\u00ff\xc3\xa9\"") != NULL);
    CHECK(strstr(out, "\"big\":4611686018427387904") != NULL);
    json_decref(v);
  }
  free(out);
}

/* A value longer than a line is cut; the line stays one valid object. */
static void test_cut(void) {
  static char big[6000];
  rf_logrec r;
  char *out;
  json_t *v;
  memset(big, '"', sizeof big - 1);
  rf_log_set_format(RF_LOG_JSON);
  capture();
  rf_log_begin(&r, RF_ERROR, "long");
  rf_log_str(&r, "value", big);
  rf_log_u64(&r, "after", 1);
  rf_log_end(&r);
  out = captured();
  CHECK(strlen(out) <= sizeof r.buf);
  v = one_json(out);
  CHECK(v != NULL);
  json_decref(v);
  free(out);
}

static void test_levels_and_printf(void) {
  rf_logrec r;
  char *out;
  rf_log_set_format(RF_LOG_TEXT);
  rf_log_set_term(NULL, NULL);
  capture();
  CHECK(rf_log_begin(&r, RF_DEBUG, "hidden") == 0);
  rf_log_u64(&r, "x", 1);
  rf_log_end(&r);
  rf_log(RF_DEBUG, "hidden %d", 2);
  rf_log(RF_ERROR, "shown %d", 3);
  out = captured();
  CHECK(strstr(out, "hidden") == NULL);
  CHECK(strstr(out, "ERROR node=1 msg=\"shown 3\"\n") != NULL); /* no term */
  free(out);
}

static void test_progress(void) {
  rf_progress p;
  char *out;
  json_t *v;
  rf_log_set_format(RF_LOG_JSON);
  capture();
  rf_progress_start(&p, "wal replay", "bytes", 1000);
  p.count_name = "entries";
  for (uint64_t i = 1; i <= 1000; i++) {
    p.count = i / 10;
    rf_progress_step(&p, i); /* far under a second: no progress line */
  }
  rf_progress_end(&p);
  out = captured();
  CHECK(strstr(out, "wal replay progress") == NULL);
  v = one_json(out);
  CHECK(v != NULL);
  if (v) {
    CHECK(strcmp(json_string_value(json_object_get(v, "msg")),
                 "wal replay done") == 0);
    CHECK(json_integer_value(json_object_get(v, "done")) == 1000);
    CHECK(json_integer_value(json_object_get(v, "total")) == 1000);
    CHECK(json_integer_value(json_object_get(v, "entries")) == 100);
    CHECK(json_is_number(json_object_get(v, "rate")));
    CHECK(json_number_value(json_object_get(v, "seconds")) >= 0);
    json_decref(v);
  }
  free(out);
}

/* A second since the last line (the clock moved back by hand, no sleep):
** the next clock check writes a progress line, then none for a second. */
static void test_progress_due(void) {
  rf_progress p;
  char *out, *nl;
  json_t *v;
  rf_log_set_format(RF_LOG_JSON);
  capture();
  rf_progress_start(&p, "snapshot send", "bytes", 1u << 20);
  p.every = 1;
  p.start_ns -= 2000000000u;
  p.last_ns -= 1500000000u;
  rf_progress_step(&p, 4096);
  rf_progress_step(&p, 8192); /* within a second of the line before */
  out = captured();
  nl = strchr(out, '\n');
  CHECK(nl != NULL && nl[1] == '\0'); /* exactly one line */
  v = one_json(out);
  CHECK(v != NULL);
  if (v) {
    CHECK(strcmp(json_string_value(json_object_get(v, "msg")),
                 "snapshot send progress") == 0);
    CHECK(json_integer_value(json_object_get(v, "done")) == 4096);
    CHECK(json_integer_value(json_object_get(v, "total")) == 1 << 20);
    CHECK(json_number_value(json_object_get(v, "seconds")) >= 2.0);
    CHECK(json_number_value(json_object_get(v, "rate")) > 0 &&
          json_number_value(json_object_get(v, "rate")) <= 2048.0);
    json_decref(v);
  }
  free(out);
}

int main(void) {
  rf_log_init(1, RF_INFO);
  rf_log_set_term(get_term, &fake_term);
  test_parse();
  test_text();
  test_json();
  test_cut();
  test_levels_and_printf();
  test_progress();
  test_progress_due();
  return check_summary("test_log");
}
