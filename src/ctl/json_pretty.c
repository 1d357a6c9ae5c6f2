/*
** json_pretty.c -- a JSON indenter for `rafting ctl` output (see ctl.h).
** It rewrites whitespace only, so numbers and strings keep their exact
** bytes (no reparsing, no float reformatting).
*/
#include "ctl/ctl.h"

static void newline(rf_buf *o, int depth) {
  rf_buf_add(o, "\n", 1);
  for (int i = 0; i < depth; i++) rf_buf_add(o, "  ", 2);
}

static int is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

void rf_ctl_json_pretty(rf_buf *o, const char *s, size_t n) {
  int depth = 0, in_str = 0, esc = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    size_t j;
    if (in_str) {
      rf_buf_add(o, &c, 1);
      if (esc) esc = 0;
      else if (c == '\\') esc = 1;
      else if (c == '"') in_str = 0;
      continue;
    }
    if (is_ws(c)) continue;
    switch (c) {
    case '"':
      in_str = 1;
      rf_buf_add(o, &c, 1);
      break;
    case '{':
    case '[':
      rf_buf_add(o, &c, 1);
      for (j = i + 1; j < n && is_ws(s[j]); j++) {}
      if (j < n && s[j] == (c == '{' ? '}' : ']')) { /* {} and [] stay */
        rf_buf_add(o, &s[j], 1);
        i = j;
        break;
      }
      newline(o, ++depth);
      break;
    case '}':
    case ']':
      newline(o, depth > 0 ? --depth : 0);
      rf_buf_add(o, &c, 1);
      break;
    case ',':
      rf_buf_add(o, ",", 1);
      newline(o, depth);
      break;
    case ':':
      rf_buf_add(o, ": ", 2);
      break;
    default:
      rf_buf_add(o, &c, 1);
    }
  }
  rf_buf_add(o, "\n", 1);
}
