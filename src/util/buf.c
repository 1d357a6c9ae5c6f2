/*
** buf.c -- growable buffer and JSON string escaping (see rafting/buf.h).
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rafting/buf.h"

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

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t left) {
  size_t n, i;
  unsigned c = s[0];
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) n = 3;
  else if (c >= 0xf0 && c <= 0xf4) n = 4;
  else return 0;
  if (n > left) return 0;
  for (i = 1; i < n; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  if (n == 3 && c == 0xe0 && s[1] < 0xa0) return 0; /* overlong */
  if (n == 3 && c == 0xed && s[1] >= 0xa0) return 0; /* surrogate */
  if (n == 4 && c == 0xf0 && s[1] < 0x90) return 0;
  if (n == 4 && c == 0xf4 && s[1] >= 0x90) return 0;
  return n;
}

void rf_buf_json_str(rf_buf *b, const void *data, size_t len) {
  const unsigned char *s = data;
  size_t i = 0;
  rf_buf_add(b, "\"", 1);
  while (i < len) {
    unsigned c = s[i];
    size_t n = utf8_len(s + i, len - i);
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', (char)c};
      rf_buf_add(b, esc, 2);
    } else if (c >= 0x20 && n > 0) {
      rf_buf_add(b, s + i, n);
      i += n;
      continue;
    } else {
      rf_buf_printf(b, "\\u%04x", c);
    }
    i++;
  }
  rf_buf_add(b, "\"", 1);
}
