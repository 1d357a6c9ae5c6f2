/*
** json.c -- UTF-8 validation and JSON string quoting (see rafting/util.h).
*/
#include "rafting/util.h"

size_t rf_utf8_len(const unsigned char *s, size_t left) {
  unsigned char lo = 0x80, hi = 0xbf;
  size_t n;
  if (s[0] < 0x80) return 1;
  if (s[0] >= 0xc2 && s[0] <= 0xdf) n = 2;
  else if (s[0] >= 0xe0 && s[0] <= 0xef) n = 3;
  else if (s[0] >= 0xf0 && s[0] <= 0xf4) n = 4;
  else return 0;
  if (s[0] == 0xe0) lo = 0xa0;      /* overlong */
  else if (s[0] == 0xed) hi = 0x9f; /* surrogates */
  else if (s[0] == 0xf0) lo = 0x90; /* overlong */
  else if (s[0] == 0xf4) hi = 0x8f; /* past U+10FFFF */
  if (left < n || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xbf) return 0;
  return n;
}

size_t rf_json_quote(char *dst, size_t cap, const void *src, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = src;
  size_t n = 0;
#define PUT(ch) (n + 1 < cap ? (void)(dst[n] = (char)(ch)) : (void)0, n++)
  PUT('"');
  for (size_t i = 0; i < len;) {
    unsigned char ch = s[i];
    size_t u = ch >= 0x20 ? rf_utf8_len(s + i, len - i) : 0;
    if (ch == '"' || ch == '\\') {
      PUT('\\');
      PUT(ch);
      i++;
    } else if (u > 0) {
      for (; u > 0; u--, i++) PUT(s[i]); /* PUT may skip its argument */
    } else { /* control character or a byte that is not UTF-8 */
      PUT('\\'); PUT('u'); PUT('0'); PUT('0');
      PUT(hex[ch >> 4]);
      PUT(hex[ch & 15]);
      i++;
    }
  }
  PUT('"');
#undef PUT
  if (cap > 0) dst[n < cap ? n : cap - 1] = '\0';
  return n;
}
