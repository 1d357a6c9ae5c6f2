/*
** kvjson.h -- keys and values in JSON answers, and back (GET /kv, /watch).
**
** JSON strings cannot carry bytes that are not UTF-8 without ambiguity, so
** routes that return keys take ?encoding=utf8 (the default: escaped JSON
** strings) or ?encoding=base64 (RFC 4648, with padding).  A key a client
** sends back (start_after) uses the same encoding as the answer it came in.
** Memory: everything is appended to the caller's rf_buf.
*/
#ifndef RAFTING_HTTP_KVJSON_H
#define RAFTING_HTTP_KVJSON_H

#include <stddef.h>

#include "rafting/buf.h"
#include "rafting/http.h"

/* Append data as a JSON string: escaped text, or base64 when b64. */
void rf_kvjson_bytes(rf_buf *b, const void *data, size_t len, int b64);
/* Decode base64 text into out.  0, or -1 when s is not valid base64. */
int rf_kvjson_unb64(rf_buf *out, const char *s, size_t n);
/* ?encoding: 1 with *b64 set, or 0 after answering 400. */
int rf_kvjson_encoding(rf_http_req *req, int *b64);

#endif
