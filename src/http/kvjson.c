/*
** kvjson.c -- keys and values in JSON answers (see kvjson.h).
*/
#include <string.h>

#include "http/kvjson.h"

static const char tab[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void rf_kvjson_bytes(rf_buf *b, const void *data, size_t len, int b64) {
  const unsigned char *s = data;
  if (!b64) {
    rf_buf_json_str(b, data, len);
    return;
  }
  rf_buf_add(b, "\"", 1);
  for (size_t i = 0; i < len; i += 3) {
    unsigned v = (unsigned)s[i] << 16;
    char out[4];
    if (i + 1 < len) v |= (unsigned)s[i + 1] << 8;
    if (i + 2 < len) v |= s[i + 2];
    out[0] = tab[v >> 18 & 63];
    out[1] = tab[v >> 12 & 63];
    out[2] = i + 1 < len ? tab[v >> 6 & 63] : '=';
    out[3] = i + 2 < len ? tab[v & 63] : '=';
    rf_buf_add(b, out, 4);
  }
  rf_buf_add(b, "\"", 1);
}

static int sextet(char ch) {
  const char *p = ch ? strchr(tab, ch) : NULL;
  return p ? (int)(p - tab) : -1;
}

/* Strict: length a multiple of 4, '=' only as the last one or two. */
int rf_kvjson_unb64(rf_buf *out, const char *s, size_t n) {
  if (n % 4) return -1;
  for (size_t i = 0; i < n; i += 4) {
    int last = i + 4 == n;
    int pad = (s[i + 3] == '=') + (s[i + 2] == '=' && s[i + 3] == '=');
    int a = sextet(s[i]), b = sextet(s[i + 1]);
    int c = pad >= 2 ? 0 : sextet(s[i + 2]), d = pad >= 1 ? 0 : sextet(s[i + 3]);
    unsigned char o[3];
    unsigned v;
    if (a < 0 || b < 0 || c < 0 || d < 0 || (pad && !last)) return -1;
    v = (unsigned)a << 18 | (unsigned)b << 12 | (unsigned)c << 6 | (unsigned)d;
    o[0] = (unsigned char)(v >> 16);
    o[1] = (unsigned char)(v >> 8);
    o[2] = (unsigned char)v;
    rf_buf_add(out, o, 3 - (size_t)pad);
  }
  return out->oom ? -1 : 0;
}

int rf_kvjson_encoding(rf_http_req *req, int *b64) {
  size_t n;
  const char *e = rf_http_query_get(req, "encoding", &n);
  *b64 = e != NULL && n == 6 && memcmp(e, "base64", 6) == 0;
  if (e == NULL || *b64 || (n == 4 && memcmp(e, "utf8", 4) == 0)) return 1;
  rf_http_json_error(req, 400, "bad_request", "encoding must be utf8 or base64");
  return 0;
}
