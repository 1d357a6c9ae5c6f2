/*
** test_ctl.c -- the pieces of `rafting ctl` that need no server: the JSON
** indenter (strings with structural characters and escapes untouched,
** empty containers kept on one line) and endpoint URL parsing.
*/
#include "ctl/ctl.h"
#include "ctl/http_client.h"

#include <string.h>

#include "check.h"

static int pretty_is(const char *in, const char *want) {
  rf_buf o;
  int ok;
  rf_buf_init(&o);
  rf_ctl_json_pretty(&o, in, strlen(in));
  ok = o.n == strlen(want) && memcmp(o.p, want, o.n) == 0;
  if (!ok) fprintf(stderr, "pretty(%s) =\n%.*s\nwant\n%s\n", in, (int)o.n,
                   o.p ? o.p : "", want);
  rf_buf_free(&o);
  return ok;
}

static void test_pretty(void) {
  CHECK(pretty_is("{}", "{}\n"));
  CHECK(pretty_is("[ ]", "[]\n")); /* empty: one line, inner space gone */
  CHECK(pretty_is("42\n", "42\n"));
  CHECK(pretty_is("{\"a\":1,\"b\":[1,2],\"c\":{},\"d\":null}",
                  "{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2\n  ],\n"
                  "  \"c\": {},\n  \"d\": null\n}\n"));
  /* structure inside strings, escaped quotes and backslashes */
  CHECK(pretty_is("{\"k\":\"{[,:]} \\\"q\\\" \\\\\",\"n\":1.5e300}",
                  "{\n  \"k\": \"{[,:]} \\\"q\\\" \\\\\",\n  \"n\": 1.5e300\n}\n"));
  CHECK(pretty_is("{\"items\":[{\"key\":\"a\",\"value\":\"\\u00ff\"}]}",
                  "{\n  \"items\": [\n    {\n      \"key\": \"a\",\n"
                  "      \"value\": \"\\u00ff\"\n    }\n  ]\n}\n"));
  /* not JSON: unbalanced closers do not underflow the indent */
  CHECK(pretty_is("]]", "\n]\n]\n"));
}

static void test_url(void) {
  rf_hc_url u;
  const char *rest;
  char err[256];
  CHECK(rf_hc_parse_url("http://127.0.0.1:8001", 0, &u, &rest, err,
                        sizeof(err)) == 0 && !u.tls && u.port == 8001 &&
        strcmp(u.host, "127.0.0.1") == 0 && *rest == '\0');
  CHECK(rf_hc_parse_url("https://n1.example:9443/kv/a?x", 0, &u, &rest, err,
                        sizeof(err)) == 0 && u.tls && u.port == 9443 &&
        strcmp(u.host, "n1.example") == 0 && strcmp(rest, "/kv/a?x") == 0);
  CHECK(rf_hc_parse_url("[::1]:8001", 1, &u, &rest, err, sizeof(err)) == 0 &&
        u.tls && strcmp(u.host, "::1") == 0 && u.port == 8001);
  CHECK(rf_hc_parse_url("https://host", 0, &u, &rest, err, sizeof(err)) == 0 &&
        u.port == 443);
  CHECK(rf_hc_parse_url("localhost", 0, &u, &rest, err, sizeof(err)) == 0 &&
        u.port == 80);
  CHECK(rf_hc_parse_url("ftp://h:1", 0, &u, &rest, err, sizeof(err)) < 0);
  CHECK(rf_hc_parse_url("http://:80", 0, &u, &rest, err, sizeof(err)) < 0);
  CHECK(rf_hc_parse_url("http://h:0", 0, &u, &rest, err, sizeof(err)) < 0);
  CHECK(rf_hc_parse_url("http://h:65536", 0, &u, &rest, err, sizeof(err)) < 0);
  CHECK(rf_hc_parse_url("http://h:8x", 0, &u, &rest, err, sizeof(err)) < 0);
  CHECK(rf_hc_parse_url("[::1:80", 0, &u, &rest, err, sizeof(err)) < 0);
  CHECK(strstr(err, "unclosed") != NULL);
}

int main(void) {
  test_pretty();
  test_url();
  return check_summary("test_ctl");
}
