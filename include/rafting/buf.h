/*
** buf.h -- a growable byte buffer, with the JSON writing the REST API needs.
**
** The buffer owns p; rf_buf_free() releases it, rf_buf_take() hands it to
** the caller, rf_buf_reset() empties it and keeps it.  A zeroed rf_buf is
** an empty one; once allocated, p holds a '\0' at p[n].  An allocation
** failure sets oom and makes later appends no-ops, so callers check once
** at the end; rf_buf_reserve() says at once whether room was made, so that
** the appends it made room for cannot fail.
*/
#ifndef RAFTING_BUF_H
#define RAFTING_BUF_H

#include <stddef.h>

typedef struct rf_buf {
  char *p;
  size_t n, cap;
  int oom;
} rf_buf;

void rf_buf_init(rf_buf *b);
void rf_buf_free(rf_buf *b);
char *rf_buf_take(rf_buf *b, size_t *len);
/* Empty the buffer, keeping its memory; oom is cleared. */
void rf_buf_reset(rf_buf *b);
/* Room for more bytes (and the '\0'): 0, or -1 with oom set. */
int rf_buf_reserve(rf_buf *b, size_t more);
void rf_buf_add(rf_buf *b, const void *data, size_t len);
void rf_buf_str(rf_buf *b, const char *s);
void rf_buf_printf(rf_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A JSON string literal of any bytes: UTF-8 passes through, control
** characters and bytes that are not valid UTF-8 become \u00XX escapes. */
void rf_buf_json_str(rf_buf *b, const void *data, size_t len);

#endif
