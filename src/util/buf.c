/*
** buf.c -- growable buffer (see rafting/buf.h).
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rafting/buf.h"
#include "rafting/util.h"

void rf_buf_init(rf_buf *b) { memset(b, 0, sizeof(*b)); }

void rf_buf_free(rf_buf *b) {
  free(b->p);
  rf_buf_init(b);
}

char *rf_buf_take(rf_buf *b, size_t *len) {
  char *p = b->p;
  if (len) *len = b->n;
  rf_buf_init(b);
  return p;
}

void rf_buf_reset(rf_buf *b) {
  b->n = 0;
  b->oom = 0;
  if (b->p) b->p[0] = '\0';
}

int rf_buf_reserve(rf_buf *b, size_t more) {
  size_t cap;
  char *p;
  if (b->oom) return -1;
  if (b->n + more + 1 <= b->cap) return 0;
  cap = b->cap ? b->cap : 256;
  while (cap < b->n + more + 1) cap *= 2;
  p = realloc(b->p, cap);
  if (p == NULL) {
    b->oom = 1;
    return -1;
  }
  b->p = p;
  b->p[b->n] = '\0';
  b->cap = cap;
  return 0;
}

void rf_buf_add(rf_buf *b, const void *data, size_t len) {
  if (rf_buf_reserve(b, len) != 0) return;
  if (len) memcpy(b->p + b->n, data, len); /* data may be NULL then */
  b->n += len;
  b->p[b->n] = '\0'; /* always a C string too */
}

void rf_buf_str(rf_buf *b, const char *s) { rf_buf_add(b, s, strlen(s)); }

void rf_buf_printf(rf_buf *b, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || rf_buf_reserve(b, (size_t)n) != 0) return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)n;
}

void rf_buf_json_str(rf_buf *b, const void *data, size_t len) {
  size_t n = rf_json_quote(NULL, 0, data, len);
  if (rf_buf_reserve(b, n) != 0) return;
  rf_json_quote(b->p + b->n, n + 1, data, len);
  b->n += n;
}
